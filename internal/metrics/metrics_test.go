package metrics

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSQLOp(t *testing.T) {
	for _, c := range []struct{ sql, want string }{
		{"SELECT 1", "select"},
		{"\n\t\tselect id FROM sessions", "select"},
		{"begin", "begin"},
		{"COMMIT", "commit"},
		{"INSERT INTO x VALUES ($1)", "insert"},
		{"UPDATE sessions SET gen = $1", "update"},
		{"DELETE FROM revocations", "delete"},
		{"WITH r AS (SELECT 1) SELECT * FROM r", "with"},
		{"(SELECT 1)", "select"},
		{"CREATE TABLE x (a int)", "other"},
		{"", "other"},
		{"select;", "select"},
	} {
		if got := sqlOp(c.sql); got != c.want {
			t.Errorf("sqlOp(%q) = %q, want %q", c.sql, got, c.want)
		}
	}
}

type hooks struct{ d, f, x uint64 }

func (h hooks) Delivered() uint64 { return h.d }
func (h hooks) Failed() uint64    { return h.f }
func (h hooks) Dropped() uint64   { return h.x }

// TestCollectors checks the counters, the unbounded-label guards and the
// scrape-time collectors against the exposition format.
func TestCollectors(t *testing.T) {
	m := New()
	m.LoginThrottled()
	m.LoggedIn("success")
	m.PasswordChangeThrottled()
	m.PasswordChanged("bad_credentials")
	m.PasswordChanged("bad_credentials")
	m.Refreshed("reuse", "ancestor")
	m.Revoked("logout", 3)
	m.Request("POST /oauth/token", "POST", 200, time.Millisecond)
	m.Request("/", "BREW", 404, time.Millisecond)
	m.RegisterPool("postgres", func() PoolStats { return PoolStats{Max: 8, Open: 2, InUse: 1, Idle: 1, Acquires: 5, Waits: 1} })
	m.RegisterPool("read", SQLDBStats(func() (s sql.DBStats) { s.MaxOpenConnections = 4; return s }))
	if err := m.RegisterWebhooks(hooks{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterFeed(Feed{Subscribers: func() int64 { return 2 }, Lag: func() time.Duration { return 250 * time.Millisecond }, Entries: func() int { return 7 }}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP latch_feed_lag_seconds How late other nodes' revocations may reach this node's feed: while it polls, the time since it last read storage successfully; while PostgreSQL LISTEN is up, 0, or the time since a notified revocation it has not read yet. On PostgreSQL a writing transaction held open anywhere on the cluster also holds new entries back, which this gauge does not show: alert on long-open transactions too.
# TYPE latch_feed_lag_seconds gauge
latch_feed_lag_seconds 0.25
# HELP latch_feed_subscribers Open revocation-feed streams (SSE) on this node.
# TYPE latch_feed_subscribers gauge
latch_feed_subscribers 2
# HELP latch_storage_pool_acquires_total Connection checkouts (PostgreSQL only).
# TYPE latch_storage_pool_acquires_total counter
latch_storage_pool_acquires_total{pool="postgres"} 5
# HELP latch_storage_pool_max_connections The most connections the storage pool opens.
# TYPE latch_storage_pool_max_connections gauge
latch_storage_pool_max_connections{pool="postgres"} 8
latch_storage_pool_max_connections{pool="read"} 4
# HELP latch_webhook_events_total Webhook events by result: delivered (2xx), failed (given up after retries or refused), dropped (queue full or shutting down).
# TYPE latch_webhook_events_total counter
latch_webhook_events_total{result="delivered"} 1
latch_webhook_events_total{result="dropped"} 3
latch_webhook_events_total{result="failed"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"latch_feed_lag_seconds", "latch_feed_subscribers", "latch_storage_pool_acquires_total",
		"latch_storage_pool_max_connections", "latch_webhook_events_total"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{testutil.ToFloat64(m.logins.WithLabelValues("throttled")), 1, "throttled logins"},
		{testutil.ToFloat64(m.logins.WithLabelValues("success")), 1, "successful logins"},
		{testutil.ToFloat64(m.pwChanges.WithLabelValues("throttled")), 1, "throttled password changes"},
		{testutil.ToFloat64(m.pwChanges.WithLabelValues("bad_credentials")), 2, "wrong current passwords"},
		{testutil.ToFloat64(m.pwChanges.WithLabelValues("weak_password")), 0, "weak new passwords"},
		{testutil.ToFloat64(m.refreshes.WithLabelValues("reuse")), 1, "reuse"},
		{testutil.ToFloat64(m.reuse.WithLabelValues("ancestor")), 1, "ancestor reuse"},
		{testutil.ToFloat64(m.revocations.WithLabelValues("logout")), 3, "logout revocations"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.requests); n != 2 {
		t.Errorf("%d request series, want 2", n)
	}
	if _, err := m.requests.GetMetricWithLabelValues("/", "other", "404"); err != nil {
		t.Errorf("an unknown method is not labelled other: %v", err)
	}
}
