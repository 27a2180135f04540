package bearer_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/testenv"
)

// FanOutEnv sets how many verifiers TestFeedFanOut runs (default 50; the
// number in docs/performance.md "Growth" is with 1000).
const FanOutEnv = "LATCH_FANOUT_VERIFIERS"

// TestFeedFanOut: many resource servers stream the revocation feed from one
// Latch node. After a logout, every one of them rejects the session's
// token; the test measures the time from the logout's answer to the last
// verifier rejecting (run with -v for the numbers).
func TestFeedFanOut(t *testing.T) {
	n := 50
	if s := os.Getenv(FanOutEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", FanOutEnv, s)
		}
	}
	l := startLatch(t, testenv.Options{RealClock: true, MaxFeedSubscribers: n + 16, API: func(c *httpapi.Config) {
		// One resource-server client holds every stream here; in production
		// each API has its own.
		c.FeedStreamsPerClient = n + 16
	}})
	ctx := context.Background()
	vs := make([]*bearer.Verifier, n)
	for i := range vs {
		vs[i] = l.verifier(t, nil, &bearer.FeedConfig{})
	}
	// Wait until every verifier has asked for its stream (a stream request
	// carries Last-Event-ID; the first poll does not).
	streams := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		k := 0
		for _, id := range l.lastEventIDs {
			if id != "" {
				k++
			}
		}
		return k
	}
	for deadline := time.Now().Add(30 * time.Second); streams() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d verifiers opened a stream", streams(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	user := email()
	l.env.Login(t, user)
	trials := 30
	var all, each []time.Duration // per trial: the last verifier; per verifier and trial
	for trial := range trials + 1 {
		tok := l.login(t, user)
		for _, v := range vs {
			if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
				t.Fatal(err)
			}
		}
		l.logout(t, tok.AccessToken)
		start := time.Now()
		pending := slices.Clone(vs)
		var last time.Duration
		var got []time.Duration
		for len(pending) > 0 {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("trial %d: %d of %d verifiers still accept the token 10s after the logout", trial, len(pending), n)
			}
			pending = slices.DeleteFunc(pending, func(v *bearer.Verifier) bool {
				_, err := v.Verify(ctx, tok.AccessToken)
				if errors.Is(err, bearer.ErrRevoked) {
					last = time.Since(start)
					got = append(got, last)
					return true
				}
				if err != nil {
					t.Fatalf("verify: %v, want ErrRevoked or success", err)
				}
				return false
			})
			time.Sleep(100 * time.Microsecond)
		}
		if trial == 0 {
			continue // warm-up: connections and caches
		}
		all = append(all, last)
		each = append(each, got...)
	}
	slices.Sort(all)
	slices.Sort(each)
	p := func(d []time.Duration, q float64) time.Duration {
		return d[int(q*float64(len(d)-1))].Round(10 * time.Microsecond)
	}
	t.Logf("%d verifiers streaming from one node, %d logouts: logout → every verifier rejects: p50 %s, p99 %s, max %s; per verifier: p50 %s, p99 %s",
		n, trials, p(all, 0.5), p(all, 0.99), all[len(all)-1].Round(10*time.Microsecond), p(each, 0.5), p(each, 0.99))
}
