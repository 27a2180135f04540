package bearer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/latchauth/latch/bearer"
)

// TestConcurrentVerifyClaimsDoNotAlias verifies many different tokens in
// parallel with the repeat-token cache off, so every call goes through the
// pooled scratch buffers of jws.go, and checks that every returned claim
// matches its own token, both right away and after all the other
// verifications have reused the buffers: no claim may point into a pooled
// buffer. Run it with -race.
func TestConcurrentVerifyClaimsDoNotAlias(t *testing.T) {
	t.Parallel()
	f := newFakeIssuer(t)
	v := f.verifierWith(t, bearer.Config{CacheSize: -1})
	const n, rounds = 64, 20
	type want struct{ sub, jti, sid, scope, aud string }
	toks := make([]string, n)
	wants := make([]want, n)
	for i := range toks {
		// Lengths vary so that tokens share buffers of different sizes.
		w := want{
			sub:   fmt.Sprintf("user-%d-%s", i, strings.Repeat("s", i*7%50)),
			jti:   fmt.Sprintf("jti-%d", i),
			sid:   fmt.Sprintf("sid-%d-%s", i, strings.Repeat("x", i*13%90)),
			scope: fmt.Sprintf("notes:read s%d", i),
			aud:   fmt.Sprintf("aud-%d", i),
		}
		c := f.claims()
		c["sub"], c["jti"], c["sid"], c["scope"], c["aud"] = w.sub, w.jti, w.sid, w.scope, []string{w.aud, "notes-api"}
		if i%2 == 1 { // some strings take the escaped path
			c["sub"] = w.sub
			c["jti"] = w.jti + "\u00e9"
			w.jti += "\u00e9"
		}
		toks[i], wants[i] = raw(goodHeader, []byte(strings.ReplaceAll(string(mustJSON(c)), "\u00e9", `\u00e9`)), f.edSign), w
	}
	check := func(i int, c *bearer.Claims) error {
		w := wants[i]
		if c.Subject != w.sub || c.ID != w.jti || c.SessionID != w.sid || c.Scope != w.scope ||
			len(c.Audience) != 2 || c.Audience[0] != w.aud || c.Audience[1] != "notes-api" || c.Issuer != f.srv.URL {
			return fmt.Errorf("token %d: claims %+v, want %+v", i, *c, w)
		}
		return nil
	}
	got := make([][]*bearer.Claims, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				c, err := v.Verify(context.Background(), toks[(i+r)%n])
				if err != nil {
					errs <- err
					return
				}
				if err := check((i+r)%n, c); err != nil {
					errs <- err
					return
				}
				got[i] = append(got[i], c)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range got {
		for r, c := range got[i] {
			if err := check((i+r)%n, c); err != nil {
				t.Fatalf("after the other verifications: %v", err)
			}
		}
	}
}
