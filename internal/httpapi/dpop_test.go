package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

type dpopTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
}

// oauthToken posts form to /oauth/token, with a proof by k if k is set.
func oauthToken(t *testing.T, srv *httptest.Server, form url.Values, k *testenv.DPoPKey) reply {
	t.Helper()
	h := map[string]string{}
	if k != nil {
		h["DPoP"] = k.Proof("POST", testenv.Issuer+"/oauth/token", "", "")
	}
	return send(t, srv, req{method: "POST", path: "/oauth/token", body: form.Encode(), contentType: "application/x-www-form-urlencoded", header: h})
}

// claimsOf reads an access token's claims without verifying them: the
// test checks what Latch put there.
func claimsOf(t *testing.T, tok string) bearer.Claims {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c bearer.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// dpopGet calls an account endpoint with a DPoP-bound token and a proof.
func dpopGet(t *testing.T, srv *httptest.Server, path, tok, proof string) reply {
	t.Helper()
	h := map[string]string{"Authorization": "DPoP " + tok}
	if proof != "" {
		h["DPoP"] = proof
	}
	return send(t, srv, req{method: "GET", path: path, header: h})
}

func dpopLogin(t *testing.T, env *testenv.Env, srv *httptest.Server, email string, k *testenv.DPoPKey) dpopTokens {
	t.Helper()
	if _, _, err := env.Sessions.Signup(context.Background(), session.SignupRequest{Email: email, Password: testenv.Password}); err != nil {
		t.Fatal(err)
	}
	r := oauthToken(t, srv, url.Values{"grant_type": {"password"}, "username": {email}, "password": {testenv.Password}}, k)
	if r.Status != http.StatusOK {
		t.Fatalf("login with DPoP: %s", r)
	}
	var tok dpopTokens
	r.decode(t, &tok)
	return tok
}

// TestDPoPTheft is the stolen-token suite at Latch's own endpoints: a
// session bound to a key at login (RFC 9449 section 5) refreshes only with
// that key; a copied refresh token without the key gets invalid_grant,
// is audited, and leaves the owner's session as it was; the bound access
// token works only with a fresh proof by the key for the URL and method it
// is sent to.
func TestDPoPTheft(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	owner, thief := testenv.NewDPoPKey(t), testenv.NewDPoPKey(t)
	owner.Now, thief.Now = env.Clock.Now, env.Clock.Now
	tok := dpopLogin(t, env, srv, "owner@example.com", owner)
	if tok.TokenType != "DPoP" {
		t.Errorf("token_type = %q, want DPoP", tok.TokenType)
	}
	if c := claimsOf(t, tok.AccessToken); c.Confirmation == nil || c.Confirmation.JKT != owner.JKT {
		t.Fatalf("cnf = %+v, want jkt %s", c.Confirmation, owner.JKT)
	}
	sessions := testenv.Issuer + "/v1/sessions"

	// The access token: accepted with the owner's fresh proof only.
	if r := dpopGet(t, srv, "/v1/sessions", tok.AccessToken, owner.Proof("GET", sessions, tok.AccessToken, "")); r.Status != http.StatusOK {
		t.Fatalf("GET /v1/sessions with the owner's proof: %s", r)
	}
	replayed := owner.Proof("GET", sessions, tok.AccessToken, "")
	if r := dpopGet(t, srv, "/v1/sessions", tok.AccessToken, replayed); r.Status != http.StatusOK {
		t.Fatalf("first use of a proof: %s", r)
	}
	for _, tc := range []struct {
		name   string
		authz  string
		proof  string
		method string
		code   string
	}{
		{"another key", "DPoP", thief.Proof("GET", sessions, tok.AccessToken, ""), "GET", "invalid_dpop_proof"},
		{"another URL", "DPoP", owner.Proof("GET", testenv.Issuer+"/v1/password", tok.AccessToken, ""), "GET", "invalid_dpop_proof"},
		{"another method", "DPoP", owner.Proof("DELETE", sessions, tok.AccessToken, ""), "GET", "invalid_dpop_proof"},
		{"replayed proof", "DPoP", replayed, "GET", "invalid_dpop_proof"},
		{"no proof", "DPoP", "", "GET", "invalid_dpop_proof"},
		{"as Bearer", "Bearer", "", "GET", "invalid_token"},
		{"as Bearer with a proof", "Bearer", owner.Proof("GET", sessions, tok.AccessToken, ""), "GET", "invalid_token"},
	} {
		t.Run("access token "+tc.name, func(t *testing.T) {
			h := map[string]string{"Authorization": tc.authz + " " + tok.AccessToken}
			if tc.proof != "" {
				h["DPoP"] = tc.proof
			}
			r := send(t, srv, req{method: tc.method, path: "/v1/sessions", header: h})
			wantError(t, r, http.StatusUnauthorized, tc.code)
			if ch := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, `DPoP error="`+tc.code+`"`) || !strings.Contains(ch, `algs="`) {
				t.Errorf("WWW-Authenticate = %q, want a DPoP challenge with %s", ch, tc.code)
			}
		})
	}

	// The refresh token, copied to another process without the key.
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
	for _, tc := range []struct {
		name string
		key  *testenv.DPoPKey
	}{{"without a proof", nil}, {"with the thief's key", thief}} {
		r := oauthToken(t, srv, refresh, tc.key)
		wantError(t, r, http.StatusBadRequest, httpapi.CodeInvalidGrant)
		if t.Failed() {
			t.Fatalf("stolen refresh token %s: %s", tc.name, r)
		}
	}
	evs, err := env.Store.AuditEvents(context.Background(), audit.Query{Type: audit.RefreshDPoPMismatch})
	if err != nil || len(evs) != 2 {
		t.Fatalf("audit %s: %d events, %v; want 2", audit.RefreshDPoPMismatch, len(evs), err)
	}
	if evs[0].SessionID != tok.SessionID {
		t.Errorf("audited session %s, want %s", evs[0].SessionID, tok.SessionID)
	}
	// A proof that is itself invalid is invalid_dpop_proof (section 5).
	bad := send(t, srv, req{method: "POST", path: "/oauth/token", body: refresh.Encode(), contentType: "application/x-www-form-urlencoded",
		header: map[string]string{"DPoP": owner.Proof("POST", testenv.Issuer+"/v1/login", "", "")}})
	wantError(t, bad, http.StatusBadRequest, httpapi.CodeInvalidDPoPProof)

	// The owner's session is untouched: the same refresh token rotates
	// with the owner's key, and the new access token is bound again.
	r := oauthToken(t, srv, refresh, owner)
	if r.Status != http.StatusOK {
		t.Fatalf("the owner's refresh after the thefts: %s", r)
	}
	var next dpopTokens
	r.decode(t, &next)
	if next.TokenType != "DPoP" || next.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh: token_type %q, rotated %v", next.TokenType, next.RefreshToken != tok.RefreshToken)
	}
	if c := claimsOf(t, next.AccessToken); c.Confirmation == nil || c.Confirmation.JKT != owner.JKT {
		t.Errorf("refreshed cnf = %+v, want jkt %s", c.Confirmation, owner.JKT)
	}
	// And the thief still gets nothing with the new token.
	wantError(t, oauthToken(t, srv, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next.RefreshToken}}, thief), http.StatusBadRequest, httpapi.CodeInvalidGrant)

	// RFC 7009 revocation of the bound access token (no proof is asked
	// for; the client authenticates) ends its session, as for a bearer
	// token: a 200 that ended nothing would tell a signing-out client it
	// was done while the session lived on.
	if r := postForm(t, srv, "/oauth/revoke", url.Values{"token": {next.AccessToken}}); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	wantError(t, oauthToken(t, srv, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next.RefreshToken}}, owner), http.StatusBadRequest, httpapi.CodeInvalidGrant)
}

// TestDPoPLoginEndpoints: /v1/login and /v1/signup bind the session to the
// proof's key too; a session without DPoP stays a bearer session.
func TestDPoPLoginEndpoints(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	k := testenv.NewDPoPKey(t)
	k.Now = env.Clock.Now
	for _, path := range []string{"/v1/signup", "/v1/login"} {
		r := send(t, srv, req{method: "POST", path: path, contentType: "application/json",
			body:   `{"email":"a@example.com","password":"` + testenv.Password + `"}`,
			header: map[string]string{"DPoP": k.Proof("POST", testenv.Issuer+path, "", "")}})
		if r.Status/100 != 2 {
			t.Fatalf("%s: %s", path, r)
		}
		var tok dpopTokens
		r.decode(t, &tok)
		if c := claimsOf(t, tok.AccessToken); tok.TokenType != "DPoP" || c.Confirmation == nil || c.Confirmation.JKT != k.JKT {
			t.Errorf("%s: token_type %q cnf %+v", path, tok.TokenType, c.Confirmation)
		}
		ses, err := env.Store.Session(context.Background(), tok.SessionID)
		if err != nil || ses.DPoPJKT != k.JKT {
			t.Errorf("%s: stored session jkt %q, %v", path, ses.DPoPJKT, err)
		}
		// A proof for signup is refused at login.
		r = send(t, srv, req{method: "POST", path: "/v1/login", contentType: "application/json",
			body:   `{"email":"a@example.com","password":"` + testenv.Password + `"}`,
			header: map[string]string{"DPoP": k.Proof("POST", testenv.Issuer+"/v1/signup", "", "")}})
		wantError(t, r, http.StatusBadRequest, httpapi.CodeInvalidDPoPProof)
	}
	// Without DPoP: Bearer, no cnf, an unbound session.
	r := postJSON(t, srv, "/v1/login", map[string]string{"email": "a@example.com", "password": testenv.Password}, "")
	var tok dpopTokens
	r.decode(t, &tok)
	if c := claimsOf(t, tok.AccessToken); tok.TokenType != "Bearer" || c.Confirmation != nil {
		t.Errorf("login without DPoP: token_type %q cnf %+v", tok.TokenType, c.Confirmation)
	}
}

// TestDPoPRequiredClient: a client registered to require DPoP gets no
// token without a proof.
func TestDPoPRequiredClient(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	c := env.Client
	c.ID, c.Name, c.DPoPRequired = "cli", "cli", true
	if err := env.Sessions.EnsureClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	got, err := env.Sessions.Client(context.Background(), "cli")
	if err != nil || !got.DPoPRequired {
		t.Fatalf("stored client: %+v, %v", got, err)
	}
	if _, _, err := env.Sessions.Signup(context.Background(), session.SignupRequest{Email: "b@example.com", Password: testenv.Password}); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"password"}, "username": {"b@example.com"}, "password": {testenv.Password}, "client_id": {"cli"}}
	wantError(t, oauthToken(t, srv, form, nil), http.StatusBadRequest, httpapi.CodeInvalidDPoPProof)
	r := postJSON(t, srv, "/v1/login", map[string]string{"email": "b@example.com", "password": testenv.Password, "client_id": "cli"}, "")
	wantError(t, r, http.StatusBadRequest, httpapi.CodeInvalidDPoPProof)
	k := testenv.NewDPoPKey(t)
	k.Now = env.Clock.Now
	if r := oauthToken(t, srv, form, k); r.Status != http.StatusOK {
		t.Fatalf("with a proof: %s", r)
	}
}

// TestDPoPNonce (section 8): with nonces on, a proof without the current
// nonce is use_dpop_nonce with a DPoP-Nonce header, at the token endpoint
// (400) and at the account endpoints (401); with it, it passes.
func TestDPoPNonce(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) { c.DPoPNonceKey = []byte("0123456789abcdef0123456789abcdef") }})
	k := testenv.NewDPoPKey(t)
	k.Now = env.Clock.Now
	if _, _, err := env.Sessions.Signup(context.Background(), session.SignupRequest{Email: "n@example.com", Password: testenv.Password}); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"password"}, "username": {"n@example.com"}, "password": {testenv.Password}}
	post := func(nonce string) reply {
		return send(t, srv, req{method: "POST", path: "/oauth/token", body: form.Encode(), contentType: "application/x-www-form-urlencoded",
			header: map[string]string{"DPoP": k.Proof("POST", testenv.Issuer+"/oauth/token", "", nonce)}})
	}
	r := post("")
	wantError(t, r, http.StatusBadRequest, httpapi.CodeUseDPoPNonce)
	nonce := r.Header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce header with use_dpop_nonce")
	}
	wantError(t, post("bm9wZQ"), http.StatusBadRequest, httpapi.CodeUseDPoPNonce)
	r = post(nonce)
	if r.Status != http.StatusOK {
		t.Fatalf("with the nonce: %s", r)
	}
	var tok dpopTokens
	r.decode(t, &tok)
	u := testenv.Issuer + "/v1/sessions"
	r = dpopGet(t, srv, "/v1/sessions", tok.AccessToken, k.Proof("GET", u, tok.AccessToken, ""))
	wantError(t, r, http.StatusUnauthorized, httpapi.CodeUseDPoPNonce)
	if r.Header.Get("DPoP-Nonce") == "" || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), `DPoP error="use_dpop_nonce"`) {
		t.Errorf("account endpoint: DPoP-Nonce %q, WWW-Authenticate %q", r.Header.Get("DPoP-Nonce"), r.Header.Get("WWW-Authenticate"))
	}
	if r := dpopGet(t, srv, "/v1/sessions", tok.AccessToken, k.Proof("GET", u, tok.AccessToken, r.Header.Get("DPoP-Nonce"))); r.Status != http.StatusOK {
		t.Errorf("with the nonce: %s", r)
	}
}

// TestDPoPMetadata: discovery, introspection and CORS name DPoP.
func TestDPoPMetadata(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) { c.CORSOrigins = []string{"https://app.example"} }})
	var m map[string]any
	get(t, srv, "/.well-known/oauth-authorization-server", "").decode(t, &m)
	algs, _ := m["dpop_signing_alg_values_supported"].([]any)
	if len(algs) == 0 || algs[0] != "ES256" {
		t.Errorf("dpop_signing_alg_values_supported = %v", m["dpop_signing_alg_values_supported"])
	}
	k := testenv.NewDPoPKey(t)
	k.Now = env.Clock.Now
	tok := dpopLogin(t, env, srv, "i@example.com", k)
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "rs", Name: "rs",
		SecretHash: session.HashClientSecret("rs-secret"), Audiences: []string{testenv.Issuer}, AccessTTL: 60e9}); err != nil {
		t.Fatal(err)
	}
	r := send(t, srv, req{method: "POST", path: "/oauth/introspect", body: url.Values{"token": {tok.AccessToken}}.Encode(),
		contentType: "application/x-www-form-urlencoded", header: map[string]string{"Authorization": "Basic cnM6cnMtc2VjcmV0"}})
	var in struct {
		Active    bool              `json:"active"`
		TokenType string            `json:"token_type"`
		Cnf       map[string]string `json:"cnf"`
	}
	r.decode(t, &in)
	if !in.Active || in.TokenType != "DPoP" || in.Cnf["jkt"] != k.JKT {
		t.Errorf("introspection = %s", r.Body)
	}
	pre := send(t, srv, req{method: "OPTIONS", path: "/oauth/token", header: map[string]string{"Origin": "https://app.example",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "dpop, content-type"}})
	if !strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "DPoP") {
		t.Errorf("preflight Allow-Headers = %q", pre.Header.Get("Access-Control-Allow-Headers"))
	}
	r = send(t, srv, req{method: "GET", path: "/healthz", header: map[string]string{"Origin": "https://app.example"}})
	if !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "DPoP-Nonce") {
		t.Errorf("Expose-Headers = %q", r.Header.Get("Access-Control-Expose-Headers"))
	}
}
