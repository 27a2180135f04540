package tradeoffs

import (
	"context"
	"encoding/xml"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

func TestTable(t *testing.T) {
	cfg := Config{Interval: 10 * time.Second, TTLs: []time.Duration{5 * time.Second, time.Minute, 24 * time.Hour}}
	cfg.defaults()
	res := &Result{Refresh: Latency{RPS: 2000}, LookupPostgres: &Latency{RPS: 40000}}
	rows := table(cfg, res)
	tests := []struct {
		ttl                   string
		per, refreshes, stmts float64
		costMS, noFeedP50     float64
	}{
		// A TTL shorter than the call interval still refreshes once per call.
		{"5s", 1, 1000, 1000, 500, 2.5},
		{"1m0s", 6, 167, 167, 83.333, 30}, // three digits: rounded
		{"24h0m0s", 8640, 0.116, 0.116, 0.058, 43200},
	}
	for i, tt := range tests {
		r := rows[i]
		if r.TTL != tt.ttl || r.APIPerRefresh != tt.per || r.Refreshes != tt.refreshes || r.Statements != tt.stmts ||
			r.CostMillis != tt.costMS || r.LogoutNoFeedP50S != tt.noFeedP50 || r.LookupStatements != 1000 || r.LookupPostgresMillis != 25 {
			t.Errorf("row %d = %+v, want %+v", i, r, tt)
		}
	}
}

// TestRunAgainstLatch runs the whole measurement briefly against a real
// in-process Latch, with Redis when LATCH_TEST_REDIS is set.
func TestRunAgainstLatch(t *testing.T) {
	env := testenv.New(t, testenv.Options{RealClock: true})
	srv := httptest.NewServer(env.Handler)
	defer srv.Close()
	const secret = "feed-secret-for-the-tradeoffs-test"
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "rs", Name: "rs", Audiences: []string{"rs"},
		AccessTTL: time.Minute, SecretHash: session.HashClientSecret(secret)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := Config{Target: srv.URL, Concurrency: 4, Duration: 300 * time.Millisecond, Trials: 3, Audience: "app",
		FeedClientID: "rs", FeedSecret: secret, ChartDir: dir, Redis: os.Getenv("LATCH_TEST_REDIS")}
	cfg.Issuer = testenv.Issuer // tokens say http://latch.test
	res, err := Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Refresh.Count == 0 || res.LogoutFeed == nil || res.LogoutFeed.Count != 3 || len(res.Rows) != 4 {
		t.Fatalf("result %+v", res)
	}
	if cfg.Redis != "" && (res.LookupRedis == nil || res.LookupRedis.Count == 0) {
		t.Fatalf("no Redis lookups measured: %+v", res.LookupRedis)
	}
	for _, name := range []string{"tradeoffs-db-work.svg", "tradeoffs-logout-delay.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal(b, new(struct{})); err != nil || !strings.Contains(string(b), "<rect") {
			t.Fatalf("%s is not an SVG chart: %v", name, err)
		}
	}
	var out strings.Builder
	res.WriteText(&out)
	if !strings.Contains(out.String(), "| 15m0s |") {
		t.Fatalf("text output:\n%s", out.String())
	}
}
