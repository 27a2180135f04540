package httpapi

import (
	"net/http"
	"testing"
)

// TestSecurityHeadersShared: the header values securityHeaders shares
// between responses cannot be changed through one response's header.
func TestSecurityHeadersShared(t *testing.T) {
	first := http.Header{}
	securityHeaders(first, true)
	first.Add("X-Frame-Options", "SAMEORIGIN")
	first.Set("Referrer-Policy", "origin")
	first.Del("Strict-Transport-Security")
	next := http.Header{}
	securityHeaders(next, true)
	if got := next.Values("X-Frame-Options"); len(got) != 1 || got[0] != "DENY" {
		t.Fatalf("X-Frame-Options %q after another response added one", got)
	}
	if next.Get("Referrer-Policy") != "no-referrer" || next.Get("Strict-Transport-Security") == "" {
		t.Fatalf("headers changed by another response: %v", next)
	}
	for k := range next {
		if http.CanonicalHeaderKey(k) != k {
			t.Fatalf("header %q is not in canonical form", k)
		}
	}
}
