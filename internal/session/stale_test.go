package session_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestStaleRequestChangesNothing: a refresh its client no longer awaits
// (the connection closed, the context done) or sent more than G before the
// server acts on it never abandons a token or revokes the session; it ends
// in ErrStale (not invalid_grant), changes nothing and writes no audit
// event; nor does it rotate or restart G. A fresh request with the same
// token is then decided as ever.
func TestStaleRequestChangesNothing(t *testing.T) {
	gone := func() bool { return true }
	type signal struct {
		name string
		req  func(env *testenv.Env, r *session.RefreshRequest)
	}
	signals := []signal{
		{"connection closed", func(_ *testenv.Env, r *session.RefreshRequest) { r.Gone = gone }},
		{"sent more than G ago", func(env *testenv.Env, r *session.RefreshRequest) {
			r.SentAt = env.Clock.Now().Add(-grace - time.Millisecond)
		}},
	}
	for _, sig := range signals {
		t.Run(sig.name, func(t *testing.T) {
			env := testenv.New(t, testenv.Options{Grace: grace, LostWindow: lost})
			a0 := env.Login(t, "stale@example.com")
			a1 := mustRefresh(t, env, a0.RefreshToken)
			try := func(tok string) error {
				r := session.RefreshRequest{Token: tok, Client: env.Client, Meta: session.Meta{IP: "192.0.2.1", UserAgent: "test"}}
				sig.req(env, &r)
				_, err := env.Sessions.Refresh(ctx, r)
				return err
			}
			unchanged := func(what string, before session.Session, audits int) {
				t.Helper()
				if after := state(t, env, a0.SessionID); after != before {
					t.Fatalf("%s changed the session:\nbefore %+v\nafter  %+v", what, before, after)
				}
				if n := auditCount(t, env); n != audits {
					t.Fatalf("%s wrote %d audit events", what, n-audits)
				}
			}

			// A lost-response successor would abandon a1.
			env.Clock.Advance(grace + time.Second)
			before, audits := state(t, env, a0.SessionID), auditCount(t, env)
			if err := try(a0.RefreshToken); !errors.Is(err, session.ErrStale) || session.IsInvalidGrant(err) {
				t.Fatalf("stale lost-response retry: %v, want ErrStale and not invalid_grant", err)
			}
			unchanged("a stale lost-response retry", before, audits)

			// Reuse would revoke the session.
			a2 := mustRefresh(t, env, a1.RefreshToken)
			before, audits = state(t, env, a0.SessionID), auditCount(t, env)
			if err := try(a0.RefreshToken); !errors.Is(err, session.ErrStale) {
				t.Fatalf("stale ancestor: %v, want ErrStale", err)
			}
			unchanged("a stale ancestor", before, audits)

			// Nor does a stale request rotate or restart G.
			before, audits = state(t, env, a0.SessionID), auditCount(t, env)
			for _, tok := range []string{a1.RefreshToken, a2.RefreshToken} {
				if err := try(tok); !errors.Is(err, session.ErrStale) {
					t.Fatalf("stale parent or current token: %v, want ErrStale", err)
				}
			}
			unchanged("a stale rotation or grace answer", before, audits)
			mustRefresh(t, env, a2.RefreshToken) // on time: rotates

			// The same ancestor in a fresh request is reuse, as ever.
			if _, err := refresh(env, a0.RefreshToken); !errors.Is(err, session.ErrReused) {
				t.Fatalf("fresh ancestor: %v, want ErrReused", err)
			}
		})
	}
}

// TestStaleFoundBeforeCommit: the client leaves after the outcome was
// decided (a node paused between the decision and the commit): the check
// just before the commit rolls the revocation back.
func TestStaleFoundBeforeCommit(t *testing.T) {
	for _, how := range []string{"connection closed", "context cancelled"} {
		t.Run(how, func(t *testing.T) {
			// Gone counts only inside the transaction: the one-statement
			// rotation asks it first (and, finding an ancestor, changes
			// nothing), and must not use up the "awaited at the decision".
			fs := &txFlagStore{}
			env := testenv.New(t, testenv.Options{Grace: grace, LostWindow: lost, WrapStore: fs.wrap})
			a0 := env.Login(t, "late@example.com")
			a1 := mustRefresh(t, env, a0.RefreshToken)
			mustRefresh(t, env, a1.RefreshToken)
			var calls atomic.Int32
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			fs.inTx.Store(false)
			gone := func() bool { return fs.inTx.Load() && calls.Add(1) > 1 } // awaited at the decision, gone at the commit
			if how == "context cancelled" {
				gone = func() bool {
					if fs.inTx.Load() {
						cancel()
					}
					return false
				}
			}
			before, audits := state(t, env, a0.SessionID), auditCount(t, env)
			_, err := env.Sessions.Refresh(rctx, session.RefreshRequest{Token: a0.RefreshToken, Client: env.Client, Gone: gone})
			switch {
			case how == "connection closed" && !errors.Is(err, session.ErrStale):
				t.Fatalf("refresh = %v, want ErrStale", err)
			case how == "connection closed" && calls.Load() != 2:
				t.Fatalf("Gone asked %d times, want 2 (at the decision and just before the commit)", calls.Load())
			case err == nil, session.IsInvalidGrant(err):
				// On SQLite a cancelled context may fail a statement first:
				// any retryable error will do, so long as nothing committed.
				t.Fatalf("refresh = %v, want a retryable error", err)
			}
			if after := state(t, env, a0.SessionID); after != before {
				t.Fatalf("the revocation was committed:\nbefore %+v\nafter  %+v", before, after)
			}
			if n := auditCount(t, env); n != audits {
				t.Fatalf("%d audit events committed", n-audits)
			}
		})
	}
}

func auditCount(t *testing.T, env *testenv.Env) int {
	t.Helper()
	evs, err := env.Store.AuditEvents(ctx, audit.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// txFlagStore passes everything on, the one-statement rotation included,
// and notes when a transaction began.
type txFlagStore struct {
	session.Store
	inTx atomic.Bool
}

func (s *txFlagStore) wrap(st session.Store) session.Store { s.Store = st; return s }

func (s *txFlagStore) InTx(ctx context.Context, fn func(session.Tx) error) error {
	s.inTx.Store(true)
	return s.Store.InTx(ctx, fn)
}

func (s *txFlagStore) RotateSession(ctx context.Context, r session.Rotation) (session.Session, error) {
	return s.Store.(session.Rotator).RotateSession(ctx, r)
}
