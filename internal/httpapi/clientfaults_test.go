package httpapi_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/metrics"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// faultStack is a stack on one store, served by a real http.Server with a
// 1 s read timeout, with Latch's metrics and a log to read.
type faultStack struct {
	env  *testenv.Env
	srv  *httptest.Server
	logs *testenv.LogBuffer
	// lock holds the session row of a refresh token (or the whole
	// database, on SQLite) until release is called, so that a refresh of
	// it waits in storage.
	lock func(t *testing.T, sid string) (release func())
}

func newFaultStack(t *testing.T, store string) *faultStack {
	t.Helper()
	m := metrics.New()
	logs := &testenv.LogBuffer{}
	o := testenv.Options{Observer: m, Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		API: func(c *httpapi.Config) { c.Observer, c.Metrics, c.MaxInFlight = m, m.Handler(), 64 }}
	fs := &faultStack{logs: logs}
	switch store {
	case "postgres":
		st := pgtest.New(t)
		o.Store = func(testing.TB) testenv.Store { return st }
		fs.lock = func(t *testing.T, sid string) func() {
			tx, err := st.Pool().Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(t.Context(), `SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE`, sid); err != nil {
				t.Fatal(err)
			}
			return sync.OnceFunc(func() { tx.Rollback(context.Background()) })
		}
	default:
		o.Dir = t.TempDir()
		newFaultStackLock(fs, o.Dir)
	}
	fs.env = testenv.New(t, o)
	fs.srv = httptest.NewUnstartedServer(fs.env.Handler)
	fs.srv.Config.ReadTimeout = time.Second
	fs.srv.Start()
	t.Cleanup(fs.srv.Close)
	return fs
}

// newFaultStackLock sets fs.lock for the SQLite database in dir: another
// process's writer, whose BEGIN IMMEDIATE holds SQLite's write lock, so the
// server's transactions wait for it.
func newFaultStackLock(fs *faultStack, dir string) {
	fs.lock = func(t *testing.T, _ string) func() {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "latch.db")+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		return sync.OnceFunc(func() { conn.ExecContext(context.Background(), "ROLLBACK"); conn.Close(); db.Close() })
	}
}

// raw sends head and then body on a fresh connection, body in pieces of
// size chunk every gap (all at once when chunk is 0), half-closes, and
// reads the answer.
func (fs *faultStack) raw(t *testing.T, head, body string, chunk int, gap time.Duration) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(fs.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, head)
	for chunk > 0 && len(body) > 0 {
		n := min(chunk, len(body))
		if _, err := io.WriteString(c, body[:n]); err != nil {
			break // the server gave up on us
		}
		body = body[n:]
		time.Sleep(gap) // a slow sender, not goroutine ordering
	}
	if chunk == 0 {
		io.WriteString(c, body)
		c.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error
}

// scrape returns the metrics page.
func (fs *faultStack) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(fs.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (fs *faultStack) noErrorLogs(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(fs.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("a client's fault logged at ERROR: %s", line)
		}
	}
}

// TestClientFaults: a truncated body is 400, a body that trickles in
// slower than the read timeout is 408, and a client that hangs up while
// its refresh waits in storage gets no answer and counts as client_gone,
// never as a 5xx or "unavailable"; none of them logs at ERROR. On both
// stores.
func TestClientFaults(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			if store == "postgres" {
				pgtest.URL(t) // skips without a database
			}
			fs := newFaultStack(t, store)
			tok := fs.env.Login(t, "faults@example.com")
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app"}}.Encode()
			head := func(n int) string {
				return "POST /oauth/token HTTP/1.1\r\nHost: latch.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
					strconv.Itoa(n) + "\r\n\r\n"
			}

			if status, code := fs.raw(t, head(len(form)+50), form, 0, 0); status != http.StatusBadRequest || code != "invalid_request" {
				t.Errorf("truncated body: %d %s, want 400 invalid_request", status, code)
			}
			start := time.Now()
			if status, code := fs.raw(t, head(len(form)), form, 1, 200*time.Millisecond); status != http.StatusRequestTimeout || code != "request_timeout" {
				t.Errorf("body at 5 bytes a second: %d %s, want 408 request_timeout", status, code)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("the slow body was answered after %s; the read timeout is 1s", d)
			}

			// A client that gives up while its refresh waits for the row.
			// (A refused refresh first puts the client in the service's
			// cache, so the request goes straight to the refresh.)
			if r := postForm(t, fs.srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"latch_rt_x"}, "client_id": {"app"}}); r.Status != http.StatusBadRequest {
				t.Fatalf("refused refresh: %s", r)
			}
			release := fs.lock(t, tok.SessionID)
			t.Cleanup(release) // before the server's: a failure must not leave its handler blocked
			ctx, cancel := context.WithCancel(t.Context())
			r, _ := http.NewRequestWithContext(ctx, http.MethodPost, fs.srv.URL+"/oauth/token", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			done := make(chan error, 1)
			go func() {
				resp, err := http.DefaultClient.Do(r)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			// In the handler (and then in storage, behind the lock); a
			// cancel that comes before the storage call fails it at once,
			// which is the same case.
			waitFor(t, func() bool { return fs.env.API.InFlight() == 1 }, fs.logs.String)
			cancel()
			<-done
			waitFor(t, func() bool { return strings.Contains(fs.scrape(t), `latch_refreshes_total{outcome="client_gone"} 1`) }, fs.logs.String)
			release()
			page := fs.scrape(t)
			for _, bad := range []string{`latch_refreshes_total{outcome="unavailable"} 1`, `code="500"`, `code="503"`} {
				if strings.Contains(page, bad) {
					t.Errorf("metrics hold %s", bad)
				}
			}
			if !strings.Contains(page, `code="client_gone"`) {
				t.Error("no request counted with code client_gone")
			}
			fs.noErrorLogs(t)
			// The session is untouched: its refresh token still works.
			if r := postForm(t, fs.srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app"}}); r.Status != http.StatusOK {
				t.Fatalf("refresh after the faults: %s", r)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool, logs func() string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached in 15s; log:\n%s", logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShedding: over MaxInFlight a request is answered 503 with
// Retry-After at once; a transaction that cannot get SQLite's single
// writer within the acquire wait (250 ms) is 503 too, not a queue; and
// once the load is gone, requests are served again at once.
func TestShedding(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	dir := t.TempDir()
	env := testenv.New(t, testenv.Options{Dir: dir, Observer: m, AcquireWait: 250 * time.Millisecond,
		API: func(c *httpapi.Config) { c.Observer, c.Metrics, c.MaxInFlight = m, m.Handler(), 2 }})
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	fs := &faultStack{env: env, srv: srv, logs: &testenv.LogBuffer{}}
	newFaultStackLock(fs, dir)
	a, b := env.Login(t, "a@example.com"), env.Login(t, "b@example.com")
	refresh := func(tok string) reply {
		return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}, "client_id": {"app"}})
	}
	release := fs.lock(t, "")
	t.Cleanup(release)
	// First request: takes the writer, and waits behind the other
	// process's lock.
	first := make(chan reply, 1)
	go func() { first <- refresh(a.RefreshToken) }()
	waitFor(t, func() bool { return env.API.InFlight() == 1 }, fs.logs.String)
	// Second: admitted (2 in flight), but the writer is not free within
	// the acquire wait.
	start := time.Now()
	if r := refresh(b.RefreshToken); r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("waiting for the writer: %s (Retry-After %q), want 503 with Retry-After", r, r.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("shed after %s; the acquire wait is 250ms", d)
	}
	// Third, while two are in flight: refused at once.
	second := make(chan reply, 1)
	go func() { second <- refresh(b.RefreshToken) }()
	waitFor(t, func() bool { return env.API.InFlight() == 2 }, fs.logs.String)
	start = time.Now()
	r := get(t, srv, "/v1/sessions", a.AccessToken)
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the in-flight cap: %s, want 503 with Retry-After: 1", r)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("the in-flight cap answered after %s", d)
	}
	if page := fs.scrape(t); !strings.Contains(page, `latch_http_shed_total{reason="in_flight"} 1`) {
		t.Error(`latch_http_shed_total{reason="in_flight"} is not 1`)
	}
	// Recovery: the lock goes, the waiting request is served, and the next
	// ones are at once.
	release()
	if r := <-first; r.Status != http.StatusOK {
		t.Errorf("the request that waited: %s", r)
	}
	<-second // 200 or 503, by whether it reached the writer in time
	if r := get(t, srv, "/v1/sessions", a.AccessToken); r.Status != http.StatusOK {
		t.Errorf("after the load: %s", r)
	}
}
