package cli

import (
	"context"
	"database/sql"
	"time"

	"github.com/latchauth/latch/internal/config"
	"github.com/latchauth/latch/internal/feed"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/metrics"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/webhook"
)

// serveMetrics wires internal/metrics into serve. A nil *serveMetrics
// (--metrics=false) does nothing.
type serveMetrics struct{ m *metrics.Metrics }

func newServeMetrics(c *config.Config) *serveMetrics {
	if !c.Metrics {
		return nil
	}
	return &serveMetrics{m: metrics.New()}
}

// storeOptions times every PostgreSQL statement.
func (sm *serveMetrics) storeOptions() []postgres.Option {
	if sm == nil {
		return nil
	}
	return []postgres.Option{postgres.WithTracer(sm.m.Tracer())}
}

// instrument exports the storage pools, and times SQLite at the store
// boundary (PostgreSQL is timed by the tracer).
func (sm *serveMetrics) instrument(d *deps) {
	if sm == nil {
		return
	}
	switch st := d.store.(type) {
	case *postgres.Store:
		sm.m.RegisterPool("postgres", metrics.PGXPoolStats(st.Pool()))
	case *sqlite.Store:
		sm.m.RegisterPool("write", metrics.SQLDBStats(func() sql.DBStats { w, _ := st.Stats(); return w }))
		sm.m.RegisterPool("read", metrics.SQLDBStats(func() sql.DBStats { _, r := st.Stats(); return r }))
		d.store = timedStore{store: st, m: sm.m}
	}
}

func (sm *serveMetrics) sessionOptions() []session.Option {
	if sm == nil {
		return nil
	}
	return []session.Option{session.WithObserver(sm.m)}
}

// api serves /metrics on the API and reports requests to the metrics.
func (sm *serveMetrics) api(cfg *httpapi.Config) {
	if sm == nil {
		return
	}
	cfg.Observer = sm.m
	cfg.Metrics = sm.m.Handler()
}

// running exports the gauges of the parts built last.
func (sm *serveMetrics) running(api *httpapi.Server, hub *feed.Hub, hooks *webhook.Sender) error {
	if sm == nil {
		return nil
	}
	if err := sm.m.RegisterFeed(metrics.Feed{Subscribers: api.FeedSubscribers, Lag: hub.Lag, Entries: hub.Len}); err != nil {
		return err
	}
	if hooks != nil {
		return sm.m.RegisterWebhooks(hooks)
	}
	return nil
}

// timedStore times SQLite at the store boundary: each transaction ("tx",
// including the wait for the single writer connection), each read outside
// a transaction ("read") and each sweeper delete ("write").
type timedStore struct {
	store
	m *metrics.Metrics
}

func timed[T any](m *metrics.Metrics, op string, fn func() (T, error)) (T, error) {
	start := time.Now()
	v, err := fn()
	m.ObserveStorage(op, time.Since(start))
	return v, err
}

func (t timedStore) InTx(ctx context.Context, fn func(session.Tx) error) error {
	start := time.Now()
	err := t.store.InTx(ctx, fn)
	t.m.ObserveStorage("tx", time.Since(start))
	return err
}

func (t timedStore) Session(ctx context.Context, id string) (session.Session, error) {
	return timed(t.m, "read", func() (session.Session, error) { return t.store.Session(ctx, id) })
}

func (t timedStore) UserSessions(ctx context.Context, userID string) ([]session.Session, error) {
	return timed(t.m, "read", func() ([]session.Session, error) { return t.store.UserSessions(ctx, userID) })
}

func (t timedStore) User(ctx context.Context, id string) (session.User, error) {
	return timed(t.m, "read", func() (session.User, error) { return t.store.User(ctx, id) })
}

func (t timedStore) UserByEmail(ctx context.Context, email string) (session.User, error) {
	return timed(t.m, "read", func() (session.User, error) { return t.store.UserByEmail(ctx, email) })
}

func (t timedStore) Client(ctx context.Context, id string) (session.Client, error) {
	return timed(t.m, "read", func() (session.Client, error) { return t.store.Client(ctx, id) })
}

func (t timedStore) Revocations(ctx context.Context, after int64, limit int) ([]session.FeedEntry, error) {
	return timed(t.m, "read", func() ([]session.FeedEntry, error) { return t.store.Revocations(ctx, after, limit) })
}

func (t timedStore) DeleteStale(ctx context.Context, cutoff, now time.Time) (int64, error) {
	return timed(t.m, "write", func() (int64, error) { return t.store.DeleteStale(ctx, cutoff, now) })
}

func (t timedStore) DeleteAudit(ctx context.Context, before time.Time) (int64, error) {
	return timed(t.m, "write", func() (int64, error) { return t.store.DeleteAudit(ctx, before) })
}
