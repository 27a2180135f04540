package bearer_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchauth/latch/bearer"
)

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, and
// anything it accepts must carry the issuer's claims (RS-27).
func FuzzVerify(f *testing.F) {
	iss := newFakeIssuer(f)
	v := iss.verifier(f)
	good := iss.good()
	for _, s := range []string{good, good + ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", good[:len(good)-3]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(context.Background(), tok)
		if err == nil && (c.Issuer != iss.srv.URL || c.Subject == "") {
			t.Fatalf("accepted %q with claims %+v", tok, c)
		}
	})
}

// FuzzVerifySigned signs arbitrary header and claims JSON with the issuer's
// Ed25519 key, so the fuzzer reaches the JSON readers behind a valid
// signature: whatever Verify accepts, go-jose (which verified tokens before)
// accepts too and reads the same claims.
func FuzzVerifySigned(f *testing.F) {
	iss := newFakeIssuer(f)
	v := iss.verifierWith(f, bearer.Config{CacheSize: -1})
	f.Add([]byte(goodHeader), mustJSON(iss.claims()))
	f.Add([]byte(`{"typ":"AT+jwt","kid":"ed","alg":"EdDSA"}`), []byte(strings.Replace(string(mustJSON(iss.claims())), `"sub":"user-1"`, `"sub":"u\u00e9","x":{"a":[1,{"b":"}"}]},"EXP":1`, 1)))
	pub := iss.ed.Public()
	f.Fuzz(func(t *testing.T, hdr, payload []byte) {
		tok := raw(string(hdr), payload, iss.edSign)
		got, err := v.Verify(context.Background(), tok)
		if err != nil {
			return
		}
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatalf("Verify accepted %q . %q, go-jose refuses it: %v", hdr, payload, err)
		}
		var want bearer.Claims
		if err := parsed.Claims(pub, &want); err != nil {
			t.Fatalf("Verify accepted %q . %q, go-jose refuses the claims: %v", hdr, payload, err)
		}
		g := *got
		if len(g.Audience) == 0 && len(want.Audience) == 0 {
			g.Audience, want.Audience = nil, nil
		}
		want.Extra = bearer.ExtraClaims(t, payload)
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("%q . %q: Verify = %+v, go-jose = %+v", hdr, payload, g, want)
		}
	})
}
