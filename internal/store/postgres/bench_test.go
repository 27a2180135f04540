package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// LargeEnv turns on the 1,000,000-session variants of BenchmarkRefreshTableSize
// and BenchmarkSweep; HugeEnv, with it, the 10,000,000-session ones.
const (
	LargeEnv = "LATCH_BENCH_LARGE"
	HugeEnv  = "LATCH_BENCH_HUGE"
)

// BenchmarkRefreshTableSize measures refresh latency (the service's
// Refresh: lock the session row, rotate, sign) with 16 concurrent callers
// when the sessions table holds 1,000 and 10,000 rows and, with
// LATCH_BENCH_LARGE=1, 1,000,000 (and with LATCH_BENCH_HUGE=1 too,
// 10,000,000). The rows beyond the refreshed ones are filler loaded with
// SQL, for table and index size; the refreshed sessions are created
// through the service, so their tokens are valid. Compare the p99s:
//
//	LATCH_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable LATCH_BENCH_LARGE=1 \
//	  go test -run '^$' -bench RefreshTableSize -benchtime 20000x ./internal/store/postgres
func BenchmarkRefreshTableSize(b *testing.B) {
	for _, total := range []int{1_000, 10_000, 1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("sessions=%d", total), func(b *testing.B) {
			if total > 10_000 && os.Getenv(LargeEnv) == "" {
				b.Skip(LargeEnv + " is not set")
			}
			if total > 1_000_000 && os.Getenv(HugeEnv) == "" {
				b.Skip(HugeEnv + " is not set")
			}
			benchRefresh(b, total, func(t testing.TB) *postgres.Store { return pgtest.New(t) })
		})
	}
}

// BenchmarkRefreshPgBouncer is BenchmarkRefreshTableSize on the 256
// refreshed sessions alone, straight to PostgreSQL and through PgBouncer
// in transaction mode (?pooler=transaction), for what the pooler costs:
//
//	for i in 1 2 3; do
//	  LATCH_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' LATCH_TEST_PGBOUNCER=1 \
//	    go test -run '^$' -bench RefreshPgBouncer -benchtime 20000x -count 1 ./internal/store/postgres
//	done
//
// (rounds, not -count 3, so the three ways share the machine's load;
// docs/deployment.md has the numbers).
func BenchmarkRefreshPgBouncer(b *testing.B) {
	b.Run("via=direct", func(b *testing.B) {
		benchRefresh(b, 0, func(t testing.TB) *postgres.Store { return pgtest.New(t) })
	})
	// The pooled mode's own cost (no prepared statements, the settings
	// sent in each transaction) without the extra hop.
	b.Run("via=direct,pooler=transaction", func(b *testing.B) {
		benchRefresh(b, 0, func(t testing.TB) *postgres.Store {
			s, err := postgres.Open(context.Background(), pgtest.URL(t)+"&pooler=transaction")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if _, err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	b.Run("via=pgbouncer", func(b *testing.B) {
		bouncer := pgtest.NewBouncer(b)
		benchRefresh(b, 0, func(t testing.TB) *postgres.Store { return bouncer.New(t) })
	})
}

// benchRefresh runs b.N refreshes from 16 concurrent callers on a store
// whose sessions table holds total rows (at least the 256 refreshed), and
// reports refresh/s, p50 and p99.
func benchRefresh(b *testing.B, total int, open func(testing.TB) *postgres.Store) {
	const clients, perClient = 16, 16
	var store *postgres.Store
	env := testenv.New(b, testenv.Options{RealClock: true, Store: func(t testing.TB) testenv.Store {
		store = open(t)
		return store
	}})
	ctx := context.Background()
	tokens := make([][]string, clients)
	for c := range tokens {
		for i := range perClient {
			tokens[c] = append(tokens[c], env.Login(b, fmt.Sprintf("c%d-%d@example.com", c, i)).RefreshToken)
		}
	}
	fillSessions(b, store, total-clients*perClient)
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for i := 0; next.Add(1) <= int64(b.N); i = (i + 1) % perClient {
				t0 := time.Now()
				got, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tokens[c][i], Client: env.Client})
				if err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
				tokens[c][i] = got.RefreshToken
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	testenv.ReportLatency(b, lat, elapsed, "refresh/s")
}

// fillSessions adds n live sessions (four per filler user) with SQL, then
// ANALYZEs, so the planner sees the table as it is.
func fillSessions(b *testing.B, s *postgres.Store, n int) {
	b.Helper()
	if n <= 0 {
		return
	}
	t0 := time.Now()
	users := (n + 3) / 4
	fillChunks(b, s, users, `INSERT INTO users (id, email, password_hash, created_at, password_changed_at)
		 SELECT 'fu' || g, 'filler' || g || '@example.com', '$argon2id$filler', now(), now()
		 FROM generate_series($1::int, $2::int) g`)
	fillChunks(b, s, n, `INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_used_at, user_agent, ip,
		   idle_expires_at, gen, parent_gen, handed_at, rotated_at)
		 SELECT md5(g::text), 'fu' || (1 + g % `+fmt.Sprint(users)+`), 'app', 'profile', now() - interval '1 day', now(), 'bench/1.0', '127.0.0.1',
		   now() + interval '30 days', 1 + g % 7, g % 7, now(), now()
		 FROM generate_series($1::int, $2::int) g`)
	ctx := context.Background()
	for _, q := range []string{`ANALYZE users`, `ANALYZE sessions`} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	var rows int64
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&rows); err != nil {
		b.Fatal(err)
	}
	b.Logf("sessions table: %d rows (filled in %s)", rows, time.Since(t0).Round(time.Millisecond))
}

// fillChunks runs insert, an INSERT … SELECT over generate_series($1, $2),
// for 1..n in transactions of 100,000 rows without the store's statement
// timeout. Not one transaction: the database server is shared, and a
// transaction open for minutes would hold back the revocation feed of
// every other test on it (a feed reader returns only entries below its
// snapshot's xmin).
func fillChunks(t testing.TB, s *postgres.Store, n int, insert string) {
	t.Helper()
	ctx := context.Background()
	const chunk = 100_000
	for from := 1; from <= n; from += chunk {
		err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, insert, from, min(from+chunk-1, n))
			return err
		})
		if err != nil {
			t.Fatalf("filling rows %d–%d: %v", from, min(from+chunk-1, n), err)
		}
	}
}
