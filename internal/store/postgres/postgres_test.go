package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"

	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/store/storetest"
)

func newStore(t *testing.T) storetest.Store { return pgtest.New(t) }

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func TestMigrateIsIdempotent(t *testing.T) {
	s := pgtest.New(t)
	applied, err := s.Migrate(context.Background())
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}
}

// TestOpenRejectsBadURLWithoutEchoingIt: a bad URL is refused with what is
// wrong with it, never with the URL or its password.
func TestUpgradeBackfillsRotationOrigin(t *testing.T) {
	ctx := context.Background()
	u := pgtest.URL(t)
	s, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	migrate := func() []string {
		applied, err := s.Migrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return applied
	}
	migrate()
	undo := func() {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `ALTER TABLE sessions DROP COLUMN rotated_ip, DROP COLUMN rotated_user_agent;
			DELETE FROM schema_migrations WHERE version = '0002_rotation_origin'`); err != nil {
			t.Fatal(err)
		}
	}
	storetest.UpgradeBackfillsRotationOrigin(t, s, undo, migrate)
}

func TestOpenRejectsBadURLWithoutEchoingIt(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"postgres://u:s3cret@[::1/db", "not valid"},
		{"postgres://u:s3cret@127.0.0.1/db?sslmode=bogus", "sslmode is one of disable, allow, prefer, require, verify-ca, verify-full"},
		{"postgres://u:s3cret@127.0.0.1:99999/db", "invalid port"},
		{"postgres://u:s3cret@127.0.0.1/db?connect_timeout=soon", "connect_timeout"},
	}
	for _, tt := range tests {
		_, err := postgres.Open(context.Background(), tt.url)
		if err == nil {
			t.Fatalf("Open accepted %s", tt.url)
		}
		got := err.Error()
		if strings.Contains(got, "s3cret") || strings.Contains(got, "127.0.0.1") {
			t.Errorf("error %q repeats the URL", got)
		}
		if !strings.Contains(got, tt.want) {
			t.Errorf("error %q lacks %q", got, tt.want)
		}
	}
}

// Many refreshes and sessions leave the tables bounded: refreshing adds no
// rows, and the sweeper removes ended sessions and spent feed entries.
func TestSweeperBoundsTables(t *testing.T) {
	ctx := context.Background()
	st := pgtest.New(t)
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }, Idle: 24 * time.Hour})
	count := func() map[string]int {
		out := map[string]int{}
		for _, table := range []string{"sessions", "revocations", "audit_events"} {
			var n int
			if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	const users, refreshes = 20, 50
	live := make([]string, users)
	for i := range users {
		email := fmt.Sprintf("u%d@example.com", i)
		tok := env.Login(t, email)
		// Each user also logs in on a second device and logs out there.
		other, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: email, Password: testenv.Password, Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		ses, _ := st.Session(ctx, tok.SessionID)
		if _, err := env.Sessions.Logout(ctx, ses.UserID, other.SessionID, session.ScopeOne, session.Meta{}); err != nil {
			t.Fatal(err)
		}
		live[i] = tok.RefreshToken
	}
	before := count()
	for range refreshes {
		env.Clock.Advance(time.Minute)
		for i := range live {
			tok, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: live[i], Client: env.Client})
			if err != nil {
				t.Fatal(err)
			}
			live[i] = tok.RefreshToken
		}
	}
	afterRefresh := count()
	env.Clock.Advance(env.Config.LongestAccessTTL + time.Hour)
	for i := range live { // stay inside the idle limit
		tok, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: live[i], Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		live[i] = tok.RefreshToken
	}
	if _, err := env.Sessions.Sweep(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	afterSweep := count()
	t.Logf("rows (sessions, revocations, audit_events) for %d users: before %v; after %d refreshes each %v; after the sweep %v",
		users, before, refreshes, afterRefresh, afterSweep)
	if afterRefresh["sessions"] != before["sessions"] || afterRefresh["revocations"] != before["revocations"] || afterRefresh["audit_events"] != before["audit_events"] {
		t.Fatalf("refreshing added rows: %v -> %v", before, afterRefresh)
	}
	if afterSweep["sessions"] != users || afterSweep["revocations"] != 0 {
		t.Fatalf("after the sweep %v; want one session row per user and no spent feed entries", afterSweep)
	}
}

// A refresh of the current token costs one statement in one round trip:
// the conditional UPDATE of session.Rotation (RotateSession), its own
// transaction.
func TestRefreshStatementCount(t *testing.T) {
	tr := &pgtest.Tracer{}
	st := pgtest.New(t, postgres.WithTracer(tr))
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }})
	tok := env.Login(t, "count@example.com")
	rt := tok.RefreshToken
	for range 3 { // warm the statement cache, then count a steady refresh
		env.Clock.Advance(time.Minute)
		next, err := env.Sessions.Refresh(context.Background(), session.RefreshRequest{Token: rt, Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		rt = next.RefreshToken
	}
	tr.Reset()
	env.Clock.Advance(time.Minute)
	if _, err := env.Sessions.Refresh(context.Background(), session.RefreshRequest{Token: rt, Client: env.Client}); err != nil {
		t.Fatal(err)
	}
	trips, statements := tr.Reset()
	want := []string{"UPDATE"}
	if trips != 1 || !slices.Equal(statements, want) {
		t.Fatalf("a refresh made %d round trips with %v; want 1 with %v", trips, statements, want)
	}
}

// The conformance suite passes through PgBouncer in transaction mode, with
// ?pooler=transaction (no prepared statements, the URL's session settings
// applied per transaction).
func TestConformanceThroughPgBouncer(t *testing.T) {
	b := pgtest.NewBouncer(t)
	storetest.Run(t, func(t *testing.T) storetest.Store { return b.New(t) })
}

// Behind PgBouncer the URL's session settings, which PgBouncer would
// refuse as startup parameters, still hold for every statement, in a
// transaction or not; a pooler value other than transaction is refused.
func TestPoolerTransactionAppliesSettings(t *testing.T) {
	if _, err := postgres.Open(context.Background(), "postgres://u@127.0.0.1/db?pooler=session"); err == nil || !strings.Contains(err.Error(), "pooler is transaction") {
		t.Errorf("pooler=session: %v; want it refused", err)
	}
	b := pgtest.NewBouncer(t)
	base := b.URL(t)
	ctx := context.Background()
	tests := []struct{ url, name, want string }{
		{base, "statement_timeout", "5s"}, // Latch's default
		{base + "&statement_timeout=1234", "statement_timeout", "1234ms"},
		{base, "idle_in_transaction_session_timeout", "10s"},
		{base, "TimeZone", "UTC"}, // forwarded by PgBouncer itself
		{base + "&application_name=node-a", "application_name", "node-a"},
	}
	for _, tt := range tests {
		s, err := postgres.Open(ctx, tt.url)
		if err != nil {
			t.Fatal(err)
		}
		outside, inside, err := s.Setting(ctx, tt.name)
		s.Close()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if outside != tt.want || inside != tt.want {
			t.Errorf("%s through PgBouncer: %q outside a transaction, %q inside; want %q", tt.name, outside, inside, tt.want)
		}
	}
	s := b.New(t)
	if _, err := s.Users(ctx); err != nil {
		t.Fatalf("a query on the test's schema (search_path) through PgBouncer: %v", err)
	}
	if !s.TransactionPooled() || pgtest.New(t).TransactionPooled() {
		t.Error("TransactionPooled does not follow pooler=transaction")
	}
}

// Through PgBouncer a refresh is still one round trip: the rotation's
// UPDATE travels inside BEGIN, the settings and COMMIT.
func TestRefreshRoundTripsThroughPgBouncer(t *testing.T) {
	tr := &pgtest.Tracer{}
	st := pgtest.NewBouncer(t).New(t, postgres.WithTracer(tr))
	env := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }})
	rt := env.Login(t, "count@example.com").RefreshToken
	env.Clock.Advance(time.Minute)
	tr.Reset()
	if _, err := env.Sessions.Refresh(context.Background(), session.RefreshRequest{Token: rt, Client: env.Client}); err != nil {
		t.Fatal(err)
	}
	trips, statements := tr.Reset()
	want := []string{"BEGIN", "SELECT", "UPDATE", "COMMIT"} // BEGIN, set_config, the rotation, COMMIT
	if trips != 1 || !slices.Equal(statements, want) {
		t.Fatalf("a refresh through PgBouncer made %d round trips with %v; want 1 with %v", trips, statements, want)
	}
}

// Behind a transaction-mode pooler the store does not LISTEN (the session
// it would listen on is handed to other clients); the feed polls, and says
// so once.
func TestNoListenBehindPgBouncer(t *testing.T) {
	s := pgtest.NewBouncer(t).New(t)
	logs := new(testenv.LogBuffer)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	var wakes atomic.Int64
	go func() {
		defer close(done)
		s.Listen(ctx, postgres.Changes{Connected: func(bool) { wakes.Add(1) }, Revoked: func(int64) { wakes.Add(1) }}, slog.New(slog.NewJSONHandler(logs, nil)))
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "polling only") {
		if time.Now().After(deadline) {
			t.Fatalf("no word that the feed only polls; log:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	if n := wakes.Load(); n != 0 {
		t.Fatalf("%d wakes without a LISTEN", n)
	}
}
