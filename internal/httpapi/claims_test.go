package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestClaimsFromAppMetadata (docs/design.md "Admin API and claims"): an
// admin sets a user's roles through the admin API; the next refreshed
// access token of a client that maps roles and tenant carries them, and
// bearer verifies it and hands them to the application like any claim.
// Tokens of a client that maps nothing carry none, and a token issued
// before the change keeps its old claims.
func TestClaimsFromAppMetadata(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	ctx := context.Background()
	secret := newConfidential(t, env, session.Client{ID: "backend", Grants: []string{"client_credentials"}, Scopes: []string{"admin"}})
	var cc tokenResponse
	clientToken(t, srv, "backend", secret, nil).decode(t, &cc)
	admin := cc.AccessToken

	// The web client maps roles and tenant, registered through the API.
	r := send(t, srv, req{method: http.MethodPost, path: "/admin/v1/clients", contentType: "application/json", bearer: admin,
		body: `{"id":"web","audiences":["web-api","` + testenv.Issuer + `"],"claims":["roles","tenant"]}`})
	if r.Status != http.StatusCreated {
		t.Fatalf("create web client: %s", r)
	}
	first := checkTokenResponse(t, postJSON(t, srv, "/v1/signup", map[string]any{"email": "ann@example.com", "password": testPassword, "client_id": "web"}, ""), http.StatusCreated)
	v, err := bearer.New(ctx, env.Issuer.VerifierConfig("web-api"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(ctx, first.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Extra) != 0 {
		t.Fatalf("a user without app_metadata got claims %v", c.Extra)
	}

	r = send(t, srv, req{method: http.MethodPatch, path: "/admin/v1/users/ann@example.com", contentType: "application/json", bearer: admin,
		body: `{"app_metadata":{"roles":["editor","billing"],"tenant":"acme","internal_note":"not for tokens"}}`})
	if r.Status != http.StatusOK {
		t.Fatalf("PATCH app_metadata: %s", r)
	}
	// Until the next refresh the old token stands as it was.
	if c, _ := v.Verify(ctx, first.AccessToken); len(c.Extra) != 0 {
		t.Fatalf("the token issued before the change has claims %v", c.Extra)
	}
	env.Clock.Advance(time.Minute) // past the grace window: a real rotation
	next := checkTokenResponse(t, postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}, "client_id": {"web"}}), http.StatusOK)
	c, err = v.Verify(ctx, next.AccessToken)
	if err != nil {
		t.Fatalf("bearer refuses the refreshed token: %v", err)
	}
	var roles []string
	var tenant string
	if ok, err := c.Claim("roles", &roles); !ok || err != nil || !slices.Equal(roles, []string{"editor", "billing"}) {
		t.Fatalf("roles = %v (%v, %v), want [editor billing]", roles, ok, err)
	}
	if ok, _ := c.Claim("tenant", &tenant); !ok || tenant != "acme" {
		t.Fatalf("tenant = %q, want acme", tenant)
	}
	if _, ok := c.Extra["internal_note"]; ok {
		t.Fatal("a key the client does not map reached the token")
	}
	if c.Subject == "" || c.SessionID != next.SessionID {
		t.Fatalf("sub %q, sid %q", c.Subject, c.SessionID)
	}
	// The middleware hands the claims to the handler like any other.
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := bearer.FromContext(r.Context())
		var roles []string
		if ok, _ := c.Claim("roles", &roles); ok && slices.Contains(roles, "editor") {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	rec := httptest.NewRecorder()
	hr := httptest.NewRequest("GET", "/notes", nil)
	hr.Header.Set("Authorization", "Bearer "+next.AccessToken)
	h.ServeHTTP(rec, hr)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("middleware handler saw no editor role: %d", rec.Code)
	}

	// A login through a client that maps nothing: no claims.
	app := login(t, srv, "ann@example.com", testPassword, testUA)
	if c, err := env.Verify(app.AccessToken); err != nil || len(c.Extra) != 0 {
		t.Fatalf("app token claims %v, %v; want none", c, err)
	}
	// A fresh login through web carries them at once.
	r = postJSON(t, srv, "/v1/login", map[string]any{"email": "ann@example.com", "password": testPassword, "client_id": "web"}, "")
	fresh := checkTokenResponse(t, r, http.StatusOK)
	if c, err := v.Verify(ctx, fresh.AccessToken); err != nil || string(c.Extra["tenant"]) != `"acme"` {
		t.Fatalf("login token tenant %s, %v", c.Extra["tenant"], err)
	}
}

// TestClaimsNeverReplaceRegistered: even a client whose stored claim list
// names sub, sid, iss, aud, exp, client_id and scope (written around
// CheckClient, as an old row or a hand edit could be), with app_metadata
// holding those keys, gets tokens whose registered claims are Latch's own.
func TestClaimsNeverReplaceRegistered(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	ctx := context.Background()
	hostile := []string{"sub", "sid", "iss", "aud", "exp", "client_id", "scope", "jti", "cnf", "roles"}
	if err := env.Sessions.EnsureClient(ctx, session.Client{ID: "web", Name: "web", Audiences: []string{"web-api"}, AccessTTL: time.Minute,
		Grants: []string{"password", "refresh_token"}, Claims: hostile}); err != nil {
		t.Fatal(err)
	}
	first := checkTokenResponse(t, postJSON(t, srv, "/v1/signup", map[string]any{"email": "eve@example.com", "password": testPassword, "client_id": "web"}, ""), http.StatusCreated)
	u, err := env.Sessions.UserByEmail(ctx, "eve@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Sessions.UpdateUser(ctx, u.ID, session.UserUpdate{AppMetadata: []byte(`{"sub":"admin-user","sid":"someone-else","iss":"https://evil","aud":"web-api","exp":99999999999,"client_id":"backend","scope":"admin","jti":"x","cnf":{"jkt":"x"},"roles":["viewer"]}`)}, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(time.Minute)
	next := checkTokenResponse(t, postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}, "client_id": {"web"}}), http.StatusOK)
	v, err := bearer.New(ctx, env.Issuer.VerifierConfig("web-api"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(ctx, next.AccessToken)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Subject != u.ID || c.SessionID != next.SessionID || c.Issuer != testenv.Issuer || c.ClientID != "web" || c.Scope != "" || c.ID == "x" {
		t.Fatalf("registered claims replaced: %+v", c)
	}
	if !c.Expiry.Time().Before(env.Clock.Now().Add(2 * time.Minute)) {
		t.Fatalf("exp replaced: %v", c.Expiry.Time())
	}
	for name := range c.Extra {
		if session.ReservedClaim(name) {
			t.Errorf("reserved claim %q in Extra", name)
		}
	}
	if string(c.Extra["roles"]) != `["viewer"]` {
		t.Errorf("roles = %s; an allowed key next to reserved ones must still map", c.Extra["roles"])
	}
}
