package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestAccountPage: /account and its files are served from Latch's origin
// with a CSP that allows nothing inline and nothing from elsewhere; the
// page's client is a web client of the issuer's own origin. (The page is
// used through a browser in clients/js/test/browser/account.test.mjs.)
func TestAccountPage(t *testing.T) {
	env, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) { c.AccountClientID = "account" }})
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "account", Audiences: []string{testenv.Issuer}, AccessTTL: 15 * time.Minute,
		Grants: []string{session.GrantPassword, session.GrantRefresh}, Web: true, Origins: []string{testenv.Issuer}}); err != nil {
		t.Fatal(err)
	}
	page := get(t, srv, "/account", "")
	csp := page.Header.Get("Content-Security-Policy")
	if page.Status != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /account: %d %s", page.Status, page.Header.Get("Content-Type"))
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "http") {
		t.Errorf("CSP %q allows inline code or another origin", csp)
	}
	body := string(page.Body)
	if !strings.Contains(body, `data-issuer="`+testenv.Issuer+`"`) || !strings.Contains(body, `data-client="account"`) {
		t.Errorf("page lacks its configuration: %s", body)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "onclick") {
		t.Errorf("page has inline script or style")
	}
	for path, ct := range map[string]string{"/account/account.js": "text/javascript", "/account/account.css": "text/css", "/account/lib/index.js": "text/javascript", "/account/lib/sha256.js": "text/javascript"} {
		r := get(t, srv, path, "")
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), ct) || r.Header.Get("Content-Security-Policy") != csp {
			t.Errorf("GET %s: %d %q", path, r.Status, r.Header.Get("Content-Type"))
		}
	}
	for _, path := range []string{"/account/lib/server.js", "/account/index.html.bak", "/account/lib/../../go.mod"} {
		if r := get(t, srv, path, ""); r.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, r.Status)
		}
	}
	// The page signs in from the issuer's origin (a same-origin POST still
	// carries Origin), and from nowhere else.
	signupOnly(t, srv, "page@example.com", testPassword)
	login := func(origin string) reply {
		return send(t, srv, req{method: http.MethodPost, path: "/v1/login", contentType: "application/json",
			body:   mustJSON(t, map[string]string{"email": "page@example.com", "password": testPassword, "client_id": "account"}),
			header: map[string]string{"Origin": origin}})
	}
	if r := login(testenv.Issuer); r.Status != http.StatusOK || strings.Contains(string(r.Body), "refresh_token") {
		t.Fatalf("account login: %s", r)
	} else {
		setCookie(t, r, "__Host-latch_rt_account")
	}
	wantError(t, login("https://app.example"), http.StatusForbidden, httpapi.CodeOriginForbidden)
}
