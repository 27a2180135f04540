package bearer

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"math"
	"runtime"
	"testing"
)

func randomSID() string {
	var b [sidSize]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func TestRevokedSet(t *testing.T) {
	canonical := randomSID()
	// The same 16 bytes in a non-canonical spelling (the last character's
	// unused bits set) is a different sid and must not match.
	b, _ := base64.RawURLEncoding.DecodeString(canonical)
	last := base64.RawURLEncoding.EncodeToString(b)[21]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := 0
	for alphabet[i] != last {
		i++
	}
	variant := canonical[:21] + string(alphabet[i|1])
	for _, tc := range []struct {
		name, add string
		until     int64
		check     string
		want      bool
	}{
		{"a Latch sid", canonical, 2_000_000_000, canonical, true},
		{"another sid is not revoked", canonical, 2_000_000_000, randomSID(), false},
		{"a non-canonical spelling of the same bytes is another sid", canonical, 2_000_000_000, variant, false},
		{"a sid in another format", "session-42", 2_000_000_000, "session-42", true},
		{"a 22-character sid that is not base64url", "session.id.0000000042!", 2_000_000_000, "session.id.0000000042!", true},
		{"until past 2106 is kept", canonical, math.MaxInt64, canonical, true},
		{"the empty sid", "", 2_000_000_000, canonical, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRevokedSet()
			s.add(tc.add, tc.until)
			if got := s.has(tc.check); got != tc.want {
				t.Fatalf("has(%q) after add(%q) = %v, want %v", tc.check, tc.add, got, tc.want)
			}
			if s.len() != 1 {
				t.Fatalf("len = %d, want 1", s.len())
			}
		})
	}
}

// key decodes exactly what encoding/base64's strict base64url decodes, for
// Latch sids, near misses and noise.
func TestKeyMatchesBase64(t *testing.T) {
	strict := base64.RawURLEncoding.Strict()
	check := func(sid string) {
		t.Helper()
		var want [sidSize]byte
		wantOK := false
		if len(sid) == 22 {
			n, err := strict.Decode(want[:], []byte(sid))
			wantOK = err == nil && n == sidSize
		}
		got, ok := key(sid)
		if ok != wantOK || (ok && got != want) {
			t.Fatalf("key(%q) = %x, %v; encoding/base64: %x, %v", sid, got, ok, want, wantOK)
		}
	}
	for _, sid := range []string{"", "A", "AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAB", "_____________________w",
		"_____________________x", "AAAAAAAAAAAAAAAAAAAA=A", "AAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAA+AAAAAAAAAAA", "AAAAAAAAAA\xffAAAAAAAAAAA"} {
		check(sid)
	}
	for range 10_000 {
		sid := []byte(randomSID())
		check(string(sid))
		// One byte changed to any value: another sid, a non-canonical
		// spelling, or not base64url.
		var r [2]byte
		rand.Read(r[:])
		sid[int(r[0])%len(sid)] = r[1]
		check(string(sid))
	}
}

func TestRevokedSetPrune(t *testing.T) {
	s := newRevokedSet()
	old, live := randomSID(), randomSID()
	s.add(old, 100)
	s.add(live, 300)
	s.add("other-old", 100)
	s.add("other-live", 300)
	// A repeat with an earlier until keeps the later one.
	s.add(live, 50)
	s.prune(200)
	for sid, want := range map[string]bool{old: false, live: true, "other-old": false, "other-live": true} {
		if s.has(sid) != want {
			t.Errorf("after prune, has(%q) = %v, want %v", sid, !want, want)
		}
	}
	if s.len() != 2 {
		t.Errorf("after prune len = %d, want 2", s.len())
	}
}

// heapBytesPerEntry fills a revoked set with n Latch sids and returns the
// heap it holds per entry.
func heapBytesPerEntry(n int) float64 {
	s := newRevokedSet()
	return heapPerEntry(n, func(sid string) { s.add(sid, 2_000_000_000) }, func() int { return s.len() })
}

// heapPerEntry measures the heap that n calls of add hold, per call.
func heapPerEntry(n int, add func(sid string), size func() int) float64 {
	sids := make([]string, n)
	for i := range sids {
		sids[i] = randomSID()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, sid := range sids {
		// The feed decodes each sid into a fresh string; so does this.
		add(string([]byte(sid)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(sids)
	if size() != n {
		panic("lost entries")
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// The set a resource server keeps grows with logouts: at a million
// entries it must stay within 64 bytes each (issue 17). A
// map[string]int64 took 80.
func TestRevokedSetMemory(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	per := heapBytesPerEntry(n)
	t.Logf("revoked set: %d entries, %.1f bytes per entry, %.1f MiB", n, per, per*float64(n)/(1<<20))
	if per > 64 {
		t.Fatalf("%.1f bytes per revoked session, want at most 64", per)
	}
}

// BenchmarkRevokedSetMemory reports the heap per entry at several sizes,
// and that of the map[string]int64 the set replaced:
//
//	go test -run '^$' -bench RevokedSetMemory -benchtime 1x ./bearer
func BenchmarkRevokedSetMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, kind := range []string{"revokedSet", "map[string]int64"} {
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				var per float64
				for b.Loop() {
					if kind == "revokedSet" {
						per = heapBytesPerEntry(n)
						continue
					}
					m := map[string]int64{}
					per = heapPerEntry(n, func(sid string) { m[sid] = 2_000_000_000 }, func() int { return len(m) })
				}
				b.ReportMetric(per, "bytes/entry")
				b.ReportMetric(per*float64(n)/(1<<20), "MiB")
			})
		}
	}
}
