package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/cli"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/testenv"
)

type server struct {
	url  string
	logs *testenv.LogBuffer
	db   string
	done chan error
	stop context.CancelFunc
}

// startServer runs `latch serve` in-process on a free port.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	db := filepath.Join(t.TempDir(), "latch.db")
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &testenv.LogBuffer{}, db: db, done: make(chan error, 1), stop: cancel}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--database", "sqlite:" + db,
		"--argon2-memory", "8192", "--argon2-iterations", "1"}, extra...)
	exited := make(chan struct{}) // apart from done, which WaitServing may drain
	go func() {
		defer close(exited)
		s.done <- cli.Run(ctx, args, strings.NewReader(""), io.Discard, s.logs)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	s.url = testenv.WaitServing(t, s.logs, s.done)
	return s
}

// latch runs an admin command against the server's database.
func (s *server) latch(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--database", "sqlite:"+s.db)
	err := cli.Run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String() + errOut.String(), err
}

func (s *server) mustLatch(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := s.latch(t, stdin, args...)
	if err != nil {
		t.Fatalf("latch %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func post(t *testing.T, u, form string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(u, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func passwordLogin(t *testing.T, s *server, email, pw string) (int, map[string]any) {
	return post(t, s.url+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {email}, "password": {pw}, "client_id": {"app"}}.Encode())
}

func refresh(t *testing.T, s *server, rt string) (int, map[string]any) {
	return post(t, s.url+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode())
}

func jwksKids(t *testing.T, s *server) []string {
	t.Helper()
	resp, err := http.Get(s.url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	json.NewDecoder(resp.Body).Decode(&set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestServeAndAdmin runs the server and drives the admin CLI against the
// same database while it serves.
func TestServeAndAdmin(t *testing.T) {
	s := startServer(t, "--jwks-max-age", "2s")

	out := s.mustLatch(t, "a long enough password\n", "users", "create", "ada@example.com", "--password-stdin")
	if !strings.Contains(out, "created user") {
		t.Fatalf("users create: %s", out)
	}
	if out := s.mustLatch(t, "", "users", "list"); !strings.Contains(out, "ada@example.com") {
		t.Fatalf("users list lacks the user:\n%s", out)
	}
	code, tok := passwordLogin(t, s, "ada@example.com", "a long enough password")
	if code != 200 {
		t.Fatalf("login: %d %v", code, tok)
	}
	sid := tok["session_id"].(string)
	if out := s.mustLatch(t, "", "sessions", "list", "ada@example.com"); !strings.Contains(out, sid) {
		t.Fatalf("sessions list lacks %s:\n%s", sid, out)
	}
	s.mustLatch(t, "", "sessions", "revoke", sid)
	if code, body := refresh(t, s, tok["refresh_token"].(string)); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after admin revoke: %d %v", code, body)
	}

	// Key rotation: refused while the next key is young, then picked up by
	// the running server without a restart.
	before := jwksKids(t, s)
	if len(before) != 2 {
		t.Fatalf("JWKS kids at start: %v", before)
	}
	// With a JWKS max-age of an hour the next key is young however slowly
	// this machine got here (with 2s, a loaded machine passed the bound).
	if out, err := s.latch(t, "", "keys", "rotate", "--jwks-max-age", "1h"); err == nil {
		t.Fatalf("keys rotate right after start succeeded:\n%s", out)
	}
	next := regexp.MustCompile(`(?m)^(\S+)\s+EdDSA\s+next\s`).FindStringSubmatch(s.mustLatch(t, "", "keys", "list"))
	if next == nil {
		t.Fatal("keys list shows no next key")
	}
	time.Sleep(3100 * time.Millisecond) // max-age 2s plus one reload interval (1s)
	out = s.mustLatch(t, "", "keys", "rotate", "--jwks-max-age", "2s")
	if !strings.Contains(out, "current "+next[1]) {
		t.Fatalf("rotate did not promote the published next key %s:\n%s", next[1], out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(jwksKids(t, s)) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("server did not pick up the rotation: JWKS %v", jwksKids(t, s))
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, tok = passwordLogin(t, s, "ada@example.com", "a long enough password")
	if kid := headerKid(t, tok["access_token"].(string)); kid != next[1] {
		t.Fatalf("new tokens signed with %s, want the promoted key %s", kid, next[1])
	}
	if out := s.mustLatch(t, "", "keys", "list"); strings.Count(out, "retired") != 1 {
		t.Fatalf("keys list:\n%s", out)
	}

	s.mustLatch(t, "", "users", "disable", "ada@example.com")
	if code, _ := passwordLogin(t, s, "ada@example.com", "a long enough password"); code != 400 {
		t.Fatalf("login of a disabled user: %d", code)
	}
	if code, _ := refresh(t, s, tok["refresh_token"].(string)); code != 400 {
		t.Fatalf("refresh of a disabled user's session: %d", code)
	}

	out = s.mustLatch(t, "", "clients", "create", "notes", "--audience", "https://notes.example", "--access-ttl", "2h", "--confidential")
	m := regexp.MustCompile(`client secret \(shown once\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("clients create printed no secret:\n%s", out)
	}
	if out := s.mustLatch(t, "", "clients", "list"); !strings.Contains(out, "notes") || !strings.Contains(out, "confidential") ||
		!strings.Contains(out, "2h0m0s") || strings.Contains(out, m[1]) {
		t.Fatalf("clients list:\n%s", out)
	}
	// The confidential client authenticates; a wrong secret does not.
	req, _ := http.NewRequest("POST", s.url+"/oauth/revoke", strings.NewReader("token=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("notes", m[1])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke with client secret: %v %v", resp.StatusCode, err)
	}
	if code, body := post(t, s.url+"/oauth/revoke", "token=x&client_id=notes&client_secret=wrong"); code != 401 || body["error"] != "invalid_client" {
		t.Fatalf("wrong client secret: %d %v", code, body)
	}

	if strings.Contains(s.logs.String(), tok["refresh_token"].(string)) || strings.Contains(s.logs.String(), "a long enough password") {
		t.Fatal("server log contains a token or password")
	}
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("graceful shutdown returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not shut down")
	}
}

func headerKid(t *testing.T, jwt string) string {
	t.Helper()
	seg, _, _ := strings.Cut(jwt, ".")
	var h struct {
		Kid string `json:"kid"`
	}
	b, err := base64URL(seg)
	if err != nil || json.Unmarshal(b, &h) != nil {
		t.Fatalf("bad JWT header %q", seg)
	}
	return h.Kid
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown subcommand", []string{"users", "frobnicate"}, `unknown subcommand "frobnicate"`},
		{"unknown flag", []string{"serve", "--no-such-flag"}, "flag provided but not defined"},
		{"serve with an argument", []string{"serve", "extra"}, "serve takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := cli.Run(context.Background(), tt.args, nil, &out, &out)
			if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err) != 2 {
				t.Fatalf("Run = %v, want a usage error", err)
			}
			if !strings.Contains(out.String()+err.Error(), tt.want) {
				t.Fatalf("output %q lacks %q", out.String()+err.Error(), tt.want)
			}
		})
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"lost window not above grace", []string{"--refresh-grace", "1m", "--refresh-lost-window", "30s"}, nil, "--refresh-lost-window"},
		{"access ttl too long", []string{"--access-ttl", "48h"}, nil, "--access-ttl"},
		{"unknown alg", []string{"--signing-alg", "HS256"}, nil, "--signing-alg"},
		{"postgres without a key-encryption key", []string{"--database", "postgres://127.0.0.1:1/x"}, nil, "PostgreSQL needs a key-encryption key"},
		{"unknown database scheme", []string{"--database", "mysql://u:pw@h/x"}, nil, "--database: must be sqlite:PATH or postgres://"},
		{"memory budget below one hash", []string{"--argon2-memory-budget", "16384"}, nil, "--argon2-memory-budget 16384 KiB is less than one hash's --argon2-memory 19456 KiB"},
		{"bad env twin", nil, map[string]string{"LATCH_ACCESS_TTL": "soon"}, "LATCH_ACCESS_TTL"},
		{"env twin validated", nil, map[string]string{"LATCH_REFRESH_GRACE": "-1s"}, "--refresh-grace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--database", "sqlite:" + filepath.Join(t.TempDir(), "x.db")}, tt.args...)
			var out bytes.Buffer
			err := cli.Run(context.Background(), args, nil, &out, &out)
			if err == nil || !strings.Contains(err.Error()+out.String(), tt.want) {
				t.Fatalf("Run = %v (%s), want an error naming %s", err, out.String(), tt.want)
			}
		})
	}
}

func TestAdminWithoutKEKExplains(t *testing.T) {
	var out bytes.Buffer
	db := "sqlite:" + filepath.Join(t.TempDir(), "x.db")
	if err := cli.Run(context.Background(), []string{"migrate", "--database", db}, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	err := cli.Run(context.Background(), []string{"keys", "list", "--database", db}, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "key-encryption key") {
		t.Fatalf("Run = %v, want an error about the key-encryption key", err)
	}
}

func base64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func TestMigrateNeedsNoKey(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"migrate", "--database", "sqlite:" + filepath.Join(dir, "m.db")}, nil, &out, &out); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "migrations applied") {
		t.Fatalf("output %q", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "m.db.kek")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("migrate created a key-encryption key file (stat error %v)", err)
	}
}

// TestKeysRewrap changes the key-encryption key of a live database: the
// new key opens everything (signing keys and the refresh MAC key, so
// existing sessions go on), the old one nothing.
func TestKeysRewrap(t *testing.T) {
	s := startServer(t)
	s.mustLatch(t, "a long enough password\n", "users", "create", "kek@example.com", "--password-stdin")
	code, tok := passwordLogin(t, s, "kek@example.com", "a long enough password")
	if code != 200 {
		t.Fatalf("login: %d %v", code, tok)
	}
	if out, err := s.latch(t, "", "keys", "rewrap"); err == nil {
		t.Fatalf("rewrap without a new key succeeded:\n%s", out)
	}
	newKEK := filepath.Join(t.TempDir(), "new.kek")
	// A missing file is a mistyped path, not a request for a new key.
	if out, err := s.latch(t, "", "keys", "rewrap", "--new-key-encryption-key-file", newKEK); err == nil || !strings.Contains(err.Error(), "--create") {
		t.Fatalf("rewrap to a missing file = %v, want a refusal that names --create:\n%s", err, out)
	}
	if _, err := os.Stat(newKEK); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused rewrap created %s (stat error %v)", newKEK, err)
	}
	s.mustLatch(t, "", "keys", "list") // still sealed under the old key
	out := s.mustLatch(t, "", "keys", "rewrap", "--new-key-encryption-key-file", newKEK, "--create")
	if !strings.Contains(out, "rewrapped 3 sealed values") || !strings.Contains(out, "created a new key-encryption key in "+newKEK) {
		t.Fatalf("keys rewrap --create: %s", out)
	}
	if fi, err := os.Stat(newKEK); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: stat error %v; want mode 600", err)
	}
	if out, err := s.latch(t, "", "keys", "list"); err == nil || !strings.Contains(err.Error(), "wrong key-encryption key") {
		t.Fatalf("the old key still opens the database (%v):\n%s", err, out)
	}
	s.mustLatch(t, "", "keys", "list", "--key-encryption-key-file", newKEK)
	// A node started with the new key serves the sessions made before.
	b := startServer(t, "--database", "sqlite:"+s.db, "--key-encryption-key-file", newKEK)
	if code, body := refresh(t, b, tok["refresh_token"].(string)); code != 200 {
		t.Fatalf("refresh through a node on the new key: %d %v", code, body)
	}
	if out := s.mustLatch(t, "", "audit", "--type", "keys.rewrapped", "--key-encryption-key-file", newKEK); !strings.Contains(out, "keys.rewrapped") {
		t.Fatalf("the rewrap is not in the audit trail:\n%s", out)
	}
}

// TestMissingKEKBesideDatabase: a database whose keys are sealed does not
// start without its key-encryption key file: no new key is made up (it
// would open nothing and be left behind), and the message says to restore
// the file. A fresh database still gets one, and every file is 0600.
func TestMissingKEKBesideDatabase(t *testing.T) {
	s := startServer(t)
	for _, name := range []string{s.db, s.db + "-wal", s.db + "-shm", s.db + ".kek"} {
		if fi, err := os.Stat(name); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(name), fi.Mode().Perm())
		}
	}
	s.stop()
	<-s.done
	s.done <- nil // for the cleanup
	if err := os.Remove(s.db + ".kek"); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(t.TempDir(), "moved.kek")
	for _, tc := range []struct {
		name string
		args []string
		kek  string // the file that must not appear
	}{
		{"default file beside the database", nil, s.db + ".kek"},
		{"--key-encryption-key-file", []string{"--key-encryption-key-file", elsewhere}, elsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--database", "sqlite:" + s.db}, tc.args...)
			err := cli.Run(context.Background(), args, strings.NewReader(""), io.Discard, &logs)
			if err == nil || !strings.Contains(err.Error(), "restore "+tc.kek) {
				t.Fatalf("serve without the key file = %v, want a refusal saying to restore %s\n%s", err, tc.kek, logs.String())
			}
			if _, err := os.Stat(tc.kek); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("serve created %s (stat error %v)", tc.kek, err)
			}
		})
	}
}

// TestMigrateReportsEmailCollisions: rows stored before normalisation are
// rewritten by latch migrate, and two rows that normalise to one address
// are named by user id and left alone, never merged.
func TestMigrateReportsEmailCollisions(t *testing.T) {
	db := filepath.Join(t.TempDir(), "latch.db")
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var ids []string
	for _, addr := range []string{"jos\u00e9@example.com", "jose\u0301@example.com", "user@b\u00fccher.de"} {
		u := session.User{ID: session.NewID(), Email: addr, PasswordHash: "$argon2id$x", CreatedAt: now, PasswordChangedAt: now}
		if err := st.InTx(context.Background(), func(tx session.Tx) error { return tx.InsertUser(context.Background(), u) }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	st.Close()
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"migrate", "--database", "sqlite:" + db}, nil, &out, &out); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	for _, want := range []string{"rewrote 1 stored email addresses", ids[0], ids[1], "normalise to jos\u00e9@example.com", "left unchanged"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), ids[2]) {
		t.Errorf("migrate output names the user whose address was only rewritten:\n%s", out.String())
	}
}

// TestWebhookOnReuse: a refresh token used twice (theft) reaches the app's
// webhook, signed, after the reuse was committed.
func TestWebhookOnReuse(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef-test"
	url, got := hookReceiver(t, secret)
	s := startServer(t, "--webhook-url", url, "--webhook-secret", secret)
	s.mustLatch(t, "a long enough password\n", "users", "create", "hook@example.com", "--password-stdin")
	_, tok := passwordLogin(t, s, "hook@example.com", "a long enough password")
	rt := tok["refresh_token"].(string)
	_, next := refresh(t, s, rt)
	refresh(t, s, next["refresh_token"].(string))
	if code, _ := refresh(t, s, rt); code != 400 { // the grandparent: reuse
		t.Fatalf("reuse answered %d", code)
	}
	select {
	case ev := <-got:
		if ev["type"] != "refresh.reuse" || ev["session_id"] != tok["session_id"] {
			t.Fatalf("webhook event %v, want refresh.reuse of session %v", ev, tok["session_id"])
		}
		for _, v := range ev {
			if s, ok := v.(string); ok && (strings.Contains(s, rt) || strings.Contains(s, "latch_rt_")) {
				t.Fatalf("webhook event carries a refresh token: %v", ev)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook call for refresh reuse")
	}
}

// TestServeSharesRateLimitsThroughRedis: two servers with the same --redis
// count attempts on one account together.
func TestServeSharesRateLimitsThroughRedis(t *testing.T) {
	redisURL := os.Getenv("LATCH_TEST_REDIS")
	if redisURL == "" {
		t.Skip("LATCH_TEST_REDIS is not set")
	}
	flags := []string{"--redis", redisURL, "--trusted-proxies", "127.0.0.0/8"}
	a, b := startServer(t, flags...), startServer(t, flags...)
	email := fmt.Sprintf("shared-%d@example.com", time.Now().UnixNano())
	try := func(s *server, i int) int {
		r, _ := http.NewRequest("POST", s.url+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"password"}, "username": {email}, "password": {"not the password"}, "client_id": {"app"}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 10 { // the account burst, spread over both nodes
		node := a
		if i%2 == 1 {
			node = b
		}
		if code := try(node, i); code != 400 {
			t.Fatalf("attempt %d: %d, want 400 invalid_grant", i, code)
		}
	}
	if code := try(a, 20); code != 429 {
		t.Fatalf("attempt 11 through A after 5 through B: %d, want 429 (limits shared)", code)
	}
}

// TestClientsCreateDefaults: confidential clients get no grants unless
// asked (no password grant for resource servers, LOGIN-13); a client
// without the refresh grant gets no refresh token (RT-24); a wildcard
// audience is refused (AT-05).
func TestClientsCreateDefaults(t *testing.T) {
	s := startServer(t)
	s.mustLatch(t, "", "clients", "create", "rs", "--audience", "rs", "--confidential")
	s.mustLatch(t, "", "clients", "create", "pwonly", "--audience", "pw", "--grants", "password")
	s.mustLatch(t, "", "clients", "create", "spa", "--audience", "spa")
	out := s.mustLatch(t, "", "clients", "list")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^rs\s+confidential\s+rs\s+\S+\s+-?\s*$`),
		regexp.MustCompile(`(?m)^pwonly\s+public\s+pw\s+\S+\s+password\s`),
		regexp.MustCompile(`(?m)^spa\s+public\s+spa\s+\S+\s+password refresh_token\s`),
	} {
		if !want.MatchString(out) {
			t.Fatalf("clients list does not match %s:\n%s", want, out)
		}
	}
	if out, err := s.latch(t, "", "clients", "create", "any", "--audience", "*"); err == nil {
		t.Fatalf("a wildcard audience was accepted:\n%s", out)
	}
	s.mustLatch(t, "a long enough password\n", "users", "create", "grant@example.com", "--password-stdin")
	code, tok := post(t, s.url+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {"grant@example.com"}, "password": {"a long enough password"}, "client_id": {"pwonly"}}.Encode())
	if code != 200 || tok["access_token"] == nil {
		t.Fatalf("password login with pwonly: %d %v", code, tok)
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Fatalf("a client without the refresh grant got a refresh token: %v", tok)
	}
	if code, body := passwordLoginAs(t, s, "rs", "grant@example.com", "a long enough password"); code == 200 {
		t.Fatalf("a confidential client logged a user in with a password by default: %v", body)
	}
}

// TestClientsCreateWeb: --web needs exact origins (https, or http on a
// loopback host), excludes --confidential, and is listed as a web client.
func TestClientsCreateWeb(t *testing.T) {
	s := startServer(t)
	s.mustLatch(t, "", "clients", "create", "web", "--audience", "web", "--web", "--origins", "https://app.example,http://localhost:5173")
	out := s.mustLatch(t, "", "clients", "list")
	if !regexp.MustCompile(`(?m)^web\s+web\s+web\s+\S+\s+password refresh_token\s+https://app.example http://localhost:5173\s*$`).MatchString(out) {
		t.Fatalf("clients list:\n%s", out)
	}
	for _, bad := range [][]string{
		{"--web"},
		{"--origins", "https://app.example"},
		{"--web", "--origins", "https://app.example/"},
		{"--web", "--origins", "https://app.example/path"},
		{"--web", "--origins", "http://app.example"},
		{"--web", "--origins", "https://App.example"},
		{"--web", "--origins", "https://app.example:443"},
		{"--web", "--origins", "*"},
		{"--web", "--origins", "https://app.example", "--confidential"},
	} {
		args := append([]string{"clients", "create", "bad", "--audience", "bad"}, bad...)
		if out, err := s.latch(t, "", args...); err == nil {
			t.Errorf("clients create %q was accepted:\n%s", bad, out)
		}
	}
}

// TestAccountAudienceFlag: --account-audience is the aud the account
// endpoints require; the built-in client gets it, a client created with
// repeated --audience flags has them all, and a client registered for a
// resource server only is refused at GET /v1/sessions.
func TestAccountAudienceFlag(t *testing.T) {
	s := startServer(t, "--account-audience", "https://accounts.example")
	s.mustLatch(t, "", "clients", "create", "notes", "--audience", "https://notes.example")
	s.mustLatch(t, "", "clients", "create", "notes-web", "--audience", "https://notes.example", "--audience", "https://accounts.example")
	out := s.mustLatch(t, "", "clients", "list")
	if want := regexp.MustCompile(`(?m)^notes-web\s+public\s+https://notes\.example https://accounts\.example\s`); !want.MatchString(out) {
		t.Fatalf("clients list does not match %s:\n%s", want, out)
	}
	s.mustLatch(t, "a long enough password\n", "users", "create", "ada@example.com", "--password-stdin")
	for _, tc := range []struct {
		client string
		want   int
	}{{"app", 200}, {"notes-web", 200}, {"notes", 401}} {
		code, tok := passwordLoginAs(t, s, tc.client, "ada@example.com", "a long enough password")
		at, _ := tok["access_token"].(string)
		if code != 200 || at == "" {
			t.Fatalf("login as %s: %d %v", tc.client, code, tok)
		}
		req, _ := http.NewRequest("GET", s.url+"/v1/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /v1/sessions with a token of %s: %d, want %d", tc.client, resp.StatusCode, tc.want)
		}
	}
}

func passwordLoginAs(t *testing.T, s *server, client, email, pw string) (int, map[string]any) {
	return post(t, s.url+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {email}, "password": {pw}, "client_id": {client}}.Encode())
}

// TestServeLimitsHeaders: the real server refuses oversized request headers
// (MaxHeaderBytes 16 KiB, far below net/http's 1 MiB default; GO-06).
func TestServeLimitsHeaders(t *testing.T) {
	s := startServer(t)
	req, _ := http.NewRequest("GET", s.url+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d, want 431", resp.StatusCode)
	}
	req.Header.Set("X-Padding", strings.Repeat("a", 4<<10))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("4 KiB of headers: %v %v", resp, err)
	}
}

// TestVersion: `latch version` names the command and the Go version it was
// built with, and `latch bench` says where the load tool went.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := cli.Run(context.Background(), []string{"version"}, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("version: %v\n%s", err, errOut.String())
	}
	if got := out.String(); !strings.HasPrefix(got, "latch ") || !strings.Contains(got, runtime.Version()) {
		t.Fatalf("version printed %q", got)
	}
	errOut.Reset()
	err := cli.Run(context.Background(), []string{"bench", "refresh"}, strings.NewReader(""), &out, &errOut)
	if !errors.Is(err, cli.ErrUsage) || !strings.Contains(errOut.String(), "latch-bench refresh") {
		t.Fatalf("bench: err %v, stderr %q", err, errOut.String())
	}
}

// TestAdminMessages: a refused admin command says what is wrong in words
// an operator can act on, not the chain of package prefixes.
func TestAdminMessages(t *testing.T) {
	db := filepath.Join(t.TempDir(), "latch.db")
	kek := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	run := func(stdin string, args ...string) error {
		args = append(args, "--database", "sqlite:"+db, "--key-encryption-key", kek, "--argon2-memory", "8192", "--argon2-iterations", "1")
		return cli.Run(context.Background(), args, strings.NewReader(stdin), io.Discard, io.Discard)
	}
	if err := cli.Run(context.Background(), []string{"migrate", "--database", "sqlite:" + db}, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"ada@example.com", "jos\u00e9@example.com", "user@xn--bcher-kva.de"} {
		if err := run("", "users", "create", addr); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"duplicate", "", []string{"users", "create", "ada@example.com"}, "users create: ada@example.com is already registered"},
		{"not an email", "", []string{"users", "create", "not an email"}, `users create: "not an email" is not a valid email address`},
		{"weak password", "short\n", []string{"users", "create", "bob@example.com", "--password-stdin"}, "users create: the password from stdin is refused: must be at least 8 characters"},
		{"duplicate in other Unicode form", "", []string{"users", "create", "ADA@EXAMPLE.COM"}, "users create: ADA@EXAMPLE.COM is already registered"},
		{"duplicate NFD", "", []string{"users", "create", "jose\u0301@example.com"}, "users create: jose\u0301@example.com is already registered"},
		{"duplicate Unicode domain", "", []string{"users", "create", "user@b\u00fccher.de"}, "users create: user@b\u00fccher.de is already registered"},
		{"zero-width space", "", []string{"users", "create", "ad\u200ba@example.com"}, `users create: "ad\u200ba@example.com" contains an invisible or control character`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.stdin, tt.args...)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestClientsAdminAndClaims: the README's two ways. The operator registers
// a backend for the admin API and a client with a claim mapping on the
// database; the backend then manages users over HTTP, and what it sets
// reaches the mapped client's tokens. Reserved claims are refused with a
// message naming the rule.
func TestClientsAdminAndClaims(t *testing.T) {
	const accounts = "https://accounts.example"
	s := startServer(t, "--account-audience", accounts)
	out := s.mustLatch(t, "", "clients", "create", "backend", "--confidential", "--grants", "client_credentials", "--scopes", "admin", "--audience", accounts)
	m := regexp.MustCompile(`client secret \(shown once\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no secret:\n%s", out)
	}
	s.mustLatch(t, "", "clients", "create", "web", "--audience", "web-api", "--audience", accounts)
	out = s.mustLatch(t, "", "clients", "update", "web", "--claims", "roles,tenant")
	if !strings.Contains(out, "claims roles tenant") || !strings.Contains(out, "audiences web-api "+accounts) {
		t.Fatalf("clients update: %s", out)
	}
	if out, err := s.latch(t, "", "clients", "update", "web", "--claims", "roles,sub"); err == nil || !strings.Contains(out+err.Error(), `claim "sub" is reserved`) {
		t.Fatalf("a reserved claim was accepted: %v\n%s", err, out)
	}
	if out, err := s.latch(t, "", "clients", "create", "spa2", "--audience", "x", "--grants", "client_credentials"); err == nil || !strings.Contains(err.Error(), "only for confidential clients") {
		t.Fatalf("a public client got client_credentials: %v\n%s", err, out)
	}
	if out := s.mustLatch(t, "", "clients", "list"); !regexp.MustCompile(`(?m)^web\s.*roles tenant\s*$`).MatchString(out) {
		t.Fatalf("clients list shows no claims:\n%s", out)
	}

	req, _ := http.NewRequest("POST", s.url+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("backend", m[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	at, _ := tok["access_token"].(string)
	if resp.StatusCode != 200 || at == "" {
		t.Fatalf("client_credentials: %d %v", resp.StatusCode, tok)
	}
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+at)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	if code, u := call("POST", "/admin/v1/users", `{"email":"ann@example.com","password":"a long enough password","app_metadata":{"roles":["editor"]}}`); code != 201 {
		t.Fatalf("create user: %d %v", code, u)
	}
	if out := s.mustLatch(t, "", "users", "list"); !strings.Contains(out, "ann@example.com") {
		t.Fatalf("the CLI does not see the user the API created:\n%s", out)
	}
	if out := s.mustLatch(t, "", "audit", "--type", "user.created"); !strings.Contains(out, "backend") {
		t.Fatalf("audit shows no actor:\n%s", out)
	}
	code, login := post(t, s.url+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {"ann@example.com"}, "password": {"a long enough password"}, "client_id": {"web"}}.Encode())
	if code != 200 {
		t.Fatalf("login: %d %v", code, login)
	}
	parts := strings.Split(login["access_token"].(string), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(payload), `"roles":["editor"]`) {
		t.Fatalf("token claims %s lack the role", payload)
	}
}
