package e2e_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// The measurements of docs/operations.md: what each fault does to clients
// that keep the contract (refresh, and on a 503 or a broken connection try
// again with the same token after 20 ms, through the other node if there
// is one), and how long until every one of them is served again.

// fleet is clients refreshing in a loop, each its own session.
type fleet struct {
	mu      sync.Mutex
	clients []*fleetClient
	stop    chan struct{}
	wg      sync.WaitGroup
}

type fleetClient struct {
	rt, sid string
	oks     []time.Time // when each 200 arrived
	failed  int         // 503s and transport errors, retried with the same token
	other   []string    // anything else (a 400 would be a false logout)
}

var fleetHTTP = &http.Client{Timeout: 2 * time.Second}

// newFleet signs up n clients through first and starts them refreshing
// through nodes (the first that answers; on failure the next).
func newFleet(t *testing.T, n int, first *node, nodes func() []*node) *fleet {
	f := &fleet{stop: make(chan struct{})}
	for i := range n {
		tok := first.signup(t, fmt.Sprintf("fleet%d-%d@example.com", i, time.Now().UnixNano()))
		f.clients = append(f.clients, &fleetClient{rt: tok.RefreshToken, sid: tok.SessionID})
	}
	for i, c := range f.clients {
		f.wg.Go(func() {
			for k := i; ; k++ {
				select {
				case <-f.stop:
					return
				default:
				}
				ns := nodes()
				nd := ns[k%len(ns)]
				resp, err := fleetHTTP.Do(nd.refreshReq(c.rt))
				var a answer
				if err == nil {
					a.status = resp.StatusCode
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					json.Unmarshal(b, &a.tokens)
				}
				f.mu.Lock()
				switch {
				case err == nil && a.status == http.StatusOK:
					c.rt = a.RefreshToken
					c.oks = append(c.oks, time.Now())
				case err != nil || a.status == http.StatusServiceUnavailable:
					c.failed++
				default:
					c.other = append(c.other, fmt.Sprintf("%d %s", a.status, a.Error))
				}
				f.mu.Unlock()
				if err != nil || a.status != http.StatusOK {
					time.Sleep(20 * time.Millisecond) // the contract's pause, not goroutine ordering
				}
			}
		})
	}
	return f
}

// halt stops the clients.
func (f *fleet) halt() { close(f.stop); f.wg.Wait() }

// recovery reports, for a fault at t0, when the first client was served
// again after it and when the last one was (its first 200 after t0), and
// the failed attempts; it fails the test on any answer but 200 and 503.
func (f *fleet) recovery(t *testing.T, t0 time.Time) (first, all time.Duration, failed int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	first = time.Hour
	for _, c := range f.clients {
		if len(c.other) > 0 {
			t.Errorf("client %s: answers %v; a fault must never log a client out", c.sid, c.other)
		}
		failed += c.failed
		var mine time.Duration = -1
		for _, ok := range c.oks {
			if ok.After(t0) {
				mine = ok.Sub(t0)
				break
			}
		}
		if mine < 0 {
			t.Errorf("client %s never served after the fault", c.sid)
			continue
		}
		first, all = min(first, mine), max(all, mine)
	}
	return first, all, failed
}

// longestGap is the longest a client went without a 200 from the fault at
// t0 on: between two of its 200s (the first from its last before t0).
func (f *fleet) longestGap(t0 time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gap time.Duration
	for _, c := range f.clients {
		prev := t0
		for _, ok := range c.oks {
			if ok.After(t0) {
				gap = max(gap, ok.Sub(prev))
			}
			prev = ok
		}
	}
	return gap
}

// waitAll waits until every client has been served after t0.
func (f *fleet) waitAll(t *testing.T, t0 time.Time, d time.Duration) {
	t.Helper()
	eventually(t, d, "every client served again", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.clients {
			if len(c.oks) == 0 || !c.oks[len(c.oks)-1].After(t0) {
				return false
			}
		}
		return true
	})
}

func revokedCount(t *testing.T, dbURL string) int {
	t.Helper()
	var n int
	if err := connect(t, dbURL).QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOpsNodeKilled: kill -9 of one of two nodes under load. Clients move
// to the other node; none is logged out; the node restarts and serves.
func TestOpsNodeKilled(t *testing.T) {
	dbURL := pgtest.URL(t)
	c := newCluster(t, dbURL)
	a, b := c.start(t, ""), c.start(t, "")
	var mu sync.Mutex
	live := []*node{a, b}
	f := newFleet(t, 16, a, func() []*node { mu.Lock(); defer mu.Unlock(); return live })
	time.Sleep(time.Second) // load before the fault
	t0 := time.Now()
	a.cmd.Process.Signal(syscall.SIGKILL)
	f.waitAll(t, t0, 15*time.Second)
	first, all, failed := f.recovery(t, t0)
	gap := f.longestGap(t0)
	restart := time.Now()
	a2 := c.start(t, "")
	served := time.Since(restart)
	mu.Lock()
	live = []*node{a2, b}
	mu.Unlock()
	t1 := time.Now()
	f.waitAll(t, t1, 15*time.Second)
	f.halt()
	if n := revokedCount(t, dbURL); n != 0 {
		t.Errorf("%d sessions revoked", n)
	}
	t.Logf("kill -9 of one of two nodes, 16 clients: every client served again %s after the kill (first %s); the longest a client went without a 200: %s; %d attempts failed and were retried on the other node; the node restarted and served in %s",
		all.Round(time.Millisecond), first.Round(time.Millisecond), gap.Round(time.Millisecond), failed, served.Round(time.Millisecond))
}

// TestOpsDatabaseRestart: PostgreSQL restarted (fast, then immediate: a
// crash) under load, on a private server (the shared one serves other
// tests). Requests in the gap answer 503; nobody is logged out.
func TestOpsDatabaseRestart(t *testing.T) {
	if os.Getenv(FailoverEnv) != "1" {
		t.Skip(FailoverEnv + " is not 1; skipping (it runs its own PostgreSQL server)")
	}
	if latchBin == "" {
		t.Skip("the e2e binary is built only with LATCH_TEST_POSTGRES set")
	}
	pg := newPGCluster(t)
	dir := pg.dataDir("restart")
	pg.run("initdb", "-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	srv := pg.start(dir, "fsync=off")
	conn := connect(t, srv.url("postgres"))
	if _, err := conn.Exec(context.Background(), `CREATE DATABASE latch`); err != nil {
		t.Fatal(err)
	}
	dbURL := srv.url("latch")
	c := newCluster(t, dbURL)
	n := c.start(t, "")
	f := newFleet(t, 16, n, func() []*node { return []*node{n} })
	time.Sleep(time.Second)
	for _, mode := range []string{"fast", "immediate"} {
		t0 := time.Now()
		if out, err := pg.command("pg_ctl", "-D", dir, "-m", mode, "-w", "stop").CombinedOutput(); err != nil {
			t.Fatalf("pg_ctl stop: %v\n%s", err, out)
		}
		<-srv.done
		srv = pg.startOn(dir, srv.port, "fsync=off")
		upAt := time.Now()
		f.waitAll(t, upAt, 20*time.Second)
		_, all, failed := f.recovery(t, upAt)
		t.Logf("PostgreSQL stop -m %s, then start, 16 clients on one node: the server accepted connections again %s after the stop began; every client was served %s after that; the longest a client went without a 200: %s; %d attempts answered 503 (or cut) and retried",
			mode, upAt.Sub(t0).Round(time.Millisecond), all.Round(time.Millisecond), f.longestGap(t0).Round(time.Millisecond), failed)
		f.mu.Lock()
		for _, cl := range f.clients {
			cl.failed = 0
		}
		f.mu.Unlock()
	}
	f.halt()
	if n := revokedCount(t, dbURL); n != 0 {
		t.Errorf("%d sessions revoked", n)
	}
}

// freezer is a TCP proxy that can stop forwarding without closing
// anything: a database that is frozen (SIGSTOP, a hung VM, a partition
// without resets), not one that is down.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	thawed chan struct{} // closed while forwarding
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, thawed: make(chan struct{})}
	close(f.thawed)
	t.Cleanup(func() { ln.Close(); f.thaw() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go f.pipe(up, c)
			go f.pipe(c, up)
		}
	}()
	return f
}

func (f *freezer) gate() chan struct{} { f.mu.Lock(); defer f.mu.Unlock(); return f.thawed }

func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-f.gate() // frozen: hold the bytes
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) freeze() { f.mu.Lock(); f.thawed = make(chan struct{}); f.mu.Unlock() }

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.thawed:
	default:
		close(f.thawed)
	}
}

// TestOpsDatabaseFrozen: the database stops answering without closing
// anything. A token request answers 503 within --request-timeout (2 s
// here) instead of hanging; when the database answers again, so does
// Latch.
func TestOpsDatabaseFrozen(t *testing.T) {
	dbURL := pgtest.URL(t)
	u, _ := url.Parse(dbURL)
	fz := newFreezer(t, u.Host)
	via := *u
	via.Host = fz.ln.Addr().String()
	c := newCluster(t, dbURL)
	c.env = append(c.env, "LATCH_REQUEST_TIMEOUT=2s")
	n := c.start(t, via.String())
	tok := n.signup(t, "frozen@example.com")
	tok = n.mustRefresh(t, tok.RefreshToken)

	fz.freeze()
	t0 := time.Now()
	a := n.refresh(t, tok.RefreshToken)
	answered := time.Since(t0)
	wantUnavailable(t, a, "refresh while the database is frozen")
	if answered > 4*time.Second {
		t.Errorf("answered after %s; --request-timeout is 2s", answered)
	}
	fz.thaw()
	t1 := time.Now()
	eventually(t, 20*time.Second, "refresh never recovered", func() bool { return n.refresh(t, tok.RefreshToken).status == http.StatusOK })
	t.Logf("PostgreSQL frozen: a refresh answered 503 after %s (--request-timeout 2s); after the thaw the same token refreshed within %s",
		answered.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	if n := revokedCount(t, dbURL); n != 0 {
		t.Errorf("%d sessions revoked", n)
	}
}

// TestOpsRedisLost: the Redis of shared rate limits goes away. Logins and
// refreshes go on (each node limits on its own), /readyz says degraded,
// and when Redis is back it says ready again.
func TestOpsRedisLost(t *testing.T) {
	redisURL := os.Getenv("LATCH_TEST_REDIS")
	if redisURL == "" {
		t.Skip("LATCH_TEST_REDIS is not set")
	}
	ru, _ := url.Parse(redisURL)
	p := newProxy(t, ru.Host)
	via := *ru
	via.Host = p.ln.Addr().String()
	c := newCluster(t, pgtest.URL(t))
	for i, kv := range c.env {
		if kv == "LATCH_RATE_LIMIT=false" {
			c.env[i] = "LATCH_RATE_LIMIT=true"
		}
	}
	c.env = append(c.env, "LATCH_REDIS="+via.String())
	n := c.start(t, "")
	tok := n.signup(t, "redis@example.com")
	p.cut()
	t0 := time.Now()
	tok = n.mustRefresh(t, tok.RefreshToken)
	during := time.Since(t0)
	login, _ := http.NewRequest("POST", n.base+"/v1/login", strings.NewReader(`{"email":"redis@example.com","password":"correct horse battery staple"}`))
	login.Header.Set("Content-Type", "application/json")
	if a := do(t, login); a.status != http.StatusOK {
		t.Fatalf("login without Redis: %d %s", a.status, a.Error)
	}
	if status, body := n.get(t, "/readyz"); status != http.StatusOK || !strings.Contains(string(body), "degraded") {
		t.Fatalf("readyz without Redis: %d %s, want 200 degraded", status, body)
	}
	p.restore()
	t1 := time.Now()
	eventually(t, 20*time.Second, "readyz never ready again", func() bool {
		_, body := n.get(t, "/readyz")
		return strings.Contains(string(body), `"status":"ready"`)
	})
	t.Logf("Redis lost: a refresh answered 200 in %s, logins served, /readyz degraded; after Redis returned /readyz was ready within %s",
		during.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
}

// TestOpsDiskFull: SQLite on a full file system (a 4 MiB tmpfs; as root,
// when LATCH_TEST_DISKFULL is set). Writes answer 503 and change nothing,
// reads go on, and once space is free writes succeed at once; the database
// is intact.
func TestOpsDiskFull(t *testing.T) {
	if os.Getenv("LATCH_TEST_DISKFULL") == "" || os.Geteuid() != 0 {
		t.Skip("LATCH_TEST_DISKFULL is not set, or not root (it mounts a tmpfs)")
	}
	if latchBin == "" {
		t.Skip("the e2e binary is built only with LATCH_TEST_POSTGRES set")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	db := filepath.Join(dir, "latch.db")
	c := newCluster(t, "sqlite:"+db)
	n := c.start(t, "sqlite:"+db)
	tok := n.signup(t, "disk@example.com")
	tok = n.mustRefresh(t, tok.RefreshToken)

	filler := filepath.Join(dir, "filler")
	fill := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k")
	fill.Run() // ends with "No space left on device"
	t0 := time.Now()
	var a answer
	for range 5 { // the WAL may hold a few pages' room still
		if a = n.refresh(t, tok.RefreshToken); a.status != http.StatusOK {
			break
		}
		tok = a.tokens
	}
	answered := time.Since(t0)
	wantUnavailable(t, a, "refresh on a full disk")
	if status, _ := n.get(t, "/healthz"); status != http.StatusOK {
		t.Errorf("healthz on a full disk: %d", status)
	}
	req, _ := http.NewRequest("GET", n.base+"/v1/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if a := do(t, req); a.status != http.StatusOK {
		t.Errorf("a read on a full disk: %d %s", a.status, a.Error)
	}
	os.Remove(filler)
	t1 := time.Now()
	eventually(t, 10*time.Second, "writes never resumed", func() bool {
		a := n.refresh(t, tok.RefreshToken)
		if a.status == http.StatusOK {
			tok = a.tokens
		}
		return a.status == http.StatusOK
	})
	resumed := time.Since(t1)
	sdb, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var check string
	if err := sdb.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	t.Logf("SQLite disk full: writes answered 503 within %s of the disk filling, reads and /healthz served; after space was freed writes resumed within %s; integrity_check ok",
		answered.Round(time.Millisecond), resumed.Round(time.Millisecond))
}
