// Package e2e runs real `latch serve` processes (the built binary) against a
// real PostgreSQL: several nodes on one database, and the database failing
// under them. It needs LATCH_TEST_POSTGRES and skips without it.
package e2e_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/testenv"
)

var latchBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Getenv("LATCH_TEST_POSTGRES") == "" {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "latch-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		latchBin = filepath.Join(dir, "latch")
		build := exec.Command("go", "build", "-o", latchBin, "github.com/latchauth/latch/cmd/latch")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building latch:", err)
			return 1
		}
		return m.Run()
	}())
}

// cluster is a database and the settings every node shares.
type cluster struct {
	db  string // URL with this test's schema
	kek string
	env []string
}

const issuer = "http://latch.test"

func newCluster(t *testing.T, dbURL string) *cluster {
	k := make([]byte, 32)
	rand.Read(k)
	c := &cluster{db: dbURL, kek: base64.StdEncoding.EncodeToString(k)}
	c.env = append(os.Environ(),
		"LATCH_DATABASE="+c.db,
		"LATCH_KEY_ENCRYPTION_KEY="+c.kek,
		"LATCH_JWKS_MAX_AGE=2s",
		"LATCH_ISSUER="+issuer,
		"LATCH_ARGON2_MEMORY=8192", "LATCH_ARGON2_ITERATIONS=1", "LATCH_ARGON2_PARALLELISM=1",
		// These tests load one node from one address; limits have their own tests.
		"LATCH_RATE_LIMIT=false",
	)
	return c
}

// withApp returns c's database URL with application_name set, so a test can
// find that node's connections in pg_stat_activity.
func withParam(dbURL, k, v string) string {
	u, _ := url.Parse(dbURL)
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

// node is one running `latch serve`.
type node struct {
	base string
	cmd  *exec.Cmd
	log  *testenv.LogBuffer
}

// start runs a node on a free port and waits until it serves.
func (c *cluster) start(t *testing.T, dbURL string) *node {
	t.Helper()
	if dbURL == "" {
		dbURL = c.db
	}
	cmd := exec.Command(latchBin, "serve", "--addr", "127.0.0.1:0", "--database", dbURL)
	cmd.Env = c.env
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{cmd: cmd, log: new(testenv.LogBuffer)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			n.log.Write(append(line, '\n'))
			var m struct{ Msg, Addr string }
			if json.Unmarshal(line, &m) == nil && m.Msg == "latch serving" {
				addr <- m.Addr
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	select {
	case a := <-addr:
		n.base = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("node did not start; its log:\n%s", n.log)
	}
	return n
}

// admin runs a latch admin command against the cluster's database.
func (c *cluster) admin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(latchBin, args...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
	Error        string `json:"error"`
}

// answer is a response with its decoded body.
type answer struct {
	status int
	header http.Header
	tokens
}

var client = &http.Client{Timeout: 20 * time.Second}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		// Errorf, not Fatal: do runs on client goroutines too.
		t.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
		return answer{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	json.Unmarshal(body, &a.tokens)
	return a
}

func (n *node) signup(t *testing.T, email string) tokens {
	t.Helper()
	req, _ := http.NewRequest("POST", n.base+"/v1/signup", strings.NewReader(`{"email":"`+email+`","password":"correct horse battery staple"}`))
	req.Header.Set("Content-Type", "application/json")
	a := do(t, req)
	if a.status != http.StatusOK && a.status != http.StatusCreated {
		t.Fatalf("signup: %d %s", a.status, a.Error)
	}
	return a.tokens
}

func (n *node) refreshReq(rt string) *http.Request {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}
	req, _ := http.NewRequest("POST", n.base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func (n *node) refresh(t *testing.T, rt string) answer {
	t.Helper()
	return do(t, n.refreshReq(rt))
}

func (n *node) mustRefresh(t *testing.T, rt string) tokens {
	t.Helper()
	a := n.refresh(t, rt)
	if a.status != http.StatusOK {
		t.Fatalf("refresh through %s: %d %s", n.base, a.status, a.Error)
	}
	return a.tokens
}

func (n *node) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := client.Get(n.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("after %v: %s", d, what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
