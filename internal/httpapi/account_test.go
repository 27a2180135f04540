package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// mailOf waits for the message of kind to addr that the detached request
// work queued, and returns its link token.
func mailOf(t *testing.T, env *testenv.Env, kind session.MessageKind, addr string) session.Content {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range env.Mail(t) {
			if m.Kind == kind && m.To == addr {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s message to %s", kind, addr)
	return session.Content{}
}

func getMe(t *testing.T, srv *httptest.Server, at string) map[string]any {
	t.Helper()
	r := get(t, srv, "/v1/me", at)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/me: %s", r)
	}
	var m map[string]any
	r.decode(t, &m)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"created_at", "email", "email_verified", "id", "user_metadata"}; !slices.Equal(keys, want) {
		t.Fatalf("GET /v1/me keys %v, want %v", keys, want)
	}
	return m
}

func TestMe(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	tok := signup(t, srv, "me@example.com")
	m := getMe(t, srv, tok.AccessToken)
	if m["email"] != "me@example.com" || m["email_verified"] != false || string(mustJSON(t, m["user_metadata"])) != "{}" {
		t.Fatalf("GET /v1/me = %v", m)
	}
	patch := func(body string) reply {
		return send(t, srv, req{method: http.MethodPatch, path: "/v1/me", body: body, contentType: "application/json", bearer: tok.AccessToken})
	}
	r := patch(`{"user_metadata":{"theme":"dark","langs":["en","fr"]}}`)
	if r.Status != http.StatusOK {
		t.Fatalf("PATCH: %s", r)
	}
	if m := getMe(t, srv, tok.AccessToken); mustJSON(t, m["user_metadata"]) != `{"langs":["en","fr"],"theme":"dark"}` {
		t.Fatalf("metadata after PATCH: %v", m["user_metadata"])
	}
	for _, bad := range []string{`{"user_metadata":[1]}`, `{"user_metadata":"x"}`, `{"user_metadata":null}`, `{}`,
		`{"user_metadata":{"a":"` + strings.Repeat("x", 4100) + `"}}`} {
		r := patch(bad)
		if r.Status != http.StatusBadRequest {
			t.Errorf("PATCH %.40s: %s, want 400", bad, r)
		}
	}
	// Never in tokens.
	at := mustRefresh(t, srv, tok.RefreshToken).AccessToken
	claims, err := env.Verify(at)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(claims); bytes.Contains(b, []byte("dark")) {
		t.Fatalf("user_metadata leaked into the access token: %s", b)
	}
	if r := get(t, srv, "/v1/me", ""); r.Status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/me without a token: %s", r)
	}
}

// Verification over HTTP: the link of the signup message verifies, once;
// a wrong token is 400 invalid_token.
func TestVerifyEmailHTTP(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	tok := signup(t, srv, "v@example.com")
	first := testenv.LinkToken(mailOf(t, env, session.KindVerify, "v@example.com"))
	r := postJSON(t, srv, "/v1/email/verify/request", "", tok.AccessToken)
	if r.Status != http.StatusAccepted {
		t.Fatalf("verify request: %s", r)
	}
	link := testenv.LinkToken(mailOf(t, env, session.KindVerify, "v@example.com"))
	wantError(t, postJSON(t, srv, "/v1/email/verify", map[string]string{"token": first}, ""), http.StatusBadRequest, "invalid_token")
	if r := postJSON(t, srv, "/v1/email/verify", map[string]string{"token": link}, ""); r.Status != http.StatusNoContent {
		t.Fatalf("verify: %s", r)
	}
	if getMe(t, srv, tok.AccessToken)["email_verified"] != true {
		t.Fatal("not verified")
	}
	wantError(t, postJSON(t, srv, "/v1/email/verify", map[string]string{"token": link}, ""), http.StatusBadRequest, "invalid_token")
	wantError(t, postJSON(t, srv, "/v1/email/verify", map[string]string{"token": "latch_ev_nope"}, ""), http.StatusBadRequest, "invalid_token")
}

// Forgot and reset over HTTP: 202, the link, 204; every session ends; the
// optional login answers tokens.
func TestForgotAndResetHTTP(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	a := signup(t, srv, "r@example.com")
	b := login(t, srv, "r@example.com", testPassword, "second device")
	r := postJSON(t, srv, "/v1/password/forgot", map[string]string{"email": "R@Example.com"}, "")
	if r.Status != http.StatusAccepted {
		t.Fatalf("forgot: %s", r)
	}
	link := testenv.LinkToken(mailOf(t, env, session.KindReset, "r@example.com"))
	wantError(t, postJSON(t, srv, "/v1/password/reset", map[string]any{"token": link, "new_password": "short"}, ""), http.StatusBadRequest, "weak_password")
	r = postJSON(t, srv, "/v1/password/reset", map[string]any{"token": link, "new_password": "a new and long passphrase", "login": true}, "")
	got := checkTokenResponse(t, r, http.StatusOK)
	wantRefreshRejected(t, srv, a.RefreshToken)
	wantRefreshRejected(t, srv, b.RefreshToken)
	if r := get(t, srv, "/v1/sessions", a.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("old access token after reset: %s", r)
	}
	if list := listSessions(t, srv, got.AccessToken); len(list) != 1 {
		t.Fatalf("sessions after reset: %+v", list)
	}
	wantError(t, postJSON(t, srv, "/v1/password/reset", map[string]any{"token": link, "new_password": "another long passphrase"}, ""), http.StatusBadRequest, "invalid_token")
	login(t, srv, "r@example.com", "a new and long passphrase", "ua")
}

// Email change and account deletion over HTTP, each behind the password.
func TestEmailChangeAndDeleteHTTP(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	tok := signup(t, srv, "c@example.com")
	wantError(t, postJSON(t, srv, "/v1/email/change", map[string]string{"new_email": "d@example.com", "password": "wrong one"}, tok.AccessToken), http.StatusForbidden, "invalid_credentials")
	wantError(t, postJSON(t, srv, "/v1/email/change", map[string]string{"new_email": "not an address", "password": testPassword}, tok.AccessToken), http.StatusBadRequest, "invalid_email")
	if r := postJSON(t, srv, "/v1/email/change", map[string]string{"new_email": "d@example.com", "password": testPassword}, tok.AccessToken); r.Status != http.StatusAccepted {
		t.Fatalf("change: %s", r)
	}
	link := testenv.LinkToken(mailOf(t, env, session.KindEmailChange, "d@example.com"))
	if r := postJSON(t, srv, "/v1/email/verify", map[string]string{"token": link}, ""); r.Status != http.StatusNoContent {
		t.Fatalf("verify new: %s", r)
	}
	if m := getMe(t, srv, tok.AccessToken); m["email"] != "d@example.com" || m["email_verified"] != true {
		t.Fatalf("after change: %v", m)
	}
	del := func(pw string) reply {
		return send(t, srv, req{method: http.MethodDelete, path: "/v1/me", body: mustJSON(t, map[string]string{"password": pw}), contentType: "application/json", bearer: tok.AccessToken})
	}
	wantError(t, del("wrong one"), http.StatusForbidden, "invalid_credentials")
	if r := del(testPassword); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	wantRefreshRejected(t, srv, tok.RefreshToken)
	if r := get(t, srv, "/v1/me", tok.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/me after deletion: %s", r)
	}
	signup(t, srv, "d@example.com")
}

// --require-verified-email: the right password of an unverified account is
// 403 email_not_verified; signup answers the user without tokens; the
// link unlocks the login.
func TestRequireVerifiedEmail(t *testing.T) {
	env, srv := newServer(t, testenv.Options{Mail: session.MailConfig{RequireVerified: true}})
	r := postJSON(t, srv, "/v1/signup", credentials{"rv@example.com", testPassword}, "")
	if r.Status != http.StatusCreated || bytes.Contains(r.Body, []byte("access_token")) {
		t.Fatalf("signup: %s", r)
	}
	wantError(t, postJSON(t, srv, "/v1/login", credentials{"rv@example.com", testPassword}, ""), http.StatusForbidden, "email_not_verified")
	wantError(t, postJSON(t, srv, "/v1/login", credentials{"rv@example.com", "wrong password!"}, ""), http.StatusUnauthorized, "invalid_credentials")
	link := testenv.LinkToken(mailOf(t, env, session.KindVerify, "rv@example.com"))
	if r := postJSON(t, srv, "/v1/email/verify", map[string]string{"token": link}, ""); r.Status != http.StatusNoContent {
		t.Fatalf("verify: %s", r)
	}
	login(t, srv, "rv@example.com", testPassword, "ua")
}

// The account email endpoints go through their own buckets: per address
// (registered or not) and per IP; 429 with Retry-After.
func TestAccountEmailThrottled(t *testing.T) {
	_, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) {
		p := ratelimit.DefaultPolicy()
		p.EmailPerAddress = ratelimit.Bucket{Every: time.Hour, Burst: 2}
		th, err := ratelimit.New(ratelimit.NewMemory(), p)
		if err != nil {
			t.Fatal(err)
		}
		c.Throttle = th
	}})
	for _, addr := range []string{"nobody@example.com"} {
		for i := range 3 {
			r := postJSON(t, srv, "/v1/password/forgot", map[string]string{"email": addr}, "")
			if i < 2 && r.Status != http.StatusAccepted {
				t.Fatalf("forgot %d: %s", i, r)
			}
			if i == 2 {
				wantError(t, r, http.StatusTooManyRequests, "too_many_requests")
				if r.Header.Get("Retry-After") == "" {
					t.Fatal("429 without Retry-After")
				}
			}
		}
	}
}

// The forgot-password endpoint and enumeration-safe signup answer a
// registered and an unregistered address alike: status, headers, body,
// and time, measured interleaved (docs/security.md ACCT-02).
func TestAccountEndpointsDoNotRevealAccounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		path string
		body func(addr string) any
		opts testenv.Options
	}{
		{"POST /v1/password/forgot", "/v1/password/forgot", func(a string) any { return map[string]string{"email": a} }, testenv.Options{}},
		{"POST /v1/signup enumeration-safe", "/v1/signup", func(a string) any { return credentials{a, "a fine long passphrase"} },
			testenv.Options{Argon2: password.OWASP, API: func(c *httpapi.Config) { c.SignupEnumerationSafe = true }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, srv := newServer(t, tc.opts)
			env.Login(t, "known@example.com")
			const rounds = 15
			var times [2][]time.Duration
			var first reply
			for r := range rounds {
				for i, addr := range []string{"known@example.com", "nobody" + string(rune('a'+r)) + "@example.com"} {
					// Each answer is timed alone: the previous request's
					// detached work (a password hash for both kinds of
					// address, see SignupQuietly) would otherwise share the
					// CPU with it, by the order of the loop and the load of
					// the machine, not by the address.
					env.API.WaitDetached()
					start := time.Now()
					got := postJSON(t, srv, tc.path, tc.body(addr), "")
					times[i] = append(times[i], time.Since(start))
					if r == 0 && i == 0 {
						first = got
						continue
					}
					if got.Status != first.Status || !bytes.Equal(got.Body, first.Body) {
						t.Fatalf("%s answered %s, the known address %s", addr, got, first)
					}
					for _, h := range []string{"Content-Type", "Cache-Control", "Content-Length", "Retry-After"} {
						if got.Header.Get(h) != first.Header.Get(h) {
							t.Fatalf("%s: header %s = %q, known address %q", addr, h, got.Header.Get(h), first.Header.Get(h))
						}
					}
				}
			}
			if first.Status != http.StatusAccepted {
				t.Fatalf("answer %s, want 202", first)
			}
			med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
			known, unknown := med(times[0]), med(times[1])
			t.Logf("median: known %v, unknown %v", known, unknown)
			// The work that differs runs after the answer (and starts only
			// once it is out); what is left on the request path is the
			// same code, some 40µs here. A database write on the request
			// path costs the known address some 150µs more, an Argon2
			// hash tens of milliseconds: both far outside this bound.
			lo, hi := min(known, unknown), max(known, unknown)
			if hi > lo*3/2+300*time.Microsecond {
				t.Fatalf("median times %v and %v differ", known, unknown)
			}
			// What happened off the request: a notice to the known address,
			// and (signup) a new account for an unknown one.
			srv.Close() // no more requests: then all detached work is done
			env.API.WaitDetached()
			ms := env.Mail(t)
			if tc.path == "/v1/signup" {
				notice := 0
				for _, m := range ms {
					if m.To == "known@example.com" && m.Kind == session.KindAccountExists {
						notice++
					}
				}
				if notice != rounds {
					t.Fatalf("%d notices to the known address, want %d", notice, rounds)
				}
				if _, err := env.Sessions.UserByEmail(t.Context(), "nobodya@example.com"); err != nil {
					t.Fatalf("enumeration-safe signup of a new address: %v", err)
				}
			}
		})
	}
}

// The hosted pages: server-rendered, no script, strict CSP; the GET shows a
// form and spends nothing; the POST uses the token; a used link says so.
func TestHostedPages(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	signup(t, srv, "page@example.com")
	verify := testenv.LinkToken(mailOf(t, env, session.KindVerify, "page@example.com"))
	page := func(r reply) string {
		t.Helper()
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		csp := r.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe") {
			t.Fatalf("CSP %q", csp)
		}
		if r.Header.Get("Referrer-Policy") != "no-referrer" || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("headers %v", r.Header)
		}
		body := string(r.Body)
		if strings.Contains(body, "<script") || strings.Contains(body, "http://") && !strings.Contains(body, "http://latch.test") {
			t.Fatalf("page loads scripts or foreign assets: %s", body)
		}
		return body
	}
	for range 2 { // a mail scanner's GET, then the user's
		r := get(t, srv, "/verify?token="+url.QueryEscape(verify), "")
		if r.Status != http.StatusOK || !strings.Contains(page(r), `<form method="post" action="/verify"`) {
			t.Fatalf("GET /verify: %s", r)
		}
	}
	form := func(path string, v url.Values) reply {
		return send(t, srv, req{method: http.MethodPost, path: path, body: v.Encode(), contentType: "application/x-www-form-urlencoded"})
	}
	if r := form("/verify", url.Values{"token": {verify}}); r.Status != http.StatusOK || !strings.Contains(page(r), "confirmed") {
		t.Fatalf("POST /verify: %s", r)
	}
	r := get(t, srv, "/verify?token="+url.QueryEscape(verify), "")
	if r.Status != http.StatusBadRequest || !strings.Contains(page(r), "already used") {
		t.Fatalf("a used link: %s", r)
	}
	postJSON(t, srv, "/v1/password/forgot", map[string]string{"email": "page@example.com"}, "")
	reset := testenv.LinkToken(mailOf(t, env, session.KindReset, "page@example.com"))
	if r := get(t, srv, "/reset?token="+url.QueryEscape(reset), ""); r.Status != http.StatusOK || !strings.Contains(page(r), `name="new_password"`) {
		t.Fatalf("GET /reset: %s", r)
	}
	if r := form("/reset", url.Values{"token": {reset}, "new_password": {"one long passphrase"}, "confirm_password": {"another"}}); r.Status != http.StatusBadRequest || !strings.Contains(page(r), "differ") {
		t.Fatalf("mismatch: %s", r)
	}
	if r := form("/reset", url.Values{"token": {reset}, "new_password": {"a page-set passphrase"}, "confirm_password": {"a page-set passphrase"}}); r.Status != http.StatusOK || !strings.Contains(page(r), "was changed") {
		t.Fatalf("POST /reset: %s", r)
	}
	if r := form("/reset", url.Values{"token": {reset}, "new_password": {"a page-set passphrase"}, "confirm_password": {"a page-set passphrase"}}); r.Status != http.StatusBadRequest || !strings.Contains(page(r), "already used") {
		t.Fatalf("reset link used twice: %s", r)
	}
	login(t, srv, "page@example.com", "a page-set passphrase", "ua")
	if r := get(t, srv, "/assets/latch.css", ""); r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet: %s", r)
	}
}
