package bearer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchauth/latch/bearer"
)

// dpopKey is a client's DPoP key pair: its JWK JSON, thumbprint and a
// signing function for raw().
type dpopKey struct {
	alg  string
	jwk  string
	jkt  string
	sign func([]byte) []byte
	priv crypto.Signer
}

func newDPoPKey(t testing.TB, alg string) *dpopKey {
	t.Helper()
	k := &dpopKey{alg: alg}
	switch alg {
	case "EdDSA":
		_, ed, _ := ed25519.GenerateKey(rand.Reader)
		k.priv, k.sign = ed, func(in []byte) []byte { return ed25519.Sign(ed, in) }
	case "ES256":
		ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k.priv, k.sign = ec, es256Raw(ec)
	default:
		t.Fatalf("alg %s", alg)
	}
	pub := jose.JSONWebKey{Key: k.priv.Public()}
	k.jwk = string(mustJSON(pub))
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	k.jkt = b64(tp)
	return k
}

var jtiSeq atomic.Int64

// proof signs a DPoP proof for method and htu, bound to access token at
// (none when empty), issued at iat; edit changes the claims before signing.
func (k *dpopKey) proof(method, htu, at string, iat time.Time, edit ...func(map[string]any)) string {
	c := map[string]any{"jti": "p" + strconv.FormatInt(jtiSeq.Add(1), 10), "htm": method, "htu": htu, "iat": iat.Unix()}
	if at != "" {
		c["ath"] = ath(at)
	}
	for _, e := range edit {
		e(c)
	}
	return raw(`{"typ":"dpop+jwt","alg":"`+k.alg+`","jwk":`+k.jwk+`}`, mustJSON(c), k.sign)
}

func ath(at string) string {
	s := sha256.Sum256([]byte(at))
	return b64(s[:])
}

// dpopRequest is one request of the DPoP suite.
type dpopRequest struct {
	method, path string
	authz        string   // the whole Authorization value
	proofs       []string // DPoP header values
}

// dpopTarget sends a request to the protected resource and returns the
// status and headers; url is the resource's base URL.
type dpopTarget struct {
	url  string
	send func(t *testing.T, r dpopRequest) (int, http.Header)
}

// dpopSuite is the DPoP attack suite (docs/security.md DPOP-01 to DPOP-03,
// RFC 9449 section 11): each case is a request with a bound token and a
// proof that must be refused with 401 and a DPoP challenge naming the
// error, then the requests that must be accepted. f signs the tokens.
func dpopSuite(t *testing.T, f *fakeIssuer, tg dpopTarget) {
	client := newDPoPKey(t, "ES256")
	thief := newDPoPKey(t, "EdDSA")
	bound := f.token(goodHeader, with(f.claims(), "cnf", map[string]string{"jkt": client.jkt}))
	boundOther := f.token(goodHeader, with(with(f.claims(), "cnf", map[string]string{"jkt": client.jkt}), "jti", "j2"))
	unbound := f.good()
	path := "/v1/sessions"
	htu := tg.url + path
	dp := func(tok string) string { return "DPoP " + tok }
	hdr := func(k *dpopKey, h string, claims map[string]any) string { return raw(h, mustJSON(claims), k.sign) }
	claims := func(edit ...func(map[string]any)) map[string]any {
		c := map[string]any{"jti": "c" + strconv.FormatInt(jtiSeq.Add(1), 10), "htm": "GET", "htu": htu, "iat": now.Unix(), "ath": ath(bound)}
		for _, e := range edit {
			e(c)
		}
		return c
	}
	set := func(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }
	del := func(k string) func(map[string]any) { return func(c map[string]any) { delete(c, k) } }
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	privJWK := string(mustJSON(jose.JSONWebKey{Key: edPriv}))
	octJWK := `{"kty":"oct","k":"` + b64([]byte("0123456789abcdef0123456789abcdef")) + `"}`

	replayed := client.proof("GET", htu, bound, now)
	if status, h := tg.send(t, dpopRequest{"GET", path, dp(bound), []string{replayed}}); status != http.StatusOK {
		t.Fatalf("the proof to be replayed was refused the first time: %d %q", status, h.Values("WWW-Authenticate"))
	}

	cases := []struct {
		name string
		req  dpopRequest
		code string // the error of the DPoP challenge
	}{
		// DPOP-01: alg none or symmetric, a private jwk, a wrong typ.
		{"DPOP-01 alg none", dpopRequest{"GET", path, dp(bound), []string{raw(`{"typ":"dpop+jwt","alg":"none","jwk":`+client.jwk+`}`, mustJSON(claims()), func([]byte) []byte { return nil })}}, "invalid_dpop_proof"},
		{"DPOP-01 alg HS256 oct jwk", dpopRequest{"GET", path, dp(bound), []string{raw(`{"typ":"dpop+jwt","alg":"HS256","jwk":`+octJWK+`}`, mustJSON(claims()), hs256([]byte("0123456789abcdef0123456789abcdef")))}}, "invalid_dpop_proof"},
		{"DPOP-01 jwk with private part", dpopRequest{"GET", path, dp(bound), []string{raw(`{"typ":"dpop+jwt","alg":"EdDSA","jwk":`+privJWK+`}`, mustJSON(claims()), func(in []byte) []byte { return ed25519.Sign(edPriv, in) })}}, "invalid_dpop_proof"},
		{"DPOP-01 typ missing", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"alg":"ES256","jwk":`+client.jwk+`}`, claims())}}, "invalid_dpop_proof"},
		{"DPOP-01 typ JWT", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"JWT","alg":"ES256","jwk":`+client.jwk+`}`, claims())}}, "invalid_dpop_proof"},
		{"DPOP-01 typ at+jwt (an access token as proof)", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"at+jwt","alg":"ES256","jwk":`+client.jwk+`}`, claims())}}, "invalid_dpop_proof"},
		{"DPOP-01 no jwk", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"dpop+jwt","alg":"ES256"}`, claims())}}, "invalid_dpop_proof"},
		{"DPOP-01 jwk of another key than the signer", dpopRequest{"GET", path, dp(bound), []string{hdr(thief, `{"typ":"dpop+jwt","alg":"EdDSA","jwk":`+client.jwk+`}`, claims())}}, "invalid_dpop_proof"},
		{"DPOP-01 alg of another key type", dpopRequest{"GET", path, dp(bound), []string{hdr(thief, `{"typ":"dpop+jwt","alg":"ES256","jwk":`+thief.jwk+`}`, claims())}}, "invalid_dpop_proof"},
		{"DPOP-01 jku beside jwk", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"dpop+jwt","alg":"ES256","jwk":`+client.jwk+`,"jku":"https://evil.example/jwks"}`, claims())}}, "invalid_dpop_proof"},
		{"DPOP-01 proof is not a JWS", dpopRequest{"GET", path, dp(bound), []string{"not-a-proof"}}, "invalid_dpop_proof"},
		{"DPOP-01 proof is the access token", dpopRequest{"GET", path, dp(bound), []string{bound}}, "invalid_dpop_proof"},
		// DPOP-02: another htm or htu, a stale or future iat, a replayed jti.
		{"DPOP-02 htm POST for GET", dpopRequest{"GET", path, dp(bound), []string{client.proof("POST", htu, bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-02 htm lower case", dpopRequest{"GET", path, dp(bound), []string{client.proof("get", htu, bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-02 htu another path", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", tg.url+"/v1/password", bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-02 htu path prefix", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", tg.url+"/v1", bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-02 htu another host", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", "http://evil.example"+path, bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-02 htu another scheme", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", strings.Replace(htu, "http://", "https://", 1), bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-02 htu relative", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", path, bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-02 htu missing", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"dpop+jwt","alg":"ES256","jwk":`+client.jwk+`}`, claims(del("htu")))}}, "invalid_dpop_proof"},
		{"DPOP-02 iat stale", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, bound, now.Add(-bearer.DefaultDPoPWindow-time.Second))}}, "invalid_dpop_proof"},
		{"DPOP-02 iat future", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, bound, now.Add(bearer.DefaultDPoPWindow+time.Second))}}, "invalid_dpop_proof"},
		{"DPOP-02 iat missing", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"dpop+jwt","alg":"ES256","jwk":`+client.jwk+`}`, claims(del("iat")))}}, "invalid_dpop_proof"},
		{"DPOP-02 iat string", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"dpop+jwt","alg":"ES256","jwk":`+client.jwk+`}`, claims(set("iat", strconv.FormatInt(now.Unix(), 10))))}}, "invalid_dpop_proof"},
		{"DPOP-02 jti missing", dpopRequest{"GET", path, dp(bound), []string{hdr(client, `{"typ":"dpop+jwt","alg":"ES256","jwk":`+client.jwk+`}`, claims(del("jti")))}}, "invalid_dpop_proof"},
		{"DPOP-02 jti replayed", dpopRequest{"GET", path, dp(bound), []string{replayed}}, "invalid_dpop_proof"},
		// RFC 9449 section 11.1: a proof of one token replayed with another.
		{"DPOP-02 replayed proof with another token of the key", dpopRequest{"GET", path, dp(boundOther), []string{replayed}}, "invalid_dpop_proof"},
		// DPOP-03: the bound token as Bearer, with another key's proof, without ath.
		{"DPOP-03 bound token as Bearer", dpopRequest{"GET", path, "Bearer " + bound, nil}, "invalid_token"},
		{"DPOP-03 bound token as Bearer with its proof", dpopRequest{"GET", path, "Bearer " + bound, []string{client.proof("GET", htu, bound, now)}}, "invalid_token"},
		{"DPOP-03 proof by another key", dpopRequest{"GET", path, dp(bound), []string{thief.proof("GET", htu, bound, now)}}, "invalid_dpop_proof"},
		{"DPOP-03 no ath", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, "", now)}}, "invalid_dpop_proof"},
		{"DPOP-03 ath of another token", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, unbound, now)}}, "invalid_dpop_proof"},
		{"DPOP-03 ath of the token in standard base64", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, bound, now, set("ath", strings.NewReplacer("-", "+", "_", "/").Replace(ath(bound))+"="))}}, "invalid_dpop_proof"},
		// RFC 9449 section 4.3 step 1: exactly one proof.
		{"DPoP scheme without proof", dpopRequest{"GET", path, dp(bound), nil}, "invalid_dpop_proof"},
		{"two proofs", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, bound, now), client.proof("GET", htu, bound, now)}}, "invalid_dpop_proof"},
		// Section 7: DPoP is for bound tokens; an unbound token with a proof is not upgraded.
		{"unbound token with the DPoP scheme", dpopRequest{"GET", path, dp(unbound), []string{client.proof("GET", htu, unbound, now)}}, "invalid_token"},
		{"forged bound token", dpopRequest{"GET", path, dp(raw(goodHeader, mustJSON(with(f.claims(), "cnf", map[string]string{"jkt": thief.jkt})), thief.sign)), []string{thief.proof("GET", htu, "x", now)}}, "invalid_token"},
		{"cnf edited to the thief's key", dpopRequest{"GET", path, dp(swapPayload(bound, with(f.claims(), "cnf", map[string]string{"jkt": thief.jkt}))), []string{thief.proof("GET", htu, swapPayload(bound, with(f.claims(), "cnf", map[string]string{"jkt": thief.jkt})), now)}}, "invalid_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h := tg.send(t, tc.req)
			if status != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401", status)
			}
			want := `DPoP error="` + tc.code + `"`
			found := false
			for _, v := range h.Values("WWW-Authenticate") {
				if strings.HasPrefix(v, want) && strings.Contains(v, `algs="`) {
					found = true
				}
			}
			if !found {
				t.Errorf("WWW-Authenticate = %q, want a challenge %s with algs", h.Values("WWW-Authenticate"), want)
			}
		})
	}

	accept := []struct {
		name string
		req  dpopRequest
	}{
		{"ES256", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, bound, now)}}},
		{"scheme in lower case", dpopRequest{"GET", path, "dpop " + bound, []string{client.proof("GET", htu, bound, now)}}},
		{"iat at the edge of the window", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", htu, bound, now.Add(-bearer.DefaultDPoPWindow+time.Second))}}},
		// Section 4.3: the query is not part of htu; the URL is normalised.
		{"request with a query", dpopRequest{"GET", path + "?page=2", dp(bound), []string{client.proof("GET", htu, bound, now)}}},
		{"htu with the query", dpopRequest{"GET", path + "?page=2", dp(bound), []string{client.proof("GET", htu+"?page=2", bound, now)}}},
		{"htu scheme and host upper case", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", strings.ToUpper(tg.url)+path, bound, now)}}},
		{"htu with an encoded unreserved character", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", tg.url+"/v1/%73essions", bound, now)}}},
		{"htu with a dot segment", dpopRequest{"GET", path, dp(bound), []string{client.proof("GET", tg.url+"/v1/x/../sessions", bound, now)}}},
	}
	for _, tc := range accept {
		t.Run("accept "+tc.name, func(t *testing.T) {
			if status, h := tg.send(t, tc.req); status != http.StatusOK {
				t.Fatalf("status = %d, WWW-Authenticate %q; want 200", status, h.Values("WWW-Authenticate"))
			}
		})
	}
}

// swapPayload puts claims under tok's header and signature.
func swapPayload(tok string, claims map[string]any) string {
	h, _, s := split(tok)
	return h + "." + b64(mustJSON(claims)) + "." + s
}

// httpTarget sends suite requests to srv.
func httpTarget(srvURL string) dpopTarget {
	return dpopTarget{url: srvURL, send: func(t *testing.T, r dpopRequest) (int, http.Header) {
		req, _ := http.NewRequest(r.method, srvURL+r.path, nil)
		req.Header.Set("Authorization", r.authz)
		for _, p := range r.proofs {
			req.Header.Add("DPoP", p)
		}
		status, h, _ := do(t, req)
		return status, h
	}}
}

// TestDPoPAttacks runs the DPoP suite against bearer's middleware.
func TestDPoPAttacks(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	v := f.verifier(t)
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	t.Cleanup(srv.Close)
	dpopSuite(t, f, httpTarget(srv.URL))
}

// TestDPoPVerify checks the API beside the middleware: Verify refuses a
// bound token, Inspect reads its cnf, and the replay cache is bounded.
func TestDPoPVerify(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	k := newDPoPKey(t, "EdDSA")
	clock := now
	d, err := bearer.NewDPoPChecker(bearer.DPoPConfig{ReplayCacheSize: 3, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifierWith(t, bearer.Config{DPoP: d})
	bound := f.token(goodHeader, with(f.claims(), "cnf", map[string]string{"jkt": k.jkt}))
	ctx := t.Context()
	if _, err := v.Verify(ctx, bound); !errors.Is(err, bearer.ErrBoundToken) || !errors.Is(err, bearer.ErrInvalidToken) {
		t.Errorf("Verify(bound) = %v, want ErrBoundToken", err)
	}
	c, err := v.Inspect(ctx, bound)
	if err != nil || c.Confirmation == nil || c.Confirmation.JKT != k.jkt {
		t.Fatalf("Inspect = %+v, %v; want cnf.jkt %s", c, err, k.jkt)
	}
	u := "https://api.example/x"
	for i := range 3 {
		if _, err := v.VerifyDPoP(ctx, bound, k.proof("GET", u, bound, clock), "GET", u); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
	}
	if got := d.ReplayCacheLen(); got != 3 {
		t.Errorf("replay cache holds %d, want 3", got)
	}
	// Full: refused, and not as an invalid token (the proof may be fine).
	_, err = v.VerifyDPoP(ctx, bound, k.proof("GET", u, bound, clock), "GET", u)
	if !errors.Is(err, bearer.ErrReplayCacheFull) || errors.Is(err, bearer.ErrInvalidToken) {
		t.Errorf("with the cache full: %v, want ErrReplayCacheFull only", err)
	}
	// Bounded in time: two periods later the old entries are gone and a
	// fresh proof is accepted.
	clock = clock.Add(4*bearer.DefaultDPoPWindow + time.Second)
	if _, err := v.VerifyDPoP(ctx, bound, k.proof("GET", u, bound, clock), "GET", u); err != nil {
		t.Errorf("after the window: %v", err)
	}
	if got := d.ReplayCacheLen(); got != 1 {
		t.Errorf("replay cache holds %d after the window, want 1", got)
	}
}

// fixedNonce requires the nonce "n-2"; "n-1" is stale.
type fixedNonce struct{}

func (fixedNonce) Nonce() string           { return "n-2" }
func (fixedNonce) Valid(nonce string) bool { return nonce == "n-2" }

// TestDPoPNonce (DPOP-05): with nonces required, a proof without one or
// with a stale one gets use_dpop_nonce and a fresh DPoP-Nonce; with it, the
// request passes.
func TestDPoPNonce(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	d, err := bearer.NewDPoPChecker(bearer.DPoPConfig{Nonce: fixedNonce{}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifierWith(t, bearer.Config{DPoP: d})
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	t.Cleanup(srv.Close)
	k := newDPoPKey(t, "ES256")
	bound := f.token(goodHeader, with(f.claims(), "cnf", map[string]string{"jkt": k.jkt}))
	tg := httpTarget(srv.URL)
	for _, tc := range []struct {
		name  string
		nonce any
		want  int
	}{{"missing", nil, 401}, {"stale", "n-1", 401}, {"not a string", 2, 401}, {"fresh", "n-2", 200}} {
		t.Run(tc.name, func(t *testing.T) {
			p := k.proof("GET", srv.URL+"/r", bound, now, func(c map[string]any) {
				if tc.nonce != nil {
					c["nonce"] = tc.nonce
				}
			})
			status, h := tg.send(t, dpopRequest{"GET", "/r", "DPoP " + bound, []string{p}})
			if status != tc.want {
				t.Fatalf("status = %d, want %d", status, tc.want)
			}
			if tc.want == 401 && tc.name != "not a string" {
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), `DPoP error="use_dpop_nonce"`) || h.Get("DPoP-Nonce") != "n-2" {
					t.Errorf("WWW-Authenticate %q, DPoP-Nonce %q; want use_dpop_nonce and n-2", h.Get("WWW-Authenticate"), h.Get("DPoP-Nonce"))
				}
			}
		})
	}
}

func TestNormalizeHTU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/a", "https://api.example.com/a"},
		{"HTTPS://API.Example.COM:443/a", "https://api.example.com/a"},
		{"http://api.example.com:80", "http://api.example.com/"},
		{"https://api.example.com:8443/a?q=1#f", "https://api.example.com:8443/a"},
		{"https://api.example.com/%7e%2f%41", "https://api.example.com/~%2FA"},
		{"https://api.example.com/a/./b/../c/", "https://api.example.com/a/c/"},
		{"https://[::1]:443/a", "https://[::1]/a"},
		{"https://api.example.com/A", "https://api.example.com/A"},
	} {
		got, err := bearer.NormalizeHTU(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeHTU(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"/a", "ftp://x/a", "https://user@x/a", "https:///a", "https://x/%zz", "mailto:a@b"} {
		if got, err := bearer.NormalizeHTU(bad); err == nil {
			t.Errorf("NormalizeHTU(%q) = %q, want an error", bad, got)
		}
	}
}
