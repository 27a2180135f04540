package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// fillSweepable adds n sessions with SQL, one in staleEvery stale (idle
// since long before any cutoff), spread through the primary key, and
// returns how many are stale.
func fillSweepable(t testing.TB, s *postgres.Store, n, staleEvery int) int {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, `INSERT INTO users (id, email, password_hash, created_at, password_changed_at) VALUES ('sweep', 'sweep@example.com', '$argon2id$filler', now(), now())`); err != nil {
		t.Fatal(err)
	}
	fillChunks(t, s, n, fmt.Sprintf(`INSERT INTO sessions (id, user_id, client_id, created_at, last_used_at, idle_expires_at, gen, handed_at, rotated_at)
		 SELECT md5(g::text), 'sweep', 'app', now() - interval '90 days', now(),
		   CASE WHEN g %% %d = 0 THEN now() - interval '60 days' ELSE now() + interval '30 days' END, 1, now(), now()
		 FROM generate_series($1::int, $2::int) g`, staleEvery))
	if _, err := s.Pool().Exec(ctx, `ANALYZE sessions`); err != nil {
		t.Fatal(err)
	}
	return n / staleEvery
}

// rowsRead is how many sessions rows and index entries the server has read
// for the table so far. Statistics are flushed when a backend goes idle, at
// most once a second unless forced, so this forces the flush on the one
// connection of s (pool_max_conns=1) first.
func rowsRead(t *testing.T, s *postgres.Store) int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		t.Fatal(err)
	}
	var n int64
	err := s.Pool().QueryRow(ctx, `SELECT coalesce(seq_tup_read, 0) + coalesce((SELECT sum(idx_tup_read) FROM pg_stat_user_indexes i WHERE i.relid = t.relid), 0)
		FROM pg_stat_user_tables t WHERE relid = 'sessions'::regclass`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The sweeper reads each session row once, however many statements the
// backlog takes: here 100,000 rows, half of them stale, in 512-page ranges.
// Searching the table from its start for each batch of 5,000 deletes read
// the table 11.5 times over (1,150,025 rows and index entries).
func TestSweepReadsEachRowOnce(t *testing.T) {
	s, err := postgres.Open(context.Background(), withParam(pgtest.URL(t), "pool_max_conns", "1"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	const rows = 100_000
	stale := fillSweepable(t, s, rows, 2)
	before := rowsRead(t, s)
	now := time.Now()
	n, err := s.DeleteStale(context.Background(), now.Add(-7*24*time.Hour), now)
	if err != nil || n != int64(stale) {
		t.Fatalf("DeleteStale = %d, %v; want the %d stale sessions", n, err, stale)
	}
	read := rowsRead(t, s) - before
	t.Logf("sweeping %d of %d rows read %d rows and index entries (%.1f per row)", stale, rows, read, float64(read)/rows)
	if read > rows*3/2 {
		t.Fatalf("the sweep read %d rows and index entries for a %d-row table, want at most %d: it rescans", read, rows, rows*3/2)
	}
	var left int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM sessions`).Scan(&left); err != nil || left != rows-stale {
		t.Fatalf("%d sessions left (%v), want the %d live ones", left, err, rows-stale)
	}
}

// BenchmarkSweep is one sweep of a sessions table of each size where one
// row in ten is stale. The 10,000,000-row table takes LATCH_BENCH_HUGE=1
// (building it takes minutes):
//
//	LATCH_TEST_POSTGRES=… LATCH_BENCH_LARGE=1 go test -run '^$' -bench Sweep -benchtime 1x ./internal/store/postgres
func BenchmarkSweep(b *testing.B) {
	for _, total := range []int{10_000, 1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("sessions=%d", total), func(b *testing.B) {
			if total > 10_000 && os.Getenv(LargeEnv) == "" {
				b.Skip(LargeEnv + " is not set")
			}
			if total > 1_000_000 && os.Getenv(HugeEnv) == "" {
				b.Skip(HugeEnv + " is not set")
			}
			s := pgtest.New(b)
			for b.Loop() {
				b.StopTimer()
				s.Pool().Exec(context.Background(), `TRUNCATE sessions, users CASCADE`)
				stale := fillSweepable(b, s, total, 10)
				b.StartTimer()
				now := time.Now()
				n, err := s.DeleteStale(context.Background(), now.Add(-7*24*time.Hour), now)
				if err != nil || n != int64(stale) {
					b.Fatalf("DeleteStale = %d, %v; want %d", n, err, stale)
				}
			}
			b.ReportMetric(float64(total)/(b.Elapsed().Seconds()/float64(b.N)), "rows/s")
		})
	}
}

// withParam returns dbURL with the query parameter k set to v.
func withParam(dbURL, k, v string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}
