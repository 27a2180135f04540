package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// Cookie mode (docs/design.md "Browser clients: cookie mode"): the rules,
// one test each, through real HTTP with the cookies handled by hand so
// that every attribute is checked as a browser would see it.

const (
	webOrigin   = "https://app.example"
	otherOrigin = "https://evil.example"
	rtCookie    = "__Host-latch_rt_web" // testenv's issuer is not loopback http: Secure and __Host-
)

func newWebServer(t *testing.T, api func(*httpapi.Config)) (*testenv.Env, *httptest.Server) {
	t.Helper()
	env, srv := newServer(t, testenv.Options{Idle: 72 * time.Hour, API: api})
	err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "web", Name: "web",
		Audiences: []string{"web", testenv.Issuer}, AccessTTL: 15 * time.Minute,
		Grants: []string{session.GrantPassword, session.GrantRefresh}, Web: true, Origins: []string{webOrigin, "http://localhost:5173"}})
	if err != nil {
		t.Fatal(err)
	}
	return env, srv
}

// webLogin signs up email and logs in through the web client from webOrigin.
func webLogin(t *testing.T, srv *httptest.Server, email string) (reply, *http.Cookie) {
	t.Helper()
	signupOnly(t, srv, email, testPassword)
	r := send(t, srv, req{method: http.MethodPost, path: "/v1/login", contentType: "application/json",
		body:   mustJSON(t, map[string]string{"email": email, "password": testPassword, "client_id": "web"}),
		header: map[string]string{"Origin": webOrigin}})
	if r.Status != http.StatusOK {
		t.Fatalf("web login: %s", r)
	}
	return r, setCookie(t, r, rtCookie)
}

// setCookie returns the Set-Cookie of r named name, failing if absent.
func setCookie(t *testing.T, r reply, name string) *http.Cookie {
	t.Helper()
	for _, line := range r.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err == nil && c.Name == name {
			return c
		}
	}
	t.Fatalf("no Set-Cookie %s in %q", name, r.Header.Values("Set-Cookie"))
	return nil
}

func webRefresh(t *testing.T, srv *httptest.Server, cookie *http.Cookie, origin string, extra url.Values) reply {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"web"}}
	for k, v := range extra {
		form[k] = v
	}
	h := map[string]string{}
	if origin != "" {
		h["Origin"] = origin
	}
	if cookie != nil {
		h["Cookie"] = cookie.Name + "=" + cookie.Value
	}
	return send(t, srv, req{method: http.MethodPost, path: "/oauth/token", body: form.Encode(), contentType: "application/x-www-form-urlencoded", header: h})
}

func TestWebLoginSetsRefreshCookieOnly(t *testing.T) {
	_, srv := newWebServer(t, nil)
	r, c := webLogin(t, srv, "cookie@example.com")
	var body map[string]any
	r.decode(t, &body)
	if _, ok := body["refresh_token"]; ok {
		t.Errorf("body carries refresh_token: %s", r.Body)
	}
	if _, ok := body["device_token"]; ok {
		t.Errorf("body carries device_token: %s", r.Body)
	}
	if body["access_token"] == "" || body["session_id"] == "" {
		t.Errorf("body lacks the access token or session: %s", r.Body)
	}
	if !strings.HasPrefix(c.Value, "latch_rt_") || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("refresh cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, no Domain", c)
	}
	if c.MaxAge != int((72 * time.Hour).Seconds()) {
		t.Errorf("Max-Age = %d, want the idle lifetime", c.MaxAge)
	}
	if dt := setCookie(t, r, "__Host-latch_dt_web"); !dt.HttpOnly || !strings.HasPrefix(dt.Value, "latch_dt_") {
		t.Errorf("device cookie %+v", dt)
	}
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != webOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, webOrigin)
	}
	if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("Access-Control-Allow-Credentials = %q, want true", got)
	}
}

func TestWebSignupSetsRefreshCookieOnly(t *testing.T) {
	_, srv := newWebServer(t, nil)
	r := send(t, srv, req{method: http.MethodPost, path: "/v1/signup", contentType: "application/json",
		body:   mustJSON(t, map[string]string{"email": "new@example.com", "password": testPassword, "client_id": "web"}),
		header: map[string]string{"Origin": webOrigin}})
	if r.Status != http.StatusCreated || strings.Contains(string(r.Body), "latch_rt_") {
		t.Fatalf("signup: %s", r)
	}
	setCookie(t, r, rtCookie)
}

func TestWebRefreshFromCookie(t *testing.T) {
	_, srv := newWebServer(t, nil)
	_, c := webLogin(t, srv, "refresh@example.com")
	r := webRefresh(t, srv, c, webOrigin, nil)
	if r.Status != http.StatusOK || strings.Contains(string(r.Body), "refresh_token") {
		t.Fatalf("refresh: %s", r)
	}
	next := setCookie(t, r, rtCookie)
	if next.Value == c.Value {
		t.Fatal("refresh did not rotate the cookie's token")
	}
	// The cookie is the only way: a refresh_token parameter is refused,
	// with the cookie or without.
	wantError(t, webRefresh(t, srv, next, webOrigin, url.Values{"refresh_token": {next.Value}}), http.StatusBadRequest, "invalid_request")
	wantError(t, webRefresh(t, srv, nil, webOrigin, url.Values{"refresh_token": {next.Value}}), http.StatusBadRequest, "invalid_request")
	// No cookie: invalid_grant (a signed-out browser), nothing else.
	wantError(t, webRefresh(t, srv, nil, webOrigin, nil), http.StatusBadRequest, "invalid_grant")
	// The rotated cookie still works.
	if r := webRefresh(t, srv, next, webOrigin, nil); r.Status != http.StatusOK {
		t.Fatalf("refresh with the rotated cookie: %s", r)
	}
}

func TestWebOriginRequired(t *testing.T) {
	_, srv := newWebServer(t, nil)
	_, c := webLogin(t, srv, "origin@example.com")
	for _, origin := range []string{"", otherOrigin, "https://app.example.evil", "https://APP.example", "null", "http://localhost:5174"} {
		wantError(t, webRefresh(t, srv, c, origin, nil), http.StatusForbidden, httpapi.CodeOriginForbidden)
	}
	// Refused before any token work: the cookie's token is still current,
	// so a refresh from the right origin rotates it (not a grace answer
	// and not reuse).
	r := webRefresh(t, srv, c, webOrigin, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("refresh from the client's origin after refused ones: %s", r)
	}
	// Login and revoke are cookie-mode requests too.
	signupOnly(t, srv, "origin2@example.com", testPassword)
	for _, origin := range []string{"", otherOrigin} {
		h := map[string]string{}
		if origin != "" {
			h["Origin"] = origin
		}
		login := send(t, srv, req{method: http.MethodPost, path: "/v1/login", contentType: "application/json",
			body: mustJSON(t, map[string]string{"email": "origin2@example.com", "password": testPassword, "client_id": "web"}), header: h})
		wantError(t, login, http.StatusForbidden, httpapi.CodeOriginForbidden)
		h["Cookie"] = rtCookie + "=" + setCookie(t, r, rtCookie).Value
		revoke := send(t, srv, req{method: http.MethodPost, path: "/oauth/revoke", contentType: "application/x-www-form-urlencoded",
			body: url.Values{"client_id": {"web"}}.Encode(), header: h})
		wantError(t, revoke, http.StatusForbidden, httpapi.CodeOriginForbidden)
	}
	if r := webRefresh(t, srv, setCookie(t, r, rtCookie), webOrigin, nil); r.Status != http.StatusOK {
		t.Fatalf("the refused revokes ended the session: %s", r)
	}
}

func TestWebCORS(t *testing.T) {
	_, srv := newWebServer(t, func(c *httpapi.Config) { c.CORSOrigins = []string{"https://plain.example"} })
	preflight := func(origin string) reply {
		return send(t, srv, req{method: http.MethodOptions, path: "/oauth/token",
			header: map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}})
	}
	if r := preflight(webOrigin); r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		r.Header.Get("Access-Control-Allow-Origin") != webOrigin {
		t.Errorf("preflight from the web client's origin: %d %v", r.Status, r.Header)
	}
	// A --cors-origins origin gets CORS, but no credentials: the browser
	// sends no cookie from it, and would not let the page read the answer
	// to a credentialed request.
	if r := preflight("https://plain.example"); r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight from a plain CORS origin: %d %v", r.Status, r.Header)
	}
	r := preflight(otherOrigin)
	wantError(t, r, http.StatusForbidden, "cors_forbidden")
	if r.Header.Get("Access-Control-Allow-Origin") != "" || r.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight from a foreign origin got CORS headers: %v", r.Header)
	}
	// A simple request from a foreign origin gets no CORS headers either.
	g := send(t, srv, req{method: http.MethodGet, path: "/healthz", header: map[string]string{"Origin": otherOrigin}})
	if g.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin got Access-Control-Allow-Origin on GET")
	}
	if exp := send(t, srv, req{method: http.MethodGet, path: "/healthz", header: map[string]string{"Origin": webOrigin}}).Header.Get("Access-Control-Expose-Headers"); !strings.Contains(exp, "Date") {
		t.Errorf("Date is not exposed to the web client (clock offset): %q", exp)
	}
}

func TestWebLogoutClearsCookie(t *testing.T) {
	_, srv := newWebServer(t, nil)
	wantCleared := func(t *testing.T, r reply) {
		t.Helper()
		c := setCookie(t, r, rtCookie)
		if c.MaxAge >= 0 || c.Value != "" || !c.Secure || !c.HttpOnly || c.Path != "/" {
			t.Errorf("cookie not cleared: %+v", c)
		}
	}
	t.Run("logout", func(t *testing.T) {
		r, c := webLogin(t, srv, "logout@example.com")
		var tr tokenResponse
		r.decode(t, &tr)
		out := send(t, srv, req{method: http.MethodPost, path: "/v1/logout", bearer: tr.AccessToken, contentType: "application/json",
			body: `{"scope":"current"}`, header: map[string]string{"Origin": webOrigin}})
		if out.Status != http.StatusOK {
			t.Fatalf("logout: %s", out)
		}
		wantCleared(t, out)
		wantError(t, webRefresh(t, srv, c, webOrigin, nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("logout others keeps it", func(t *testing.T) {
		r, _ := webLogin(t, srv, "others@example.com")
		var tr tokenResponse
		r.decode(t, &tr)
		out := send(t, srv, req{method: http.MethodPost, path: "/v1/logout", bearer: tr.AccessToken, contentType: "application/json", body: `{"scope":"others"}`})
		if out.Status != http.StatusOK || len(out.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("logout others: %s %v", out, out.Header.Values("Set-Cookie"))
		}
	})
	t.Run("revoke by cookie", func(t *testing.T) {
		_, c := webLogin(t, srv, "revoke@example.com")
		out := send(t, srv, req{method: http.MethodPost, path: "/oauth/revoke", contentType: "application/x-www-form-urlencoded",
			body: url.Values{"client_id": {"web"}}.Encode(), header: map[string]string{"Origin": webOrigin, "Cookie": c.Name + "=" + c.Value}})
		if out.Status != http.StatusOK {
			t.Fatalf("revoke: %s", out)
		}
		wantCleared(t, out)
		wantError(t, webRefresh(t, srv, c, webOrigin, nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("delete own session", func(t *testing.T) {
		r, _ := webLogin(t, srv, "delete@example.com")
		var tr tokenResponse
		r.decode(t, &tr)
		out := send(t, srv, req{method: http.MethodDelete, path: "/v1/sessions/" + tr.SessionID, bearer: tr.AccessToken})
		if out.Status != http.StatusNoContent {
			t.Fatalf("delete: %s", out)
		}
		wantCleared(t, out)
	})
	t.Run("account deletion", func(t *testing.T) {
		r, c := webLogin(t, srv, "gone@example.com")
		var tr tokenResponse
		r.decode(t, &tr)
		out := send(t, srv, req{method: http.MethodDelete, path: "/v1/me", bearer: tr.AccessToken, contentType: "application/json",
			body: mustJSON(t, map[string]string{"password": testPassword})})
		if out.Status != http.StatusNoContent {
			t.Fatalf("delete account: %s", out)
		}
		wantCleared(t, out)
		wantError(t, webRefresh(t, srv, c, webOrigin, nil), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("invalid_grant", func(t *testing.T) {
		// A cookie the server refuses (here a damaged one; equally a
		// revoked or reused token) is cleared with the refusal.
		_, c := webLogin(t, srv, "dead@example.com")
		dead := *c
		dead.Value = c.Value[:len(c.Value)-4] + "AAAA"
		r := webRefresh(t, srv, &dead, webOrigin, nil)
		wantError(t, r, http.StatusBadRequest, "invalid_grant")
		wantCleared(t, r)
	})
}

func TestNonWebClientUnchanged(t *testing.T) {
	_, srv := newWebServer(t, nil)
	tr := signup(t, srv, "plain@example.com") // client app: refresh token in the body
	r := refresh(t, srv, tr.RefreshToken)
	checkTokenResponse(t, r, http.StatusOK)
	if len(r.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("non-web client got cookies: %v", r.Header.Values("Set-Cookie"))
	}
}

func TestWebCookieOnLoopbackHTTPIssuer(t *testing.T) {
	// On http://127.0.0.1 (development) the cookie cannot be Secure or
	// carry __Host- (browsers other than Chromium and Firefox refuse
	// them over http); it keeps HttpOnly, SameSite=Strict and Path=/.
	env, srv := newWebServer(t, func(c *httpapi.Config) { c.Issuer = "http://127.0.0.1:8080" })
	_ = env
	signupOnly(t, srv, "dev@example.com", testPassword)
	r := send(t, srv, req{method: http.MethodPost, path: "/v1/login", contentType: "application/json",
		body:   mustJSON(t, map[string]string{"email": "dev@example.com", "password": testPassword, "client_id": "web"}),
		header: map[string]string{"Origin": "http://localhost:5173"}})
	if r.Status != http.StatusOK {
		t.Fatalf("login: %s", r)
	}
	c := setCookie(t, r, "latch_rt_web")
	if c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("dev cookie %+v", c)
	}
}

// TestWebDeviceCookie: a web client's device token (docs/design.md
// "Returning devices") travels in its own HttpOnly cookie, and a login
// carrying it is exempt from the drained account bucket as in token mode.
func TestWebDeviceCookie(t *testing.T) {
	env, srv := throttled(t)
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "web", Audiences: []string{testenv.Issuer}, AccessTTL: 15 * time.Minute,
		Grants: []string{session.GrantPassword, session.GrantRefresh}, Web: true, Origins: []string{webOrigin}}); err != nil {
		t.Fatal(err)
	}
	const owner = "device-cookie@example.com"
	env.Login(t, owner)
	webLoginFrom := func(ip string, cookie *http.Cookie) reply {
		h := map[string]string{"Origin": webOrigin, "X-Forwarded-For": ip}
		if cookie != nil {
			h["Cookie"] = cookie.Name + "=" + cookie.Value
		}
		return send(t, srv, req{method: http.MethodPost, path: "/v1/login", contentType: "application/json",
			body: mustJSON(t, map[string]string{"email": owner, "password": testenv.Password, "client_id": "web"}), header: h})
	}
	first := webLoginFrom("192.0.2.60", nil)
	if first.Status != http.StatusOK || strings.Contains(string(first.Body), "latch_dt_") {
		t.Fatalf("first login: %s", first)
	}
	dt := setCookie(t, first, "__Host-latch_dt_web")
	drain(t, srv, owner, addrs(0))
	want429(t, webLoginFrom("198.51.100.7", nil), "a new browser without the device cookie")
	if r := webLoginFrom("198.51.100.8", dt); r.Status != http.StatusOK {
		t.Fatalf("the returning browser with its device cookie: %s", r)
	}
}

// TestWebResetAndLogin: a password reset that logs in through a web client
// is a cookie-mode login: Origin checked, refresh token only in the cookie.
func TestWebResetAndLogin(t *testing.T) {
	env, srv := newWebServer(t, nil)
	signupOnly(t, srv, "reset-web@example.com", testPassword)
	if r := postJSON(t, srv, "/v1/password/forgot", map[string]string{"email": "reset-web@example.com"}, ""); r.Status != http.StatusAccepted {
		t.Fatalf("forgot: %s", r)
	}
	link := testenv.LinkToken(mailOf(t, env, session.KindReset, "reset-web@example.com"))
	reset := func(origin string) reply {
		return send(t, srv, req{method: http.MethodPost, path: "/v1/password/reset", contentType: "application/json",
			body:   mustJSON(t, map[string]any{"token": link, "new_password": "a new and long passphrase", "login": true, "client_id": "web"}),
			header: map[string]string{"Origin": origin}})
	}
	wantError(t, reset(otherOrigin), http.StatusForbidden, httpapi.CodeOriginForbidden)
	r := reset(webOrigin)
	if r.Status != http.StatusOK || strings.Contains(string(r.Body), "refresh_token") || strings.Contains(string(r.Body), "latch_dt_") {
		t.Fatalf("reset and login: %s", r)
	}
	if rr := webRefresh(t, srv, setCookie(t, r, rtCookie), webOrigin, nil); rr.Status != http.StatusOK {
		t.Fatalf("refresh with the reset's cookie: %s", rr)
	}
}
