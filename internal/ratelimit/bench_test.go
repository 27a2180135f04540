package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// benchPolicy never denies, so each Login takes the full path: IP bucket,
// lockout counter, known-device mark, account bucket.
func benchPolicy() Policy {
	p := DefaultPolicy()
	big := Bucket{Every: time.Nanosecond, Burst: 1 << 30}
	p.LoginPerIP, p.LoginPerAccount = big, big
	return p
}

func benchLogin(b *testing.B, th *Throttle) {
	accts, ips := make([]string, 1024), make([]string, 1024)
	for i := range accts {
		accts[i], ips[i] = fmt.Sprintf("user%d@example.com", i), ip4(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			d, err := th.Login(ctx, accts[i%1024], ips[(i/3)%1024])
			if err != nil || !d.Allowed {
				b.Fatalf("Login = %+v, %v", d, err)
			}
			i++
		}
	})
}

func BenchmarkLogin(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		th, err := New(NewMemory(), benchPolicy())
		if err != nil {
			b.Fatal(err)
		}
		benchLogin(b, th)
	})
	b.Run("redis", func(b *testing.B) {
		th, _, _ := newRedisThrottle(b, benchPolicy())
		benchLogin(b, th)
	})
}
