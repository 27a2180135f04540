package bearer_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
)

// mapKeys is a KeySource over a map; err, if set, is what every lookup
// answers.
type mapKeys struct {
	mu   sync.Mutex
	keys map[string]bearer.PublicKey
	err  error
}

func (m *mapKeys) Key(_ context.Context, kid string) (bearer.PublicKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return bearer.PublicKey{}, m.err
	}
	k, ok := m.keys[kid]
	if !ok {
		return bearer.PublicKey{}, bearer.ErrUnknownKey
	}
	return k, nil
}

func (m *mapKeys) set(kid string, k bearer.PublicKey) {
	m.mu.Lock()
	m.keys[kid] = k
	m.mu.Unlock()
}

// TestKeySource: with Config.Keys the verifier fetches nothing (no
// issuer is reachable here), verifies with the source's keys under the
// same rules as JWKS keys, ends cached tokens of a key the source replaced
// or dropped, and tells a source that cannot answer apart from a bad token.
func TestKeySource(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	src := &mapKeys{keys: map[string]bearer.PublicKey{"ed": {Key: f.ed.Public(), Algorithm: "EdDSA"}}}
	v, err := bearer.New(context.Background(), bearer.Config{Issuer: f.iss, Audience: f.aud, Algorithms: []string{"EdDSA", "ES256"},
		Keys: src, JWKSURL: "http://127.0.0.1:1/unreachable", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	good := f.good()
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("a token of the source's key: %v", err)
	}
	if _, err := v.Verify(context.Background(), good); err != nil || v.Stats().CacheHits != 1 {
		t.Fatalf("repeat: %v, cache hits %d; want a hit", err, v.Stats().CacheHits)
	}
	if n := v.JWKSFetches(); n != 0 || f.requests.Load() != 0 {
		t.Fatalf("JWKS fetches %d, issuer requests %d; want none", n, f.requests.Load())
	}

	// The source's keys get the JWKS keys' checks: an allowed algorithm,
	// a key of its type.
	src.set("rsa", bearer.PublicKey{Key: f.rsa.Public(), Algorithm: "RS256"})
	src.set("mislabelled", bearer.PublicKey{Key: f.ed.Public(), Algorithm: "ES256"})
	for name, tok := range map[string]string{
		"unknown kid":               f.token(`{"alg":"EdDSA","kid":"nope","typ":"at+jwt"}`, f.claims()),
		"key of an alg not allowed": f.token(`{"alg":"EdDSA","kid":"rsa","typ":"at+jwt"}`, f.claims()),
		"key not of its alg type":   f.token(`{"alg":"ES256","kid":"mislabelled","typ":"at+jwt"}`, f.claims()),
	} {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, bearer.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}

	// A key replaced under the same kid ends the cached token (OPS-11).
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	src.set("ed", bearer.PublicKey{Key: other.Public(), Algorithm: "EdDSA"})
	if _, err := v.Verify(context.Background(), good); !errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("a cached token of a replaced key: %v, want ErrInvalidToken", err)
	}

	// A source that cannot answer is not a verdict on the token: Verify's
	// error is not ErrInvalidToken and the middleware answers 503.
	src.set("ed", bearer.PublicKey{Key: f.ed.Public(), Algorithm: "EdDSA"})
	src.mu.Lock()
	src.err = errors.New("storage down")
	src.mu.Unlock()
	fresh := f.token(goodHeader, with(f.claims(), "jti", "j2"))
	if _, err := v.Verify(context.Background(), fresh); err == nil || errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("a failing source: %v, want an error that is not ErrInvalidToken", err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+fresh)
	w := httptest.NewRecorder()
	v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("handler ran") })).ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("middleware with a failing source: %d, want 503", w.Code)
	}
}
