package bearer_test

import (
	"context"
	"testing"
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
