package session_test

import (
	"context"
	"sync"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
)

// faultStore wraps a session.Store and fails a chosen step inside
// transactions, returning the error from InTx so the real transaction
// rolls back.
type faultStore struct {
	session.Store
	mu    sync.Mutex
	at    string
	err   error
	all   error
	count int
	// onLock, if set, runs once inside LockSession with the row locked.
	onLock func()
	// beforeTx, if set, runs once before the next transaction begins.
	beforeTx func()
}

func (f *faultStore) wrap(s session.Store) session.Store { f.Store = s; return f }

func (f *faultStore) failAt(step string, err error) {
	f.mu.Lock()
	f.at, f.err = step, err
	f.mu.Unlock()
}

func (f *faultStore) failAll(err error) {
	f.mu.Lock()
	f.all, f.count = err, 0
	f.mu.Unlock()
}

func (f *faultStore) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

func (f *faultStore) fault(step string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.all != nil {
		f.count++
		return f.all
	}
	if step == f.at {
		return f.err
	}
	return nil
}

func (f *faultStore) InTx(ctx context.Context, fn func(session.Tx) error) error {
	if err := f.fault("InTx"); err != nil {
		return err
	}
	f.mu.Lock()
	hook := f.beforeTx
	f.beforeTx = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.Store.InTx(ctx, func(tx session.Tx) error {
		if err := fn(&faultTx{Tx: tx, f: f}); err != nil {
			return err
		}
		// A failure after every write, just before commit.
		return f.fault("Commit")
	})
}

func (f *faultStore) Session(ctx context.Context, id string) (session.Session, error) {
	if err := f.fault("Session"); err != nil {
		return session.Session{}, err
	}
	return f.Store.Session(ctx, id)
}

type faultTx struct {
	session.Tx
	f *faultStore
}

func (t *faultTx) LockSession(ctx context.Context, id string) (session.Session, error) {
	if err := t.f.fault("LockSession"); err != nil {
		return session.Session{}, err
	}
	s, err := t.Tx.LockSession(ctx, id)
	t.f.mu.Lock()
	hook := t.f.onLock
	t.f.onLock = nil
	t.f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s, err
}

func (t *faultTx) UpdateSession(ctx context.Context, s session.Session) error {
	if err := t.Tx.UpdateSession(ctx, s); err != nil {
		return err
	}
	return t.f.fault("UpdateSession")
}

func (t *faultTx) AppendAudit(ctx context.Context, e audit.Event) error {
	if err := t.f.fault("AppendAudit"); err != nil {
		return err
	}
	return t.Tx.AppendAudit(ctx, e)
}

func (t *faultTx) RevokeSessions(ctx context.Context, r session.Revocation) ([]string, error) {
	ids, err := t.Tx.RevokeSessions(ctx, r)
	if err != nil {
		return nil, err
	}
	return ids, t.f.fault("RevokeSessions")
}
