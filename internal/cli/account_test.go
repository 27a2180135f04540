package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/cli"
	"github.com/latchauth/latch/internal/mail/mailtest"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// node is an in-process `latch serve` on a given database that a test can
// stop (as a crash or a deploy would) and start again.
type node struct {
	t    *testing.T
	args []string
	url  string
	logs *testenv.LogBuffer
	past string // the logs of earlier runs
	stop func()
}

func startNode(t *testing.T, args ...string) *node {
	// A fixed free port, so that the default issuer (http://ADDR), which
	// the links in messages start with, is the address served, across
	// restarts too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	n := &node{t: t, args: append([]string{"--addr", addr}, args...)}
	n.start()
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *node) start() {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if n.logs != nil {
		n.past += n.logs.String()
	}
	n.logs = &testenv.LogBuffer{}
	done := make(chan error, 1)
	args := append([]string{"serve", "--argon2-memory", "8192", "--argon2-iterations", "1"}, n.args...)
	go func() { done <- cli.Run(ctx, args, strings.NewReader(""), io.Discard, n.logs) }()
	stopped := false
	n.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	n.url = testenv.WaitServing(n.t, n.logs, done)
}

func (n *node) call(method, path, bearer string, body any) (int, map[string]any) {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// page GETs a hosted page by the link in a message, then submits its form
// as a browser would, and returns the result page.
func (n *node) page(link string, fields url.Values) (int, string) {
	n.t.Helper()
	if !strings.HasPrefix(link, n.url+"/") {
		n.t.Fatalf("link %q does not lead to this server's hosted pages (%s)", link, n.url)
	}
	resp, err := http.Get(link)
	if err != nil {
		n.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("GET %s: %d %s", link, resp.StatusCode, body)
	}
	m := regexp.MustCompile(`<form method="post" action="(/[a-z]+)"[^>]*>\s*<input type="hidden" name="token" value="([^"]+)">`).FindSubmatch(body)
	if m == nil {
		n.t.Fatalf("no form in %s", body)
	}
	fields.Set("token", string(m[2]))
	resp, err = http.PostForm(n.url+string(m[1]), fields)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func kekArg() string {
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// Every account flow end to end on a fresh `latch serve --smtp-url`: the
// request, the message over real SMTP, its link, the hosted page or the
// API, the result; on SQLite and on PostgreSQL. Then the SMTP server is
// down while a reset is asked for and the server is stopped: started
// again with SMTP back, it delivers the message.
func TestAccountFlowsOverSMTP(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   func(t *testing.T) []string
	}{
		{"sqlite", func(t *testing.T) []string {
			return []string{"--database", "sqlite:" + filepath.Join(t.TempDir(), "latch.db")}
		}},
		{"postgres", func(t *testing.T) []string {
			return []string{"--database", pgtest.URL(t), "--key-encryption-key", kekArg()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := mailtest.Start(t, mailtest.Options{User: "latch", Password: "smtp-secret-71"})
			args := append(tc.db(t), "--smtp-url", sink.URL())
			wantFrom := "no-reply@localhost" // derived from the issuer when --email-from is not given
			if tc.name == "postgres" {
				args, wantFrom = append(args, "--email-from", "Latch <no-reply@latch.test>"), "no-reply@latch.test"
			}
			n := startNode(t, args...)
			const wait = 10 * time.Second

			// Signup → verification link → hosted page → verified.
			code, tok := n.call("POST", "/v1/signup", "", map[string]string{"email": "ada@example.com", "password": "a long passphrase 1"})
			if code != http.StatusCreated {
				t.Fatalf("signup: %d %v", code, tok)
			}
			at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
			m := sink.WaitFor(t, "ada@example.com", "Confirm your email", wait)
			if m.From != wantFrom {
				t.Fatalf("envelope sender %q, want %q", m.From, wantFrom)
			}
			if code, body := n.page(m.Link(), url.Values{}); code != http.StatusOK || !strings.Contains(body, "confirmed") {
				t.Fatalf("verify page: %d %s", code, body)
			}
			if _, me := n.call("GET", "/v1/me", at, nil); me["email_verified"] != true {
				t.Fatalf("after verify: %v", me)
			}

			// Email change: link to the new address, notice to the old.
			if code, _ := n.call("POST", "/v1/email/change", at, map[string]string{"new_email": "ada@new.example", "password": "a long passphrase 1"}); code != http.StatusAccepted {
				t.Fatalf("change: %d", code)
			}
			sink.WaitFor(t, "ada@example.com", "change of your account's email", wait)
			m = sink.WaitFor(t, "ada@new.example", "Confirm your new email", wait)
			if code, _ := n.call("POST", "/v1/email/verify", "", map[string]string{"token": m.Token()}); code != http.StatusNoContent {
				t.Fatalf("verify new address: %d", code)
			}
			if _, me := n.call("GET", "/v1/me", at, nil); me["email"] != "ada@new.example" {
				t.Fatalf("after change: %v", me)
			}

			// Forgot → reset link → hosted page → every session ended.
			if code, _ := n.call("POST", "/v1/password/forgot", "", map[string]string{"email": "ada@new.example"}); code != http.StatusAccepted {
				t.Fatalf("forgot: %d", code)
			}
			m = sink.WaitFor(t, "ada@new.example", "Reset your password", wait)
			if code, body := n.page(m.Link(), url.Values{"new_password": {"a brand new passphrase"}, "confirm_password": {"a brand new passphrase"}}); code != http.StatusOK || !strings.Contains(body, "was changed") {
				t.Fatalf("reset page: %d %s", code, body)
			}
			if code, body := post(t, n.url+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()); code != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Fatalf("refresh after reset: %d %v", code, body)
			}
			sink.WaitFor(t, "ada@new.example", "Your password was reset", wait)
			code, tok = n.call("POST", "/v1/login", "", map[string]string{"email": "ada@new.example", "password": "a brand new passphrase"})
			if code != http.StatusOK {
				t.Fatalf("login with the new password: %d %v", code, tok)
			}

			// Deletion: sessions end, the account is gone.
			if code, _ := n.call("DELETE", "/v1/me", tok["access_token"].(string), map[string]string{"password": "a brand new passphrase"}); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}
			if code, _ := n.call("POST", "/v1/login", "", map[string]string{"email": "ada@new.example", "password": "a brand new passphrase"}); code != http.StatusUnauthorized {
				t.Fatalf("login after deletion: %d", code)
			}

			// SMTP down, a reset asked for, the server stopped before it
			// could deliver; started again with SMTP up: delivered.
			n.call("POST", "/v1/signup", "", map[string]string{"email": "bob@example.com", "password": "a long passphrase 2"})
			sink.WaitFor(t, "bob@example.com", "Confirm your email", wait)
			sink.SetDown(true)
			if code, _ := n.call("POST", "/v1/password/forgot", "", map[string]string{"email": "bob@example.com"}); code != http.StatusAccepted {
				t.Fatalf("forgot: %d", code)
			}
			deadline := time.Now().Add(wait)
			for !strings.Contains(n.logs.String(), "delivery failed") {
				if time.Now().After(deadline) {
					t.Fatalf("no failed delivery logged:\n%s", n.logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			n.stop()
			sink.SetDown(false)
			before := len(sink.Messages())
			n.start()
			m = sink.WaitFor(t, "bob@example.com", "Reset your password", 15*time.Second)
			if !strings.HasPrefix(m.Token(), "latch_pr_") {
				t.Fatalf("the message after restart has no reset link: %q", m.Text)
			}
			time.Sleep(500 * time.Millisecond)
			if got := len(sink.Messages()) - before; got != 1 {
				t.Fatalf("%d messages after restart, want exactly the one reset", got)
			}
			// With SMTP, no link token and no SMTP credential reaches the
			// log (docs/security.md ACCT-08).
			logs := n.past + n.logs.String()
			for _, secret := range []string{"latch_ev_", "latch_pr_", "smtp-secret-71"} {
				if strings.Contains(logs, secret) {
					t.Fatalf("the log holds %q:\n%s", secret, logs)
				}
			}
			if m.AuthUser != "latch" {
				t.Fatalf("delivered without AUTH: %+v", m)
			}
		})
	}
}

// Without --smtp-url, messages go to the log with a warning, links
// included, so `latch serve` with no flags walks through every flow.
func TestAccountFlowsWithoutSMTP(t *testing.T) {
	n := startNode(t, "--database", "sqlite:"+filepath.Join(t.TempDir(), "latch.db"))
	if !strings.Contains(n.logs.String(), "no SMTP server configured") {
		t.Fatalf("no warning at start:\n%s", n.logs)
	}
	n.call("POST", "/v1/signup", "", map[string]string{"email": "dev@example.com", "password": "a long passphrase 3"})
	n.call("POST", "/v1/password/forgot", "", map[string]string{"email": "dev@example.com"})
	link := regexp.MustCompile(regexp.QuoteMeta(n.url) + `/reset\?token=latch_pr_[A-Za-z0-9_-]+`)
	deadline := time.Now().Add(10 * time.Second)
	for link.FindString(n.logs.String()) == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no reset link in the log:\n%s", n.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := n.page(link.FindString(n.logs.String()), url.Values{"new_password": {"a brand new passphrase"}, "confirm_password": {"a brand new passphrase"}})
	if code != http.StatusOK || !strings.Contains(body, "was changed") {
		t.Fatalf("reset through the logged link: %d %s", code, body)
	}
}

// latch users delete: through the session service, so the account's
// sessions end and its data goes.
func TestUsersDelete(t *testing.T) {
	s := startServer(t)
	s.mustLatch(t, "a long enough password\n", "users", "create", "gone@example.com", "--password-stdin")
	code, m := passwordLogin(t, s, "gone@example.com", "a long enough password")
	if code != http.StatusOK {
		t.Fatalf("login: %d %v", code, m)
	}
	out := s.mustLatch(t, "", "users", "delete", "gone@example.com")
	if !strings.Contains(out, "deleted user") {
		t.Fatalf("users delete: %s", out)
	}
	if code, m := refresh(t, s, m["refresh_token"].(string)); code != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("refresh after users delete: %d %v", code, m)
	}
	if out := s.mustLatch(t, "", "users", "list"); strings.Contains(out, "gone@example.com") {
		t.Fatalf("still listed: %s", out)
	}
	if _, err := s.latch(t, "", "users", "delete", "gone@example.com"); err == nil {
		t.Fatal("deleting a missing user succeeded")
	}
}
