package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/testenv"
)

func TestMetadata(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, testenv.Options{})
	// The metadata derives from the configured issuer, never from Host.
	r := send(t, srv, req{method: "GET", path: "/.well-known/oauth-authorization-server", header: map[string]string{"Host": "evil.example"}})
	if r.Status != http.StatusOK {
		t.Fatalf("metadata: %s", r)
	}
	var m struct {
		Issuer             string   `json:"issuer"`
		TokenEndpoint      string   `json:"token_endpoint"`
		RevocationEndpoint string   `json:"revocation_endpoint"`
		IntrospectEndpoint string   `json:"introspection_endpoint"`
		JWKSURI            string   `json:"jwks_uri"`
		GrantTypes         []string `json:"grant_types_supported"`
		Signup             string   `json:"latch_signup_endpoint"`
		Login              string   `json:"latch_login_endpoint"`
		Logout             string   `json:"latch_logout_endpoint"`
		Sessions           string   `json:"latch_sessions_endpoint"`
		Password           string   `json:"latch_password_endpoint"`
		Feed               string   `json:"latch_revocation_feed_endpoint"`
	}
	r.decode(t, &m)
	if m.Issuer != testenv.Issuer {
		t.Errorf("issuer = %q, want %q", m.Issuer, testenv.Issuer)
	}
	endpoints := []struct {
		name, got, want string
		method          string
	}{
		{"token_endpoint", m.TokenEndpoint, testenv.Issuer + "/oauth/token", "POST"},
		{"revocation_endpoint", m.RevocationEndpoint, testenv.Issuer + "/oauth/revoke", "POST"},
		{"jwks_uri", m.JWKSURI, testenv.Issuer + "/.well-known/jwks.json", "GET"},
		{"introspection_endpoint", m.IntrospectEndpoint, testenv.Issuer + "/oauth/introspect", "POST"},
		{"latch_signup_endpoint", m.Signup, testenv.Issuer + "/v1/signup", "POST"},
		{"latch_login_endpoint", m.Login, testenv.Issuer + "/v1/login", "POST"},
		{"latch_logout_endpoint", m.Logout, testenv.Issuer + "/v1/logout", "POST"},
		{"latch_sessions_endpoint", m.Sessions, testenv.Issuer + "/v1/sessions", "GET"},
		{"latch_password_endpoint", m.Password, testenv.Issuer + "/v1/password", "POST"},
		{"latch_revocation_feed_endpoint", m.Feed, testenv.Issuer + "/v1/revocations", "GET"},
	}
	for _, e := range endpoints {
		t.Run(e.name, func(t *testing.T) {
			if e.got != e.want {
				t.Fatalf("%s = %q, want %q", e.name, e.got, e.want)
			}
			// The advertised endpoint is served here.
			r := send(t, srv, req{method: e.method, path: strings.TrimPrefix(e.got, testenv.Issuer), contentType: formType})
			if r.Status == http.StatusNotFound || r.Status == http.StatusMethodNotAllowed {
				t.Errorf("%s %s = %d, want it served", e.method, e.got, r.Status)
			}
		})
	}
	for _, g := range []string{"password", "refresh_token", "client_credentials"} {
		if !slices.Contains(m.GrantTypes, g) {
			t.Errorf("grant_types_supported = %v, want %q in it", m.GrantTypes, g)
		}
	}
}

type jwks struct {
	raw  map[string]any
	keys jose.JSONWebKeySet
}

func fetchJWKS(t *testing.T, r reply) jwks {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("JWKS: %s", r)
	}
	var k jwks
	r.decode(t, &k.raw)
	r.decode(t, &k.keys)
	return k
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, testenv.Options{})
	r := get(t, srv, "/.well-known/jwks.json", "")
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=300") || strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control = %q, want max-age=300 and cacheable", cc)
	}
	k := fetchJWKS(t, r)
	raw, _ := k.raw["keys"].([]any)
	if len(raw) == 0 || len(raw) != len(k.keys.Keys) {
		t.Fatalf("keys = %v, want a non-empty list of JWKs", k.raw["keys"])
	}
	kids := map[string]bool{}
	for i, rk := range raw {
		m, _ := rk.(map[string]any)
		for field, want := range map[string]string{"alg": "EdDSA", "use": "sig", "kty": "OKP", "crv": "Ed25519"} {
			if got, _ := m[field].(string); got != want {
				t.Errorf("key %d: %s = %q, want %q", i, field, got, want)
			}
		}
		kid, _ := m["kid"].(string)
		if kid == "" || kids[kid] {
			t.Errorf("key %d: kid %q missing or repeated", i, kid)
		}
		kids[kid] = true
		if _, ok := m["d"]; ok {
			t.Errorf("key %d publishes its private part", i)
		}
		if !k.keys.Keys[i].IsPublic() {
			t.Errorf("key %d is not a public key", i)
		}
	}
}

// TestAccessToken checks an access token against the published JWKS, as a
// resource server would.
func TestAccessToken(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	tr := signup(t, srv, "user@example.com")
	u, err := env.Sessions.UserByEmail(context.Background(), "user@example.com")
	if err != nil {
		t.Fatal(err)
	}
	set := fetchJWKS(t, get(t, srv, "/.well-known/jwks.json", "")).keys

	parsed, err := jwt.ParseSigned(tr.AccessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	if len(parsed.Headers) != 1 {
		t.Fatalf("%d signatures, want 1", len(parsed.Headers))
	}
	h := parsed.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" {
		t.Errorf("typ = %q, want at+jwt", typ)
	}
	if h.JSONWebKey != nil || h.Algorithm != string(jose.EdDSA) {
		t.Errorf("header alg %q, embedded jwk %v; want EdDSA and no embedded key", h.Algorithm, h.JSONWebKey)
	}
	keys := set.Key(h.KeyID)
	if h.KeyID == "" || len(keys) != 1 {
		t.Fatalf("kid %q matches %d JWKS keys, want 1", h.KeyID, len(keys))
	}
	var m map[string]any
	if err := parsed.Claims(keys[0].Key, &m); err != nil {
		t.Fatalf("signature does not verify with JWKS key %s: %v", h.KeyID, err)
	}
	// Any other published key must not verify it.
	for _, k := range set.Keys {
		if k.KeyID != h.KeyID {
			if err := parsed.Claims(k.Key, &map[string]any{}); err == nil {
				t.Errorf("token verifies with key %s too", k.KeyID)
			}
		}
	}

	str := func(name string) string { s, _ := m[name].(string); return s }
	num := func(name string) float64 {
		n, ok := m[name].(float64)
		if !ok {
			t.Errorf("claim %s = %v, want a number", name, m[name])
		}
		return n
	}
	for name, want := range map[string]string{"iss": testenv.Issuer, "sub": u.ID, "client_id": "app", "sid": tr.SessionID} {
		if got := str(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// The built-in client's own audience and the account audience.
	if aud, _ := m["aud"].([]any); len(aud) != 2 || aud[0] != "app" || aud[1] != testenv.Issuer {
		t.Errorf("aud = %v, want [app %s]", m["aud"], testenv.Issuer)
	}
	exp, iat, nbf := num("exp"), num("iat"), num("nbf")
	if exp-iat != 900 {
		t.Errorf("exp - iat = %v, want 900", exp-iat)
	}
	if nbf > iat {
		t.Errorf("nbf = %v after iat = %v", nbf, iat)
	}
	if int64(iat) != env.Clock.Now().Unix() {
		t.Errorf("iat = %v, want the server clock %d", iat, env.Clock.Now().Unix())
	}
	if str("jti") == "" {
		t.Errorf("jti is empty")
	}

	// Every token has its own jti.
	next := mustRefresh(t, srv, tr.RefreshToken)
	p2, err := jwt.ParseSigned(next.AccessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var m2 map[string]any
	if err := p2.Claims(set.Key(p2.Headers[0].KeyID)[0].Key, &m2); err != nil {
		t.Fatal(err)
	}
	if m2["jti"] == m["jti"] {
		t.Errorf("two access tokens share jti %v", m["jti"])
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, testenv.Options{})
	for _, path := range []string{"/healthz", "/readyz"} {
		t.Run(path, func(t *testing.T) {
			r := get(t, srv, path, "")
			if r.Status != http.StatusOK {
				t.Errorf("GET %s = %s, want 200", path, r)
			}
			var body map[string]any
			r.decode(t, &body)
		})
	}
}

func TestReadyzWhenStorageIsDown(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	if err := env.Store.Close(); err != nil {
		t.Fatal(err)
	}
	r := get(t, srv, "/readyz", "")
	wantError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	if got := r.Header.Get("Retry-After"); got == "" {
		t.Errorf("Retry-After missing on 503")
	}
	// Liveness does not depend on storage.
	if r := get(t, srv, "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("GET /healthz = %s, want 200", r)
	}
}

// TestReadyzOptionalDependency: a failing optional dependency makes
// /readyz say "degraded" and name it, with status 200 (the node still
// serves); a working one is "ok". The error is not shown.
func TestReadyzOptionalDependency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		status, st string
	}{
		{"down", errors.New("dial tcp 10.0.0.7:6379: connection refused"), "degraded", "unreachable"},
		{"up", nil, "ready", "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) {
				c.Optional = []httpapi.Dependency{{Name: "redis", Check: func(context.Context) error { return tc.err }}}
			}})
			r := get(t, srv, "/readyz", "")
			var body map[string]string
			if err := json.Unmarshal(r.Body, &body); err != nil || r.Status != http.StatusOK || body["status"] != tc.status || body["redis"] != tc.st {
				t.Fatalf("GET /readyz = %s %s, want 200 with status %q, redis %q", r, r.Body, tc.status, tc.st)
			}
			if strings.Contains(string(r.Body), "10.0.0.7") {
				t.Fatalf("/readyz shows the dependency's error: %s", r.Body)
			}
		})
	}
}
