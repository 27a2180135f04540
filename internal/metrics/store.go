package metrics

import (
	"context"
	"time"

	"github.com/latchauth/latch/internal/session"
)

// TimedStore times a session.Store at its boundary into
// latch_storage_query_duration_seconds: each transaction ("tx", including
// the wait for SQLite's single writer connection), each read outside a
// transaction ("read") and each sweeper delete ("write"). The SQLite store
// is timed this way; PostgreSQL, per statement, by [Metrics.Tracer].
type TimedStore struct {
	session.Store
	m *Metrics
}

// TimeStore wraps s.
func (m *Metrics) TimeStore(s session.Store) *TimedStore { return &TimedStore{Store: s, m: m} }

func timed[T any](m *Metrics, op string, fn func() (T, error)) (T, error) {
	start := time.Now()
	v, err := fn()
	m.ObserveStorage(op, time.Since(start))
	return v, err
}

// InTx implements session.Store.
func (t *TimedStore) InTx(ctx context.Context, fn func(session.Tx) error) error {
	start := time.Now()
	err := t.Store.InTx(ctx, fn)
	t.m.ObserveStorage("tx", time.Since(start))
	return err
}

// RotateSession implements session.Rotator, timed as the transaction it
// is ("tx"). A wrapped store without it answers ErrNotFound, which sends
// the refresh through InTx as if the conditions had failed.
func (t *TimedStore) RotateSession(ctx context.Context, r session.Rotation) (session.Session, error) {
	rs, ok := t.Store.(session.Rotator)
	if !ok {
		return session.Session{}, session.ErrNotFound
	}
	return timed(t.m, "tx", func() (session.Session, error) { return rs.RotateSession(ctx, r) })
}

// Session implements session.Store.
func (t *TimedStore) Session(ctx context.Context, id string) (session.Session, error) {
	return timed(t.m, "read", func() (session.Session, error) { return t.Store.Session(ctx, id) })
}

// UserSessions implements session.Store.
func (t *TimedStore) UserSessions(ctx context.Context, userID string) ([]session.Session, error) {
	return timed(t.m, "read", func() ([]session.Session, error) { return t.Store.UserSessions(ctx, userID) })
}

// User implements session.Store.
func (t *TimedStore) User(ctx context.Context, id string) (session.User, error) {
	return timed(t.m, "read", func() (session.User, error) { return t.Store.User(ctx, id) })
}

// UserByEmail implements session.Store.
func (t *TimedStore) UserByEmail(ctx context.Context, email string) (session.User, error) {
	return timed(t.m, "read", func() (session.User, error) { return t.Store.UserByEmail(ctx, email) })
}

// Client implements session.Store.
func (t *TimedStore) Client(ctx context.Context, id string) (session.Client, error) {
	return timed(t.m, "read", func() (session.Client, error) { return t.Store.Client(ctx, id) })
}

// FeedSource is the revocation feed's read of storage (feed.Source).
type FeedSource interface {
	Revocations(ctx context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error)
}

// TimeFeed times src's reads as "read", like TimedStore's.
func (m *Metrics) TimeFeed(src FeedSource) FeedSource { return timedFeed{src: src, m: m} }

type timedFeed struct {
	src FeedSource
	m   *Metrics
}

func (t timedFeed) Revocations(ctx context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error) {
	return timed(t.m, "read", func() ([]session.FeedEntry, error) { return t.src.Revocations(ctx, after, limit) })
}

// DeleteStale implements session.Store.
func (t *TimedStore) DeleteStale(ctx context.Context, cutoff, now time.Time) (int64, error) {
	return timed(t.m, "write", func() (int64, error) { return t.Store.DeleteStale(ctx, cutoff, now) })
}

// DeleteAudit implements session.Store.
func (t *TimedStore) DeleteAudit(ctx context.Context, before time.Time) (int64, error) {
	return timed(t.m, "write", func() (int64, error) { return t.Store.DeleteAudit(ctx, before) })
}
