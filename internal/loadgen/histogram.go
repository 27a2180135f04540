package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Latencies are recorded in a log-linear histogram, as HdrHistogram does:
// values below 2^subBits nanoseconds are exact, and every larger power-of-two
// range is cut into 2^(subBits-1) equal sub-buckets, so a reported value is
// within 1/128 (0.8%) of the true one. Memory is fixed (about 60 KB) however
// long the run, and histograms merge exactly by adding counts, so the
// percentiles of several workers are those of all their samples together,
// never an average of per-worker percentiles.
const (
	subBits    = 8
	subCount   = 1 << subBits // 256
	halfCount  = subCount / 2 // 128
	maxShift   = 63 - subBits + 1
	numBuckets = subCount + maxShift*halfCount
)

// Histogram records durations. The zero value is not ready: use
// newHistogram. It is not safe for concurrent use; each worker keeps its own
// and the runner merges them at the end.
type Histogram struct {
	counts []uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

func newHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, numBuckets), min: math.MaxInt64}
}

// bucket returns the index of v (in nanoseconds, v >= 0).
func bucket(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits // v>>shift is in [128, 256)
	return subCount + (shift-1)*halfCount + int(v>>shift) - halfCount
}

// highest returns the largest value that falls in bucket i.
func highest(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := (i-subCount)/halfCount + 1
	sub := uint64((i-subCount)%halfCount + halfCount)
	return (sub+1)<<shift - 1
}

// Record adds one sample. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucket(uint64(d))]++
	h.n++
	h.sum += d
	h.min = min(h.min, d)
	h.max = max(h.max, d)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest sample, exactly (0 when empty).
func (h *Histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.max
}

// Mean returns the arithmetic mean (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// recorded value v such that at least q of the samples are <= v, reported as
// the top of v's bucket and never above the exact maximum or below the exact
// minimum. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(min(highest(i), uint64(math.MaxInt64)))
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
