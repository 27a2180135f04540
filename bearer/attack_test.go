package bearer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
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

// now is the fixed time of the attack suite.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeIssuer publishes RFC 8414 metadata and a JWKS with one key per
// algorithm, each pinned by its alg; it counts requests.
type fakeIssuer struct {
	srv      *httptest.Server
	ed       ed25519.PrivateKey
	ec       *ecdsa.PrivateKey
	rsa      *rsa.PrivateKey
	jwks     atomic.Pointer[[]byte]
	fetches  atomic.Int64
	requests atomic.Int64
	down     atomic.Bool
	// iss, aud, sub and sid are the claims of valid tokens: the fake's URL,
	// "notes-api", "user-1" and "s1", unless the suite runs against
	// Latch's own endpoints (TestAttacksOnLatch), which put Latch's there.
	iss, aud, sub, sid string
}

var testRSA = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

// cleaner is what newFakeIssuer needs of a testing.TB (examples pass their own).
type cleaner interface {
	Helper()
	Cleanup(func())
}

func newFakeIssuer(t cleaner) *fakeIssuer {
	t.Helper()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f := &fakeIssuer{ed: ed, ec: ec, rsa: testRSA}
	f.setKeys(
		jose.JSONWebKey{Key: ed.Public(), KeyID: "ed", Algorithm: "EdDSA", Use: "sig"},
		jose.JSONWebKey{Key: ec.Public(), KeyID: "ec", Algorithm: "ES256", Use: "sig"},
		jose.JSONWebKey{Key: testRSA.Public(), KeyID: "rsa", Algorithm: "RS256", Use: "sig"},
	)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		if f.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			json.NewEncoder(w).Encode(map[string]string{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks"})
		case "/jwks":
			f.fetches.Add(1)
			w.Header().Set("Cache-Control", "public, max-age=300")
			w.Write(*f.jwks.Load())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	f.iss, f.aud, f.sub, f.sid = f.srv.URL, "notes-api", "user-1", "s1"
	return f
}

func (f *fakeIssuer) setKeys(keys ...jose.JSONWebKey) {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	f.jwks.Store(&b)
}

func (f *fakeIssuer) verifier(t testing.TB) *bearer.Verifier {
	return f.verifierWith(t, bearer.Config{})
}

// verifierWith builds a verifier for f from cfg with the issuer, audience,
// algorithms and clock filled in.
func (f *fakeIssuer) verifierWith(t testing.TB, cfg bearer.Config) *bearer.Verifier {
	t.Helper()
	cfg.Issuer, cfg.Audience, cfg.Now = f.srv.URL, "notes-api", func() time.Time { return now }
	if cfg.Algorithms == nil {
		cfg.Algorithms = []string{"EdDSA", "ES256", "RS256"}
	}
	v, err := bearer.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// claims returns valid claims for f, to be edited by a case.
func (f *fakeIssuer) claims() map[string]any {
	return map[string]any{
		"iss": f.iss, "sub": f.sub, "aud": []string{f.aud},
		"exp": now.Add(10 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"jti": "j1", "client_id": "app", "sid": f.sid, "scope": "notes:read",
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// raw builds a compact JWS by hand: header and payload JSON as given,
// signature from sign over the signing input.
func raw(header string, payload []byte, sign func(input []byte) []byte) string {
	input := b64([]byte(header)) + "." + b64(payload)
	return input + "." + b64(sign([]byte(input)))
}

func (f *fakeIssuer) edSign(in []byte) []byte { return ed25519.Sign(f.ed, in) }

// token signs claims with the Ed25519 key and the header given.
func (f *fakeIssuer) token(header string, claims map[string]any) string {
	return raw(header, mustJSON(claims), f.edSign)
}

const goodHeader = `{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`

func (f *fakeIssuer) good() string { return f.token(goodHeader, f.claims()) }

func with(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}

func without(c map[string]any, k string) map[string]any {
	delete(c, k)
	return c
}

func hs256(key []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(in)
		return m.Sum(nil)
	}
}

func es256Raw(k *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		h := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			panic(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

// target is one use of the verifier that the attack suite runs against.
// It fails t unless tok is refused as that use refuses a bad token, or,
// with accept, unless tok is accepted as the token of f.sub and f.sid.
type target func(t *testing.T, tok string, accept bool)

// TestAttacks runs the attack suite against bearer as resource servers use
// it: keys from the JWKS of a fake issuer.
func TestAttacks(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	v := f.verifier(t)
	attackSuite(t, f, func(t *testing.T, tok string, accept bool) {
		c, err := v.Verify(context.Background(), tok)
		switch {
		case accept && err != nil:
			t.Fatalf("Verify: %v", err)
		case accept && (c.Subject != f.sub || c.SessionID != f.sid):
			t.Fatalf("claims = %+v", c)
		case !accept && err == nil:
			t.Fatalf("Verify accepted the token: %+v", c)
		case !accept && !errors.Is(err, bearer.ErrInvalidToken):
			t.Fatalf("Verify error %v does not match ErrInvalidToken", err)
		}
	})
	// RS-18: many unknown kids caused at most one JWKS refetch (rate limit).
	if got := f.fetches.Load(); got > 2 {
		t.Errorf("JWKS fetched %d times, want at most 2 (start + one rate-limited refetch)", got)
	}
}

// attackSuite is the attack suite: one case per line of the security
// checklist, section C, that the verifier covers (RS-nn in the names),
// each a token signed with f's keys and claims, and then the tokens that
// must be accepted. check judges each.
func attackSuite(t *testing.T, f *fakeIssuer, check target) {
	edPub := []byte(f.ed.Public().(ed25519.PublicKey))
	rsaDER, _ := x509.MarshalPKIXPublicKey(f.rsa.Public())
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	rsaJWK := mustJSON(jose.JSONWebKey{Key: f.rsa.Public(), KeyID: "rsa", Algorithm: "RS256", Use: "sig"})
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	attackerSign := func(in []byte) []byte { return ed25519.Sign(attacker, in) }
	attackerJWK := string(mustJSON(jose.JSONWebKey{Key: attacker.Public(), Algorithm: "EdDSA"}))
	cert := selfSigned(t, attacker)

	good := f.good()
	h, p, s := split(good)
	other := f.token(goodHeader, with(f.claims(), "sub", "user-2"))
	_, _, otherSig := split(other)
	sigBytes, _ := base64.RawURLEncoding.DecodeString(s)
	flipped := append([]byte(nil), sigBytes...)
	flipped[10] ^= 1
	n := elliptic.P256().Params().N
	nBytes := n.FillBytes(make([]byte, 32))

	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("SSRF: the verifier fetched %s", r.URL)
	}))
	defer canary.Close()

	// A real JWE, encrypted to the RSA key from the JWKS.
	enc, _ := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: f.rsa.Public()}, nil)
	jwe, _ := enc.Encrypt(mustJSON(f.claims()))
	jweCompact, _ := jwe.CompactSerialize()
	// JSON serialization of a valid token.
	sigObj, _ := jose.ParseSigned(good, []jose.SignatureAlgorithm{jose.EdDSA})
	jsonSerialized := sigObj.FullSerialize()

	cases := []struct {
		name  string
		token string
	}{
		// RS-01: alg none in any case, with and without a signature.
		{"RS-01 none", raw(`{"alg":"none","kid":"ed","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return nil })},
		{"RS-01 None", raw(`{"alg":"None","kid":"ed","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return nil })},
		{"RS-01 NONE", raw(`{"alg":"NONE","kid":"ed","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return nil })},
		{"RS-01 nOnE", raw(`{"alg":"nOnE","kid":"ed","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return nil })},
		{"RS-01 none with signature", raw(`{"alg":"none","kid":"ed","typ":"at+jwt"}`, mustJSON(f.claims()), f.edSign)},
		{"RS-01 none no kid", raw(`{"alg":"none","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return nil })},
		// RS-02: HS256 with the public key as MAC key, in several encodings.
		{"RS-02 HS256 raw ed25519 key", raw(`{"alg":"HS256","kid":"ed","typ":"at+jwt"}`, mustJSON(f.claims()), hs256(edPub))},
		{"RS-02 HS256 RSA DER", raw(`{"alg":"HS256","kid":"rsa","typ":"at+jwt"}`, mustJSON(f.claims()), hs256(rsaDER))},
		{"RS-02 HS256 RSA PEM", raw(`{"alg":"HS256","kid":"rsa","typ":"at+jwt"}`, mustJSON(f.claims()), hs256(rsaPEM))},
		{"RS-02 HS256 RSA JWK", raw(`{"alg":"HS256","kid":"rsa","typ":"at+jwt"}`, mustJSON(f.claims()), hs256(rsaJWK))},
		{"RS-02 HS512 RSA PEM", raw(`{"alg":"HS512","kid":"rsa","typ":"at+jwt"}`, mustJSON(f.claims()), hs256(rsaPEM))},
		// RS-03: an alg other than the one the kid is pinned to.
		{"RS-03 ES256 header on the EdDSA key", raw(`{"alg":"ES256","kid":"ed","typ":"at+jwt"}`, mustJSON(f.claims()), es256Raw(f.ec))},
		{"RS-03 EdDSA header on the ES256 key", raw(`{"alg":"EdDSA","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), f.edSign)},
		{"RS-03 PS256 with the RS256 key", func() string {
			return raw(`{"alg":"PS256","kid":"rsa","typ":"at+jwt"}`, mustJSON(f.claims()), func(in []byte) []byte {
				d := sha256.Sum256(in)
				sig, _ := rsa.SignPSS(rand.Reader, f.rsa, crypto.SHA256, d[:], nil)
				return sig
			})
		}()},
		{"RS-03 ES384", raw(`{"alg":"ES384","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), es256Raw(f.ec))},
		// RS-04: psychic signatures.
		{"RS-04 ECDSA r=s=0", raw(`{"alg":"ES256","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return make([]byte, 64) })},
		{"RS-04 ECDSA r=s=n", raw(`{"alg":"ES256","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return append(append([]byte{}, nBytes...), nBytes...) })},
		// RS-05: DER-encoded or wrong-length ECDSA signature.
		{"RS-05 ECDSA DER", raw(`{"alg":"ES256","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), func(in []byte) []byte {
			d := sha256.Sum256(in)
			sig, _ := ecdsa.SignASN1(rand.Reader, f.ec, d[:])
			return sig
		})},
		{"RS-05 ECDSA short", raw(`{"alg":"ES256","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), func(in []byte) []byte { return es256Raw(f.ec)(in)[:63] })},
		// RS-07: signature stripped, truncated, flipped, copied.
		{"RS-07 signature stripped", h + "." + p + "."},
		{"RS-07 signature truncated", h + "." + p + "." + s[:40]},
		{"RS-07 bit flipped", h + "." + p + "." + b64(flipped)},
		{"RS-07 signature of another token", h + "." + p + "." + otherSig},
		// RS-08: claims edited under the original signature.
		{"RS-08 sub edited", h + "." + b64(mustJSON(with(f.claims(), "sub", "admin"))) + "." + s},
		{"RS-08 exp edited", h + "." + b64(mustJSON(with(f.claims(), "exp", now.Add(time.Hour).Unix()))) + "." + s},
		// RS-09: non-canonical base64url.
		{"RS-09 last char variant", h + "." + p + "." + s[:len(s)-1] + string(s[len(s)-1]+1)},
		// The unused trailing bits of the signature flipped: the same
		// bytes decoded, another string (an Ed25519 signature, 86
		// characters, has 4 of them).
		{"RS-09 unused signature bits", h + "." + p + "." + s[:len(s)-1] + string(b64chars[strings.IndexByte(b64chars, s[len(s)-1])|1])},
		{"RS-09 CRLF", h + "." + p + "." + s[:20] + "\r\n" + s[20:]},
		{"RS-09 padding", h + "." + p + "." + s + "=="},
		{"RS-09 standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(withURLChars(f))},
		{"RS-09 whitespace", h + ".\n" + p + "." + s},
		{"RS-09 header padding", h + "=." + p + "." + s},
		// RS-10: typ.
		{"RS-10 typ missing", f.token(`{"alg":"EdDSA","kid":"ed"}`, f.claims())},
		{"RS-10 typ JWT", f.token(`{"alg":"EdDSA","kid":"ed","typ":"JWT"}`, f.claims())},
		{"RS-10 typ id_token", f.token(`{"alg":"EdDSA","kid":"ed","typ":"id_token+jwt"}`, f.claims())},
		{"RS-10 typ refresh", f.token(`{"alg":"EdDSA","kid":"ed","typ":"rt+jwt"}`, f.claims())},
		{"RS-10 typ number", f.token(`{"alg":"EdDSA","kid":"ed","typ":1}`, f.claims())},
		// RS-11: iss variants.
		{"RS-11 iss missing", f.token(goodHeader, without(f.claims(), "iss"))},
		{"RS-11 iss other", f.token(goodHeader, with(f.claims(), "iss", "https://evil.example"))},
		{"RS-11 iss trailing slash", f.token(goodHeader, with(f.claims(), "iss", f.iss+"/"))},
		{"RS-11 iss prefix", f.token(goodHeader, with(f.claims(), "iss", f.iss[:len(f.iss)-1]))},
		{"RS-11 iss suffix", f.token(goodHeader, with(f.claims(), "iss", f.iss+"0"))},
		{"RS-11 iss case", f.token(goodHeader, with(f.claims(), "iss", strings.ToUpper(f.iss)))},
		{"RS-11 iss array", f.token(goodHeader, with(f.claims(), "iss", []string{f.iss}))},
		// RS-12: the right iss, signed by a key the issuer does not publish.
		{"RS-12 foreign key same kid", raw(goodHeader, mustJSON(f.claims()), attackerSign)},
		// RS-13: aud variants.
		{"RS-13 aud missing", f.token(goodHeader, without(f.claims(), "aud"))},
		{"RS-13 aud other", f.token(goodHeader, with(f.claims(), "aud", "billing-api"))},
		{"RS-13 aud empty string", f.token(goodHeader, with(f.claims(), "aud", ""))},
		{"RS-13 aud empty array", f.token(goodHeader, with(f.claims(), "aud", []string{}))},
		{"RS-13 aud array without ours", f.token(goodHeader, with(f.claims(), "aud", []string{"a", "b"}))},
		{"RS-13 aud case", f.token(goodHeader, with(f.claims(), "aud", strings.ToUpper(f.aud)))},
		{"RS-13 aud object", f.token(goodHeader, with(f.claims(), "aud", map[string]string{f.aud: "x"}))},
		// Another resource server's audience, as a client registered for
		// it gets (docs/design.md "Audiences").
		{"RS-13 aud of a resource server", f.token(goodHeader, with(f.claims(), "aud", []string{"https://notes.example"}))},
		// RS-14: exp.
		{"RS-14 exp missing", f.token(goodHeader, without(f.claims(), "exp"))},
		{"RS-14 expired past leeway", f.token(goodHeader, with(f.claims(), "exp", now.Add(-bearer.DefaultLeeway-time.Second).Unix()))},
		{"RS-14 exp string", f.token(goodHeader, with(f.claims(), "exp", "9999999999"))},
		{"RS-14 exp negative", f.token(goodHeader, with(f.claims(), "exp", -1))},
		{"RS-14 exp null", f.token(goodHeader, with(f.claims(), "exp", nil))},
		// RS-15: nbf beyond leeway.
		{"RS-15 nbf future", f.token(goodHeader, with(f.claims(), "nbf", now.Add(bearer.DefaultLeeway+time.Minute).Unix()))},
		// RS-16: iat far in the future.
		{"RS-16 iat future", f.token(goodHeader, with(f.claims(), "iat", now.Add(time.Hour).Unix()))},
		{"RS-16 iat 10 minutes ahead", f.token(goodHeader, with(f.claims(), "iat", now.Add(10*time.Minute).Unix()))},
		// RS-17: sub missing or empty.
		{"RS-17 sub missing", f.token(goodHeader, without(f.claims(), "sub"))},
		{"RS-17 sub empty", f.token(goodHeader, with(f.claims(), "sub", ""))},
		// A Latch access token always names its session; without sid no
		// logout could end it.
		{"sid missing", f.token(goodHeader, without(f.claims(), "sid"))},
		{"sid empty", f.token(goodHeader, with(f.claims(), "sid", ""))},
		// RS-18: kid abuse.
		{"RS-18 kid missing", f.token(`{"alg":"EdDSA","typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid unknown", f.token(`{"alg":"EdDSA","kid":"nope","typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid path", f.token(`{"alg":"EdDSA","kid":"../../../../dev/null","typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid sql", f.token(`{"alg":"EdDSA","kid":"x' UNION SELECT 'k'--","typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid url", f.token(`{"alg":"EdDSA","kid":"`+canary.URL+`/k","typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid long", f.token(`{"alg":"EdDSA","kid":"`+strings.Repeat("k", 1000)+`","typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid 10KB", f.token(`{"alg":"EdDSA","kid":"`+strings.Repeat("k", 10<<10)+`","typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid number", f.token(`{"alg":"EdDSA","kid":1,"typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid object", f.token(`{"alg":"EdDSA","kid":{"a":1},"typ":"at+jwt"}`, f.claims())},
		{"RS-18 kid NUL", f.token(`{"alg":"EdDSA","kid":"ed\u0000","typ":"at+jwt"}`, f.claims())},
		// RS-19: jku / x5u pointing at the attacker (the canary fails the test if fetched).
		{"RS-19 jku", raw(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","jku":"`+canary.URL+`/jwks"}`, mustJSON(f.claims()), f.edSign)},
		{"RS-19 jku attacker key", raw(`{"alg":"EdDSA","kid":"evil","typ":"at+jwt","jku":"`+canary.URL+`/jwks"}`, mustJSON(f.claims()), attackerSign)},
		{"RS-19 x5u", raw(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","x5u":"`+canary.URL+`/cert"}`, mustJSON(f.claims()), f.edSign)},
		// RS-20: embedded keys.
		{"RS-20 jwk attacker", raw(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","jwk":`+attackerJWK+`}`, mustJSON(f.claims()), attackerSign)},
		{"RS-20 jwk no kid", raw(`{"alg":"EdDSA","typ":"at+jwt","jwk":`+attackerJWK+`}`, mustJSON(f.claims()), attackerSign)},
		{"RS-20 jwk with valid signature", raw(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","jwk":`+attackerJWK+`}`, mustJSON(f.claims()), f.edSign)},
		{"RS-20 x5c attacker", raw(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","x5c":["`+cert+`"]}`, mustJSON(f.claims()), attackerSign)},
		{"RS-20 x5c with valid signature", raw(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","x5c":["`+cert+`"]}`, mustJSON(f.claims()), f.edSign)},
		// RS-21: crit in every form, even with a valid signature.
		{"RS-21 crit exp", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","crit":["exp"],"exp":1}`, f.claims())},
		{"RS-21 crit foo present", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","crit":["foo"],"foo":1}`, f.claims())},
		{"RS-21 crit empty", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","crit":[]}`, f.claims())},
		{"RS-21 crit absent name", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","crit":["bar"]}`, f.claims())},
		{"RS-21 crit b64", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","crit":["b64"],"b64":true}`, f.claims())},
		// RS-22: JWE.
		{"RS-22 JWE compact", jweCompact},
		{"RS-22 five parts", good + ".AAAA.AAAA"},
		// RS-23: JSON serialization.
		{"RS-23 JSON serialization", jsonSerialized},
		// RS-24: nested JWT and zip.
		{"RS-24 cty JWT", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","cty":"JWT"}`, f.claims())},
		{"RS-24 zip", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+jwt","zip":"DEF"}`, f.claims())},
		// RS-25: duplicate names.
		{"RS-25 duplicate alg", f.token(`{"alg":"EdDSA","alg":"none","kid":"ed","typ":"at+jwt"}`, f.claims())},
		{"RS-25 duplicate kid", f.token(`{"alg":"EdDSA","kid":"nope","kid":"ed","typ":"at+jwt"}`, f.claims())},
		{"RS-25 case variant ALG", f.token(`{"alg":"EdDSA","ALG":"none","kid":"ed","typ":"at+jwt"}`, f.claims())},
		{"RS-25 duplicate sub", raw(goodHeader, []byte(strings.Replace(string(mustJSON(f.claims())), `"sub":`+string(mustJSON(f.sub)), `"sub":`+string(mustJSON(f.sub))+`,"sub":"admin"`, 1)), f.edSign)},
		// RS-26: encodings.
		{"RS-26 BOM header", raw("\ufeff"+goodHeader, mustJSON(f.claims()), f.edSign)},
		{"RS-26 invalid UTF-8 payload", raw(goodHeader, append(mustJSON(f.claims())[:len(mustJSON(f.claims()))-1], []byte(`,"x":"\xff"}`)...), f.edSign)},
		{"RS-26 UTF-16 header", raw("\xff\xfe{\x00}\x00", mustJSON(f.claims()), f.edSign)},
		// RS-27: malformed structure.
		{"RS-27 empty", ""},
		{"RS-27 one part", h},
		{"RS-27 two parts", h + "." + p},
		{"RS-27 four parts", good + ".x"},
		{"RS-27 empty parts", ".."},
		{"RS-27 header array", raw(`["alg","EdDSA"]`, mustJSON(f.claims()), f.edSign)},
		{"RS-27 header number", raw(`1`, mustJSON(f.claims()), f.edSign)},
		{"RS-27 payload array", raw(goodHeader, []byte(`[1]`), f.edSign)},
		{"RS-27 payload not JSON", raw(goodHeader, []byte(`hello`), f.edSign)},
		// RS-31: expired and badly signed at once.
		{"RS-31 expired and forged", raw(goodHeader, mustJSON(with(f.claims(), "exp", now.Add(-time.Hour).Unix())), attackerSign)},
		// Size cap before parsing.
		{"huge token", f.token(goodHeader, with(f.claims(), "pad", strings.Repeat("a", 9<<10)))},
		{"huge garbage", strings.Repeat("A", 1<<20)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { check(t, tc.token, false) })
	}

	accept := []struct {
		name  string
		token string
	}{
		{"baseline EdDSA", good},
		{"ES256", raw(`{"alg":"ES256","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), es256Raw(f.ec))},
		{"RS256", raw(`{"alg":"RS256","kid":"rsa","typ":"at+jwt"}`, mustJSON(f.claims()), func(in []byte) []byte {
			d := sha256.Sum256(in)
			sig, _ := rsa.SignPKCS1v15(rand.Reader, f.rsa, crypto.SHA256, d[:])
			return sig
		})},
		{"RS-10 typ at+JWT", f.token(`{"alg":"EdDSA","kid":"ed","typ":"at+JWT"}`, f.claims())},
		{"RS-10 typ application/at+jwt", f.token(`{"alg":"EdDSA","kid":"ed","typ":"application/at+jwt"}`, f.claims())},
		{"RS-13 aud string", f.token(goodHeader, with(f.claims(), "aud", f.aud))},
		{"RS-13 aud array with ours", f.token(goodHeader, with(f.claims(), "aud", []string{"https://notes.example", f.aud}))},
		{"RS-14 exp within leeway", f.token(goodHeader, with(f.claims(), "exp", now.Add(-bearer.DefaultLeeway+time.Second).Unix()))},
		{"RS-15 nbf within leeway", f.token(goodHeader, with(f.claims(), "nbf", now.Add(bearer.DefaultLeeway-time.Second).Unix()))},
		// RS-25: claim names are case-sensitive (go-jose's JSON), so "EXP" is
		// an unknown claim and the real exp governs: one reading only.
		{"RS-25 EXP beside exp is ignored", raw(goodHeader, []byte(strings.Replace(string(mustJSON(f.claims())), `"sub":`+string(mustJSON(f.sub)), `"sub":`+string(mustJSON(f.sub))+`,"EXP":99999999999`, 1)), f.edSign)},
		{"header order", f.token(`{"typ":"at+jwt","kid":"ed","alg":"EdDSA"}`, f.claims())},
	}
	for _, tc := range accept {
		t.Run("accept "+tc.name, func(t *testing.T) { check(t, tc.token, true) })
	}
}

// b64chars is the base64url alphabet in value order.
const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func split(tok string) (h, p, s string) {
	parts := strings.Split(tok, ".")
	return parts[0], parts[1], parts[2]
}

func selfSigned(t *testing.T, k ed25519.PrivateKey) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func TestNewRequiresSecurityParameters(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	base := bearer.Config{Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"}}
	cases := []struct {
		name string
		edit func(*bearer.Config)
	}{
		{"no issuer", func(c *bearer.Config) { c.Issuer = "" }},
		{"no audience", func(c *bearer.Config) { c.Audience = "" }},
		{"no algorithms", func(c *bearer.Config) { c.Algorithms = nil }},
		{"none", func(c *bearer.Config) { c.Algorithms = []string{"none"} }},
		{"HS256", func(c *bearer.Config) { c.Algorithms = []string{"HS256"} }},
		{"leeway too large", func(c *bearer.Config) { c.Leeway = time.Hour }},
		{"metadata names another issuer", func(c *bearer.Config) { c.Issuer = f.srv.URL + "/other" }},
		{"feed without credentials", func(c *bearer.Config) { c.Revocations = &bearer.FeedConfig{} }},
		{"no key for the algorithms", func(c *bearer.Config) { c.Algorithms = []string{"PS512"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			if _, err := bearer.New(context.Background(), cfg); err == nil {
				t.Fatal("New accepted the configuration")
			}
		})
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	v := f.verifier(t)
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := bearer.FromContext(r.Context())
		w.Write([]byte(c.Subject))
	}))
	scoped := v.Middleware(bearer.RequireScope("notes:write", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	expired := f.token(goodHeader, with(f.claims(), "exp", now.Add(-time.Hour).Unix()))
	forged := raw(goodHeader, mustJSON(f.claims()), hs256([]byte("x")))
	cases := []struct {
		name       string
		h          http.Handler
		target     string
		authz      string
		status     int
		challenge  string
		body       string
		notInBody  []string
		wantHeader bool
	}{
		{name: "ok", h: h, target: "/", authz: "Bearer " + f.good(), status: 200, body: "user-1"},
		{name: "scheme case-insensitive", h: h, target: "/", authz: "bearer " + f.good(), status: 200, body: "user-1"},
		{name: "no header", h: h, target: "/", status: 401, challenge: `Bearer realm="notes-api"`},
		{name: "basic scheme", h: h, target: "/", authz: "Basic dXNlcjpwYXNz", status: 401, challenge: `Bearer realm="notes-api"`},
		// RS-29: a token in the query string is never read.
		{name: "RS-29 query token", h: h, target: "/?access_token=" + f.good(), status: 401, challenge: `Bearer realm="notes-api"`},
		// RS-28: one answer for expired and forged, no detail.
		{name: "RS-28 expired", h: h, target: "/", authz: "Bearer " + expired, status: 401, challenge: `Bearer realm="notes-api", error="invalid_token"`, notInBody: []string{"expir", "exp"}},
		{name: "RS-28 forged", h: h, target: "/", authz: "Bearer " + forged, status: 401, challenge: `Bearer realm="notes-api", error="invalid_token"`, notInBody: []string{"signature", "HS256"}},
		// RS-30: scope.
		{name: "RS-30 insufficient scope", h: scoped, target: "/", authz: "Bearer " + f.good(), status: 403, challenge: `Bearer error="insufficient_scope", scope="notes:write"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.target, nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
			if tc.body != "" && w.Body.String() != tc.body {
				t.Errorf("body = %q, want %q", w.Body.String(), tc.body)
			}
			for _, s := range tc.notInBody {
				if strings.Contains(strings.ToLower(w.Body.String()), s) {
					t.Errorf("body %q leaks %q", w.Body.String(), s)
				}
			}
		})
	}
}

// TestMalleatedRevokedToken (RS-06): an ECDSA signature stays valid with s
// replaced by n−s, so a denylist keyed on the token string would miss the
// copy. The revocation set is keyed on the session id: both copies of a
// revoked session's token are rejected.
func TestMalleatedRevokedToken(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	feed := fakeFeed(t, "s1")
	v := f.verifierWith(t, bearer.Config{Revocations: &bearer.FeedConfig{URL: feed.URL, ClientID: "rs", ClientSecret: "x", MaxStaleness: time.Hour}})
	tok := raw(`{"alg":"ES256","kid":"ec","typ":"at+jwt"}`, mustJSON(f.claims()), es256Raw(f.ec))
	h, p, s := split(tok)
	sig, _ := base64.RawURLEncoding.DecodeString(s)
	n := elliptic.P256().Params().N
	sVal := new(big.Int).SetBytes(sig[32:])
	sVal.Sub(n, sVal)
	malleated := append(append([]byte{}, sig[:32]...), sVal.FillBytes(make([]byte, 32))...)
	copyTok := h + "." + p + "." + b64(malleated)
	if copyTok == tok {
		t.Fatal("malleation changed nothing")
	}
	for name, tt := range map[string]string{"original": tok, "malleated": copyTok} {
		if _, err := v.Verify(context.Background(), tt); !errors.Is(err, bearer.ErrRevoked) {
			t.Errorf("%s: %v, want ErrRevoked", name, err)
		}
	}
}

// fetchSettled returns once the key-set fetch the server has seen begin
// has stored its result. A token of an unknown kid makes the verifier
// refetch under the lock that fetch holds, so its Verify returns only after
// it; the refetch itself is skipped, the last fetch being that recent
// (MinRefreshInterval). No sleep guesses how long the fetch takes.
func fetchSettled(t *testing.T, v *bearer.Verifier, f *fakeIssuer) {
	t.Helper()
	before := f.fetches.Load()
	barrier := raw(`{"alg":"EdDSA","kid":"unknown-barrier","typ":"at+jwt"}`, mustJSON(f.claims()), func([]byte) []byte { return make([]byte, 64) })
	if _, err := v.Verify(context.Background(), barrier); err == nil {
		t.Fatal("a token of an unknown kid verified")
	}
	if f.fetches.Load() != before {
		t.Fatal("the barrier token fetched the key set again; it was to wait for the fetch in flight")
	}
}

// OPS-13: a JWKS that comes back empty, or with nothing usable (a secret
// key, an RSA-1024 key, a key whose type does not fit its alg), is a broken
// update and leaves the last good key set in place.
func TestBrokenJWKSKeepsLastGoodKeys(t *testing.T) {
	f := newFakeIssuer(t)
	var clock atomic.Int64 // read by the background refresh too
	clock.Store(now.UnixNano())
	v, err := bearer.New(context.Background(), bearer.Config{Issuer: f.srv.URL, Audience: "notes-api",
		Algorithms: []string{"EdDSA", "ES256", "RS256"}, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	good := f.token(goodHeader, with(f.claims(), "exp", now.Add(24*time.Hour).Unix()))
	// Both the first verification and the cached repeats must keep working.
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakJWK, _ := json.Marshal(jose.JSONWebKey{Key: weak.Public(), KeyID: "ed", Algorithm: "RS256", Use: "sig"})
	// An Ed25519 key labelled ES256: kty and alg disagree.
	mismatch, _ := json.Marshal(jose.JSONWebKey{Key: f.ed.Public(), KeyID: "ed", Algorithm: "EdDSA", Use: "sig"})
	mismatchJWK := strings.Replace(string(mismatch), `"alg":"EdDSA"`, `"alg":"ES256"`, 1)
	for _, broken := range []string{`{"keys":[]}`, `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"ed","alg":"HS256"}]}`,
		`{"keys":[` + string(weakJWK) + `]}`, `{"keys":[` + mismatchJWK + `]}`} {
		b := []byte(broken)
		f.jwks.Store(&b)
		clock.Add(int64(2 * time.Hour)) // past any cache lifetime
		fetches := f.fetches.Load()
		// The expired set refreshes in the background; verification goes on.
		for i := 0; f.fetches.Load() == fetches; i++ {
			if _, err := v.Verify(context.Background(), good); err != nil {
				t.Fatalf("JWKS %s: a good token was refused: %v", broken, err)
			}
			if i > 1000 {
				t.Fatalf("JWKS %s was never fetched", broken)
			}
			time.Sleep(2 * time.Millisecond)
		}
		fetchSettled(t, v, f)
		if _, err := v.Verify(context.Background(), good); err != nil {
			t.Fatalf("after fetching JWKS %s: %v; want the last good keys kept", broken, err)
		}
	}
}

// OPS-11: a key withdrawn from the JWKS (compromise) stops verifying at the
// next key-set refresh, also for tokens already verified and cached.
func TestWithdrawnKeyEndsCachedTokens(t *testing.T) {
	f := newFakeIssuer(t)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v, err := bearer.New(context.Background(), bearer.Config{Issuer: f.srv.URL, Audience: "notes-api",
		Algorithms: []string{"EdDSA", "ES256"}, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := f.token(goodHeader, with(f.claims(), "exp", now.Add(24*time.Hour).Unix()))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	// The Ed25519 key is withdrawn; the ECDSA key stays.
	f.setKeys(jose.JSONWebKey{Key: f.ec.Public(), KeyID: "ec", Algorithm: "ES256", Use: "sig"})
	clock.Add(int64(10 * time.Minute)) // past the 300 s max-age
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), tok)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a token signed by a withdrawn key still verifies")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// OPS-14: the verifier follows no redirect for metadata or keys, and an
// https issuer's keys must come over https.
func TestNoRedirectsNoDowngrade(t *testing.T) {
	f := newFakeIssuer(t)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, f.srv.URL+r.URL.Path, http.StatusFound)
	}))
	defer evil.Close()
	cfg := bearer.Config{Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"}, JWKSURL: evil.URL + "/jwks"}
	if v, err := bearer.New(context.Background(), cfg); err == nil {
		v.Close()
		t.Fatal("keys were fetched through a redirect")
	}
	// Discovery that points an https issuer at http keys is refused; the
	// check runs before any key is fetched, so a fake https issuer that
	// only serves metadata is enough.
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": "https://" + r.Host, "jwks_uri": f.srv.URL + "/jwks"})
	}))
	defer tls.Close()
	_, err := bearer.New(context.Background(), bearer.Config{Issuer: tls.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"}, HTTPClient: tls.Client()})
	if err == nil || !strings.Contains(err.Error(), "not https") {
		t.Fatalf("an https issuer with an http jwks_uri: %v, want a refusal", err)
	}
}

// withURLChars returns a valid token that contains '-' or '_', so that
// rewriting it in the standard base64 alphabet really changes it (a random
// signature lacks both about one time in fifteen).
func withURLChars(f *fakeIssuer) string {
	for i := 0; ; i++ {
		tok := f.token(goodHeader, with(f.claims(), "jti", "j"+strconv.Itoa(i)))
		if strings.ContainsAny(tok, "-_") {
			return tok
		}
	}
}

// DOS-05: a request for an unknown kid whose context is already cancelled
// (a client that hangs up at once) must not spend the rate-limited JWKS
// refetch on a fetch that fails: otherwise an attacker who does this once
// per MinRefreshInterval keeps a rotated-in key from ever being learnt.
func TestCancelledRequestDoesNotStarveKeyRefresh(t *testing.T) {
	f := newFakeIssuer(t)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v, err := bearer.New(context.Background(), bearer.Config{Issuer: f.srv.URL, Audience: "notes-api",
		Algorithms: []string{"EdDSA"}, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, next, _ := ed25519.GenerateKey(rand.Reader)
	f.setKeys(
		jose.JSONWebKey{Key: f.ed.Public(), KeyID: "ed", Algorithm: "EdDSA", Use: "sig"},
		jose.JSONWebKey{Key: next.Public(), KeyID: "ed2", Algorithm: "EdDSA", Use: "sig"},
	)
	clock.Add(int64(time.Minute)) // past MinRefreshInterval, within the 300 s max-age
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	v.Verify(cancelled, f.token(`{"alg":"EdDSA","kid":"attacker","typ":"at+jwt"}`, f.claims()))
	tok := raw(`{"alg":"EdDSA","kid":"ed2","typ":"at+jwt"}`, mustJSON(f.claims()), func(in []byte) []byte { return ed25519.Sign(next, in) })
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("a token of the rotated-in key after a cancelled unknown-kid request: %v", err)
	}
}

// OPS-11: a key replaced in the JWKS by another key under the same kid
// (a compromised key swapped out, kid kept) ends the tokens of the old key
// already verified and cached, as a withdrawn key does.
func TestReplacedKeySameKidEndsCachedTokens(t *testing.T) {
	f := newFakeIssuer(t)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v, err := bearer.New(context.Background(), bearer.Config{Issuer: f.srv.URL, Audience: "notes-api",
		Algorithms: []string{"EdDSA"}, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := f.token(goodHeader, with(f.claims(), "exp", now.Add(24*time.Hour).Unix()))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	f.setKeys(jose.JSONWebKey{Key: other.Public(), KeyID: "ed", Algorithm: "EdDSA", Use: "sig"})
	clock.Add(int64(10 * time.Minute)) // past the 300 s max-age
	fetches := f.fetches.Load()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), tok)
		if err != nil {
			break
		}
		if f.fetches.Load() > fetches && time.Now().After(deadline) {
			t.Fatal("a token of a key replaced under the same kid still verifies")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The unchanged key of an unchanged JWKS keeps its cached tokens: a
	// refresh alone does not end them.
	good := raw(goodHeader, mustJSON(with(f.claims(), "exp", now.Add(24*time.Hour).Unix())), func(in []byte) []byte { return ed25519.Sign(other, in) })
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(10 * time.Minute))
	fetches = f.fetches.Load()
	for f.fetches.Load() == fetches {
		if _, err := v.Verify(context.Background(), good); err != nil {
			t.Fatalf("a token of the current key, across a refresh: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	fetchSettled(t, v, f)
	hits := v.Stats().CacheHits
	if _, err := v.Verify(context.Background(), good); err != nil || v.Stats().CacheHits != hits+1 {
		t.Fatalf("after a refresh that changed nothing: %v, cache hits %d -> %d, want a hit", err, hits, v.Stats().CacheHits)
	}
}
