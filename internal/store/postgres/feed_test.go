package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// slowCommit makes the commit of any transaction that revokes sid sleep
// for d, with a deferred constraint trigger: the entry's seq is handed out
// at once, but it becomes visible only d later, after entries with higher
// seqs from faster transactions.
func slowCommit(t *testing.T, st *postgres.Store, sid string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE slow_sids (sid text PRIMARY KEY, seconds float8 NOT NULL)`,
		`CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_sleep(seconds) FROM slow_sids WHERE sid = NEW.session_id;
			RETURN NULL;
		END $$`,
		`CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON revocations
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`,
	} {
		if _, err := st.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Pool().Exec(ctx, `INSERT INTO slow_sids VALUES ($1, $2)`, sid, d.Seconds()); err != nil {
		t.Fatal(err)
	}
}

// feedSIDs returns the session ids the hub serves.
func feedSIDs(env *testenv.Env) []string {
	entries, _, _ := env.Feed.Since(0)
	var out []string
	for _, e := range entries {
		out = append(out, e.SessionID)
	}
	return out
}

// TestFeedSlowCommit: a revocation whose transaction commits 3.5 s after a
// later one (higher seq, committed at once) still reaches the feed. The
// old cursor (seq, with a 2 s wait at a gap) moved past it for good.
func TestFeedSlowCommit(t *testing.T) {
	ctx := context.Background()
	st := pgtest.New(t)
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }, FeedInterval: 20 * time.Millisecond})
	first, slow, fast := env.Login(t, "first@example.com"), env.Login(t, "slow@example.com"), env.Login(t, "fast@example.com")
	const delay = 3500 * time.Millisecond
	slowCommit(t, st, slow.SessionID, delay)

	// The hub has read an entry already, so what follows is not its start.
	if err := env.Sessions.RevokeSession(ctx, "", first.SessionID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the first revocation never reached the feed", func() bool {
		return slices.Contains(feedSIDs(env), first.SessionID)
	})

	slowDone := make(chan error, 1)
	start := time.Now()
	go func() { slowDone <- env.Sessions.RevokeSession(ctx, "", slow.SessionID, session.Meta{}) }()
	// Its entry is written (seq taken) and the commit is sleeping.
	testenv.Eventually(t, 5*time.Second, "the slow commit never started sleeping", func() bool {
		var n int
		st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND state = 'active'`).Scan(&n)
		return n > 0
	})
	if err := env.Sessions.RevokeSession(ctx, "", fast.SessionID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	var seqs [2]int64 // slow, fast
	if err := st.Pool().QueryRow(ctx, `SELECT seq FROM revocations WHERE session_id = $1`, fast.SessionID).Scan(&seqs[1]); err != nil {
		t.Fatal(err)
	}
	if err := <-slowDone; err != nil {
		t.Fatalf("slow revocation: %v", err)
	}
	if took := time.Since(start); took < delay {
		t.Fatalf("the slow commit took %s, want at least %s", took, delay)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT seq FROM revocations WHERE session_id = $1`, slow.SessionID).Scan(&seqs[0]); err != nil {
		t.Fatal(err)
	}
	if seqs[0] >= seqs[1] {
		t.Fatalf("slow seq %d, fast seq %d: the test needs the slow entry's seq first", seqs[0], seqs[1])
	}
	testenv.Eventually(t, 5*time.Second, "a revocation that committed late never reached the feed", func() bool {
		sids := feedSIDs(env)
		return slices.Contains(sids, slow.SessionID) && slices.Contains(sids, fast.SessionID)
	})
}

// TestRevocationsWaitForOpenTransactions: the store's read returns nothing
// at or after a transaction still open, and everything once it ends, in an
// order no later read can contradict.
func TestRevocationsWaitForOpenTransactions(t *testing.T) {
	ctx := context.Background()
	st := pgtest.New(t)
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }})
	held, later := env.Login(t, "held@example.com"), env.Login(t, "later@example.com")
	now := env.Clock.Now()
	revoke := func(tx session.Tx, sid string) error {
		_, err := tx.RevokeSessions(ctx, session.Revocation{SessionID: sid, Scope: session.ScopeOne, Reason: session.ReasonAdmin, At: now, Until: now.Add(time.Hour)})
		return err
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- st.InTx(ctx, func(tx session.Tx) error {
			if err := revoke(tx, held.SessionID); err != nil {
				return err
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	var once sync.Once
	end := func() { once.Do(func() { close(release) }) }
	defer end() // a failure below must not leave the transaction open
	if err := st.InTx(ctx, func(tx session.Tx) error { return revoke(tx, later.SessionID) }); err != nil {
		t.Fatal(err)
	}
	got, err := st.Revocations(ctx, session.FeedCursor{}, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("while a revoking transaction is open: %v, %v; want nothing (the later entry would sort after the open one)", got, err)
	}
	end()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err = revocationsAtLeast(t, st, session.FeedCursor{}, 2)
	if err != nil || len(got) != 2 || got[0].SessionID != held.SessionID || got[1].SessionID != later.SessionID {
		t.Fatalf("after it ended: %+v, %v; want held then later", got, err)
	}
	if !got[1].Cursor().After(got[0].Cursor()) {
		t.Fatalf("cursors %+v, %+v not increasing", got[0].Cursor(), got[1].Cursor())
	}
}

// TestListenRevocations: a committed revocation on one store wakes a
// listener on another (another node); a rolled-back one, or one that
// revoked nothing, does not.
func TestListenRevocations(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return a }})
	var wakes atomic.Int64
	woken := make(chan struct{}, 100)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		wake := func() { wakes.Add(1); woken <- struct{}{} }
		b.Listen(lctx, postgres.Changes{Connected: func(up bool) {
			if up {
				wake()
			}
		}, Revoked: func(int64) { wake() }}, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { stop(); <-done })
	wait := func(what string) {
		t.Helper()
		select {
		case <-woken:
		case <-time.After(5 * time.Second):
			t.Fatal(what)
		}
	}
	wait("no wake when listening started")
	now := env.Clock.Now()
	revoke := func(sid string, fail bool) {
		err := a.InTx(ctx, func(tx session.Tx) error {
			if _, err := tx.RevokeSessions(ctx, session.Revocation{SessionID: sid, Scope: session.ScopeOne, Reason: session.ReasonAdmin, At: now, Until: now.Add(time.Hour)}); err != nil {
				return err
			}
			if fail {
				return errors.New("roll back")
			}
			return nil
		})
		if err != nil != fail {
			t.Fatalf("revoke %s: %v", sid, err)
		}
	}
	tests := []struct {
		name   string
		revoke func()
		wake   bool
	}{
		{"committed revocation", func() { revoke(env.Login(t, "one@example.com").SessionID, false) }, true},
		{"rolled back", func() { revoke(env.Login(t, "two@example.com").SessionID, true) }, false},
		{"nothing to revoke", func() { revoke("no-such-session-id-xxx", false) }, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := wakes.Load()
			tt.revoke()
			// A committed revocation after it: its wake comes after any wake
			// the case under test sent.
			revoke(env.Login(t, fmt.Sprintf("marker%d@example.com", i)).SessionID, false)
			wait("the marker revocation woke nothing")
			if tt.wake {
				wait("the committed revocation woke nothing")
			}
			// Any wake from the case under test came before the marker's.
			if got, want := wakes.Load()-before, map[bool]int64{true: 2, false: 1}[tt.wake]; got != want {
				t.Fatalf("%d wakes, want %d", got, want)
			}
		})
	}
}

// revocationsAtLeast reads the feed after cursor until it has n entries or
// 20 s pass. A committed entry is withheld while an older writing
// transaction anywhere on the cluster is open (another package's slow-commit
// test, say), so a read that expects entries must wait for them, not read
// once.
func revocationsAtLeast(t *testing.T, st *postgres.Store, after session.FeedCursor, n int) ([]session.FeedEntry, error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := st.Revocations(context.Background(), after, 100)
		if err != nil || len(got) >= n || time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestoredFeedEntries: entries restored from a dump of another cluster
// carry transaction ids this server has not reached. Migrate (run at every
// start) moves them to the front, so a new revocation still sorts after
// them and a reader past them does not skip it.
func TestRestoredFeedEntries(t *testing.T) {
	ctx := context.Background()
	st := pgtest.New(t)
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }})
	old, fresh := env.Login(t, "old@example.com"), env.Login(t, "fresh@example.com")
	if err := env.Sessions.RevokeSession(ctx, "", old.SessionID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	// What a restore of another cluster's dump leaves: an xid from its future.
	if _, err := st.Pool().Exec(ctx, `UPDATE revocations SET xid = (pg_current_xact_id()::text::bigint + 1000000000)::text::xid8`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := st.Revocations(ctx, session.FeedCursor{}, 100)
	if err != nil || len(got) != 1 {
		t.Fatalf("after Migrate: %v, %v; want the restored entry", got, err)
	}
	if err := env.Sessions.RevokeSession(ctx, "", fresh.SessionID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	next, err := revocationsAtLeast(t, st, got[0].Cursor(), 1)
	if err != nil || len(next) != 1 || next[0].SessionID != fresh.SessionID {
		t.Fatalf("after the restored entry: %v, %v; want the new revocation", next, err)
	}
}

// TestListenChanges: one LISTEN connection hears, from another store (node),
// a revocation with its transaction id (the Txn of its feed entries), a
// client created, changed and deleted with the client's id, and a signing
// key change; and reports itself up, then down when it ends.
func TestListenChanges(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return a }})
	heard := make(chan string, 100)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Listen(lctx, postgres.Changes{
			Connected: func(up bool) { heard <- fmt.Sprint("connected ", up) },
			Revoked:   func(txn int64) { heard <- fmt.Sprint("revoked ", txn) },
			Client:    func(id string) { heard <- "client " + id },
			Keys:      func() { heard <- "keys" },
		}, slog.New(slog.DiscardHandler))
	}()
	next := func() string {
		t.Helper()
		select {
		case s := <-heard:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("nothing heard")
			return ""
		}
	}
	if got := next(); got != "connected true" {
		t.Fatalf("first heard %q; want connected true", got)
	}
	sid := env.Login(t, "listen@example.com").SessionID
	now := env.Clock.Now()
	if err := a.InTx(ctx, func(tx session.Tx) error {
		_, err := tx.RevokeSessions(ctx, session.Revocation{SessionID: sid, Scope: session.ScopeOne, Reason: session.ReasonAdmin, At: now, Until: now.Add(time.Hour)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	entries, err := revocationsAtLeast(t, a, session.FeedCursor{}, 1)
	if err != nil || len(entries) != 1 {
		t.Fatalf("feed %v, %v; want the one revocation", entries, err)
	}
	if got, want := next(), fmt.Sprint("revoked ", entries[0].Txn); got != want {
		t.Errorf("heard %q; want %q, the entry's transaction", got, want)
	}
	ttl := 3 * time.Minute
	changes := []struct {
		name   string
		change func() error
		want   string
	}{
		{"create", func() error {
			_, _, err := env.Sessions.CreateClient(ctx, session.Client{ID: "heard", Audiences: []string{"x"}, AccessTTL: time.Minute, Grants: []string{session.GrantRefresh}}, false, session.Meta{})
			return err
		}, "client heard"},
		{"update", func() error {
			_, err := env.Sessions.UpdateClient(ctx, "heard", session.ClientUpdate{AccessTTL: &ttl}, session.Meta{})
			return err
		}, "client heard"},
		{"delete", func() error { _, err := env.Sessions.DeleteClient(ctx, "heard", session.Meta{}); return err }, "client heard"},
		{"key rotation", func() error { _, err := env.Issuer.Rotate(ctx, true); return err }, "keys"},
	}
	for _, c := range changes {
		if err := c.change(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := next(); got != c.want {
			t.Errorf("%s: heard %q; want %q", c.name, got, c.want)
		}
	}
	stop()
	<-done
	if got := next(); got != "connected false" {
		t.Errorf("heard %q at the end; want connected false", got)
	}
}
