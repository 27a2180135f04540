package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	rtmetrics "runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/metrics"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// BenchmarkRefreshFloor measures, in one run, a refresh through POST
// /oauth/token on PostgreSQL and the parts of it that no implementation can
// avoid: one Ed25519 signature, one HTTP round trip of the same size over a
// keep-alive loopback connection to a handler that does nothing else, and
// the rotation's statements on a copy of the sessions table: the one
// conditional UPDATE of the current token, and the two pipelined round
// trips (BEGIN + SELECT … FOR UPDATE, then UPDATE + COMMIT) of every other
// case. Every row runs 16
// workers at once, as the refresh load of docs/performance.md does (served
// one at a time, each operation would also pay the scheduler's wake-ups and
// a commit's own fsync, and the figures would follow the disk).
// cpu-µs/op is this process's CPU (getrusage) per operation: for the HTTP
// rows that is client and server together, for the statements the client
// side only (PostgreSQL's own CPU is not in it); gc-cpu-µs/op is the Go
// collector's part of it (runtime/metrics), which follows GOGC and
// GOMEMLIMIT as latch serve sets them (docs/operations.md). The refresh row runs with
// metrics and a JSON access log, as latch serve does, but without serve's
// connection cap; docs/performance.md "Refresh and login at the floor" compares it
// with the sum of the parts.
//
//	LATCH_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench RefreshFloor -benchtime 20000x ./internal/httpapi
func BenchmarkRefreshFloor(b *testing.B) {
	const workers = 16
	b.Run("part=ed25519-sign", func(b *testing.B) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		msg := make([]byte, 420) // the signing input of an access token
		rand.Read(msg)
		measureCPU(b, workers, func(int) { ed25519.Sign(priv, msg) })
	})
	b.Run("part=http-roundtrip", func(b *testing.B) {
		answer := make([]byte, 716) // a refresh's answer
		for i := range answer {
			answer[i] = 'x'
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil || r.PostForm.Get("refresh_token") == "" {
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(answer)
		}))
		defer srv.Close()
		client := keepAlive(workers)
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"latch_rt_" + strings.Repeat("x", 100)}, "client_id": {"app"}}.Encode()
		measureCPU(b, workers, func(int) {
			resp, err := client.Post(srv.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
			}
		})
	})
	for _, part := range []struct {
		name   string
		rotate func(context.Context, *pgx.Conn, string) error
	}{
		{"part=one-statement", rotateRowInOne},
		{"part=two-statements", rotateRow},
	} {
		b.Run(part.name, func(b *testing.B) { benchStatements(b, workers, part.rotate) })
	}
	b.Run("refresh", func(b *testing.B) {
		// As latch serve runs it: metrics on, a JSON access line per
		// request (to io.Discard here: serve batches its writes).
		m := metrics.New()
		env := testenv.New(b, testenv.Options{RealClock: true, Observer: m,
			Log:       slog.New(slog.NewJSONHandler(io.Discard, nil)),
			WrapStore: func(s session.Store) session.Store { return m.TimeStore(s) },
			API:       func(c *httpapi.Config) { c.Observer = m; c.Metrics = m.Handler() },
			Store:     func(t testing.TB) testenv.Store { return pgtest.New(t) }})
		srv := httptest.NewServer(env.Handler)
		defer srv.Close()
		client := keepAlive(workers)
		rts := make([]string, workers)
		for i := range rts {
			rts[i] = env.Login(b, fmt.Sprintf("floor%d@example.com", i)).RefreshToken
		}
		measureCPU(b, workers, func(w int) {
			rt, err := refreshOnce(client, srv.URL, rts[w])
			if err != nil {
				b.Error(err)
				return
			}
			rts[w] = rt
		})
	})
}

// benchStatements runs rotate on a copy of the sessions table, one row
// and one connection per worker.
func benchStatements(b *testing.B, workers int, rotate func(context.Context, *pgx.Conn, string) error) {
	ctx := context.Background()
	u := pgtest.URL(b)
	st, err := postgres.Open(ctx, u) // the migrated schema: the sessions table to copy
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	st.Close()
	conns := make([]*pgx.Conn, workers)
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, u); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close(ctx)
	}
	floorTable(b, conns[0], workers)
	measureCPU(b, workers, func(w int) {
		if err := rotate(ctx, conns[w], fmt.Sprintf("floor-%d", w)); err != nil {
			b.Error(err)
		}
	})
}

// rotateRowInOne is the one-statement rotation of the current token, as
// the store sends it (postgres.Store.RotateSession): one round trip. The
// benchmark does not follow the generation (gen >= 1 instead of the
// presented one); the condition costs the same.
func rotateRowInOne(ctx context.Context, conn *pgx.Conn, id string) error {
	var (
		sid, user, client, scope, ua, ip, reason, rip, rua, jkt string
		created, used, idle, handed, rotated                    time.Time
		expires, revoked                                        *time.Time
		gen, parent                                             int64
	)
	now := time.Now()
	return conn.QueryRow(ctx, `UPDATE floor_sessions SET parent_gen = gen, gen = gen + 1, rotated_at = $5, handed_at = GREATEST(handed_at, $5), last_used_at = $5,
  idle_expires_at = $6, ip = $7, rotated_ip = $7, user_agent = $8, rotated_user_agent = $8
WHERE id = (SELECT id FROM floor_sessions WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED) AND gen >= $2 AND client_id = $3 AND dpop_jkt IN ('', $4)
  AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5) AND idle_expires_at > $5
RETURNING id, user_id, client_id, scope, created_at, last_used_at, user_agent, ip, expires_at, idle_expires_at, gen, parent_gen, handed_at, rotated_at, revoked_at, revoke_reason, rotated_ip, rotated_user_agent, dpop_jkt`,
		id, 1, "app", "", now, now.Add(30*24*time.Hour), "127.0.0.1", "bench").
		Scan(&sid, &user, &client, &scope, &created, &used, &ua, &ip, &expires, &idle, &gen, &parent, &handed, &rotated, &revoked, &reason, &rip, &rua, &jkt)
}

// rotateRow is the rotation's two round trips, as the store sends them:
// BEGIN travels with the locked read, the update with COMMIT.
func rotateRow(ctx context.Context, conn *pgx.Conn, id string) error {
	first := &pgx.Batch{}
	first.Queue("BEGIN")
	first.Queue(`SELECT id, user_id, client_id, scope, created_at, last_used_at, user_agent, ip, expires_at, idle_expires_at, gen, parent_gen, handed_at, rotated_at, revoked_at, revoke_reason, rotated_ip, rotated_user_agent, dpop_jkt FROM floor_sessions WHERE id = $1 FOR UPDATE`, id)
	res := conn.SendBatch(ctx, first)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return err
	}
	var (
		sid, user, client, scope, ua, ip, reason, rip, rua, jkt string
		created, used, idle, handed, rotated                    time.Time
		expires, revoked                                        *time.Time
		gen, parent                                             int64
	)
	if err := res.QueryRow().Scan(&sid, &user, &client, &scope, &created, &used, &ua, &ip, &expires, &idle, &gen, &parent, &handed, &rotated, &revoked, &reason, &rip, &rua, &jkt); err != nil {
		res.Close()
		return err
	}
	if err := res.Close(); err != nil {
		return err
	}
	now := time.Now()
	second := &pgx.Batch{}
	second.Queue(`UPDATE floor_sessions SET last_used_at = $1, user_agent = $2, ip = $3, idle_expires_at = $4, gen = $5, parent_gen = $6, handed_at = $7, rotated_at = $8, rotated_ip = $9, rotated_user_agent = $10 WHERE id = $11`,
		now, "bench", "127.0.0.1", now.Add(30*24*time.Hour), gen+1, gen, now, now, "127.0.0.1", "bench", sid)
	second.Queue("COMMIT")
	return conn.SendBatch(ctx, second).Close()
}

// refreshOnce sends one refresh of rt to the server at base and returns
// its successor.
func refreshOnce(client *http.Client, base, rt string) (string, error) {
	resp, err := client.Post(base+"/oauth/token", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}.Encode()))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("refresh: %d %v", resp.StatusCode, err)
	}
	return body.RefreshToken, nil
}

// keepAlive is a client that keeps a connection per worker.
func keepAlive(workers int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxIdleConns: workers}}
}

// floorTable makes floor_sessions, the sessions table's shape (columns,
// indexes, fillfactor) with rows floor-0 … floor-(n-1).
func floorTable(b *testing.B, conn *pgx.Conn, n int) {
	b.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE floor_sessions (LIKE sessions INCLUDING DEFAULTS INCLUDING INDEXES) WITH (fillfactor = 80)`,
		fmt.Sprintf(`INSERT INTO floor_sessions (id, user_id, client_id, created_at, last_used_at, idle_expires_at, gen, handed_at, rotated_at)
			SELECT 'floor-' || i, 'user', 'app', now(), now(), now() + interval '30 days', 1, now(), now() FROM generate_series(0, %d) AS i`, n-1),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// measureCPU runs op b.N times over workers goroutines (op gets the
// worker's index) and reports this process's CPU per op and the rate.
func measureCPU(b *testing.B, workers int, op func(worker int)) {
	b.Helper()
	for w := range workers {
		op(w) // warm: connections, prepared statements
	}
	var before, after syscall.Rusage
	gc := []rtmetrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	rtmetrics.Read(gc)
	gcBefore := gc[0].Value.Float64()
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				op(w)
			}
		})
	}
	wg.Wait()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	rtmetrics.Read(gc)
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := time.Duration(syscall.TimevalToNsec(after.Utime) - syscall.TimevalToNsec(before.Utime) +
		syscall.TimevalToNsec(after.Stime) - syscall.TimevalToNsec(before.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric((gc[0].Value.Float64()-gcBefore)*1e6/float64(b.N), "gc-cpu-µs/op")
}
