package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// FailoverEnv turns on TestFailover, which runs its own PostgreSQL primary
// and standby (it needs the server binaries, see pgBinDir).
const FailoverEnv = "LATCH_TEST_FAILOVER"

// pgBinDir is where initdb, postgres, pg_basebackup and pg_ctl are:
// LATCH_PG_BIN, or Debian's PostgreSQL 15.
func pgBinDir() string {
	if d := os.Getenv("LATCH_PG_BIN"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

// pgServer is one PostgreSQL server run by the test as a child process.
type pgServer struct {
	t    *testing.T
	dir  string // data directory
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// pgCluster holds the servers' common settings: the OS user they run as
// (initdb refuses root, so as root they run as "postgres" via runuser).
type pgCluster struct {
	t      *testing.T
	root   string
	runAs  *user.User // nil: the current user
	binDir string
}

func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	bin := pgBinDir()
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		t.Fatalf("%s=1 but no PostgreSQL server binaries in %s (set LATCH_PG_BIN): %v", FailoverEnv, bin, err)
	}
	c := &pgCluster{t: t, binDir: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root and there is no postgres user to run PostgreSQL as: %v", err)
		}
		c.runAs = u
	}
	root, err := os.MkdirTemp("", "latch-failover")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	// The servers' user must reach its directories through root.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	c.root = root
	return c
}

// command runs a PostgreSQL binary as the cluster's user.
func (c *pgCluster) command(name string, args ...string) *exec.Cmd {
	bin := filepath.Join(c.binDir, name)
	if c.runAs == nil {
		return exec.Command(bin, args...)
	}
	return exec.Command("runuser", append([]string{"-u", c.runAs.Username, "--", bin}, args...)...)
}

func (c *pgCluster) run(name string, args ...string) {
	c.t.Helper()
	if out, err := c.command(name, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// dataDir makes an empty directory the servers' user owns.
func (c *pgCluster) dataDir(name string) string {
	c.t.Helper()
	d := filepath.Join(c.root, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		c.t.Fatal(err)
	}
	if c.runAs != nil {
		uid, _ := strconv.Atoi(c.runAs.Uid)
		gid, _ := strconv.Atoi(c.runAs.Gid)
		if err := os.Chown(d, uid, gid); err != nil {
			c.t.Fatal(err)
		}
	}
	return d
}

// start runs the server in dir on a free port and waits until it accepts
// connections. settings are -c name=value pairs.
func (c *pgCluster) start(dir string, settings ...string) *pgServer {
	c.t.Helper()
	return c.startOn(dir, freePort(c.t), settings...)
}

// startOn is start on a given port (a restart keeps its address).
func (c *pgCluster) startOn(dir string, port int, settings ...string) *pgServer {
	c.t.Helper()
	s := &pgServer{t: c.t, dir: dir, port: port, done: make(chan struct{})}
	args := []string{"-D", dir, "-p", strconv.Itoa(s.port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir}
	for _, kv := range settings {
		args = append(args, "-c", kv)
	}
	s.cmd = c.command("postgres", args...)
	logf, err := os.Create(filepath.Join(c.root, filepath.Base(dir)+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.done) }()
	c.t.Cleanup(func() { s.stop(c, "fast") })
	eventually(c.t, 30*time.Second, "PostgreSQL in "+dir+" did not accept connections", func() bool {
		conn, err := pgx.Connect(context.Background(), s.url("postgres"))
		if err != nil {
			return false
		}
		conn.Close(context.Background())
		return true
	})
	return s
}

func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// stop shuts the server down in mode (pg_ctl: fast, immediate) and waits
// for the process to end; a no-op once it has.
func (s *pgServer) stop(c *pgCluster, mode string) {
	select {
	case <-s.done:
		return
	default:
	}
	if out, err := c.command("pg_ctl", "-D", s.dir, "-m", mode, "-w", "stop").CombinedOutput(); err != nil {
		s.t.Logf("pg_ctl stop %s: %v\n%s", s.dir, err, out)
		s.cmd.Process.Kill()
	}
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// query scans the one value sql selects from the latch database.
func (s *pgServer) query(t *testing.T, dst any, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.url("latch"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dst); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// A primary with a synchronous streaming standby; two Latch nodes reach
// them with one multi-host URL and target_session_attrs=read-write. While
// clients refresh through both nodes the primary stops (immediate: a crash
// to its clients) and the standby is promoted. Refreshes succeed again
// once the nodes reconnect to the new primary; every refresh a client saw
// succeed survived (synchronous commit waits for the standby), so every
// client's last token still refreshes, and no session was revoked.
func TestFailover(t *testing.T) {
	if os.Getenv(FailoverEnv) != "1" {
		t.Skip(FailoverEnv + " is not 1; skipping the failover test (it runs its own PostgreSQL servers)")
	}
	if latchBin == "" {
		t.Skip("the e2e binary is built only with LATCH_TEST_POSTGRES set")
	}
	testStart := time.Now()
	pg := newPGCluster(t)
	primaryDir := pg.dataDir("primary")
	pg.run("initdb", "-D", primaryDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	// fsync off: an immediate stop kills the server, not the machine, so
	// what it wrote is in the OS cache either way; the test needs no
	// durability past a power cut, and fsync on a shared disk is slow.
	primary := pg.start(primaryDir, "wal_level=replica", "max_wal_senders=4", "fsync=off", "synchronous_commit=on")
	standbyDir := pg.dataDir("standby")
	pg.run("pg_basebackup", "-d", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=standby", primary.port),
		"-D", standbyDir, "-R", "-X", "stream", "--no-sync")
	// The standby, once promoted, has no standby of its own: it must not
	// wait for one.
	standby := pg.start(standbyDir, "fsync=off", "synchronous_standby_names=")
	// From here every commit on the primary waits until the standby has
	// flushed it (synchronous_commit=on).
	for _, q := range []string{`ALTER SYSTEM SET synchronous_standby_names = 'standby'`, `SELECT pg_reload_conf()`, `CREATE DATABASE latch`} {
		conn, err := pgx.Connect(context.Background(), primary.url("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Exec(context.Background(), q)
		conn.Close(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	eventually(t, 20*time.Second, "the standby never became synchronous", func() bool {
		var state string
		primary.query(t, &state, `SELECT coalesce((SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'), '')`)
		return state == "sync"
	})

	dbURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/latch?sslmode=disable&target_session_attrs=read-write", primary.port, standby.port)
	c := newCluster(t, dbURL)
	nodes := []*node{c.start(t, ""), c.start(t, "")}

	const clients = 16
	type client struct {
		rt, sid string
		ok      int           // refreshes answered 200
		lastOK  time.Time     // when the last 200 arrived
		gap     time.Duration // the longest time between two 200s
		failed  int           // 503s and transport errors, retried with the same token
	}
	cl := make([]*client, clients)
	for i := range cl {
		tok := nodes[i%2].signup(t, fmt.Sprintf("failover%d@example.com", i))
		cl[i] = &client{rt: tok.RefreshToken, sid: tok.SessionID}
	}

	// The clients keep the client contract: a 200 replaces the token, a
	// 503 or a broken connection is retried with the same token; anything
	// else ends the client and fails the test.
	stop := make(chan struct{})
	var stoppedAt time.Time
	var mu sync.Mutex // guards the clients, stoppedAt and recovered
	var recovered []time.Duration
	var wg sync.WaitGroup
	for i, me := range cl {
		wg.Go(func() {
			fresh := true // no 200 yet since the primary stopped
			for k := i; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := refreshOnce(nodes[k%2], me.rt)
				switch {
				case err != nil || resp.status == http.StatusServiceUnavailable:
					mu.Lock()
					me.failed++
					mu.Unlock()
					time.Sleep(20 * time.Millisecond) // a client's retry pause, not ordering
				case resp.status == http.StatusOK:
					mu.Lock()
					now := time.Now()
					if !me.lastOK.IsZero() {
						me.gap = max(me.gap, now.Sub(me.lastOK))
					}
					me.rt, me.ok, me.lastOK = resp.RefreshToken, me.ok+1, now
					if !stoppedAt.IsZero() && fresh {
						fresh = false
						recovered = append(recovered, me.lastOK.Sub(stoppedAt))
					}
					mu.Unlock()
				default:
					t.Errorf("client %d: refresh answered %d %q: a session the failover must not have ended", i, resp.status, resp.Error)
					return
				}
			}
		})
	}
	// Let refreshes run, then fail over.
	eventually(t, 10*time.Second, "clients were not refreshing", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, me := range cl {
			if me.ok < 5 {
				return false
			}
		}
		return true
	})
	primary.stop(pg, "immediate")
	// Every 200 from here on comes from the new primary.
	mu.Lock()
	stoppedAt = time.Now()
	mu.Unlock()
	// An orchestrator promotes at once; -w waits until it takes writes.
	pg.run("pg_ctl", "-D", standbyDir, "-w", "promote")
	promoted := time.Since(stoppedAt)
	eventually(t, 30*time.Second, "refreshes did not succeed again after the failover", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(recovered) == clients
	})
	// A little more load on the new primary, then stop.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	slices.Sort(recovered)
	var failed int
	var gaps []time.Duration
	for _, me := range cl {
		failed += me.failed
		gaps = append(gaps, me.gap)
	}
	slices.Sort(gaps)
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	// Printed, not only logged: the number is the point of the test.
	fmt.Printf("failover: promote took %v after the primary stopped; refreshes succeeded again %v after the stop (first client) and %v (all %d); a client's longest wait between two successful refreshes: median %v, max %v; %d failed attempts retried\n",
		ms(promoted), ms(recovered[0]), ms(recovered[len(recovered)-1]), clients, ms(gaps[len(gaps)/2]), ms(gaps[len(gaps)-1]), failed)

	// No acknowledged refresh was lost: each session's generation on the
	// new primary counts at least every rotation its client saw succeed.
	// Every client's last token refreshes, through either node, and the
	// new primary holds no revoked session.
	for i, me := range cl {
		var gen int
		standby.query(t, &gen, `SELECT gen FROM sessions WHERE id = $1`, me.sid)
		if gen < 1+me.ok {
			t.Errorf("client %d: the session is at generation %d on the new primary, but %d refreshes were acknowledged", i, gen, me.ok)
		}
		next := nodes[(i+1)%2].mustRefresh(t, me.rt)
		nodes[i%2].mustRefresh(t, next.RefreshToken)
	}
	var revoked int
	standby.query(t, &revoked, `SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL`)
	if revoked != 0 {
		t.Fatalf("%d sessions are revoked after the failover, want 0", revoked)
	}
	if d := time.Since(testStart); d > time.Minute {
		t.Errorf("the failover test took %v; it must stay under a minute", d)
	}
}

// refreshOnce is one refresh that reports a transport error instead of
// failing the test: during a failover a node may drop a connection.
func refreshOnce(n *node, rt string) (answer, error) {
	resp, err := client.Do(n.refreshReq(rt))
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	json.Unmarshal(body, &a.tokens)
	return a, nil
}
