package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Setting is the value of a run-time parameter as a statement outside a
// transaction sees it and as one inside InTx sees it.
func (s *Store) Setting(ctx context.Context, name string) (outside, inside string, err error) {
	if err := s.db.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&outside); err != nil {
		return "", "", err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return "", "", err
	}
	defer conn.Release()
	t := &txn{conn: conn, setup: s.setup}
	inside, err = queryRow(ctx, t, func(r pgx.Row) (v string, err error) { return v, r.Scan(&v) }, "SELECT current_setting($1)", name)
	if err != nil {
		return "", "", err
	}
	return outside, inside, t.commit(ctx)
}

// Rotations is the number of rotations waiting for a batch (queued) and
// in the batches running (sending).
func (s *Store) Rotations() (queued, sending int) {
	if s.rotations == nil {
		return 0, 0
	}
	s.rotations.mu.Lock()
	defer s.rotations.mu.Unlock()
	return len(s.rotations.queue), s.rotations.sending
}
