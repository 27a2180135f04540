package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/testenv"
)

// TestNoSecretsInLogs runs signup, login, a failed login, refresh, a grace
// duplicate, reuse, password change and logout with debug logging, and
// finds no token, refresh token or password in anything logged
// (docs/security.md RT-20, LOGIN-12).
func TestNoSecretsInLogs(t *testing.T) {
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, srv := newServer(t, testenv.Options{Log: log})
	const pw, newPW = "first secret passphrase", "second secret passphrase"
	var secrets []string
	tokens := func(r reply) (string, string) {
		t.Helper()
		var tok struct{ AccessToken, RefreshToken string }
		var raw map[string]string
		json.Unmarshal(r.Body, &raw)
		tok.AccessToken, tok.RefreshToken = raw["access_token"], raw["refresh_token"]
		if tok.AccessToken == "" || tok.RefreshToken == "" {
			t.Fatalf("no tokens in %s", r)
		}
		secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
		return tok.AccessToken, tok.RefreshToken
	}
	form := "application/x-www-form-urlencoded"
	at, rt := tokens(postJSON(t, srv, "/v1/signup", map[string]string{"email": "log@example.com", "password": pw}, ""))
	postJSON(t, srv, "/v1/login", map[string]string{"email": "log@example.com", "password": "a wrong guess here"}, "")
	postJSON(t, srv, "/v1/login", map[string]string{"email": "nobody@example.com", "password": pw}, "")
	at2, rt2 := tokens(postJSON(t, srv, "/v1/login", map[string]string{"email": "log@example.com", "password": pw}, ""))
	_, rt3 := tokens(send(t, srv, req{method: "POST", path: "/oauth/token", contentType: form, body: "grant_type=refresh_token&client_id=app&refresh_token=" + rt2}))
	send(t, srv, req{method: "POST", path: "/oauth/token", contentType: form, body: "grant_type=refresh_token&client_id=app&refresh_token=" + rt2}) // grace duplicate
	tokens(send(t, srv, req{method: "POST", path: "/oauth/token", contentType: form, body: "grant_type=refresh_token&client_id=app&refresh_token=" + rt3}))
	send(t, srv, req{method: "POST", path: "/oauth/token", contentType: form, body: "grant_type=refresh_token&client_id=app&refresh_token=" + rt2}) // reuse
	send(t, srv, req{method: "POST", path: "/oauth/token", contentType: form, body: "grant_type=password&client_id=app&username=log%40example.com&password=" + strings.ReplaceAll(pw, " ", "+")})
	if r := postJSON(t, srv, "/v1/password", map[string]string{"current_password": pw, "new_password": newPW}, at); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Fatalf("password change: %s", r)
	}
	send(t, srv, req{method: "POST", path: "/oauth/revoke", contentType: form, body: "client_id=app&token=" + rt})
	postJSON(t, srv, "/v1/logout", map[string]string{"scope": "all"}, at2)
	send(t, srv, req{method: "GET", path: "/v1/sessions?access_token=" + at, bearer: at})

	out := logs.String()
	if !strings.Contains(out, `"msg":"request"`) || !strings.Contains(out, "refresh") {
		t.Fatalf("the flow logged too little to be a test:\n%s", out)
	}
	for _, s := range append(secrets, pw, newPW, "latch_rt_") {
		for _, probe := range []string{s, s[:min(len(s), 24)]} {
			if strings.Contains(out, probe) {
				t.Fatalf("the logs contain a secret (%.12s…):\n%s", probe, out)
			}
		}
	}
}

// TestRequestID: every response carries X-Request-Id, a sane caller's id
// is kept, anything else replaced, and the access log line names it.
func TestRequestID(t *testing.T) {
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	_, srv := newServer(t, testenv.Options{Log: log})
	r := send(t, srv, req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "trace-42.a_b"}})
	if got := r.Header.Get("X-Request-Id"); got != "trace-42.a_b" {
		t.Fatalf("X-Request-Id = %q, want the caller's", got)
	}
	if !strings.Contains(logs.String(), `"request_id":"trace-42.a_b"`) {
		t.Fatalf("the access log does not name the request id:\n%s", logs.String())
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 65), "inj\"ect", "new\\nline"} {
		r := send(t, srv, req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": bad}})
		if got := r.Header.Get("X-Request-Id"); got == bad || len(got) != 24 {
			t.Fatalf("X-Request-Id %q answered %q, want a fresh id", bad, got)
		}
	}
	if r := send(t, srv, req{method: "GET", path: "/healthz"}); r.Header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id on a response")
	}
}
