package loadgen

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	// Every value falls in a bucket whose top is >= the value and within
	// 1/128 of it, and buckets are contiguous and increasing.
	values := []uint64{0, 1, 255, 256, 257, 511, 512, 1000, 1e6, 123456789, 1e12, 1 << 40, 1<<62 + 12345}
	for range 10000 {
		values = append(values, rand.Uint64N(1<<50))
	}
	for _, v := range values {
		i := bucket(v)
		top := highest(i)
		if top < v {
			t.Fatalf("highest(bucket(%d)) = %d, below the value", v, top)
		}
		if i > 0 && highest(i-1) >= v {
			t.Fatalf("value %d: previous bucket's top %d is not below it", v, highest(i-1))
		}
		if v >= subCount && float64(top-v) > float64(v)/128 {
			t.Fatalf("value %d reported as %d: more than 1/128 off", v, top)
		}
	}
	if got := bucket(1<<63 - 1); got >= numBuckets {
		t.Fatalf("bucket(MaxInt64) = %d, want < %d", got, numBuckets)
	}
}

func TestQuantile(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one sample", []time.Duration{3 * ms}, 0.99, 3 * ms},
		{"p50 of 1..100 ms", seq(100, ms), 0.50, 50 * ms},
		{"p90 of 1..100 ms", seq(100, ms), 0.90, 90 * ms},
		{"p99 of 1..100 ms", seq(100, ms), 0.99, 99 * ms},
		{"p100 is the max", seq(100, ms), 1, 100 * ms},
		{"p99 of 1000 with one outlier", append(repeat(999, ms), time.Second), 0.99, ms},
		{"p99.95 sees the outlier", append(repeat(999, ms), time.Second), 0.9995, time.Second},
		{"exact below 256ns", []time.Duration{1, 2, 3, 4}, 0.5, 2},
		{"zero and negative", []time.Duration{0, -5}, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistogram()
			for _, s := range tt.samples {
				h.Record(s)
			}
			got := h.Quantile(tt.q)
			if !within(got, tt.want) {
				t.Errorf("Quantile(%v) = %v, want %v (within 1/128)", tt.q, got, tt.want)
			}
		})
	}
}

// TestMergeEqualsOne: percentiles of merged worker histograms are those of
// all samples recorded in one, and match an exact sort.
func TestMergeEqualsOne(t *testing.T) {
	all := newHistogram()
	merged := newHistogram()
	var exact []time.Duration
	for w := range 8 {
		h := newHistogram()
		// Workers with very different speeds: averaging their p99s would
		// be far off.
		scale := time.Duration(1+w*w) * 100 * time.Microsecond
		for range 5000 {
			d := time.Duration(rand.ExpFloat64() * float64(scale))
			h.Record(d)
			all.Record(d)
			exact = append(exact, d)
		}
		merged.Merge(h)
	}
	merged.Merge(newHistogram()) // empty merge changes nothing
	slices.Sort(exact)
	if merged.Count() != uint64(len(exact)) || merged.Max() != exact[len(exact)-1] {
		t.Fatalf("count %d max %v, want %d %v", merged.Count(), merged.Max(), len(exact), exact[len(exact)-1])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := exact[int(float64(len(exact))*q+0.999999)-1]
		if got := merged.Quantile(q); !within(got, want) {
			t.Errorf("merged p%v = %v, want %v", q*100, got, want)
		}
		if a, b := merged.Quantile(q), all.Quantile(q); a != b {
			t.Errorf("p%v: merged %v, single %v", q*100, a, b)
		}
	}
}

func within(got, want time.Duration) bool {
	return got >= want && float64(got-want) <= float64(want)/128
}

func seq(n int, unit time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i+1) * unit
	}
	return s
}

func repeat(n int, d time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}
