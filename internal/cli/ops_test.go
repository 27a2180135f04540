package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/cli"
)

// TestServeRateFlags: --rate-login-ip sets the per-IP login bucket: with
// 2/1m the third attempt from one address is throttled, where the default
// (30/1m) would let it through.
func TestServeRateFlags(t *testing.T) {
	s := startServer(t, "--rate-login-ip", "2/1m")
	for i, want := range []int{400, 400, 429} {
		if code, body := passwordLogin(t, s, "nobody@example.com", "not the password"); code != want {
			t.Fatalf("attempt %d: %d %v, want %d", i+1, code, body, want)
		}
	}
}

// TestAdminNeverCreatesDatabase: an admin command on a path with no
// database fails with a message naming the path and how to create one,
// and leaves no file behind.
func TestAdminNeverCreatesDatabase(t *testing.T) {
	for _, args := range [][]string{
		{"users", "list"}, {"users", "enable", "a@example.com"}, {"sessions", "revoke", "--user", "a@example.com"},
		{"keys", "list"}, {"clients", "list"}, {"clients", "delete", "x"}, {"clients", "rotate-secret", "x"}, {"audit"},
	} {
		path := filepath.Join(t.TempDir(), "typo.db")
		var out bytes.Buffer
		err := cli.Run(context.Background(), append(args, "--database", "sqlite:"+path), strings.NewReader(""), &out, &out)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "latch migrate") {
			t.Errorf("%q: error %v, want one naming %s and latch migrate", args, err, path)
		}
		if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%q created %s (stat: %v)", args, path, serr)
		}
	}
}

func auditCount(t *testing.T, s *server, typ string) int {
	t.Helper()
	out := s.mustLatch(t, "", "audit", "--type", typ, "--json", "--limit", "0")
	return strings.Count(out, "\n")
}

// TestUsersEnable: a disabled user can log in again once enabled; enabling
// a user who is not disabled changes and records nothing.
func TestUsersEnable(t *testing.T) {
	s := startServer(t)
	const pw = "a long enough password"
	s.mustLatch(t, pw+"\n", "users", "create", "back@example.com", "--password-stdin")
	s.mustLatch(t, "", "users", "disable", "back@example.com")
	if code, body := passwordLogin(t, s, "back@example.com", pw); code != 400 {
		t.Fatalf("login while disabled: %d %v", code, body)
	}
	if out := s.mustLatch(t, "", "users", "enable", "back@example.com"); !strings.Contains(out, "enabled back@example.com") {
		t.Fatalf("users enable: %q", out)
	}
	if code, body := passwordLogin(t, s, "back@example.com", pw); code != 200 {
		t.Fatalf("login after enable: %d %v", code, body)
	}
	if out := s.mustLatch(t, "", "users", "list"); !regexp.MustCompile(`(?m)^\S+\s+back@example.com\s+\S+\s+-\s*$`).MatchString(out) {
		t.Fatalf("users list still shows the user disabled:\n%s", out)
	}
	if out := s.mustLatch(t, "", "users", "enable", "back@example.com"); !strings.Contains(out, "not disabled") {
		t.Fatalf("second users enable: %q", out)
	}
	if n := auditCount(t, s, "user.enabled"); n != 1 {
		t.Fatalf("%d user.enabled events, want 1 (a repeat records nothing)", n)
	}
	if out, err := s.latch(t, "", "users", "enable", "nobody@example.com"); err == nil || !strings.Contains(err.Error(), "no user with email nobody@example.com") {
		t.Fatalf("users enable of an unknown user: %v %s", err, out)
	}
}

// TestSessionsRevokeUser: --user ends every session of the user, who may
// log in again; a repeat ends none and records nothing.
func TestSessionsRevokeUser(t *testing.T) {
	s := startServer(t)
	const pw = "a long enough password"
	s.mustLatch(t, pw+"\n", "users", "create", "many@example.com", "--password-stdin")
	s.mustLatch(t, pw+"\n", "users", "create", "other@example.com", "--password-stdin")
	var rts []string
	for range 2 {
		_, tok := passwordLogin(t, s, "many@example.com", pw)
		rts = append(rts, tok["refresh_token"].(string))
	}
	_, other := passwordLogin(t, s, "other@example.com", pw)
	if out := s.mustLatch(t, "", "sessions", "revoke", "--user", "many@example.com"); !strings.Contains(out, "revoked 2 sessions of many@example.com") {
		t.Fatalf("sessions revoke --user: %q", out)
	}
	for i, rt := range rts {
		if code, body := refresh(t, s, rt); code != 400 {
			t.Fatalf("refresh of revoked session %d: %d %v", i, code, body)
		}
	}
	if code, body := refresh(t, s, other["refresh_token"].(string)); code != 200 {
		t.Fatalf("another user's session was revoked too: %d %v", code, body)
	}
	if code, body := passwordLogin(t, s, "many@example.com", pw); code != 200 {
		t.Fatalf("login after revoke --user: %d %v", code, body)
	}
	before := auditCount(t, s, "session.revoked")
	s.mustLatch(t, "", "sessions", "revoke", "--user", "other@example.com")
	if out := s.mustLatch(t, "", "sessions", "revoke", "--user", "other@example.com"); !strings.Contains(out, "revoked 0 sessions") {
		t.Fatalf("repeat: %q", out)
	}
	if n := auditCount(t, s, "session.revoked"); n != before+1 {
		t.Fatalf("session.revoked events %d, want %d (a repeat records nothing)", n, before+1)
	}
	if _, err := s.latch(t, "", "sessions", "revoke", "SOMEID", "--user", "many@example.com"); !errors.Is(err, cli.ErrUsage) {
		t.Fatalf("both SESSION_ID and --user: %v, want a usage error", err)
	}
}

// TestClientsDeleteAndRotateSecret: deleting a client ends its sessions;
// rotating a secret prints a new one once, which works where the old one
// no longer does.
func TestClientsDeleteAndRotateSecret(t *testing.T) {
	s := startServer(t)
	const pw = "a long enough password"
	s.mustLatch(t, pw+"\n", "users", "create", "c@example.com", "--password-stdin")
	s.mustLatch(t, "", "clients", "create", "spa", "--audience", "spa")
	_, viaSPA := passwordLoginAs(t, s, "spa", "c@example.com", pw)
	_, viaApp := passwordLogin(t, s, "c@example.com", pw)
	if out := s.mustLatch(t, "", "clients", "delete", "spa"); !strings.Contains(out, "deleted client spa; 1 of its sessions revoked") {
		t.Fatalf("clients delete: %q", out)
	}
	if code, body := refresh(t, s, viaSPA["refresh_token"].(string)); code != 400 {
		t.Fatalf("refresh through a deleted client: %d %v", code, body)
	}
	if code, body := refresh(t, s, viaApp["refresh_token"].(string)); code != 200 {
		t.Fatalf("a session of another client was ended: %d %v", code, body)
	}
	if out := s.mustLatch(t, "", "clients", "list"); regexp.MustCompile(`(?m)^spa\s`).MatchString(out) {
		t.Fatalf("clients list still shows spa:\n%s", out)
	}
	for _, tc := range []struct{ args, want string }{
		{"clients delete spa", "no client spa"},
		{"clients delete app", "built-in client"},
		{"clients rotate-secret nope", "no client nope"},
		{"clients rotate-secret app", "public client"},
	} {
		if out, err := s.latch(t, "", strings.Fields(tc.args)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("latch %s: %v %s, want an error saying %q", tc.args, err, out, tc.want)
		}
	}

	out := s.mustLatch(t, "", "clients", "create", "rs", "--audience", "rs", "--confidential")
	old := regexp.MustCompile(`client secret \(shown once\): (\S+)`).FindStringSubmatch(out)[1]
	out = s.mustLatch(t, "", "clients", "rotate-secret", "rs")
	m := regexp.MustCompile(`client secret \(shown once\): (\S+)`).FindStringSubmatch(out)
	if m == nil || m[1] == old {
		t.Fatalf("rotate-secret output %q", out)
	}
	for secret, want := range map[string]int{old: 401, m[1]: 200} {
		if code, body := post(t, s.url+"/oauth/revoke", url.Values{"token": {"x"}, "client_id": {"rs"}, "client_secret": {secret}}.Encode()); code != want {
			t.Errorf("revoke with the %s secret: %d %v, want %d", map[bool]string{true: "old", false: "new"}[secret == old], code, body, want)
		}
	}
	if n := auditCount(t, s, "client.secret_rotated"); n != 1 {
		t.Fatalf("%d client.secret_rotated events, want 1", n)
	}
}

func readyz(t *testing.T, s *server) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(s.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]string
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestReadyzNamesRedis: with --redis pointing nowhere, /readyz stays 200
// (the node serves, limiting per process) but says "degraded" and names
// redis; logins are still throttled; every line on stderr is JSON. With a
// live Redis it says ready and redis ok.
func TestReadyzNamesRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "redis://" + ln.Addr().String() + "/0"
	ln.Close() // nothing listens there now
	s := startServer(t, "--redis", nowhere, "--rate-login-ip", "2/1m")
	if code, body := readyz(t, s); code != 200 || body["status"] != "degraded" || body["redis"] != "unreachable" {
		t.Fatalf("/readyz with Redis down: %d %v, want 200 degraded, redis unreachable", code, body)
	}
	for i, want := range []int{400, 400, 429} {
		if code, body := passwordLogin(t, s, "nobody@example.com", "not the password"); code != want {
			t.Fatalf("attempt %d with Redis down: %d %v, want %d", i+1, code, body, want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("stderr line is not JSON: %q", line)
		}
	}
	if !strings.Contains(s.logs.String(), `"dependency":"redis"`) {
		t.Errorf("the log does not say why readiness is degraded:\n%s", s.logs)
	}

	live := os.Getenv("LATCH_TEST_REDIS")
	if live == "" {
		t.Skip("LATCH_TEST_REDIS is not set: the live half is skipped")
	}
	s = startServer(t, "--redis", live)
	if code, body := readyz(t, s); code != 200 || body["status"] != "ready" || body["redis"] != "ok" {
		t.Fatalf("/readyz with Redis up: %d %v, want 200 ready, redis ok", code, body)
	}
}
