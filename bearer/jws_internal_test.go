package bearer

import (
	"encoding/json"
	"reflect"
	"testing"

	josejson "github.com/go-jose/go-jose/v4/json"
)

// FuzzDecodeClaims is a differential check of decodeClaims against
// go-jose's JSON fork, which verified claims before: whatever decodeClaims
// accepts, the fork accepts too and reads the same way (it may accept more:
// escaped names, invalid UTF-8).
func FuzzDecodeClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"https://a","sub":"u","aud":["x","y"],"exp":1.5e9,"iat":1,"nbf":null,"jti":"j","client_id":"c","sid":"s","scope":"a b"}`,
		`{"aud":"x","sub":"a\u0062","x":{"y":[1,{"z":"}"}]},"exp":-1}`,
		`{"sub":"a","sub":"b"}`, `{"EXP":1,"exp":2}`, ` { "aud" : [ ] , "iss" : null } `, `[1]`, `{"aud":[null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeClaims(b)
		if err != nil {
			return
		}
		var want Claims
		if err := josejson.Unmarshal(b, &want); err != nil {
			t.Fatalf("decodeClaims accepted %q, the fork refuses it: %v", b, err)
		}
		if len(got.Audience) == 0 && len(want.Audience) == 0 {
			got.Audience, want.Audience = nil, nil
		}
		want.Extra = extraClaims(t, b, josejson.Unmarshal)
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("%q: decodeClaims = %+v, fork = %+v", b, *got, want)
		}
	})
}

// extraClaims reads the members of the claims set b other than the ones
// Claims names, as Claims.Extra holds them (nil for none).
func extraClaims(t *testing.T, b []byte, unmarshal func([]byte, any) error) map[string]json.RawMessage {
	t.Helper()
	var all map[string]json.RawMessage
	if err := unmarshal(b, &all); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "sid", "scope"} {
		delete(all, k)
	}
	if len(all) == 0 {
		return nil
	}
	return all
}

// FuzzDecodeHeader: whatever decodeHeader accepts has only alg, kid and
// typ, read as the fork reads them.
func FuzzDecodeHeader(f *testing.F) {
	for _, s := range []string{`{"alg":"EdDSA","kid":"ed","typ":"at+jwt"}`, `{"alg":"EdDSA","alg":"none"}`, `{"kid":"\u0000"}`, `{"ALG":"x"}`, `{"crit":[]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeHeader(b)
		if err != nil {
			return
		}
		var want struct {
			Alg string `json:"alg"`
			Kid string `json:"kid"`
			Typ string `json:"typ"`
		}
		var all map[string]any
		if err := josejson.Unmarshal(b, &want); err != nil || josejson.Unmarshal(b, &all) != nil {
			t.Fatalf("decodeHeader accepted %q, the fork refuses it: %v", b, err)
		}
		for k := range all {
			if k != "alg" && k != "kid" && k != "typ" {
				t.Fatalf("decodeHeader accepted %q with parameter %q", b, k)
			}
		}
		if got.alg != want.Alg || got.kid != want.Kid || got.typ != want.Typ {
			t.Fatalf("%q: decodeHeader = %+v, fork = %+v", b, got, want)
		}
	})
}
