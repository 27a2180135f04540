package session_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// TestCancelDuringCommitIsReported (issue 19 item 2): the request's
// context is cancelled during COMMIT on PostgreSQL, as the COMMIT goes out
// or while the server runs it (a deferred trigger makes it take 300 ms).
// The commit is not the client's to cancel: a reuse revocation commits and
// is counted, logged and hooked (one audit row, one metric, one log line,
// one webhook), and the caller hears ErrReused, not "unavailable"; a
// rotation commits and its tokens are returned.
func TestCancelDuringCommitIsReported(t *testing.T) {
	for _, when := range []string{"as COMMIT goes out", "while the server commits"} {
		t.Run(when, func(t *testing.T) {
			tr := &pgtest.Tracer{}
			var schemaURL string
			var obs observer
			logs := new(testenv.LogBuffer)
			var (
				mu    sync.Mutex
				hooks []session.Committed
			)
			env := testenv.New(t, testenv.Options{Observer: &obs, Log: slog.New(slog.NewJSONHandler(logs, nil)),
				OnCommit: func(c session.Committed) { mu.Lock(); hooks = append(hooks, c); mu.Unlock() },
				Store: func(t testing.TB) testenv.Store {
					schemaURL = pgtest.URL(t)
					st, err := postgres.Open(context.Background(), schemaURL, postgres.WithTracer(tr))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { st.Close() })
					if _, err := st.Migrate(context.Background()); err != nil {
						t.Fatal(err)
					}
					return st
				}})
			if when == "while the server commits" {
				slowCommit(t, schemaURL)
			}
			a0 := env.Login(t, "commit@example.com")
			a1 := mustRefresh(t, env, a0.RefreshToken)
			a2 := mustRefresh(t, env, a1.RefreshToken)
			obs.take()
			mu.Lock()
			hooks = nil
			mu.Unlock()

			// refreshCancelled presents tok with a context cancelled during
			// the COMMIT of its transaction.
			refreshCancelled := func(tok string) (session.Tokens, error) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var once sync.Once
				tr.SetAtCommit(func() {
					once.Do(func() {
						if when == "as COMMIT goes out" {
							cancel()
						} else {
							time.AfterFunc(100*time.Millisecond, cancel) // the trigger sleeps 300 ms
						}
					})
				})
				defer tr.SetAtCommit(nil)
				return env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok, Client: env.Client, Meta: session.Meta{IP: "192.0.2.1", UserAgent: "test"}})
			}

			// A rotation commits and answers with its tokens.
			a3, err := refreshCancelled(a2.RefreshToken)
			if err != nil {
				t.Fatalf("rotation cancelled during COMMIT: %v, want its tokens (it committed)", err)
			}
			if s := state(t, env, a0.SessionID); s.Gen != genOf(t, env, a3.RefreshToken) {
				t.Fatalf("stored gen %d, answered gen %d", s.Gen, genOf(t, env, a3.RefreshToken))
			}
			if got := obs.take(); got["refresh/rotated"] != 1 || len(got) != 1 {
				t.Fatalf("observer after a committed rotation: %v, want refresh/rotated once", got)
			}

			// Reuse: committed, and reported as committed everywhere.
			if _, err := refreshCancelled(a0.RefreshToken); !errors.Is(err, session.ErrReused) {
				t.Fatalf("reuse cancelled during COMMIT: %v, want ErrReused (the revocation committed)", err)
			}
			if s := state(t, env, a0.SessionID); s.RevokeReason != session.ReasonReuse {
				t.Fatalf("session not revoked for reuse: %+v", s)
			}
			got := obs.take()
			want := map[string]int{"refresh/reuse": 1, "reuse/ancestor": 1, "revoked/refresh_token_reuse": 1}
			if len(got) != len(want) || got["refresh/reuse"] != 1 || got["reuse/ancestor"] != 1 || got["revoked/refresh_token_reuse"] != 1 {
				t.Fatalf("observer after a committed reuse: %v, want %v", got, want)
			}
			if n := strings.Count(logs.String(), "refresh token reuse; session revoked"); n != 1 {
				t.Fatalf("%d reuse warnings logged, want 1:\n%s", n, logs)
			}
			mu.Lock()
			defer mu.Unlock()
			var events []string
			var revoked []string
			for _, c := range hooks {
				for _, e := range c.Events {
					events = append(events, e.Type)
				}
				revoked = append(revoked, c.Revoked...)
			}
			if !slices.Equal(events, []string{audit.RefreshReuse}) || !slices.Equal(revoked, []string{a0.SessionID}) {
				t.Fatalf("hooks saw events %v and revocations %v, want one %s revoking %s", events, revoked, audit.RefreshReuse, a0.SessionID)
			}
			evs, err := env.Store.AuditEvents(context.Background(), audit.Query{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range evs {
				if e.Type == audit.RefreshReuse {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d reuse audit rows, want 1 (as counted, logged and hooked)", n)
			}
		})
	}
}

// slowCommit makes every COMMIT that inserted an audit row take 300 ms on
// the server: a deferred constraint trigger runs at COMMIT.
func slowCommit(t *testing.T, url string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		`CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$`,
		`CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON audit_events DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`,
	} {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func genOf(t *testing.T, env *testenv.Env, tok string) uint64 {
	t.Helper()
	_, gen, err := env.Codec.Decode(tok)
	if err != nil {
		t.Fatal(err)
	}
	return gen
}
