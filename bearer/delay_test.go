package bearer_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestLogoutDelay measures the time from a logout to the first rejection
// of that session's still-valid access token by a resource server with the
// feed on (run with -v for the numbers). Two paths: a logout served by the
// node the verifier listens to (POST /v1/logout; the hub wakes at once),
// and a revocation written by another node into the shared database (the
// hub finds it at its next poll, 250ms by default). The bound asserted is
// generous; the numbers are the point.
func TestLogoutDelay(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{RealClock: true})
	ctx := context.Background()
	v := l.verifier(t, nil, &bearer.FeedConfig{})
	user := email()
	l.env.Login(t, user)

	measure := func(trials int, jitter time.Duration, revoke func(session.Tokens)) []time.Duration {
		var delays []time.Duration
		for range trials {
			tok := l.login(t, user)
			if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
				t.Fatal(err)
			}
			if jitter > 0 {
				// Trials would otherwise fall into step with the hub's ticker.
				time.Sleep(rand.N(jitter))
			}
			start := time.Now()
			revoke(tok)
			for {
				if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatal("the revoked session's token was still accepted after 5s")
				}
				time.Sleep(50 * time.Microsecond)
			}
			delays = append(delays, time.Since(start))
		}
		return delays
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		p := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
		t.Logf("%s: %d trials, p50 %s, p99 %s, max %s", name, len(d), p(0.50).Round(10*time.Microsecond),
			p(0.99).Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
	}
	report("logout on this node (POST /v1/logout → rejection)", measure(200, 0, func(tok session.Tokens) { l.logout(t, tok.AccessToken) }))
	report("revocation by another node (database write → rejection)", measure(20, 250*time.Millisecond, func(tok session.Tokens) {
		// What another Latch node sharing the database does; this node's hub
		// is not woken and finds the entry at its next poll.
		now := time.Now().UTC()
		err := l.env.Store.InTx(ctx, func(tx session.Tx) error {
			_, err := tx.RevokeSessions(ctx, session.Revocation{SessionID: tok.SessionID, Scope: session.ScopeOne,
				Reason: session.ReasonAdmin, At: now, Until: now.Add(15 * time.Minute)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}))
}
