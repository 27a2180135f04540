package bearer

import (
	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkRevocationCheck is the revocation check alone, with 100,000
// revoked sessions in the set: a map lookup under a read lock.
func BenchmarkRevocationCheck(b *testing.B) {
	now := time.Now()
	v := &Verifier{cfg: Config{Now: func() time.Time { return now }}, log: slog.New(slog.DiscardHandler)}
	f := &feed{v: v, cfg: FeedConfig{MaxStaleness: time.Hour}, revoked: newRevokedSet()}
	// Session ids in Latch's form: 16 bytes in base64url.
	sid := func(i int) string {
		var b [16]byte
		binary.BigEndian.PutUint64(b[8:], uint64(i))
		return base64.RawURLEncoding.EncodeToString(b[:])
	}
	for i := range 100_000 {
		f.revoked.add(sid(i), now.Add(time.Hour).Unix())
	}
	f.lastSeen.Store(now.UnixNano())
	ok := &Claims{SessionID: sid(1 << 40)}
	bad := &Claims{SessionID: sid(42424)}
	b.Run("not revoked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if f.check(ok) != nil {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("revoked", func(b *testing.B) {
		for b.Loop() {
			if f.check(bad) == nil {
				b.Fatal("accepted")
			}
		}
	})
	b.Run("not revoked parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				f.check(ok)
			}
		})
	})
}
