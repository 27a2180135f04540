package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// loadResult is what one phase of load saw.
type loadResult struct {
	ok, shed, timeouts, other int
	okLat, shedLat            []time.Duration
	noRetryAfter              int
	elapsed                   time.Duration
}

func (r *loadResult) add(o loadResult) {
	r.ok += o.ok
	r.shed += o.shed
	r.timeouts += o.timeouts
	r.other += o.other
	r.noRetryAfter += o.noRetryAfter
	r.okLat = append(r.okLat, o.okLat...)
	r.shedLat = append(r.shedLat, o.shedLat...)
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

func (r loadResult) String() string {
	n := r.ok + r.shed + r.timeouts + r.other
	return fmt.Sprintf("%d requests in %s (%.0f/s): %d ok (p50 %s, p99 %s, %.0f/s), %d shed 503 (p50 %s, p99 %s), %d client timeouts, %d other",
		n, r.elapsed.Round(time.Millisecond), float64(n)/r.elapsed.Seconds(), r.ok, pct(r.okLat, .5).Round(100*time.Microsecond), pct(r.okLat, .99).Round(100*time.Microsecond),
		float64(r.ok)/r.elapsed.Seconds(), r.shed, pct(r.shedLat, .5).Round(100*time.Microsecond), pct(r.shedLat, .99).Round(100*time.Microsecond), r.timeouts, r.other)
}

// overloadClient is a client with the contract's timeout: it gives up
// after 1 s (the outside run's clients did).
var overloadClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 30 * time.Second}}

// one sends one refresh and classifies the answer.
func one(n *node, rt string) loadResult {
	var r loadResult
	start := time.Now()
	resp, err := overloadClient.Do(n.refreshReq(rt))
	d := time.Since(start)
	switch {
	case err != nil && strings.Contains(err.Error(), "Timeout"):
		r.timeouts = 1
	case err != nil:
		r.other = 1
	default:
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			r.ok, r.okLat = 1, []time.Duration{d}
		case http.StatusServiceUnavailable:
			r.shed, r.shedLat = 1, []time.Duration{d}
			if resp.Header.Get("Retry-After") == "" {
				r.noRetryAfter = 1
			}
		default:
			r.other = 1
		}
	}
	return r
}

// closedLoop runs workers that each send refreshes back to back for d.
func closedLoop(n *node, tokens []string, workers int, d time.Duration) loadResult {
	var mu sync.Mutex
	var total loadResult
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var mine loadResult
			for i := w; time.Since(start) < d; i++ {
				mine.add(one(n, tokens[i%len(tokens)]))
			}
			mu.Lock()
			total.add(mine)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}

// TestOverload: a node offered ten times the refreshes it can serve sheds
// the excess with fast 503s (Retry-After), serves the rest with a bounded
// p99 and no client timeouts to speak of, and is back to normal as soon as
// the load drops. Default limits (derived from the machine), PostgreSQL.
// About 20 s; runs when LATCH_TEST_OVERLOAD is set (.ci/run sets it).
func TestOverload(t *testing.T) {
	if os.Getenv("LATCH_TEST_OVERLOAD") == "" {
		t.Skip("LATCH_TEST_OVERLOAD is not set")
	}
	c := newCluster(t, pgtest.URL(t))
	n := c.start(t, "")
	// 128 sessions; each token is refreshed once, so that every later
	// request presents the parent within the grace window: each is a full
	// refresh transaction (row lock, update, commit) answered 200, however
	// many run at once on one session.
	var tokens []string
	for i := range 128 {
		rt := n.signup(t, fmt.Sprintf("load%d@example.com", i)).RefreshToken
		n.mustRefresh(t, rt)
		tokens = append(tokens, rt)
	}

	base := closedLoop(n, tokens, 16, 3*time.Second)
	t.Logf("capacity (16 closed-loop clients, 3 s): %s", base)
	if base.ok == 0 || base.other > 0 {
		t.Fatalf("baseline: %s", base)
	}

	// Ten times the clients that saturate it, each sending again as soon
	// as it has an answer, a 503 included (no back-off: the worst case).
	over := closedLoop(n, tokens, 160, 5*time.Second)
	t.Logf("overload (160 closed-loop clients, 10x the 16 that saturate it, no back-off, 5 s): %s", over)
	overEnd := time.Now()

	// Recovery: the first request after the load is served at once, and
	// a normal load is served as before.
	first := one(n, tokens[0])
	firstAfter := time.Since(overEnd)
	rec := closedLoop(n, tokens, 16, 2*time.Second)
	t.Logf("recovery: first request after the overload answered %s after it ended (ok=%d); then %s", firstAfter.Round(time.Millisecond), first.ok, rec)
	_, page := n.get(t, "/metrics")
	for _, m := range regexp.MustCompile(`(?m)^latch_http_shed_total\{.*$|^latch_refreshes_total\{outcome="(unavailable|client_gone|shed)"\}.*$`).FindAllString(string(page), -1) {
		t.Logf("metric %s", m)
	}

	total := over.ok + over.shed + over.timeouts + over.other
	switch {
	case over.shed < total/4:
		t.Errorf("overload: only %d of %d requests shed; the excess queued", over.shed, total)
	case over.noRetryAfter > 0:
		t.Errorf("overload: %d 503s without Retry-After", over.noRetryAfter)
	case pct(over.shedLat, .99) > 500*time.Millisecond:
		t.Errorf("overload: 503 p99 %s; shedding must be fast", pct(over.shedLat, .99))
	case over.timeouts > total/100:
		t.Errorf("overload: %d of %d requests timed out at the client (1 s)", over.timeouts, total)
	case over.ok == 0 || pct(over.okLat, .99) > 800*time.Millisecond:
		t.Errorf("overload: successful p99 %s (%d ok); must stay bounded", pct(over.okLat, .99), over.ok)
	case first.ok != 1 || rec.ok == 0 || rec.shed+rec.timeouts+rec.other > (rec.ok+rec.shed)/100:
		t.Errorf("recovery: first %+v; %s", first, rec)
	}
}
