package bearer_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/testenv"
	"github.com/latchauth/latch/internal/token"
)

// TestAttacksOnLatch runs the attack suite against Latch's own uses of its
// access tokens, through HTTP: the account endpoints (GET /v1/sessions,
// Authorization header) must answer 401 invalid_token, and introspection
// (the token in a form body, so CR and LF get through) {"active":false},
// to every attack; both accept the good tokens. Latch verifies with
// bearer too, keys from the issuer's memory (docs/design.md "Audiences"),
// so both uses of the verifier refuse the same tokens.
func TestAttacksOnLatch(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	// Latch publishes the fake's three keys (retired keys, still in the
	// JWKS) beside its own, so the suite's hand-made tokens are signed
	// with keys Latch trusts.
	var extra []token.StoredKey
	for _, k := range []jose.JSONWebKey{
		{Key: f.ed.Public(), KeyID: "ed", Algorithm: "EdDSA", Use: "sig"},
		{Key: f.ec.Public(), KeyID: "ec", Algorithm: "ES256", Use: "sig"},
		{Key: f.rsa.Public(), KeyID: "rsa", Algorithm: "RS256", Use: "sig"},
	} {
		extra = append(extra, token.StoredKey{KID: k.KeyID, Alg: k.Algorithm, State: token.StateRetired,
			PublicJWK: mustJSON(k), CreatedAt: now.Add(-time.Hour), ActivatedAt: now.Add(-time.Hour), RetiredAt: now})
	}
	env := testenv.New(t, testenv.Options{Store: func(t testing.TB) testenv.Store {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "latch.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		return extraKeys{Store: st, keys: extra}
	}})
	env.Clock.Advance(now.Sub(env.Clock.Now()))
	if err := env.Issuer.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Issuer.Key(context.Background(), "ed"); err != nil {
		t.Fatalf("the fake's key is not published: %v", err)
	}
	// A real user and session: the endpoints check the session too.
	tok := env.Login(t, "victim@example.com")
	c, err := env.Verify(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	f.iss, f.aud, f.sub, f.sid = testenv.Issuer, testenv.Issuer, c.Subject, c.SessionID
	// A resource server of the account audience, for introspection.
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "rs", Name: "rs",
		SecretHash: session.HashClientSecret("rs-secret"), Audiences: []string{testenv.Issuer}, AccessTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)

	attackSuite(t, f, func(t *testing.T, tok string, accept bool) {
		if tok == "" {
			// No token at all: no credentials (RFC 6750 section 3.1), a
			// request without its parameter (RFC 7662 section 2.1).
			if status, _, _ := do(t, authorized("GET", srv.URL+"/v1/sessions", "")); status != http.StatusUnauthorized {
				t.Errorf("GET /v1/sessions without a token = %d, want 401", status)
			}
			return
		}
		if validHeaderValue(tok) {
			status, hdr, _ := do(t, authorized("GET", srv.URL+"/v1/sessions", tok))
			switch {
			case accept && status != http.StatusOK:
				t.Errorf("GET /v1/sessions = %d, want 200", status)
			case !accept && status == http.StatusRequestHeaderFieldsTooLarge:
			case !accept && (status != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`)):
				t.Errorf("GET /v1/sessions = %d, WWW-Authenticate %q; want 401 invalid_token", status, hdr.Get("WWW-Authenticate"))
			}
		}
		req, _ := http.NewRequest("POST", srv.URL+"/oauth/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("rs", "rs-secret")
		status, _, body := do(t, req)
		var got struct {
			Active bool   `json:"active"`
			Sub    string `json:"sub"`
			SID    string `json:"sid"`
		}
		json.Unmarshal(body, &got)
		switch {
		case accept && (status != http.StatusOK || !got.Active || got.Sub != f.sub || got.SID != f.sid):
			t.Errorf("introspect = %d %s, want active for %s", status, body, f.sub)
		case !accept && status == http.StatusRequestEntityTooLarge:
		case !accept && (status != http.StatusOK || got.Active):
			t.Errorf("introspect = %d %s, want 200 {\"active\":false}", status, body)
		}
	})

	// The DPoP suite at the account endpoints: proofs name Latch's public
	// URL (the issuer), requests go to the test listener.
	t.Run("DPoP", func(t *testing.T) {
		dpopSuite(t, f, dpopTarget{url: testenv.Issuer, send: func(t *testing.T, r dpopRequest) (int, http.Header) {
			req, _ := http.NewRequest(r.method, srv.URL+r.path, nil)
			req.Header.Set("Authorization", r.authz)
			for _, p := range r.proofs {
				req.Header.Add("DPoP", p)
			}
			status, h, _ := do(t, req)
			return status, h
		}})
	})
}

// extraKeys publishes keys beside those storage holds.
type extraKeys struct {
	testenv.Store
	keys []token.StoredKey
}

func (s extraKeys) SigningKeys(ctx context.Context) ([]token.StoredKey, error) {
	k, err := s.Store.SigningKeys(ctx)
	return append(k, s.keys...), err
}

// authorized is a request with tok as its bearer token, if any.
func authorized(method, u, tok string) *http.Request {
	req, _ := http.NewRequest(method, u, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

// validHeaderValue reports whether s can be sent as a header value at all
// (RFC 9110 section 5.5: no control characters but tab).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}
