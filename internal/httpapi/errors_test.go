package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

const (
	formType = "application/x-www-form-urlencoded"
	jsonType = "application/json"
)

// TestErrorShapes checks that every refusal is the one JSON error object
// with the right status and code.
func TestErrorShapes(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	live := signup(t, srv, "user@example.com")
	for _, c := range []session.Client{
		{ID: "refresh-only", Audiences: []string{"api"}, AccessTTL: 15 * time.Minute, Grants: []string{session.GrantRefresh}},
		{ID: "conf", Audiences: []string{"api"}, AccessTTL: 15 * time.Minute, Grants: []string{session.GrantPassword, session.GrantRefresh},
			SecretHash: session.HashClientSecret("s3cret")},
	} {
		if err := env.Sessions.EnsureClient(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	basic := func(id, secret string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))}
	}
	revoked := login(t, srv, "user@example.com", testPassword, "revoked device")
	if r := send(t, srv, req{method: http.MethodPost, path: "/v1/logout", bearer: revoked.AccessToken}); r.Status != http.StatusOK {
		t.Fatalf("logout: %s", r)
	}
	big := `{"email":"` + strings.Repeat("a", 70<<10) + `@example.com","password":"x"}`
	bigForm := url.Values{"grant_type": {"password"}, "username": {"user@example.com"}, "password": {strings.Repeat("p", 70<<10)}}.Encode()

	type challenge int
	const (
		noChallenge      challenge = iota // WWW-Authenticate not checked
		bareChallenge                     // Bearer, no error code (RFC 6750 section 3.1)
		invalidTokenChal                  // Bearer with error="invalid_token"
		basicChallenge                    // Basic (RFC 6749 section 5.2)
	)
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantCode   string
		challenge  challenge
	}{
		// /oauth/token
		{"token endpoint with JSON", req{method: "POST", path: "/oauth/token", contentType: jsonType, body: `{"grant_type":"password","username":"user@example.com","password":"correct horse battery staple"}`},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"token endpoint without content type", req{method: "POST", path: "/oauth/token", body: "grant_type=refresh_token&refresh_token=x"},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"unknown grant type", req{method: "POST", path: "/oauth/token", contentType: formType, body: "grant_type=authorization_code&code=x&client_id=app"},
			http.StatusBadRequest, "unsupported_grant_type", noChallenge},
		{"missing grant type", req{method: "POST", path: "/oauth/token", contentType: formType, body: "refresh_token=" + url.QueryEscape(live.RefreshToken) + "&client_id=app"},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"duplicate parameter", req{method: "POST", path: "/oauth/token", contentType: formType, body: "grant_type=refresh_token&grant_type=password"},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"duplicate parameter in an otherwise valid grant", req{method: "POST", path: "/oauth/token", contentType: formType,
			body: "grant_type=password&grant_type=refresh_token&username=user%40example.com&password=" + url.QueryEscape(testPassword) + "&client_id=app"},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"malformed refresh token", req{method: "POST", path: "/oauth/token", contentType: formType, body: "grant_type=refresh_token&refresh_token=latch_rt_notatoken&client_id=app"},
			http.StatusBadRequest, "invalid_grant", noChallenge},
		{"missing refresh token", req{method: "POST", path: "/oauth/token", contentType: formType, body: "grant_type=refresh_token&client_id=app"},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"missing password", req{method: "POST", path: "/oauth/token", contentType: formType, body: "grant_type=password&username=user%40example.com&client_id=app"},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"unknown client", req{method: "POST", path: "/oauth/token", contentType: formType, body: "grant_type=refresh_token&refresh_token=" + url.QueryEscape(live.RefreshToken) + "&client_id=nope"},
			http.StatusUnauthorized, "invalid_client", noChallenge},
		{"secret for a public client", req{method: "POST", path: "/oauth/token", contentType: formType, body: "grant_type=refresh_token&refresh_token=" + url.QueryEscape(live.RefreshToken) + "&client_id=app&client_secret=s3cret"},
			http.StatusUnauthorized, "invalid_client", noChallenge},
		{"password grant for a client without it", req{method: "POST", path: "/oauth/token", contentType: formType,
			body: "grant_type=password&username=user%40example.com&password=" + url.QueryEscape(testPassword) + "&client_id=refresh-only"},
			http.StatusBadRequest, "unauthorized_client", noChallenge},
		{"refresh token of another client", req{method: "POST", path: "/oauth/token", contentType: formType,
			body: "grant_type=refresh_token&refresh_token=" + url.QueryEscape(live.RefreshToken) + "&client_id=refresh-only"},
			http.StatusBadRequest, "invalid_grant", noChallenge},
		{"confidential client with a wrong secret", req{method: "POST", path: "/oauth/token", contentType: formType,
			body: "grant_type=password&username=user%40example.com&password=" + url.QueryEscape(testPassword), header: basic("conf", "wrong")},
			http.StatusUnauthorized, "invalid_client", basicChallenge},
		{"confidential client without a secret", req{method: "POST", path: "/oauth/token", contentType: formType,
			body: "grant_type=password&username=user%40example.com&password=" + url.QueryEscape(testPassword) + "&client_id=conf"},
			http.StatusUnauthorized, "invalid_client", noChallenge},
		{"token form over 64 KiB", req{method: "POST", path: "/oauth/token", contentType: formType, body: bigForm},
			http.StatusRequestEntityTooLarge, "request_too_large", noChallenge},

		// /oauth/revoke
		{"revoke with JSON", req{method: "POST", path: "/oauth/revoke", contentType: jsonType, body: `{"token":"x"}`},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"revoke without token", req{method: "POST", path: "/oauth/revoke", contentType: formType, body: "client_id=app"},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"revoke by unknown client", req{method: "POST", path: "/oauth/revoke", contentType: formType, body: "token=x&client_id=nope"},
			http.StatusUnauthorized, "invalid_client", noChallenge},

		// JSON endpoints
		{"login with unknown field", req{method: "POST", path: "/v1/login", contentType: jsonType, body: `{"email":"user@example.com","password":"correct horse battery staple","remember":true}`},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"login with trailing garbage", req{method: "POST", path: "/v1/login", contentType: jsonType, body: `{"email":"user@example.com","password":"correct horse battery staple"} garbage`},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"login with two objects", req{method: "POST", path: "/v1/login", contentType: jsonType, body: `{"email":"user@example.com","password":"correct horse battery staple"}{}`},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"login with syntax error", req{method: "POST", path: "/v1/login", contentType: jsonType, body: `{"email":`},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"login with wrong type", req{method: "POST", path: "/v1/login", contentType: jsonType, body: `{"email":42,"password":"x"}`},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"login with empty body", req{method: "POST", path: "/v1/login", contentType: jsonType},
			http.StatusBadRequest, "invalid_request", noChallenge},
		{"login for a client without the password grant", req{method: "POST", path: "/v1/login", contentType: jsonType,
			body: `{"email":"user@example.com","password":"correct horse battery staple","client_id":"refresh-only"}`},
			http.StatusBadRequest, "unauthorized_client", noChallenge},
		{"login for a confidential client", req{method: "POST", path: "/v1/login", contentType: jsonType,
			body: `{"email":"user@example.com","password":"correct horse battery staple","client_id":"conf"}`},
			http.StatusUnauthorized, "invalid_client", noChallenge},
		{"login with a form", req{method: "POST", path: "/v1/login", contentType: formType, body: "email=user%40example.com&password=x"},
			http.StatusUnsupportedMediaType, "unsupported_media_type", noChallenge},
		{"login body over 64 KiB", req{method: "POST", path: "/v1/login", contentType: jsonType, body: big},
			http.StatusRequestEntityTooLarge, "request_too_large", noChallenge},
		{"signup body over 64 KiB", req{method: "POST", path: "/v1/signup", contentType: jsonType, body: big},
			http.StatusRequestEntityTooLarge, "request_too_large", noChallenge},
		{"login with unknown client", req{method: "POST", path: "/v1/login", contentType: jsonType, body: `{"email":"user@example.com","password":"correct horse battery staple","client_id":"nope"}`},
			http.StatusUnauthorized, "invalid_client", noChallenge},

		// Bearer-protected endpoints
		{"sessions without Authorization", req{method: "GET", path: "/v1/sessions"},
			http.StatusUnauthorized, "invalid_token", bareChallenge},
		{"sessions with Basic credentials", req{method: "GET", path: "/v1/sessions", header: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}},
			http.StatusUnauthorized, "invalid_token", bareChallenge},
		{"sessions with a garbage token", req{method: "GET", path: "/v1/sessions", bearer: "garbage"},
			http.StatusUnauthorized, "invalid_token", invalidTokenChal},
		{"sessions with a refresh token", req{method: "GET", path: "/v1/sessions", bearer: live.RefreshToken},
			http.StatusUnauthorized, "invalid_token", invalidTokenChal},
		{"sessions with a revoked session's access token", req{method: "GET", path: "/v1/sessions", bearer: revoked.AccessToken},
			http.StatusUnauthorized, "invalid_token", invalidTokenChal},
		{"logout without Authorization", req{method: "POST", path: "/v1/logout"},
			http.StatusUnauthorized, "invalid_token", bareChallenge},
		{"password with a revoked session's access token", req{method: "POST", path: "/v1/password", contentType: jsonType, bearer: revoked.AccessToken,
			body: `{"current_password":"correct horse battery staple","new_password":"a brand new passphrase"}`},
			http.StatusUnauthorized, "invalid_token", invalidTokenChal},
		{"delete session without Authorization", req{method: "DELETE", path: "/v1/sessions/" + live.SessionID},
			http.StatusUnauthorized, "invalid_token", bareChallenge},

		{"unknown path", req{method: "GET", path: "/v1/nope"}, http.StatusNotFound, "not_found", noChallenge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := send(t, srv, tt.req)
			wantError(t, r, tt.wantStatus, tt.wantCode)
			if got := r.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			ch := r.Header.Get("WWW-Authenticate")
			switch tt.challenge {
			case bareChallenge:
				if !strings.HasPrefix(ch, "Bearer") || strings.Contains(ch, "error=") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge without an error code", ch)
				}
			case basicChallenge:
				if !strings.HasPrefix(ch, "Basic") {
					t.Errorf("WWW-Authenticate = %q, want a Basic challenge", ch)
				}
			case invalidTokenChal:
				if !strings.HasPrefix(ch, "Bearer") || !strings.Contains(ch, `error="invalid_token"`) {
					t.Errorf(`WWW-Authenticate = %q, want a Bearer challenge with error="invalid_token"`, ch)
				}
			}
		})
	}

	// None of the refusals above touched the live session or the password.
	next := mustRefresh(t, srv, live.RefreshToken)
	if list := listSessions(t, srv, next.AccessToken); len(list) != 1 || list[0].ID != live.SessionID {
		t.Errorf("sessions = %+v, want only %s", list, live.SessionID)
	}
	login(t, srv, "user@example.com", testPassword, testUA)
}

// TestAccessTokenExpiry checks that the account endpoints judge an access
// token's exp by the server clock, with the verifier's 30s leeway.
func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		advance time.Duration
		wantOK  bool
	}{
		{"fresh", 0, true},
		{"just before exp", 15*time.Minute - time.Second, true},
		{"within leeway", 15*time.Minute + 20*time.Second, true},
		{"past exp and leeway", 15*time.Minute + 31*time.Second, false},
		{"a day later", 24 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, srv := newServer(t, testenv.Options{})
			tr := signup(t, srv, "user@example.com")
			env.Clock.Advance(tt.advance)
			r := get(t, srv, "/v1/sessions", tr.AccessToken)
			if tt.wantOK {
				if r.Status != http.StatusOK {
					t.Errorf("GET /v1/sessions = %s, want 200", r)
				}
				return
			}
			wantError(t, r, http.StatusUnauthorized, "invalid_token")
			if ch := r.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
				t.Errorf(`WWW-Authenticate = %q, want error="invalid_token"`, ch)
			}
			// The session itself is fine: a refresh gets a working token.
			next := mustRefresh(t, srv, tr.RefreshToken)
			if r := get(t, srv, "/v1/sessions", next.AccessToken); r.Status != http.StatusOK {
				t.Errorf("GET /v1/sessions with the refreshed token = %s, want 200", r)
			}
		})
	}
}
