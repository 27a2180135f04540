package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/store/postgres"
)

// BouncerEnv turns on the tests through PgBouncer (Debian's pgbouncer
// package); they need Env too.
const BouncerEnv = "LATCH_TEST_PGBOUNCER"

// Bouncer is a PgBouncer in transaction mode in front of the server Env
// names, running until the test that started it ends.
type Bouncer struct {
	direct string // Env
	via    string // the same database through PgBouncer
}

// NewBouncer starts PgBouncer with its own configuration in a temporary
// directory, on a free loopback port, pool_mode = transaction. It skips
// the test unless BouncerEnv and Env are set.
func NewBouncer(t testing.TB) *Bouncer {
	t.Helper()
	if os.Getenv(BouncerEnv) == "" {
		t.Skip(BouncerEnv + " is not set; skipping the tests through PgBouncer")
	}
	direct := os.Getenv(Env)
	if direct == "" {
		t.Skip(Env + " is not set; skipping the PostgreSQL tests")
	}
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/pgbouncer"); err != nil {
			t.Fatalf("%s is set but pgbouncer is not installed (apt-get install pgbouncer)", BouncerEnv)
		}
	}
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	// Not t.TempDir: PgBouncer refuses to run as root, and the user it
	// drops to must read this directory.
	dir, err := os.MkdirTemp("", "latch-pgbouncer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	listen := freePort(t)
	ini := fmt.Sprintf(`[databases]
%[1]s = host=%[2]s port=%[3]s dbname=%[1]s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[4]d
unix_socket_dir =
auth_type = trust
auth_file = %[5]s/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
; what Latch's idle_in_transaction_session_timeout does without a pooler
idle_transaction_timeout = 10
pidfile =
`, db, host, port, listen, dir)
	users := fmt.Sprintf("%q \"\"\n", u.User.Username())
	for name, body := range map[string]string{"pgbouncer.ini": ini, "users.txt": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		who := "nobody"
		if _, err := user.Lookup("postgres"); err == nil {
			who = "postgres"
		}
		args = append([]string{"-u", who}, args...)
	}
	cmd := exec.Command(bin, args...)
	out := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM: immediate shutdown (SIGINT would wait for clients).
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	via := *u
	via.Host = net.JoinHostPort("127.0.0.1", fmt.Sprint(listen))
	probe := via.String()
	q := via.Query()
	q.Set("pooler", "transaction")
	via.RawQuery = q.Encode()
	b := &Bouncer{direct: direct, via: via.String()}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("pgbouncer exited: %v\n%s", err, out)
		default:
		}
		conn, err := pgx.Connect(context.Background(), probe)
		if err == nil {
			conn.Close(context.Background())
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer did not answer: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL creates an empty schema (directly on the server) and returns a URL
// through PgBouncer, with pooler=transaction and a search_path selecting
// the schema; the schema is dropped when the test ends.
func (b *Bouncer) URL(t testing.TB) string {
	t.Helper()
	return schemaURL(t, b.direct, b.via)
}

// New returns a migrated store in a fresh schema, through PgBouncer.
func (b *Bouncer) New(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	return open(t, b.URL(t), opts)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer is PgBouncer's log, written by the goroutines of os/exec and
// read by a failing test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
