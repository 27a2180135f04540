package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/testenv"
)

// TestSecurityHeaders: every response, success or error, JSON or not,
// carries the headers that stop sniffing, framing and Referer leaks.
func TestSecurityHeaders(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	tok := env.Login(t, "h@example.com")
	for _, rq := range []req{
		{method: "GET", path: "/healthz"},
		{method: "GET", path: "/.well-known/jwks.json"},
		{method: "GET", path: "/nowhere"},
		{method: "POST", path: "/v1/login", contentType: "application/json", body: `{"email":"h@example.com","password":"wrong one!"}`},
		{method: "GET", path: "/v1/sessions", bearer: tok.AccessToken},
	} {
		r := send(t, srv, rq)
		for h, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s %s: %s = %q, want %q", rq.method, rq.path, h, got, want)
			}
		}
		if r.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS sent for an http issuer", rq.path)
		}
		if r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: CORS headers with no origins configured", rq.path)
		}
	}
}

// TestCORS: exact origins only, preflight answered, credentials off by
// default, other origins get nothing a browser would accept.
func TestCORS(t *testing.T) {
	const app = "https://app.example.com"
	for _, creds := range []bool{false, true} {
		_, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) {
			c.CORSOrigins = []string{app}
			c.CORSCredentials = creds
		}})
		pre := send(t, srv, req{method: "OPTIONS", path: "/v1/login", header: map[string]string{
			"Origin": app, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, dpop"}})
		if pre.Status != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != app ||
			pre.Header.Get("Access-Control-Allow-Methods") == "" || pre.Header.Get("Access-Control-Allow-Headers") == "" {
			t.Fatalf("preflight from %s: %s %v", app, pre, pre.Header)
		}
		if !headerListHas(pre.Header.Get("Access-Control-Allow-Headers"), "DPoP") {
			t.Fatalf("preflight asking for DPoP: Access-Control-Allow-Headers = %q", pre.Header.Get("Access-Control-Allow-Headers"))
		}
		if got := pre.Header.Get("Access-Control-Allow-Credentials"); (got == "true") != creds {
			t.Fatalf("credentials %v: Access-Control-Allow-Credentials = %q", creds, got)
		}
		r := send(t, srv, req{method: "POST", path: "/v1/login", contentType: "application/json",
			body: `{"email":"x@example.com","password":"wrong one!"}`, header: map[string]string{"Origin": app}})
		if r.Header.Get("Access-Control-Allow-Origin") != app || r.Header.Get("Vary") != "Origin" {
			t.Fatalf("actual request from %s: ACAO %q, Vary %q", app, r.Header.Get("Access-Control-Allow-Origin"), r.Header.Get("Vary"))
		}
		// Clients estimate the server's clock from Date; a browser hides it
		// unless exposed.
		for _, h := range []string{"Date", "Retry-After", "WWW-Authenticate"} {
			if !headerListHas(r.Header.Get("Access-Control-Expose-Headers"), h) {
				t.Errorf("Access-Control-Expose-Headers = %q, want %s in it", r.Header.Get("Access-Control-Expose-Headers"), h)
			}
		}
		for _, evil := range []string{"https://evil.example.com", "https://app.example.com.evil.example", "http://app.example.com", "null"} {
			pre := send(t, srv, req{method: "OPTIONS", path: "/v1/login", header: map[string]string{"Origin": evil, "Access-Control-Request-Method": "POST"}})
			var body struct{ Error string }
			json.Unmarshal(pre.Body, &body)
			if pre.Status != http.StatusForbidden || body.Error != "cors_forbidden" || pre.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("preflight from %s: %s", evil, pre)
			}
			r := send(t, srv, req{method: "GET", path: "/healthz", header: map[string]string{"Origin": evil}})
			if r.Header.Get("Access-Control-Allow-Origin") != "" || r.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Fatalf("request from %s got CORS headers %v", evil, r.Header)
			}
		}
	}
}

// TestTrustedProxies: X-Forwarded-For names the client only when the peer
// is a trusted proxy, and only up to the first untrusted hop (LOGIN-07).
func TestTrustedProxies(t *testing.T) {
	ipOf := func(t *testing.T, trusted []netip.Prefix, xff string) string {
		env, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) { c.TrustedProxies = trusted }})
		tok := env.Login(t, "p@example.com")
		login := send(t, srv, req{method: "POST", path: "/v1/login", contentType: "application/json",
			body: `{"email":"p@example.com","password":"` + testenv.Password + `"}`, header: map[string]string{"X-Forwarded-For": xff}})
		var lt struct {
			SessionID string `json:"session_id"`
		}
		login.decode(t, &lt)
		list := send(t, srv, req{method: "GET", path: "/v1/sessions", bearer: tok.AccessToken})
		var sessions []struct{ ID, IP string }
		list.decode(t, &sessions)
		for _, s := range sessions {
			if s.ID == lt.SessionID {
				return s.IP
			}
		}
		t.Fatal("login session not listed")
		return ""
	}
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		xff     string
		want    string
	}{
		{"no trusted proxies: the header is ignored", nil, "203.0.113.7", "127.0.0.1"},
		{"trusted peer: the client it names", loop, "203.0.113.7", "203.0.113.7"},
		{"spoofed hop before the client is ignored", loop, "1.2.3.4, 203.0.113.7", "203.0.113.7"},
		{"chain of trusted proxies", []netip.Prefix{loop[0], netip.MustParsePrefix("10.0.0.0/8")}, "203.0.113.7, 10.1.2.3", "203.0.113.7"},
		{"garbage stops the walk", loop, "203.0.113.7, not-an-ip", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ipOf(t, tt.trusted, tt.xff); got != tt.want {
				t.Fatalf("client IP = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestQueryParametersIgnored: a refresh token or access token in the URL
// is never read (docs/security.md RT-20, RS-29): the token endpoint takes
// the form body only, the account endpoints the Authorization header only.
func TestQueryParametersIgnored(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	tok := env.Login(t, "q@example.com")
	r := send(t, srv, req{method: "POST", path: "/oauth/token?grant_type=refresh_token&client_id=app&refresh_token=" + tok.RefreshToken,
		contentType: "application/x-www-form-urlencoded", body: "client_id=app"})
	var body struct{ Error string }
	r.decode(t, &body)
	if r.Status != http.StatusBadRequest || body.Error != "invalid_request" {
		t.Fatalf("refresh with the token in the query: %s, want 400 invalid_request", r)
	}
	if r := send(t, srv, req{method: "GET", path: "/v1/sessions?access_token=" + tok.AccessToken}); r.Status != http.StatusUnauthorized {
		t.Fatalf("access token in the query: %s, want 401", r)
	}
	// The refresh token still works: nothing was consumed.
	if r := send(t, srv, req{method: "POST", path: "/oauth/token", contentType: "application/x-www-form-urlencoded",
		body: "grant_type=refresh_token&client_id=app&refresh_token=" + tok.RefreshToken}); r.Status != http.StatusOK {
		t.Fatalf("the refresh token after the refused query: %s", r)
	}
}

// headerListHas reports whether a comma-separated header value names h
// (case-insensitive, as header names are).
func headerListHas(list, h string) bool {
	for _, v := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(v), h) {
			return true
		}
	}
	return false
}
