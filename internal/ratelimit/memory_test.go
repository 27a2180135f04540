package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newMemoryThrottle(t testing.TB, c *fakeClock, p Policy, opts ...MemoryOption) (*Throttle, *Memory) {
	m := NewMemory(append([]MemoryOption{MemoryClock(c.Now)}, opts...)...)
	th, err := New(m, p, WithFallback(NewMemory(MemoryClock(c.Now))), WithOnBackendError(func(err error) {
		t.Errorf("memory backend failed: %v", err)
	}))
	if err != nil {
		t.Fatal(err)
	}
	return th, m
}

func TestMemory(t *testing.T) {
	runSuite(t, harness{
		unit:  time.Second,
		exact: true,
		newThrottle: func(t *testing.T, p Policy) (*Throttle, func(time.Duration)) {
			c := newFakeClock()
			th, _ := newMemoryThrottle(t, c, p)
			return th, c.Advance
		},
	})
}

// TestDefaultPolicy drives the default policy with a fake clock and counts
// what an attacker gets through in a window.
func TestDefaultPolicy(t *testing.T) {
	tests := []struct {
		name     string
		every    time.Duration // one attempt per
		span     time.Duration // total time driven
		window   time.Duration // sliding window the bound holds in
		account  func(i int) string
		ip       func(i int) string
		min, max int // allowed attempts in any window
	}{
		{
			name: "one IP spraying many accounts: 30 per minute after the burst",
			// 10 attempts a second; the first minute gets the burst (30) plus
			// 30 refills; any later minute gets 30.
			every: 100 * time.Millisecond, span: 10 * time.Minute, window: time.Minute,
			account: func(i int) string { return fmt.Sprintf("user%d@example.com", i) },
			ip:      func(int) string { return "192.0.2.1" },
			min:     30, max: 60,
		},
		{
			name: "many IPs on one account: at most 100 failures an hour (ASVS 2.2.1)",
			// An attempt a second, each from a fresh address, each failing.
			every: time.Second, span: 3 * time.Hour, window: time.Hour,
			account: func(int) string { return "victim@example.com" },
			ip:      ip4,
			min:     90, max: 100,
		},
		{
			name: "one IP on one account: the soft lockout slows it to a few an hour",
			// 5 free, then delays 1s, 2s, ... capped at 15m.
			every: time.Second, span: 3 * time.Hour, window: time.Hour,
			account: func(int) string { return "victim@example.com" },
			ip:      func(int) string { return "192.0.2.1" },
			min:     4, max: 5 + 11 + 4,
		},
		{
			name:  "unknown account like any other",
			every: time.Second, span: 3 * time.Hour, window: time.Hour,
			account: func(int) string { return "no-such-user@example.com" },
			ip:      ip4,
			min:     90, max: 100,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClock()
			th, _ := newMemoryThrottle(t, c, DefaultPolicy())
			start := c.Now()
			var at []time.Duration // times of allowed attempts
			for i := 0; time.Duration(i)*tt.every < tt.span; i++ {
				if d := attempt(t, th, tt.account(i), tt.ip(i)); d.Allowed {
					at = append(at, c.Now().Sub(start))
				}
				c.Advance(tt.every)
			}
			// Every window [w, w+window) that lies in the span, stepping by
			// tt.every.
			lo, hi := len(at), 0
			for w := time.Duration(0); w+tt.window <= tt.span; w += tt.every {
				n := 0
				for _, a := range at {
					if a >= w && a < w+tt.window {
						n++
					}
				}
				lo, hi = min(lo, n), max(hi, n)
			}
			if lo < tt.min || hi > tt.max {
				t.Errorf("allowed per %v: between %d and %d, want between %d and %d", tt.window, lo, hi, tt.min, tt.max)
			}
		})
	}
}

func TestLockoutDelay(t *testing.T) {
	p := DefaultPolicy()
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 0}, {4, 0}, {5, time.Second}, {6, 2 * time.Second}, {7, 4 * time.Second},
		{14, 512 * time.Second}, {15, 15 * time.Minute}, {70, 15 * time.Minute}, {1 << 30, 15 * time.Minute},
	}
	for _, tt := range tests {
		if got := p.lockoutDelay(tt.n); got != tt.want {
			t.Errorf("lockoutDelay(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestLockoutForgottenWhenIdle(t *testing.T) {
	c := newFakeClock()
	p := DefaultPolicy()
	th, _ := newMemoryThrottle(t, c, p)
	const acct, ip = "a@example.com", "192.0.2.1"
	for range p.LockoutThreshold {
		attempt(t, th, acct, ip)
	}
	wantDenied(t, login(t, th, acct, ip), ReasonLockout, p.LockoutBase)
	// Just before LockoutIdle the count is still there: one more failure
	// brings the next delay.
	c.Advance(p.LockoutIdle - time.Second)
	attempt(t, th, acct, ip)
	wantDenied(t, login(t, th, acct, ip), ReasonLockout, 2*p.LockoutBase)
	// LockoutIdle after the last failure it is gone: threshold failures in
	// a row are allowed again.
	c.Advance(p.LockoutIdle)
	for range p.LockoutThreshold {
		if d := attempt(t, th, acct, ip); !d.Allowed {
			t.Fatalf("after LockoutIdle: %+v, want the count forgotten", d)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Policy)
		want   string // in the error; "" for valid
	}{
		{"default", func(*Policy) {}, ""},
		{"zero bucket", func(p *Policy) { p.LoginPerIP = Bucket{} }, "LoginPerIP"},
		{"zero burst", func(p *Policy) { p.RefreshPerIP.Burst = 0 }, "RefreshPerIP"},
		{"zero threshold", func(p *Policy) { p.LockoutThreshold = 0 }, "LockoutThreshold"},
		{"max below base", func(p *Policy) { p.LockoutMax = p.LockoutBase / 2 }, "LockoutBase"},
		{"idle below max", func(p *Policy) { p.LockoutIdle = p.LockoutMax - 1 }, "LockoutIdle"},
		{"negative known device TTL", func(p *Policy) { p.KnownDeviceTTL = -1 }, "KnownDeviceTTL"},
		{"known devices off", func(p *Policy) { p.KnownDeviceTTL = 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			tt.change(&p)
			_, err := New(NewMemory(), p)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("New: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New: %v, want an error naming %s", err, tt.want)
			}
		})
	}
	if _, err := New(nil, DefaultPolicy()); err == nil {
		t.Error("New(nil backend): nil error")
	}
}

func TestCanonIP(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{" 192.0.2.1 ", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:DB8:1:2::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-ip", "not-an-ip"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := canonIP(tt.in); got != tt.want {
			t.Errorf("canonIP(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKeysHideNames(t *testing.T) {
	k := key(kindLockout, "alice@example.com", "192.0.2.1")
	if strings.Contains(k, "alice") || strings.Contains(k, "192.0.2") || !strings.HasPrefix(k, kindLockout+":") {
		t.Errorf("key = %q, want the kind and a hash only", k)
	}
	if key(kindLockout, "a", "bc") == key(kindLockout, "ab", "c") {
		t.Error("key parts are not separated")
	}
	if key(kindLoginIP, "x") == key(kindSignupIP, "x") {
		t.Error("kinds do not separate keys")
	}
}

func TestMemoryBound(t *testing.T) {
	t.Run("random keys cannot grow it past MaxKeys", func(t *testing.T) {
		c := newFakeClock()
		th, m := newMemoryThrottle(t, c, DefaultPolicy(), MaxKeys(1000))
		for range 20_000 {
			acct := fmt.Sprintf("%x@example.com", rand.Uint64())
			ip := fmt.Sprintf("2001:db8:%x:%x::1", rand.Uint32()&0xffff, rand.Uint32()&0xffff)
			attempt(t, th, acct, ip)
		}
		if m.Len() > 1000 {
			t.Errorf("Len = %d, want <= 1000", m.Len())
		}
		if m.Evicted() == 0 {
			t.Error("Evicted = 0, want evictions")
		}
	})
	t.Run("idle keys are dropped", func(t *testing.T) {
		c := newFakeClock()
		m := NewMemory(MemoryClock(c.Now))
		b := Bucket{Every: time.Second, Burst: 10}
		for i := range 500 {
			m.Take(ctx, fmt.Sprint("a", i), b)
		}
		c.Advance(10 * time.Second) // every bucket is full again
		for i := range 200 {
			m.Take(ctx, fmt.Sprint("b", i), b)
		}
		if got := m.Len(); got != 200 {
			t.Errorf("Len = %d, want 200", got)
		}
		if m.Evicted() != 0 {
			t.Errorf("Evicted = %d, want 0", m.Evicted())
		}
	})
}

// TestAccountRetryAfterJitter: a denial by the account's bucket announces a
// wait drawn from [E, 2E), E being the exact time to the next token, so
// coming back at Retry-After is always safe but does not land on the
// refill; the other limits keep their exact waits.
func TestAccountRetryAfterJitter(t *testing.T) {
	c := newFakeClock()
	p := DefaultPolicy()
	p.LoginPerAccount = Bucket{Every: 40 * time.Second, Burst: 1}
	p.LoginPerIP = Bucket{Every: time.Hour, Burst: 1000}
	th, _ := newMemoryThrottle(t, c, p)
	const acct = "owner@example.com"
	if d := login(t, th, acct, ip4(0)); !d.Allowed {
		t.Fatalf("first: %+v", d)
	}
	const exact = 40 * time.Second
	seen := map[time.Duration]bool{}
	for i := range 50 {
		d := login(t, th, acct, ip4(1+i))
		wantDenied(t, d, ReasonAccount, 2*exact)
		if d.RetryAfter < exact || d.RetryAfter >= 2*exact {
			t.Fatalf("denial %d: RetryAfter %v outside [%v, %v)", i, d.RetryAfter, exact, 2*exact)
		}
		seen[d.RetryAfter] = true
	}
	if len(seen) < 25 {
		t.Fatalf("50 denials announced only %d distinct waits: the refill can be timed", len(seen))
	}
	// Waiting the announced time always gets through.
	d := login(t, th, acct, ip4(99))
	c.Advance(d.RetryAfter)
	if d := login(t, th, acct, ip4(100)); !d.Allowed {
		t.Fatalf("after the announced %v: %+v, want allowed", d.RetryAfter, d)
	}
	// The address's limit stays exact: it is the caller's own.
	p.LoginPerIP = Bucket{Every: 2 * time.Second, Burst: 1}
	th, _ = newMemoryThrottle(t, c, p)
	login(t, th, "a@example.com", "192.0.2.1")
	if d := login(t, th, "b@example.com", "192.0.2.1"); d.Reason != ReasonIP || d.RetryAfter != 2*time.Second {
		t.Fatalf("IP denial %+v, want ReasonIP with the exact 2s", d)
	}
}

// TestCanonAccount: every spelling of one address (case, NFC or NFD, a
// Unicode or an ASCII domain) draws on one account bucket.
func TestCanonAccount(t *testing.T) {
	for _, forms := range [][]string{
		{"jos\u00e9@example.com", "jose\u0301@example.com", " JOS\u00c9@Example.com "},
		{"user@b\u00fccher.de", "user@xn--bcher-kva.de", "USER@B\u00dcCHER.DE", "user@bu\u0308cher.de"},
	} {
		want := canonAccount(forms[0])
		for _, f := range forms[1:] {
			if got := canonAccount(f); got != want {
				t.Errorf("canonAccount(%q) = %q, want %q (as for %q)", f, got, want, forms[0])
			}
		}
	}
}
