package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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
// the two pipelined statements of the rotation (BEGIN + SELECT … FOR UPDATE,
// then UPDATE + COMMIT) on a copy of the sessions table. One client, one
// request at a time, so each figure is the cost of one operation.
// cpu-µs/op is this process's CPU (getrusage) per operation: for the HTTP
// rows that is client and server together, for the statements the client
// side only (PostgreSQL's own CPU is not in it). The refresh row runs with
// metrics and a JSON access log, as latch serve does, but without serve's
// connection cap; docs/performance.md
// "Refresh at the floor" compares the refresh row with the sum of the parts.
//
//	LATCH_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench RefreshFloor -benchtime 3s ./internal/httpapi
func BenchmarkRefreshFloor(b *testing.B) {
	if testing.Short() {
		b.Skip("needs PostgreSQL")
	}
	b.Run("part=ed25519-sign", func(b *testing.B) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		msg := make([]byte, 420) // the signing input of an access token
		rand.Read(msg)
		measureCPU(b, func() { ed25519.Sign(priv, msg) })
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
		client := srv.Client()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"latch_rt_" + strings.Repeat("x", 100)}, "client_id": {"app"}}.Encode()
		measureCPU(b, func() {
			resp, err := client.Post(srv.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		})
	})
	b.Run("part=two-statements", func(b *testing.B) {
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
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		floorTable(b, conn)
		measureCPU(b, func() {
			// As the store sends a refresh: BEGIN travels with the locked
			// read, the update with COMMIT.
			first := &pgx.Batch{}
			first.Queue("BEGIN")
			first.Queue(`SELECT id, user_id, client_id, scope, created_at, last_used_at, user_agent, ip, expires_at, idle_expires_at, gen, parent_gen, handed_at, rotated_at, revoked_at, revoke_reason, rotated_ip, rotated_user_agent, dpop_jkt FROM floor_sessions WHERE id = $1 FOR UPDATE`, "floor-0")
			res := conn.SendBatch(ctx, first)
			if _, err := res.Exec(); err != nil {
				b.Fatal(err)
			}
			var (
				id, user, client, scope, ua, ip, reason, rip, rua, jkt string
				created, used, idle, handed, rotated                   time.Time
				expires, revoked                                       *time.Time
				gen, parent                                            int64
			)
			if err := res.QueryRow().Scan(&id, &user, &client, &scope, &created, &used, &ua, &ip, &expires, &idle, &gen, &parent, &handed, &rotated, &revoked, &reason, &rip, &rua, &jkt); err != nil {
				b.Fatal(err)
			}
			res.Close()
			now := time.Now()
			second := &pgx.Batch{}
			second.Queue(`UPDATE floor_sessions SET last_used_at = $1, user_agent = $2, ip = $3, idle_expires_at = $4, gen = $5, parent_gen = $6, handed_at = $7, rotated_at = $8, rotated_ip = $9, rotated_user_agent = $10 WHERE id = $11`,
				now, "bench", "127.0.0.1", now.Add(30*24*time.Hour), gen+1, gen, now, now, "127.0.0.1", "bench", id)
			second.Queue("COMMIT")
			if err := conn.SendBatch(ctx, second).Close(); err != nil {
				b.Fatal(err)
			}
		})
	})
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
		client := srv.Client()
		rt := env.Login(b, "floor@example.com").RefreshToken
		measureCPU(b, func() {
			resp, err := client.Post(srv.URL+"/oauth/token", "application/x-www-form-urlencoded",
				strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}.Encode()))
			if err != nil {
				b.Fatal(err)
			}
			var body struct {
				RefreshToken string `json:"refresh_token"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("refresh: %d %v", resp.StatusCode, err)
			}
			rt = body.RefreshToken
		})
	})
}

// floorTable makes floor_sessions, the sessions table's shape (columns,
// indexes, fillfactor) with one row.
func floorTable(b *testing.B, conn *pgx.Conn) {
	b.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE floor_sessions (LIKE sessions INCLUDING DEFAULTS INCLUDING INDEXES) WITH (fillfactor = 80)`,
		`INSERT INTO floor_sessions (id, user_id, client_id, created_at, last_used_at, idle_expires_at, gen, handed_at, rotated_at)
			VALUES ('floor-0', 'user', 'app', now(), now(), now() + interval '30 days', 1, now(), now())`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// measureCPU runs op b.N times and reports this process's CPU per op.
func measureCPU(b *testing.B, op func()) {
	b.Helper()
	op() // warm: connections, prepared statements
	var before, after syscall.Rusage
	b.ResetTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	for range b.N {
		op()
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	b.StopTimer()
	cpu := time.Duration(syscall.TimevalToNsec(after.Utime) - syscall.TimevalToNsec(before.Utime) +
		syscall.TimevalToNsec(after.Stime) - syscall.TimevalToNsec(before.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}
