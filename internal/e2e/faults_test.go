package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

func appName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "latch_e2e_" + hex.EncodeToString(b)
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// sessionState reads the refresh state a fault must not change.
func sessionState(t *testing.T, db *pgx.Conn, sid string) (gen int64, revoked bool) {
	t.Helper()
	var at *time.Time
	if err := db.QueryRow(context.Background(), `SELECT gen, revoked_at FROM sessions WHERE id = $1`, sid).Scan(&gen, &at); err != nil {
		t.Fatal(err)
	}
	return gen, at != nil
}

func wantUnavailable(t *testing.T, a answer, what string) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.Error != "temporarily_unavailable" || a.header.Get("Retry-After") == "" {
		t.Fatalf("%s: %d %q (Retry-After %q), want 503 temporarily_unavailable with Retry-After", what, a.status, a.Error, a.header.Get("Retry-After"))
	}
}

// A connection killed while the refresh waits for its row lock: the client
// gets a 503, the session is untouched, and the same token then works.
func TestBackendKilledMidRefresh(t *testing.T) {
	dbURL := pgtest.URL(t)
	app := appName()
	c := newCluster(t, dbURL)
	n := c.start(t, withParam(dbURL, "application_name", app))
	tok := n.signup(t, "kill@example.com")
	ctx := context.Background()
	db := connect(t, dbURL)

	// Hold the session's row lock so the refresh stops inside its
	// transaction, after its SELECT … FOR UPDATE was sent.
	holder := connect(t, dbURL)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE`, tok.SessionID); err != nil {
		t.Fatal(err)
	}
	got := make(chan answer, 1)
	go func() { got <- n.refresh(t, tok.RefreshToken) }()
	var killed bool
	eventually(t, 10*time.Second, "the refresh never waited on the row lock", func() bool {
		err := db.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&killed)
		return err == nil && killed
	})
	wantUnavailable(t, <-got, "refresh whose connection was killed")
	tx.Rollback(ctx)

	if gen, revoked := sessionState(t, db, tok.SessionID); gen != 1 || revoked {
		t.Fatalf("after the kill the session is gen %d, revoked %v; want untouched (gen 1, live)", gen, revoked)
	}
	// The pool replaces the dead connection; the client's retry works.
	var next tokens
	eventually(t, 10*time.Second, "refresh did not recover after the kill", func() bool {
		a := n.refresh(t, tok.RefreshToken)
		next = a.tokens
		return a.status == http.StatusOK
	})
	n.mustRefresh(t, next.RefreshToken)
}

// Backends killed at random while clients refresh: every client, keeping
// the client contract (retry a 503 with the same token), ends with a live
// session, and no session is revoked or forked.
func TestBackendsKilledUnderLoad(t *testing.T) {
	dbURL := pgtest.URL(t)
	app := appName()
	c := newCluster(t, dbURL)
	n := c.start(t, withParam(dbURL, "application_name", app))
	db := connect(t, dbURL)
	ctx := context.Background()

	const clients = 8
	rts := make([]string, clients)
	sids := make([]string, clients)
	for i := range clients {
		tok := n.signup(t, "load"+string(rune('a'+i))+"@example.com")
		rts[i], sids[i] = tok.RefreshToken, tok.SessionID
	}
	stop := make(chan struct{})
	var kills, unavailable, ok atomic.Int64
	var killer sync.WaitGroup
	killer.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var k int64
			if db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'`, app).Scan(&k) == nil {
				kills.Add(k)
			}
		}
	})
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				a := n.refresh(t, rts[i])
				switch a.status {
				case http.StatusOK:
					rts[i] = a.RefreshToken
					ok.Add(1)
				case http.StatusServiceUnavailable:
					unavailable.Add(1) // retry with the same token
				default:
					t.Errorf("client %d: %d %s; a fault must never end a session", i, a.status, a.Error)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	killer.Wait()
	t.Logf("%d refreshes, %d answered 503, %d backends killed", ok.Load(), unavailable.Load(), kills.Load())
	for i := range clients {
		if _, revoked := sessionState(t, db, sids[i]); revoked {
			t.Fatalf("client %d's session was revoked by a fault", i)
		}
		eventually(t, 10*time.Second, "a client could not refresh after the faults", func() bool {
			a := n.refresh(t, rts[i])
			if a.status == http.StatusOK {
				rts[i] = a.RefreshToken
			}
			return a.status == http.StatusOK
		})
	}
}

// proxy forwards TCP to PostgreSQL until cut: then it drops every open
// connection and refuses new ones (closes them at once), as an unreachable
// database looks to the node.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// cut makes the database unreachable; restore brings it back.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// The database unreachable for a while: refresh answers 503 with a clear
// code, /readyz reports it, nothing is revoked, and service resumes on its
// own when the database is back.
func TestDatabaseUnreachable(t *testing.T) {
	dbURL := pgtest.URL(t)
	u, _ := url.Parse(dbURL)
	p := newProxy(t, u.Host)
	viaProxy := *u
	viaProxy.Host = p.ln.Addr().String()
	c := newCluster(t, dbURL)
	n := c.start(t, viaProxy.String())
	tok := n.signup(t, "outage@example.com")
	if status, _ := n.get(t, "/readyz"); status != http.StatusOK {
		t.Fatalf("readyz before the outage: %d", status)
	}

	p.cut()
	for range 3 {
		wantUnavailable(t, n.refresh(t, tok.RefreshToken), "refresh during the outage")
	}
	if status, body := n.get(t, "/readyz"); status != http.StatusServiceUnavailable {
		t.Fatalf("readyz during the outage: %d %s, want 503", status, body)
	}
	if status, _ := n.get(t, "/healthz"); status != http.StatusOK {
		t.Fatalf("healthz during the outage: %d; the process is alive and should say so", status)
	}
	// Login, logout and password change fail the same way, and change
	// nothing (docs/security.md OPS-05).
	jsonReq := func(path, body, bearer string) answer {
		req, _ := http.NewRequest("POST", n.base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		return do(t, req)
	}
	wantUnavailable(t, jsonReq("/v1/login", `{"email":"outage@example.com","password":"correct horse battery staple"}`, ""), "login during the outage")
	wantUnavailable(t, jsonReq("/v1/logout", `{"scope":"all"}`, tok.AccessToken), "logout during the outage")
	wantUnavailable(t, jsonReq("/v1/password", `{"current_password":"correct horse battery staple","new_password":"another long passphrase"}`, tok.AccessToken), "password change during the outage")
	time.Sleep(time.Second) // a while
	p.restore()

	eventually(t, 15*time.Second, "readyz never recovered", func() bool {
		status, _ := n.get(t, "/readyz")
		return status == http.StatusOK
	})
	// The refreshes that failed changed nothing: the same token rotates.
	n.mustRefresh(t, tok.RefreshToken)
	db := connect(t, dbURL)
	if gen, revoked := sessionState(t, db, tok.SessionID); gen != 2 || revoked {
		t.Fatalf("after the outage the session is gen %d, revoked %v; want one rotation, live", gen, revoked)
	}
	// The password did not change either.
	req, _ := http.NewRequest("POST", n.base+"/v1/login", strings.NewReader(`{"email":"outage@example.com","password":"correct horse battery staple"}`))
	req.Header.Set("Content-Type", "application/json")
	if a := do(t, req); a.status != http.StatusOK {
		t.Fatalf("login with the old password after the outage: %d %s", a.status, a.Error)
	}
}
