package session_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// TestLeftWhileRowLocked: a refresh of the current token whose
// client leaves (its context is cancelled, or Gone turns true) while the
// refresh waits for the session's row lock must change nothing, as
// RefreshRequest.Gone documents ("checked when the outcome is decided and
// again just before the commit") and as the locked transaction did (its
// SELECT … FOR UPDATE waits on the cancellable context; awaited is read
// once the row is locked and again in beforeCommit). With L = 0 a rotation
// nobody received makes the client's next attempt, later than G, reuse:
// issue 19's false logout.
func TestLeftWhileRowLocked(t *testing.T) {
	for _, how := range []string{"context cancelled", "Gone"} {
		t.Run(how, func(t *testing.T) {
			st := pgtest.New(t)
			env := testenv.New(t, testenv.Options{NoLostWindow: true, Store: func(testing.TB) testenv.Store { return st }})
			a0 := env.Login(t, "left@example.com")
			before, err := env.Store.Session(context.Background(), a0.SessionID)
			if err != nil {
				t.Fatal(err)
			}

			// Another transaction holds the row (a grace answer, a DPoP
			// mismatch, a node paused mid-transaction, …).
			tx, err := st.Pool().Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(t.Context(), `SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE`, a0.SessionID); err != nil {
				t.Fatal(err)
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var gone atomic.Bool
			done := make(chan error, 1)
			go func() {
				_, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: a0.RefreshToken, Client: env.Client, Gone: gone.Load})
				done <- err
			}()
			time.Sleep(300 * time.Millisecond) // the refresh now waits for the row
			if how == "Gone" {
				gone.Store(true)
			} else {
				cancel()
			}
			time.Sleep(200 * time.Millisecond)
			tx.Rollback(context.Background()) // the holder changed nothing
			err = <-done
			if err == nil {
				t.Errorf("refresh whose client left while it waited: succeeded; want ErrCanceled or ErrStale")
			}
			after, serr := env.Store.Session(context.Background(), a0.SessionID)
			if serr != nil {
				t.Fatal(serr)
			}
			if after.Gen != before.Gen {
				t.Errorf("session rotated from gen %d to %d for a client that left while the refresh waited (err %v)", before.Gen, after.Gen, err)
			}

			// The client, which never got an answer, tries again later
			// with the token it holds.
			env.Clock.Advance(env.Config.Grace + time.Second)
			if _, err := env.Sessions.Refresh(context.Background(), session.RefreshRequest{Token: a0.RefreshToken, Client: env.Client}); err != nil {
				t.Errorf("the client's next attempt with its only token: %v (reused: %v); want new tokens", err, errors.Is(err, session.ErrReused))
			}
		})
	}
}
