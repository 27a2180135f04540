package ratelimit

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis returns a client for LATCH_TEST_REDIS and a fresh key prefix
// whose keys are deleted when the test ends; it skips the test if the
// variable is unset.
func testRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url := os.Getenv("LATCH_TEST_REDIS")
	if url == "" {
		t.Skip("LATCH_TEST_REDIS not set")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("LATCH_TEST_REDIS: %v", err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	prefix := "latchtest:" + rand.Text() + ":"
	t.Cleanup(func() {
		defer c.Close()
		keys, err := c.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = c.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c, prefix
}

func newRedisThrottle(t testing.TB, p Policy) (*Throttle, *redis.Client, string) {
	c, prefix := testRedis(t)
	// A generous timeout: under load a slow answer must not look like an
	// outage, which these tests report as an error.
	th, err := New(NewRedis(c, prefix), p, WithBackendTimeout(5*time.Second), WithOnBackendError(func(err error) {
		t.Errorf("redis backend failed: %v", err)
	}))
	if err != nil {
		t.Fatal(err)
	}
	return th, c, prefix
}

func TestRedis(t *testing.T) {
	testRedis(t) // skip early
	runSuite(t, harness{
		unit: 200 * time.Millisecond,
		newThrottle: func(t *testing.T, p Policy) (*Throttle, func(time.Duration)) {
			th, _, _ := newRedisThrottle(t, p)
			return th, time.Sleep
		},
	})
}

// TestRedisKeys checks that every key has a TTL and that neither the email
// nor the address is stored in clear.
func TestRedisKeys(t *testing.T) {
	th, c, prefix := newRedisThrottle(t, DefaultPolicy())
	const acct, ip = "alice@example.com", "192.0.2.1"
	attempt(t, th, acct, ip)
	succeed(t, th, acct, "192.0.2.2")
	attempt(t, th, acct, ip)
	th.Signup(ctx, ip)
	th.Refresh(ctx, ip)
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// login-ip ×2, login-acct, lockout, known, signup-ip, refresh-ip
	if len(keys) != 7 {
		t.Errorf("keys = %q, want 7", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, "alice") || strings.Contains(k, "192.0.2") {
			t.Errorf("key %q holds a name in clear", k)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 {
			t.Errorf("PTTL(%q) = %v, %v; want a TTL", k, ttl, err)
		}
		if v, _ := c.Get(ctx, k).Result(); strings.Contains(v, "alice") {
			t.Errorf("value of %q holds the email", k)
		}
	}
}

// TestRedisDown points the throttle at a closed port: every call falls back
// to local limits, which still limit, and every fallback is reported.
func TestRedisDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	var fallbacks atomic.Int32
	p := DefaultPolicy()
	p.LoginPerIP = Bucket{Every: time.Hour, Burst: 3}
	th, err := New(NewRedis(c, "latchtest:"), p, WithBackendCooldown(0), WithOnBackendError(func(err error) {
		if err == nil {
			t.Error("nil backend error")
		}
		fallbacks.Add(1)
	}))
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for range 6 {
		d := attempt(t, th, "a@example.com", "192.0.2.1")
		if d.Allowed {
			allowed++
		} else {
			wantDenied(t, d, ReasonIP, time.Hour)
		}
	}
	if allowed != 3 {
		t.Errorf("allowed = %d, want 3 from the local fallback", allowed)
	}
	if fallbacks.Load() == 0 {
		t.Error("no fallback reported")
	}
	// With a cool-down, one failed call sends the next ones straight to the
	// local limits: one report, and no time spent on Redis.
	th, err = New(NewRedis(c, "latchtest:"), p, WithOnBackendError(func(error) { fallbacks.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	fallbacks.Store(0)
	start := time.Now()
	for range 100 {
		attempt(t, th, "b@example.com", "192.0.2.2")
	}
	if n := fallbacks.Load(); n != 1 {
		t.Errorf("fallbacks reported with a cool-down = %d, want 1", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("100 attempts took %v while Redis was down, want the cool-down to skip it", d)
	}
	// A done context is an error, not a fallback.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := th.Login(cctx, "a@example.com", "192.0.2.9"); !errors.Is(err, context.Canceled) {
		t.Errorf("Login with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestRedisNodesShareLimits runs two throttles, as two Latch nodes would,
// on one Redis: the account's bucket is shared.
func TestRedisNodesShareLimits(t *testing.T) {
	p := roomy()
	p.LoginPerAccount = Bucket{Every: time.Hour, Burst: 5}
	a, c, prefix := newRedisThrottle(t, p)
	b, err := New(NewRedis(c, prefix), p)
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for i := range 10 {
		node := a
		if i%2 == 1 {
			node = b
		}
		if attempt(t, node, "victim@example.com", ip4(i)).Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Errorf("allowed across two nodes = %d, want 5", allowed)
	}
}
