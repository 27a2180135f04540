package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestJSONKeysAreExact: encoding/json alone would accept a duplicated or
// case-variant key (last one wins), letting a proxy that reads the first
// "email" and Latch disagree about who logs in.
func TestJSONKeysAreExact(t *testing.T) {
	_, srv := newServer(t, testenv.Options{})
	signupOnly(t, srv, "ada@example.com", testenv.Password)
	tests := []struct {
		name, body string
	}{
		{"duplicate key", `{"email":"nobody@example.com","email":"ada@example.com","password":"` + testenv.Password + `"}`},
		{"case-variant key", `{"email":"nobody@example.com","EMAIL":"ada@example.com","password":"` + testenv.Password + `"}`},
		{"case-variant only", `{"Email":"ada@example.com","password":"` + testenv.Password + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, postJSON(t, srv, "/v1/login", tt.body, ""), http.StatusBadRequest, "invalid_request")
		})
	}
	// The embedded fields of the signup body are still accepted.
	r := postJSON(t, srv, "/v1/signup", `{"email":"bob@example.com","password":"`+testenv.Password+`","client_id":"app","login":true}`, "")
	checkTokenResponse(t, r, http.StatusCreated)
}

// TestJSONProblemsSpeakJSON: a body of the wrong shape is answered in the
// client's terms (JSON kinds and field names), never with Go types, and
// without echoing what was sent.
func TestJSONProblemsSpeakJSON(t *testing.T) {
	_, srv := newServer(t, testenv.Options{})
	tests := []struct {
		name, body, want string
	}{
		{"array body", `["ada@example.com"]`, "the body must be a JSON object, not an array"},
		{"string body", `"ada@example.com"`, "the body must be a JSON object, not a string"},
		{"number for a string", `{"email":12345,"password":"x"}`, `field "email" must be a string, not a number`},
		{"object for a string", `{"email":{"a":1},"password":"x"}`, `field "email" must be a string, not an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := postJSON(t, srv, "/v1/login", tt.body, "")
			wantError(t, r, http.StatusBadRequest, "invalid_request")
			var e struct {
				Description string `json:"error_description"`
			}
			r.decode(t, &e)
			if !strings.Contains(e.Description, tt.want) || strings.Contains(e.Description, "httpapi") ||
				strings.Contains(e.Description, "struct") || strings.Contains(e.Description, "12345") {
				t.Fatalf("error_description %q, want it to say %q", e.Description, tt.want)
			}
		})
	}
}

// TestRevokeAnotherClientsToken: RFC 7009 section 2.1 refuses to revoke a
// token issued to another client, and the session survives.
func TestRevokeAnotherClientsToken(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "other", Audiences: []string{"other"},
		AccessTTL: time.Minute, Grants: []string{session.GrantRefresh}}); err != nil {
		t.Fatal(err)
	}
	tok := signup(t, srv, "ada@example.com")
	for _, token := range []string{tok.RefreshToken, tok.AccessToken} {
		r := postForm(t, srv, "/oauth/revoke", url.Values{"token": {token}, "client_id": {"other"}})
		wantError(t, r, http.StatusBadRequest, "invalid_request")
	}
	mustRefresh(t, srv, tok.RefreshToken)
}

func TestMethodNotAllowed(t *testing.T) {
	_, srv := newServer(t, testenv.Options{})
	tests := []struct {
		method, path, allow string
	}{
		{"GET", "/v1/login", "POST"},
		{"PUT", "/oauth/token", "POST"},
		{"POST", "/v1/sessions", "GET"},
		{"GET", "/v1/sessions/abc", "DELETE"},
		{"POST", "/.well-known/jwks.json", "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := send(t, srv, req{method: tt.method, path: tt.path})
			wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
	wantError(t, send(t, srv, req{method: "GET", path: "/v2/nothing"}), http.StatusNotFound, "not_found")
}

// TestScopes: a login grants the requested scopes the client may have and
// names them (RFC 6749 section 3.3); a refresh may narrow the access token
// but never widen it, and the session keeps its scope (section 6).
func TestScopes(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "notes", Audiences: []string{"notes"},
		AccessTTL: time.Minute, Grants: []string{session.GrantPassword, session.GrantRefresh}, Scopes: []string{"read", "write"}}); err != nil {
		t.Fatal(err)
	}
	signupOnly(t, srv, "ada@example.com", testenv.Password)
	grant := func(client, scope string) reply {
		return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {client},
			"username": {"ada@example.com"}, "password": {testenv.Password}, "scope": {scope}})
	}
	scopeOf := func(r reply) any {
		var m map[string]any
		r.decode(t, &m)
		return m["scope"]
	}
	if r := grant("app", "openid profile"); r.Status != 200 || scopeOf(r) != "" {
		t.Fatalf("app client asking for openid: %s; want 200 with an empty granted scope", r)
	}
	r := grant("notes", "read admin")
	if r.Status != 200 || scopeOf(r) != "read" {
		t.Fatalf("notes asking for read admin: %s; want scope read", r)
	}
	r = grant("notes", "")
	if scopeOf(r) != "read write" {
		t.Fatalf("notes asking for nothing: %s; want the client's scopes", r)
	}
	tok := checkTokenResponse(t, r, 200)
	refreshScope := func(rt, scope string) reply {
		return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"notes"}, "refresh_token": {rt}, "scope": {scope}})
	}
	wantError(t, refreshScope(tok.RefreshToken, "admin"), http.StatusBadRequest, "invalid_scope")
	r = refreshScope(tok.RefreshToken, "read")
	if scopeOf(r) != "read" {
		t.Fatalf("narrowing refresh: %s", r)
	}
	next := checkTokenResponse(t, r, 200)
	if r := refreshScope(next.RefreshToken, ""); scopeOf(r) != "read write" {
		t.Fatalf("refresh after narrowing: %s; the session must keep read write", r)
	}
}
