package token_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchauth/latch/internal/token"
)

// strictB64 decodes one compact-JWS part as RFC 7515 section 2 wants it:
// base64url, no padding, no other characters.
func strictB64(t *testing.T, part string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.Strict().DecodeString(part)
	if err != nil || strings.ContainsAny(part, "=+/") {
		t.Fatalf("part %q is not unpadded base64url: %v", part, err)
	}
	return b
}

// TestIssuedTokenBytes: the protected header is exactly alg, kid and typ
// (what go-jose's signer wrote, and nothing a verifier could be steered
// by), every part is unpadded base64url, the signature has its
// algorithm's fixed size, and go-jose verifies the token from the JWKS.
func TestIssuedTokenBytes(t *testing.T) {
	for _, alg := range token.Algorithms {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t)
			i := f.issuer(t, alg)
			set := jwks(t, i)
			c := claims(f.clock.Now())
			c.Extra = map[string]json.RawMessage{"roles": json.RawMessage(`["a","b"]`), "tenant": json.RawMessage(`"t1"`)}
			tok, err := i.Issue(c)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			keys := set.Key(parsed.Headers[0].KeyID)
			if len(keys) != 1 {
				t.Fatalf("kid %q: %d keys in the JWKS", parsed.Headers[0].KeyID, len(keys))
			}
			k := keys[0]
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("%d parts", len(parts))
			}
			header := strictB64(t, parts[0])
			want := `{"alg":"` + alg + `","kid":"` + k.KeyID + `","typ":"at+jwt"}`
			if string(header) != want {
				t.Fatalf("header %s, want %s", header, want)
			}
			payload := strictB64(t, parts[1])
			if !json.Valid(payload) {
				t.Fatalf("payload is not JSON: %s", payload)
			}
			sig := strictB64(t, parts[2])
			wantLen := 64 // EdDSA (RFC 8037 section 3.1), ES256 (RFC 7518 section 3.4)
			if pub, ok := k.Key.(*rsa.PublicKey); ok {
				wantLen = pub.Size() // RFC 7518 section 3.3: the modulus's length
			}
			if len(sig) != wantLen {
				t.Fatalf("signature of %d bytes, want %d", len(sig), wantLen)
			}
			var got struct {
				jwt.Claims
				Roles  []string `json:"roles"`
				Tenant string   `json:"tenant"`
			}
			if err := parsed.Claims(k.Key, &got); err != nil {
				t.Fatalf("go-jose: %v", err)
			}
			if got.Subject != "user" || got.Issuer != "https://auth.example" || len(got.Roles) != 2 || got.Tenant != "t1" {
				t.Fatalf("claims read back: %+v", got)
			}
			if _, err := verifyOwn(i, tok); err != nil {
				t.Fatalf("bearer: %v", err)
			}
		})
	}
}

// TestES256ShortRAndS: r and s are left-padded to 32 bytes each. About one
// signature in 128 has an r or s below 2^248; the test signs until it has
// seen several and has go-jose verify every token.
func TestES256ShortRAndS(t *testing.T) {
	f := newFixture(t)
	i := f.issuer(t, "ES256")
	tok0, err := i.Issue(claims(f.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	p0, err := jwt.ParseSigned(tok0, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	set := jwks(t, i)
	k := set.Key(p0.Headers[0].KeyID)[0]
	if _, ok := k.Key.(*ecdsa.PublicKey); !ok {
		t.Fatalf("ES256 JWKS key is %T", k.Key)
	}
	padded := 0
	for n := 0; padded < 4; n++ {
		if n == 20000 {
			t.Fatalf("20000 signatures and only %d with a short r or s", padded)
		}
		tok, err := i.Issue(claims(f.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		sig := strictB64(t, tok[strings.LastIndexByte(tok, '.')+1:])
		if len(sig) != 64 {
			t.Fatalf("signature of %d bytes", len(sig))
		}
		if sig[0] == 0 || sig[32] == 0 {
			padded++
		}
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var c jwt.Claims
		if err := parsed.Claims(k.Key, &c); err != nil {
			t.Fatalf("token %d (r short %v, s short %v): %v", n, sig[0] == 0, sig[32] == 0, err)
		}
	}
}

// TestCustomClaimCaseVariantNeverWins: a mapped claim may be named "Sub"
// or "EXP" (only the exact registered names are reserved). encoding/json,
// which many resource servers decode claims with, matches names without
// regard to case and keeps the last, so the registered claims must come
// after the custom ones in the payload.
func TestCustomClaimCaseVariantNeverWins(t *testing.T) {
	f := newFixture(t)
	i := f.issuer(t, "EdDSA")
	c := claims(f.clock.Now())
	c.Extra = map[string]json.RawMessage{"Sub": json.RawMessage(`"admin"`), "EXP": json.RawMessage(`99999999999`),
		"Aud": json.RawMessage(`"other"`), "Client_ID": json.RawMessage(`"evil"`), "zz": json.RawMessage(`1`)}
	tok, err := i.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	payload := strictB64(t, strings.Split(tok, ".")[1])
	var got struct {
		Sub      string `json:"sub"`
		Exp      int64  `json:"exp"`
		Aud      string `json:"aud"`
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	if got.Sub != "user" || got.Exp != c.Expiry.Unix() || got.Aud != "api" || got.ClientID != "app" {
		t.Fatalf("a custom claim stood in for a registered one: %+v in %s", got, payload)
	}
	if !bytes.Contains(payload, []byte(`"zz":1`)) {
		t.Fatalf("custom claim missing: %s", payload)
	}
	claims, err := verifyOwn(i, tok)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "user" || string(claims.Extra["Sub"]) != `"admin"` {
		t.Fatalf("bearer read sub %q, Extra %v", claims.Subject, claims.Extra)
	}
}

// TestCustomClaimEdges: custom claims that are all reserved leave the
// payload as without any; a value that is not JSON fails the issue rather
// than making a token no one can parse.
func TestCustomClaimEdges(t *testing.T) {
	f := newFixture(t)
	i := f.issuer(t, "EdDSA")
	payload := func(extra map[string]json.RawMessage) (string, error) {
		c := claims(f.clock.Now())
		c.Extra = extra
		tok, err := i.Issue(c)
		if err != nil {
			return "", err
		}
		if _, err := verifyOwn(i, tok); err != nil {
			t.Fatalf("bearer: %v", err)
		}
		return string(strictB64(t, strings.Split(tok, ".")[1])), nil
	}
	plain, err := payload(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := payload(map[string]json.RawMessage{"sub": json.RawMessage(`"x"`), "iss": json.RawMessage(`"y"`)}); err != nil || got != plain {
		t.Fatalf("only reserved custom claims: %s, %v; want %s", got, err, plain)
	}
	if got, err := payload(map[string]json.RawMessage{"roles": json.RawMessage(`[1,`)}); err == nil {
		t.Fatalf("invalid custom claim issued: %s", got)
	}
}
