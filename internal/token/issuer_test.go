package token_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/testenv"
	"github.com/latchauth/latch/internal/token"
)

var ctx = context.Background()

type fixture struct {
	store *sqlite.Store
	kek   *keywrap.KEK
	clock *testenv.Clock
}

func newFixture(t *testing.T) *fixture { return newFixtureTB(t) }

func newFixtureTB(t testing.TB) *fixture {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	kek, _ := keywrap.New(b)
	return &fixture{store: st, kek: kek, clock: testenv.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
}

func (f *fixture) issuer(t *testing.T, alg string) *token.Issuer {
	t.Helper()
	i, err := token.New(f.store, f.kek, token.Config{Issuer: "https://auth.example", Alg: alg, JWKSMaxAge: 5 * time.Minute,
		LongestAccessTTL: 15 * time.Minute, Leeway: 30 * time.Second, ReloadInterval: time.Second}, token.WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if err := i.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return i
}

func claims(now time.Time) session.AccessClaims {
	return session.AccessClaims{Issuer: "https://auth.example", Subject: "user", Audience: []string{"api"},
		Expiry: now.Add(15 * time.Minute), IssuedAt: now, NotBefore: now,
		ID: "jti", ClientID: "app", SessionID: "sid"}
}

func jwks(t *testing.T, i *token.Issuer) jose.JSONWebKeySet {
	t.Helper()
	body, _ := i.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	return set
}

// verifyWithJWKS checks a token the way an outside resource server would:
// from the published JWKS only.
func verifyWithJWKS(t *testing.T, tok string, set jose.JSONWebKeySet) error {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256})
	if err != nil {
		return err
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		return errors.New("kid not in JWKS")
	}
	var c bearer.Claims
	return parsed.Claims(keys[0].Key, &c)
}

func TestIssueEachAlgorithm(t *testing.T) {
	for _, alg := range token.Algorithms {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t)
			i := f.issuer(t, alg)
			tok, err := i.Issue(claims(f.clock.Now()))
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			h := parsed.Headers[0]
			if h.ExtraHeaders[jose.HeaderType] != "at+jwt" || h.KeyID == "" || h.Algorithm != alg {
				t.Fatalf("header = typ %v kid %q alg %q", h.ExtraHeaders[jose.HeaderType], h.KeyID, h.Algorithm)
			}
			if h.JSONWebKey != nil || h.ExtraHeaders["x5c"] != nil || h.ExtraHeaders["jku"] != nil {
				t.Fatal("header carries key material")
			}
			set := jwks(t, i)
			if err := verifyWithJWKS(t, tok, set); err != nil {
				t.Fatalf("verify from JWKS: %v", err)
			}
			for _, k := range set.Keys {
				if k.Use != "sig" || k.Algorithm != alg || !k.IsPublic() {
					t.Fatalf("JWKS key %s: use %q alg %q public %v", k.KeyID, k.Use, k.Algorithm, k.IsPublic())
				}
			}
			if _, err := verifyOwn(i, tok); err != nil {
				t.Fatalf("Verify with the issuer's keys: %v", err)
			}
		})
	}
}

// verifyOwn checks tok as Latch's endpoints do: bearer with the keys from
// the issuer's memory, for audience "api".
func verifyOwn(i *token.Issuer, tok string) (*bearer.Claims, error) {
	v, err := bearer.New(ctx, i.VerifierConfig("api"))
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, tok)
}

func TestVerifierConfigRejects(t *testing.T) {
	f := newFixture(t)
	i := f.issuer(t, "EdDSA")
	now := f.clock.Now()
	good, _ := i.Issue(claims(now))
	other := newFixture(t).issuer(t, "EdDSA") // another deployment's keys
	foreign, _ := other.Issue(claims(now))
	wrongIss := claims(now)
	wrongIss.Issuer = "https://auth.example/"
	wrongIssTok, _ := i.Issue(wrongIss)
	expired := claims(now.Add(-time.Hour))
	expiredTok, _ := i.Issue(expired)
	parts := strings.Split(good, ".")
	tests := []struct{ name, tok string }{
		{"empty", ""},
		{"garbage", "not.a.jwt"},
		{"signed by another issuer's key", foreign},
		{"issuer with trailing slash", wrongIssTok},
		{"expired", expiredTok},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + parts[1] + "."},
		{"huge", strings.Repeat("a", 9000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := verifyOwn(i, tt.tok); !errors.Is(err, bearer.ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
			}
		})
	}
}

// TestRotationLifeCycle: a next key is published before it signs; after
// rotation, tokens from the old key keep verifying until they expire, then
// the retired key leaves the JWKS.
func TestRotationLifeCycle(t *testing.T) {
	f := newFixture(t)
	i := f.issuer(t, "EdDSA")
	before, _ := i.Issue(claims(f.clock.Now()))
	set := jwks(t, i)
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys at start, want current and next", len(set.Keys))
	}
	if _, err := i.Rotate(ctx, false); !errors.Is(err, token.ErrTooSoon) {
		t.Fatalf("rotate right away: error = %v, want ErrTooSoon", err)
	}
	f.clock.Advance(5*time.Minute + time.Second) // max-age plus one reload interval
	r, err := i.Rotate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := i.Issue(claims(f.clock.Now()))
	parsed, _ := jwt.ParseSigned(after, []jose.SignatureAlgorithm{jose.EdDSA})
	if kid := parsed.Headers[0].KeyID; kid != r.PromoteKID {
		t.Fatalf("after rotation signed with %s, want the promoted next key %s", kid, r.PromoteKID)
	}
	// A verifier that cached the JWKS before the rotation knows the new key.
	if err := verifyWithJWKS(t, after, set); err != nil {
		t.Fatalf("token of the new key against the pre-rotation JWKS: %v", err)
	}
	set = jwks(t, i)
	if len(set.Keys) != 3 {
		t.Fatalf("JWKS has %d keys after rotation, want retired, current, next", len(set.Keys))
	}
	if err := verifyWithJWKS(t, before, set); err != nil {
		t.Fatalf("token of the retired key: %v", err)
	}
	// The keys from memory are the JWKS's: the retired key still verifies.
	checkKeysMatchJWKS(t, i)
	if _, err := verifyOwn(i, before); err != nil {
		t.Fatalf("token of the retired key, keys from memory: %v", err)
	}
	// Past the longest access TTL plus leeway the retired key goes.
	f.clock.Advance(15*time.Minute + 31*time.Second)
	if err := i.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(jwks(t, i).Keys); n != 2 {
		t.Fatalf("JWKS has %d keys after retention, want 2", n)
	}
	checkKeysMatchJWKS(t, i)
	if _, err := i.Key(ctx, r.RetireKID); !errors.Is(err, bearer.ErrUnknownKey) {
		t.Fatalf("Key(retired past retention) = %v, want ErrUnknownKey", err)
	}
	if n, err := i.PruneRetired(ctx); err != nil || n != 1 {
		t.Fatalf("PruneRetired = %d, %v; want 1", n, err)
	}
}

// checkKeysMatchJWKS: Issuer.Key answers for exactly the keys of the
// published JWKS, with their algorithm.
func checkKeysMatchJWKS(t *testing.T, i *token.Issuer) {
	t.Helper()
	for _, k := range jwks(t, i).Keys {
		got, err := i.Key(ctx, k.KeyID)
		if err != nil {
			t.Fatalf("Key(%s): %v", k.KeyID, err)
		}
		if got.Algorithm != k.Algorithm || !got.Key.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Key) {
			t.Fatalf("Key(%s) = %s %v, want the JWKS key %s %v", k.KeyID, got.Algorithm, got.Key, k.Algorithm, k.Key)
		}
	}
	if _, err := i.Key(ctx, "no-such-kid"); !errors.Is(err, bearer.ErrUnknownKey) {
		t.Fatalf("Key(unknown) = %v, want ErrUnknownKey", err)
	}
}

// TestOtherNodePicksUpRotation: a second issuer over the same storage (a
// second node, or the CLI) sees a rotation on its next reload.
func TestOtherNodePicksUpRotation(t *testing.T) {
	f := newFixture(t)
	a, b := f.issuer(t, "EdDSA"), f.issuer(t, "EdDSA")
	if ja, jb := jwks(t, a), jwks(t, b); len(ja.Keys) != 2 || len(jb.Keys) != 2 || ja.Keys[0].KeyID != jb.Keys[0].KeyID {
		t.Fatal("two nodes created different first keys")
	}
	f.clock.Advance(10 * time.Minute)
	r, err := a.Rotate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	tok, _ := b.Issue(claims(f.clock.Now()))
	parsed, _ := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if parsed.Headers[0].KeyID != r.PromoteKID {
		t.Fatal("node b still signs with the retired key")
	}
}

func TestWrongKEKIsRefused(t *testing.T) {
	f := newFixture(t)
	f.issuer(t, "EdDSA")
	b := make([]byte, 32)
	rand.Read(b)
	f.kek, _ = keywrap.New(b)
	i, err := token.New(f.store, f.kek, token.Config{Issuer: "https://auth.example", Alg: "EdDSA", JWKSMaxAge: time.Minute,
		LongestAccessTTL: time.Minute, ReloadInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := i.Init(ctx); !errors.Is(err, keywrap.ErrOpen) {
		t.Fatalf("Init with another KEK: error = %v, want ErrOpen", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := token.Config{Issuer: "https://a", Alg: "EdDSA", JWKSMaxAge: time.Minute, LongestAccessTTL: time.Minute, ReloadInterval: time.Second}
	tests := []struct {
		name string
		mod  func(*token.Config)
	}{
		{"no issuer", func(c *token.Config) { c.Issuer = "" }},
		{"HS256", func(c *token.Config) { c.Alg = "HS256" }},
		{"none", func(c *token.Config) { c.Alg = "none" }},
		{"zero max-age", func(c *token.Config) { c.JWKSMaxAge = 0 }},
		{"huge leeway", func(c *token.Config) { c.Leeway = time.Hour }},
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			if c.Validate() == nil {
				t.Fatal("Validate accepted it")
			}
		})
	}
}

func TestRewrap(t *testing.T) {
	f := newFixture(t)
	old := f.issuer(t, "EdDSA")
	mac, err := token.RefreshKey(ctx, f.store, f.kek, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := old.Issue(claims(f.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	newKEK, _ := keywrap.New(b)
	oldKEK := f.kek
	n, err := token.Rewrap(ctx, f.store, oldKEK, newKEK)
	if err != nil || n != 3 {
		t.Fatalf("Rewrap = %d, %v; want 2 signing keys and the MAC key", n, err)
	}
	// The new key opens everything: same signing keys, same MAC key.
	f.kek = newKEK
	again := f.issuer(t, "EdDSA")
	if _, err := verifyOwn(again, tok); err != nil {
		t.Fatalf("a token signed before the rewrap does not verify after it: %v", err)
	}
	if mac2, err := token.RefreshKey(ctx, f.store, newKEK, f.clock.Now()); err != nil || string(mac2) != string(mac) {
		t.Fatalf("refresh MAC key after rewrap: %v (changed: %v)", err, string(mac2) != string(mac))
	}
	// The old key opens nothing any more, and a rewrap from the wrong
	// key fails and changes nothing.
	if _, err := token.RefreshKey(ctx, f.store, oldKEK, f.clock.Now()); err == nil {
		t.Fatal("the old key-encryption key still opens the MAC key")
	}
	if _, err := token.Rewrap(ctx, f.store, oldKEK, newKEK); err == nil {
		t.Fatal("Rewrap from a key that does not open the values succeeded")
	}
	if _, err := token.RefreshKey(ctx, f.store, newKEK, f.clock.Now()); err != nil {
		t.Fatalf("a failed rewrap damaged the stored values: %v", err)
	}
}

// BenchmarkIssue measures signing an access token with each algorithm.
func BenchmarkIssue(b *testing.B) {
	for _, alg := range []string{"EdDSA", "ES256", "RS256"} {
		b.Run(alg, func(b *testing.B) {
			f := newFixtureTB(b)
			i, err := token.New(f.store, f.kek, token.Config{Issuer: "https://auth.example", Alg: alg, JWKSMaxAge: 5 * time.Minute,
				LongestAccessTTL: 15 * time.Minute, Leeway: 30 * time.Second, ReloadInterval: time.Second}, token.WithClock(f.clock.Now))
			if err != nil {
				b.Fatal(err)
			}
			if err := i.Init(ctx); err != nil {
				b.Fatal(err)
			}
			c := claims(f.clock.Now())
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := i.Issue(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// hideKeysOnce reports an empty key set on its first read, as a node sees
// storage when another node inserts the first keys right after its read.
type hideKeysOnce struct {
	token.Store
	hidden bool
}

func (h *hideKeysOnce) SigningKeys(ctx context.Context) ([]token.StoredKey, error) {
	if !h.hidden {
		h.hidden = true
		return nil, nil
	}
	return h.Store.SigningKeys(ctx)
}

// TestInitRaceLogsOneCreation: of two nodes that start together on one
// database, only the one whose keys were stored says it created keys; the
// other loads the winner's keys and says nothing of its own.
func TestInitRaceLogsOneCreation(t *testing.T) {
	f := newFixture(t)
	winner := f.issuer(t, "EdDSA")
	var logs testenv.LogBuffer
	loser, err := token.New(&hideKeysOnce{Store: f.store}, f.kek, token.Config{Issuer: "https://auth.example", Alg: "EdDSA", JWKSMaxAge: 5 * time.Minute,
		LongestAccessTTL: 15 * time.Minute, Leeway: 30 * time.Second, ReloadInterval: time.Second},
		token.WithClock(f.clock.Now), token.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := loser.Init(ctx); err != nil {
		t.Fatalf("Init after another node created the keys: %v", err)
	}
	if strings.Contains(logs.String(), "created signing keys") {
		t.Fatalf("the node that lost the race logged a creation:\n%s", logs.String())
	}
	a, _ := winner.JWKS()
	b, _ := loser.JWKS()
	if string(a) != string(b) {
		t.Fatalf("the two nodes publish different keys:\n%s\n%s", a, b)
	}
}

// BenchmarkVerifyOwn is the cost of Latch verifying one of its own access
// tokens for an account endpoint: bearer with the keys from memory, a
// token not seen before (no cache hit).
func BenchmarkVerifyOwn(b *testing.B) {
	f := newFixtureTB(b)
	i, err := token.New(f.store, f.kek, token.Config{Issuer: "https://auth.example", Alg: "EdDSA", JWKSMaxAge: 5 * time.Minute,
		LongestAccessTTL: 15 * time.Minute, Leeway: 30 * time.Second, ReloadInterval: time.Second}, token.WithClock(f.clock.Now))
	if err != nil {
		b.Fatal(err)
	}
	if err := i.Init(ctx); err != nil {
		b.Fatal(err)
	}
	cfg := i.VerifierConfig("api")
	cfg.CacheSize = -1
	v, err := bearer.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := i.Issue(claims(f.clock.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIssueExtraClaims: custom claims are issued beside the registered
// ones, and one named like a registered or Latch claim is dropped, never
// merged over it (go-jose merges later claim sets over earlier ones).
func TestIssueExtraClaims(t *testing.T) {
	f := newFixture(t)
	i := f.issuer(t, "EdDSA")
	c := claims(f.clock.Now())
	c.Extra = map[string]json.RawMessage{"roles": json.RawMessage(`["editor"]`), "sub": json.RawMessage(`"admin"`),
		"sid": json.RawMessage(`"other"`), "exp": json.RawMessage(`99999999999`), "cnf": json.RawMessage(`{"jkt":"x"}`)}
	tok, err := i.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := parsed.UnsafeClaimsWithoutVerification(&got); err != nil {
		t.Fatal(err)
	}
	if got["sub"] != "user" || got["sid"] != "sid" || got["exp"] != float64(c.Expiry.Unix()) {
		t.Fatalf("registered claims replaced: %v", got)
	}
	if _, ok := got["cnf"]; ok {
		t.Fatalf("cnf issued from Extra: %v", got)
	}
	if r, _ := got["roles"].([]any); len(r) != 1 || r[0] != "editor" {
		t.Fatalf("roles = %v", got["roles"])
	}
}

// A node told that the keys changed (NOTIFY latch_keys, through Notify)
// signs with the new key at once, long before its fallback reload.
func TestNotifyReloadsAtOnce(t *testing.T) {
	f := newFixture(t)
	a := f.issuer(t, "EdDSA")
	b, err := token.New(f.store, f.kek, token.Config{Issuer: "https://auth.example", Alg: "EdDSA", JWKSMaxAge: 5 * time.Minute,
		LongestAccessTTL: 15 * time.Minute, Leeway: 30 * time.Second, ReloadInterval: time.Hour}, token.WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Init(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Run(runCtx)
	f.clock.Advance(10 * time.Minute)
	r, err := a.Rotate(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	b.Notify()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tok, _ := b.Issue(claims(f.clock.Now()))
		parsed, _ := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
		if parsed.Headers[0].KeyID == r.PromoteKID {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("5 s after Notify, node b still signs with the retired key (its own reload is an hour away)")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
