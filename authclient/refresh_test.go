package authclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/internal/testenv"
)

// TestConcurrentRequestsAcrossLifetimes: 200 goroutines send requests
// through the transport while the shared fake clock runs through several
// access-token lifetimes. No caller sees a 401 or an error, each token is
// refreshed once (single flight: as many rotations on the server as the
// session made, none rejected), and the session is never revoked.
func TestConcurrentRequestsAcrossLifetimes(t *testing.T) {
	const (
		workers   = 200
		ttl       = time.Minute
		lifetimes = 4
		step      = 2 * time.Second
	)
	h := newHarness(t, testenv.Options{AccessTTL: ttl})
	s := h.login(h.client(0, nil))
	hc := &http.Client{Transport: s.Transport(h.resource())}
	start := h.env.Clock.Now()
	end := start.Add(lifetimes * ttl)

	// Each round, every worker sends one request, all at once; then the
	// clock moves on by step.
	ticks := make([]chan struct{}, workers)
	results := make(chan string, workers)
	var wg sync.WaitGroup
	for i := range ticks {
		ticks[i] = make(chan struct{})
		wg.Go(func() {
			for range ticks[i] {
				code, err := get(hc)
				if err != nil || code != 200 {
					results <- fmt.Sprintf("%d %v", code, err)
					continue
				}
				results <- ""
			}
		})
	}
	var bad []string
	for h.env.Clock.Now().Before(end) {
		for _, c := range ticks {
			c <- struct{}{}
		}
		for range workers {
			if r := <-results; r != "" {
				bad = append(bad, r)
			}
		}
		h.env.Clock.Advance(step)
	}
	for _, c := range ticks {
		close(c)
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d callers failed, first: %s", len(bad), bad[0])
	}
	if n := h.rs401.Load(); n != 0 {
		t.Fatalf("resource server answered 401 %d times, want 0", n)
	}
	elapsed := h.env.Clock.Now().Sub(start)
	refreshes, stats := h.refreshes.Load(), s.Stats()
	// Each token lives ttl and is replaced when 1/4 to 1/3 of it is left.
	lo, hi := int64(elapsed/ttl), int64(elapsed/(ttl*2/3))+1
	if refreshes < lo || refreshes > hi {
		t.Fatalf("%d refreshes in %s of %s tokens, want %d..%d", refreshes, elapsed, ttl, lo, hi)
	}
	if int64(stats.Refreshes) != refreshes || h.refreshFails.Load() != 0 || stats.FailedRefreshes != 0 {
		t.Fatalf("server saw %d refreshes (%d failed), session made %+v: want one rotation per refresh, none failed",
			refreshes, h.refreshFails.Load(), stats)
	}
	distinct := 0
	h.tokens.Range(func(any, any) bool { distinct++; return true })
	if int64(distinct) != refreshes+1 {
		t.Fatalf("resource server saw %d distinct access tokens, want %d (login + refreshes)", distinct, refreshes+1)
	}
	if !h.sessionActive(s) {
		t.Fatal("the session was revoked")
	}
	t.Logf("%d requests, %s simulated, %d refreshes", h.rsRequests.Load(), elapsed, refreshes)
}

// TestLostRefreshResponse: the server rotates but its answer never reaches
// the client (the connection drops). The client keeps its old token, tries
// again after its backoff, and the server's rules hand it the current token
// (a quick retry, within G) or a successor (a lost response, within L).
// The session stays healthy and no caller notices.
func TestLostRefreshResponse(t *testing.T) {
	for _, tt := range []struct {
		name  string
		after time.Duration // clock advance between the lost answer and the retry
	}{
		{"retry within grace", 2 * time.Second},
		{"retry after grace, token expired meanwhile", 40 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
			s := h.login(h.client(0, nil))
			hc := &http.Client{Transport: s.Transport(h.resource())}
			h.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				h.setFault(nil) // drop only the first
				h.dropResponse(w, r)
				return true
			})
			h.env.Clock.Advance(46 * time.Second) // past any refresh margin of a 1-minute token
			if code, err := get(hc); err != nil || code != 200 {
				t.Fatalf("request during the lost refresh: %d %v, want 200 on the still valid token", code, err)
			}
			if got := h.faultHits.Load(); got != 1 {
				t.Fatalf("%d refreshes dropped, want 1", got)
			}
			h.env.Clock.Advance(tt.after)
			for range 5 {
				if code, err := get(hc); err != nil || code != 200 {
					t.Fatalf("request after the lost refresh: %d %v", code, err)
				}
			}
			if st := s.Stats(); st.Refreshes != 1 || st.FailedRefreshes != 1 {
				t.Fatalf("session stats %+v, want 1 failed and then 1 successful refresh", st)
			}
			if h.refreshFails.Load() != 0 || !h.sessionActive(s) {
				t.Fatalf("the retry was refused (%d) or the session revoked", h.refreshFails.Load())
			}
			// And the session goes on rotating normally.
			h.env.Clock.Advance(50 * time.Second)
			if code, err := get(hc); err != nil || code != 200 || s.Stats().Refreshes != 2 || !h.sessionActive(s) {
				t.Fatalf("next lifetime: %d %v, stats %+v", code, err, s.Stats())
			}
		})
	}
}

// TestServerUnavailableDuringRefresh: 503 and 429 answers (with
// Retry-After) keep the session: callers use the still valid token, the
// client honours Retry-After instead of hammering, an expired token with
// the server down is a typed UnavailableError, and the session recovers.
func TestServerUnavailableDuringRefresh(t *testing.T) {
	for _, tt := range []struct {
		name       string
		status     int
		retryAfter string
		wait       time.Duration
	}{
		{"503", http.StatusServiceUnavailable, "1", time.Second},
		{"429", http.StatusTooManyRequests, "7", 7 * time.Second},
		{"502 without Retry-After", http.StatusBadGateway, "", 800 * time.Millisecond}, // backoff 0.5..1 s
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
			s := h.login(h.client(0, nil))
			hc := &http.Client{Transport: s.Transport(h.resource())}
			down := true
			var mu sync.Mutex
			h.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				mu.Lock()
				defer mu.Unlock()
				if !down {
					return false
				}
				h.faultHits.Add(1)
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"try later"}`))
				return true
			})
			h.env.Clock.Advance(46 * time.Second)
			// Many requests in the same instant: one attempt, then backoff.
			for range 20 {
				if code, err := get(hc); err != nil || code != 200 {
					t.Fatalf("request while the server refuses refreshes: %d %v", code, err)
				}
			}
			if got := h.faultHits.Load(); got != 1 {
				t.Fatalf("%d refresh attempts in one instant, want 1 (backoff)", got)
			}
			// Within Retry-After: still no new attempt.
			h.env.Clock.Advance(tt.wait / 2)
			get(hc)
			if got := h.faultHits.Load(); got != 1 {
				t.Fatalf("%d refresh attempts before Retry-After elapsed, want 1", got)
			}
			// The token expires while the server is still down.
			h.env.Clock.Advance(20 * time.Second)
			_, err := s.AccessToken(context.Background())
			var unavailable *authclient.UnavailableError
			if !errors.As(err, &unavailable) || unavailable.RetryAfter <= 0 {
				t.Fatalf("AccessToken with an expired token and the server down = %v, want *UnavailableError with RetryAfter", err)
			}
			var ended *authclient.SessionEndedError
			if errors.As(err, &ended) {
				t.Fatal("the session ended on a temporary failure")
			}
			if hits := h.faultHits.Load(); hits > 4 {
				t.Fatalf("%d refresh attempts in %s of outage: a storm", hits, tt.wait/2+20*time.Second)
			}
			// The server recovers; after the backoff the session does too.
			mu.Lock()
			down = false
			mu.Unlock()
			h.env.Clock.Advance(time.Minute + time.Second)
			if code, err := get(hc); err != nil || code != 200 {
				t.Fatalf("request after recovery: %d %v", code, err)
			}
			if st := s.Stats(); st.Refreshes != 1 || !h.sessionActive(s) {
				t.Fatalf("after recovery: stats %+v, active %v", st, h.sessionActive(s))
			}
		})
	}
}

// TestClockSkew: with the client's clock 5 minutes fast or slow, the
// server time estimated from Date drives every decision: no refresh storm,
// one refresh per token, no expired token sent, also after a restart that
// resumes the session from its store.
func TestClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			const ttl = time.Minute
			h := newHarness(t, testenv.Options{AccessTTL: ttl})
			store := &authclient.MemoryStore{}
			s := h.login(h.client(skew, store))
			if off := s.ClockOffset(); (off + skew).Abs() > time.Second {
				t.Fatalf("estimated offset %s, want about %s", off, -skew)
			}
			hc := &http.Client{Transport: s.Transport(h.resource())}
			start := h.env.Clock.Now()
			for h.env.Clock.Now().Sub(start) < 5*ttl {
				if code, err := get(hc); err != nil || code != 200 {
					t.Fatalf("at +%s: %d %v", h.env.Clock.Now().Sub(start), code, err)
				}
				h.env.Clock.Advance(time.Second)
			}
			elapsed := h.env.Clock.Now().Sub(start)
			if n, hi := h.refreshes.Load(), int64(elapsed/(ttl*2/3))+1; n < 5 || n > hi {
				t.Fatalf("%d refreshes in %s, want 5..%d", n, elapsed, hi)
			}
			if h.rs401.Load() != 0 {
				t.Fatalf("%d requests carried an expired token", h.rs401.Load())
			}
			// A new process with the same skewed clock resumes without
			// refreshing a token that is still fresh.
			if _, err := s.AccessToken(context.Background()); err != nil { // refresh now if due
				t.Fatal(err)
			}
			before := h.refreshes.Load()
			s2, err := h.client(skew, store).Resume(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			hc2 := &http.Client{Transport: s2.Transport(h.resource())}
			if code, err := get(hc2); err != nil || code != 200 {
				t.Fatalf("resumed: %d %v", code, err)
			}
			if h.refreshes.Load() != before || h.rs401.Load() != 0 {
				t.Fatalf("resumed session refreshed %d times, sent %d expired tokens", h.refreshes.Load()-before, h.rs401.Load())
			}
		})
	}
}

// TestKeepFresh: the background refresher rotates the token before it is
// due on use, on the real clock, and stops with its context.
func TestKeepFresh(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: 4 * time.Second, Grace: 500 * time.Millisecond, LostWindow: time.Minute, RealClock: true})
	c, err := authclient.New(authclient.Config{Issuer: h.srv.URL, HTTPClient: h.srv.Client(), Grace: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The harness stamps Date from the fake clock; this test's server runs
	// on the real one, so let net/http stamp it.
	h.realDate = true
	s := h.login(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.KeepFresh(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Refreshes < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no background refreshes in 10 s: %+v", s.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("KeepFresh = %v, want context.Canceled", err)
	}
	if h.refreshFails.Load() != 0 || s.Stats().FailedRefreshes != 0 {
		t.Fatalf("refresh failures: %d on the server, %+v", h.refreshFails.Load(), s.Stats())
	}
}

// TestRequestTime: every refresh says when it was sent, in the server's
// time (request_time, Unix ms: the local clock corrected by the offset
// learnt from Date), so the server can refuse an attempt it reaches too
// late (docs/design.md "Abandoned and late requests").
func TestRequestTime(t *testing.T) {
	for _, skew := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			const ttl = time.Minute
			h := newHarness(t, testenv.Options{AccessTTL: ttl})
			s := h.login(h.client(skew, &authclient.MemoryStore{}))
			var got []string
			h.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				form, _ := url.ParseQuery(string(body))
				got = append(got, form.Get("request_time"))
				return false // on to the server
			})
			h.env.Clock.Advance(ttl)
			if _, err := s.AccessToken(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d refreshes, want 1", len(got))
			}
			ms, err := strconv.ParseInt(got[0], 10, 64)
			if err != nil {
				t.Fatalf("request_time %q: %v", got[0], err)
			}
			// Date has whole seconds; the estimate is its centre.
			if d := time.UnixMilli(ms).Sub(h.env.Clock.Now()); d.Abs() > time.Second {
				t.Fatalf("request_time is %s off the server's clock (local clock %s off)", d, skew)
			}
		})
	}
}
