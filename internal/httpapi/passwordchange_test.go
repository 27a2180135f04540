package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/metrics"
	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/testenv"
)

// TestPasswordChangeAuditAndMetrics: each wrong current password leaves a
// user.password_change_failed audit event with the caller's IP, and every
// outcome (including throttled and weak) is counted in
// latch_password_changes_total. docs/security.md LOGIN-12, REV-04.
func TestPasswordChangeAuditAndMetrics(t *testing.T) {
	m := metrics.New()
	var env *testenv.Env
	th, err := ratelimit.New(ratelimit.NewMemory(ratelimit.MemoryClock(func() time.Time { return env.Clock.Now() })), ratelimit.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	env, srv := newServer(t, testenv.Options{Observer: m, API: func(c *httpapi.Config) {
		c.Throttle, c.Observer, c.Metrics = th, m, m.Handler()
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}})
	at := env.Login(t, "audited@example.com").AccessToken
	const ip, newPW = "203.0.113.40", "a brand new passphrase"

	steps := []struct {
		current, next string
		want          int
	}{
		{"not the password", "short", http.StatusBadRequest}, // weak: the current one is not checked
		{"guess 1", newPW, http.StatusForbidden},
		{"guess 2", newPW, http.StatusForbidden},
		{"guess 3", newPW, http.StatusForbidden},
		{"guess 4", newPW, http.StatusForbidden},
		{"guess 5", newPW, http.StatusForbidden},
		{"guess 6", newPW, http.StatusTooManyRequests},
	}
	for i, s := range steps {
		if r := changeFrom(t, srv, ip, at, s.current, s.next); r.Status != s.want {
			t.Fatalf("step %d: %s, want %d", i, r, s.want)
		}
	}
	env.Clock.Advance(time.Hour)
	at = env.Login(t, "other@example.com").AccessToken // a live token after the wait
	if r := changeFrom(t, srv, "203.0.113.41", at, testenv.Password, newPW); r.Status != http.StatusNoContent {
		t.Fatalf("a good change: %s", r)
	}

	failed, err := env.Store.AuditEvents(context.Background(), audit.Query{Type: "user.password_change_failed"})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 5 {
		t.Fatalf("%d user.password_change_failed events, want one per wrong guess (5)", len(failed))
	}
	for _, e := range failed {
		if e.IP != ip || e.UserAgent != testUA || e.UserID == "" || e.SessionID == "" {
			t.Fatalf("failure event %+v, want the caller's user, session, IP and user agent", e)
		}
	}

	want := map[string]float64{"success": 1, "bad_credentials": 5, "weak_password": 1, "throttled": 1, "error": 0}
	got := scrape(t, get(t, srv, "/metrics", "").Body, "latch_password_changes_total")
	for outcome, n := range want {
		if got[outcome] != n {
			t.Errorf("latch_password_changes_total{outcome=%q} = %v, want %v (all: %v)", outcome, got[outcome], n, got)
		}
	}
}

// scrape returns the outcome-labelled values of metric in a Prometheus
// text exposition.
func scrape(t *testing.T, body []byte, metric string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, metric+`{outcome="`)
		if !ok {
			continue
		}
		label, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("unexpected line %q", line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out[label] = v
	}
	return out
}

// TestPasswordChangeFloodLeavesLoginsAlone: one account sending 600
// concurrent password changes (no rate limit in the way: many IPs, or a
// server run with --rate-limit=false) holds at most password.MaxPerKey
// hashing slots, so another user's logins during the flood answer 200, not
// 503. Before, the flood queued for every slot and other users' logins
// waited out password.MaxWait and got 503. docs/security.md DOS-08.
func TestPasswordChangeFloodLeavesLoginsAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("600 concurrent requests")
	}
	const flood = 600
	env, srv := newServer(t, testenv.Options{RealClock: true})
	at := env.Login(t, "flooder@example.com").AccessToken
	env.Login(t, "bystander@example.com")

	body := mustJSON(t, map[string]string{"current_password": "not the password", "new_password": "a brand new passphrase"})
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		wg       sync.WaitGroup
	)
	answered := make(chan struct{}, flood)
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := -1
			r, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/password", strings.NewReader(body))
			if err == nil {
				r.Header.Set("Authorization", "Bearer "+at)
				r.Header.Set("Content-Type", "application/json")
				var resp *http.Response
				if resp, err = srv.Client().Do(r); err == nil {
					status = resp.StatusCode
					resp.Body.Close()
				}
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
			answered <- struct{}{}
		}()
	}
	// Wait until the flood is being served, then log in as someone else.
	for range 10 {
		<-answered
	}
	var latencies []time.Duration
	for i := range 3 {
		start := time.Now()
		r := loginFrom(t, srv, "192.0.2.1", "bystander@example.com", testenv.Password)
		latencies = append(latencies, time.Since(start))
		if r.Status != http.StatusOK {
			t.Errorf("bystander's login %d during the flood: %s after %v, want 200", i+1, r, latencies[i])
		}
	}
	wg.Wait()
	t.Logf("%d concurrent password changes from one account: statuses %v; another user's logins took %v", flood, statuses, latencies)
	if statuses[http.StatusForbidden] == 0 {
		t.Fatalf("no flood request was served (statuses %v): the test proves nothing", statuses)
	}
}
