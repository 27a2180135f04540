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
		d.store = timedStore{store: st, t: sm.m.TimeStore(st), feed: sm.m.TimeFeed(st)}
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

// shedConnection counts connections the listener refused.
func (sm *serveMetrics) shedConnection() func() {
	if sm == nil {
		return nil
	}
	return func() { sm.m.Shed(httpapi.ShedConnections) }
}

// running exports the gauges of the parts built last.
func (sm *serveMetrics) running(api *httpapi.Server, hub *feed.Hub, hooks *webhook.Sender) error {
	if sm == nil {
		return nil
	}
	if err := sm.m.RegisterFeed(metrics.Feed{Subscribers: api.FeedSubscribers, MaxClientStreams: api.FeedMaxClientStreams, Lag: hub.Lag, Entries: hub.Len}); err != nil {
		return err
	}
	if hooks != nil {
		return sm.m.RegisterWebhooks(hooks)
	}
	return nil
}

// timedStore is the SQLite store with its session.Store methods timed by
// metrics.TimedStore; the others (keys, audit, migrations) pass through.
type timedStore struct {
	store
	t    *metrics.TimedStore
	feed metrics.FeedSource
}

func (s timedStore) InTx(ctx context.Context, fn func(session.Tx) error) error {
	return s.t.InTx(ctx, fn)
}

// serve's SQLite store keeps its one-statement rotation through the timing.
var _ session.Rotator = timedStore{}

func (s timedStore) RotateSession(ctx context.Context, r session.Rotation) (session.Session, error) {
	return s.t.RotateSession(ctx, r)
}

func (s timedStore) Session(ctx context.Context, id string) (session.Session, error) {
	return s.t.Session(ctx, id)
}

func (s timedStore) UserSessions(ctx context.Context, userID string) ([]session.Session, error) {
	return s.t.UserSessions(ctx, userID)
}

func (s timedStore) User(ctx context.Context, id string) (session.User, error) {
	return s.t.User(ctx, id)
}

func (s timedStore) UserByEmail(ctx context.Context, email string) (session.User, error) {
	return s.t.UserByEmail(ctx, email)
}

func (s timedStore) Client(ctx context.Context, id string) (session.Client, error) {
	return s.t.Client(ctx, id)
}

func (s timedStore) Revocations(ctx context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error) {
	return s.feed.Revocations(ctx, after, limit)
}

func (s timedStore) DeleteStale(ctx context.Context, cutoff, now time.Time) (int64, error) {
	return s.t.DeleteStale(ctx, cutoff, now)
}

func (s timedStore) DeleteAudit(ctx context.Context, before time.Time) (int64, error) {
	return s.t.DeleteAudit(ctx, before)
}
