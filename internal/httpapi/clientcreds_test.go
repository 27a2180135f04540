package httpapi_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// newConfidential registers a confidential client through the session
// service, as `latch clients create` does, and returns its secret.
func newConfidential(t *testing.T, env *testenv.Env, c session.Client) string {
	t.Helper()
	if c.AccessTTL == 0 {
		c.AccessTTL = 5 * time.Minute
	}
	if c.Audiences == nil {
		c.Audiences = []string{testenv.Issuer}
	}
	_, secret, err := env.Sessions.CreateClient(context.Background(), c, true, session.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// clientToken asks for a client-credentials token with HTTP Basic.
func clientToken(t *testing.T, srv *httptest.Server, id, secret string, form url.Values) reply {
	t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("grant_type", "client_credentials")
	return send(t, srv, req{method: http.MethodPost, path: "/oauth/token", body: form.Encode(), contentType: "application/x-www-form-urlencoded",
		header: map[string]string{"Authorization": basicAuth(id, secret)}})
}

// TestClientCredentials (RFC 6749 section 4.4): a confidential client
// registered for the grant gets an access token for itself: sub and
// client_id are its id, no sid, no refresh token, no session_id; its scopes
// by default, fewer if asked, an unknown one refused; the token is audited.
// bearer refuses it unless told to accept client tokens, and then verifies
// it like any other.
func TestClientCredentials(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	secret := newConfidential(t, env, session.Client{ID: "backend", Grants: []string{"client_credentials"}, Scopes: []string{"admin", "reports"}})

	r := clientToken(t, srv, "backend", secret, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("client_credentials: %s", r)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	var raw map[string]any
	r.decode(t, &raw)
	for _, k := range []string{"refresh_token", "session_id", "device_token"} {
		if _, ok := raw[k]; ok {
			t.Errorf("client-credentials response has %q (RFC 6749 section 4.4.3: no refresh token; no session): %s", k, r.Body)
		}
	}
	if raw["token_type"] != "Bearer" || raw["scope"] != "admin reports" {
		t.Errorf("token_type, scope = %v, %v; want Bearer, %q", raw["token_type"], raw["scope"], "admin reports")
	}
	at, _ := raw["access_token"].(string)

	// The default verifier (a resource server for users) refuses it.
	if _, err := env.Verify(at); !errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("a user verifier accepted a client token: %v", err)
	}
	cfg := env.Issuer.VerifierConfig(testenv.Issuer)
	cfg.AcceptClientTokens = true
	v, err := bearer.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(context.Background(), at)
	if err != nil {
		t.Fatalf("verify with AcceptClientTokens: %v", err)
	}
	if !c.IsClient() || c.Subject != "backend" || c.ClientID != "backend" || c.SessionID != "" || !c.HasScope("admin") {
		t.Errorf("claims = %+v; want a client token of backend with scope admin", c)
	}

	// Fewer scopes on request; one the client lacks is invalid_scope.
	r = clientToken(t, srv, "backend", secret, url.Values{"scope": {"reports"}})
	r.decode(t, &raw)
	if r.Status != http.StatusOK || raw["scope"] != "reports" {
		t.Errorf("scope=reports: %s", r)
	}
	wantError(t, clientToken(t, srv, "backend", secret, url.Values{"scope": {"admin write"}}), http.StatusBadRequest, "invalid_scope")

	// Client authentication in the body works too (RFC 6749 section 2.3.1).
	r = postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"backend"}, "client_secret": {secret}})
	if r.Status != http.StatusOK {
		t.Errorf("client_secret_post: %s", r)
	}

	events, err := env.Store.AuditEvents(context.Background(), audit.Query{Type: audit.ClientTokenIssued})
	if err != nil || len(events) != 3 || events[0].ClientID != "backend" {
		t.Errorf("audit client.token_issued = %+v, %v; want 3 of backend", events, err)
	}
}

// TestClientCredentialsRefused: public clients, wrong secrets, unknown
// clients and confidential clients not registered for the grant get no
// token, each with its RFC 6749 section 5.2 error; a public client cannot
// even be registered for the grant.
func TestClientCredentialsRefused(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	secret := newConfidential(t, env, session.Client{ID: "backend", Grants: []string{"client_credentials"}, Scopes: []string{"admin"}})
	other := newConfidential(t, env, session.Client{ID: "rs", Scopes: []string{"admin"}}) // no grants

	tests := []struct {
		name   string
		r      func() reply
		status int
		code   string
	}{
		{"public client by id", func() reply {
			return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}})
		}, http.StatusBadRequest, "unauthorized_client"},
		{"no client at all (the built-in public one)", func() reply {
			return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"client_credentials"}})
		}, http.StatusBadRequest, "unauthorized_client"},
		{"wrong secret", func() reply { return clientToken(t, srv, "backend", secret+"x", nil) }, http.StatusUnauthorized, "invalid_client"},
		{"another client's secret", func() reply { return clientToken(t, srv, "backend", other, nil) }, http.StatusUnauthorized, "invalid_client"},
		{"empty secret", func() reply { return clientToken(t, srv, "backend", "", nil) }, http.StatusUnauthorized, "invalid_client"},
		{"unknown client", func() reply { return clientToken(t, srv, "nobody", secret, nil) }, http.StatusUnauthorized, "invalid_client"},
		{"confidential without the grant", func() reply { return clientToken(t, srv, "rs", other, nil) }, http.StatusBadRequest, "unauthorized_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r()
			wantError(t, r, tt.status, tt.code)
		})
	}

	_, _, err := env.Sessions.CreateClient(context.Background(), session.Client{ID: "spa", Audiences: []string{testenv.Issuer}, AccessTTL: time.Minute,
		Grants: []string{"client_credentials"}}, false, session.Meta{})
	if !errors.Is(err, session.ErrInvalidClient) {
		t.Errorf("registering a public client for client_credentials: %v, want ErrInvalidClient", err)
	}
}

// basicAuth is an RFC 6749 section 2.3.1 Authorization header: id and
// secret form-urlencoded, then HTTP Basic.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}
