package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/helpers"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// The OpenAPI document is checked with github.com/pb33f/libopenapi-validator
// (v0.16.2, test-only): it is built for OpenAPI 3.1 and validates with a
// JSON Schema 2020-12 validator (3.1's dialect: type arrays such as
// ["string","null"], no "nullable"), where kin-openapi's 3.1 support is
// still partial.

// recorded is one real response of this package's tests, kept for
// validation against the document (TestMain).
type recorded struct {
	method, target string
	reqHeader      http.Header
	status         int
	header         http.Header
	body           []byte
	test           string
}

var recorder struct {
	mu  sync.Mutex
	all []recorded
}

// record keeps a response that send received.
func record(t *testing.T, r *http.Request, rep reply) {
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	recorder.all = append(recorder.all, recorded{method: r.Method, target: r.URL.RequestURI(), reqHeader: r.Header.Clone(),
		status: rep.Status, header: rep.Header.Clone(), body: rep.Body, test: t.Name()})
}

// TestMain validates, after every test of the package ran, each recorded
// response to a documented route against the document's schema for it:
// the integration tests double as the check that the document tells the
// truth. Responses to undocumented paths or methods (the tests of 404 and
// 405) are skipped; TestOpenAPIRoutes checks that the document covers the
// router.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if problems := validateRecorded(); len(problems) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: %d recorded responses do not match openapi.json:\n%s\n", len(problems), strings.Join(problems, "\n"))
			code = 1
		}
	}
	os.Exit(code)
}

func newValidator() (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(httpapi.OpenAPI())
	if err != nil {
		return nil, err
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("validator: %v", errs)
	}
	return v, nil
}

// validateRecorded checks the recorded responses (at most 5 per method,
// route and status, so the throttle tests' thousands cost little) and
// returns what does not match.
func validateRecorded() []string {
	v, err := newValidator()
	if err != nil {
		return []string{err.Error()}
	}
	recorder.mu.Lock()
	all := recorder.all
	recorder.mu.Unlock()
	seen := map[string]int{}
	var problems []string
	for _, rec := range all {
		ok, problem := validateOne(v, rec)
		if !ok {
			continue // not a documented route
		}
		key := fmt.Sprintf("%s %s %d", rec.method, routeKey(rec.target), rec.status)
		if seen[key]++; seen[key] > 5 {
			continue
		}
		if problem != "" {
			problems = append(problems, fmt.Sprintf("  %s (%s): %s", key, rec.test, problem))
		}
	}
	return problems
}

// routeKey groups targets by their first two path segments.
func routeKey(target string) string {
	p, _, _ := strings.Cut(target, "?")
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 4)
	if len(parts) > 3 {
		parts = parts[:3]
	}
	return "/" + strings.Join(parts, "/")
}

// validateOne validates one response; documented is false when the
// request names no documented path and method.
func validateOne(v validator.Validator, rec recorded) (documented bool, problem string) {
	req, _ := http.NewRequest(rec.method, "http://latch.test"+rec.target, nil)
	req.Header = rec.reqHeader.Clone()
	resp := &http.Response{StatusCode: rec.status, Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body)), Request: req}
	ok, errs := v.ValidateHttpResponse(req, resp)
	if ok {
		return true, ""
	}
	var msgs []string
	for _, e := range errs {
		if e.ValidationType == helpers.PathValidation {
			return false, "" // no such path, or no such method on it
		}
		msg := e.Message + ": " + e.Reason
		for _, se := range e.SchemaValidationErrors {
			msg += "; " + se.FieldPath + " " + se.Reason
		}
		msgs = append(msgs, msg)
	}
	return true, strings.Join(msgs, " | ") + " (body " + truncate(string(rec.body), 300) + ")"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// docRoutes returns the "METHOD /path" operations of the document.
func docRoutes(t *testing.T) []string {
	t.Helper()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	var out []string
	for p, ops := range doc.Paths {
		for m := range ops {
			switch m {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				out = append(out, strings.ToUpper(m)+" "+p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIRoutes: the document describes exactly the routes of the
// router, no more and no fewer, is itself a valid OpenAPI 3.1 document,
// and is served at GET /openapi.json.
func TestOpenAPIRoutes(t *testing.T) {
	env, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) {
		// Every optional route on: /metrics and the account page are
		// served only when configured.
		c.Metrics = http.NotFoundHandler()
		c.AccountClientID = "account"
	}})
	routes := env.API.Routes()
	slices.Sort(routes)
	documented := docRoutes(t)
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is served but missing from openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.json documents %q, which the router does not serve", d)
		}
	}
	v, err := newValidator()
	if err != nil {
		t.Fatal(err)
	}
	if ok, errs := v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("openapi.json is not valid OpenAPI 3.1: %s: %s", e.Message, e.Reason)
		}
	}
	r := get(t, srv, "/openapi.json", "")
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, httpapi.OpenAPI()) || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %q", r.Status, r.Header.Get("Content-Type"))
	}
}

// TestOpenAPIResponses calls every documented operation once with real
// requests (user, OAuth, admin) and checks each answer against the
// document at once; with TestMain, every response the package's tests
// record is checked too.
func TestOpenAPIResponses(t *testing.T) {
	env, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) {
		c.AccountClientID = "account"
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			io.WriteString(w, "# metrics\n")
		})
	}})
	v, err := newValidator()
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	check := func(method, pattern string, r reply, rq *http.Request) {
		t.Helper()
		covered[method+" "+pattern] = true
		ok, problem := validateOne(v, recorded{method: rq.Method, target: rq.URL.RequestURI(), reqHeader: rq.Header, status: r.Status, header: r.Header, body: r.Body})
		if !ok {
			t.Errorf("%s %s (%s) is not a documented route", method, pattern, rq.URL)
		} else if problem != "" {
			t.Errorf("%s %s %d: %s", method, pattern, r.Status, problem)
		}
	}
	call := func(method, pattern, target, body, contentType, bearer string, header map[string]string, want int) reply {
		t.Helper()
		r := send(t, srv, req{method: method, path: target, body: body, contentType: contentType, bearer: bearer, header: header})
		if want != 0 && r.Status != want {
			t.Fatalf("%s %s = %d, want %d: %s", method, target, r.Status, want, r.Body)
		}
		rq, _ := http.NewRequest(method, srv.URL+target, nil)
		if contentType != "" {
			rq.Header.Set("Content-Type", contentType)
		}
		check(method, pattern, r, rq)
		return r
	}
	const js, form = "application/json", "application/x-www-form-urlencoded"

	// Discovery and operations.
	call("GET", "/.well-known/jwks.json", "/.well-known/jwks.json", "", "", "", nil, 200)
	call("GET", "/.well-known/oauth-authorization-server", "/.well-known/oauth-authorization-server", "", "", "", nil, 200)
	call("GET", "/openapi.json", "/openapi.json", "", "", "", nil, 200)
	call("GET", "/healthz", "/healthz", "", "", "", nil, 200)
	call("GET", "/readyz", "/readyz", "", "", "", nil, 200)
	call("GET", "/metrics", "/metrics", "", "", "", nil, 200)

	// User endpoints.
	var tok tokenResponse
	call("POST", "/v1/signup", "/v1/signup", `{"email":"ann@example.com","password":"`+testPassword+`"}`, js, "", nil, 201).decode(t, &tok)
	call("POST", "/v1/signup", "/v1/signup", `{"email":"bob@example.com","password":"`+testPassword+`","login":false}`, js, "", nil, 201)
	call("POST", "/v1/signup", "/v1/signup", `{"email":"ann@example.com","password":"`+testPassword+`"}`, js, "", nil, 409)
	var second tokenResponse
	call("POST", "/v1/login", "/v1/login", `{"email":"ann@example.com","password":"`+testPassword+`"}`, js, "", nil, 200).decode(t, &second)
	call("POST", "/v1/login", "/v1/login", `{"email":"ann@example.com","password":"wrong password here"}`, js, "", nil, 401)
	call("GET", "/v1/sessions", "/v1/sessions", "", "", tok.AccessToken, nil, 200)
	call("GET", "/v1/sessions", "/v1/sessions", "", "", "", nil, 401)
	call("DELETE", "/v1/sessions/{id}", "/v1/sessions/"+second.SessionID, "", "", tok.AccessToken, nil, 204)
	call("POST", "/v1/password", "/v1/password", `{"current_password":"`+testPassword+`","new_password":"another long passphrase"}`, js, tok.AccessToken, nil, 204)
	call("POST", "/v1/logout", "/v1/logout", `{"scope":"others"}`, js, tok.AccessToken, nil, 200)

	// Account lifecycle (the mail-sending ones answer 503 without SMTP in
	// some configurations: any documented answer will do, validated).
	call("GET", "/v1/me", "/v1/me", "", "", tok.AccessToken, nil, 200)
	call("PATCH", "/v1/me", "/v1/me", `{"user_metadata":{"theme":"dark"}}`, js, tok.AccessToken, nil, 200)
	call("POST", "/v1/email/verify/request", "/v1/email/verify/request", "", "", tok.AccessToken, nil, 0)
	call("POST", "/v1/email/verify", "/v1/email/verify", `{"token":"latch_ev_nope"}`, js, "", nil, 400)
	call("POST", "/v1/email/change", "/v1/email/change", `{"new_email":"ann2@example.com","password":"another long passphrase"}`, js, tok.AccessToken, nil, 0)
	call("POST", "/v1/password/forgot", "/v1/password/forgot", `{"email":"ann@example.com"}`, js, "", nil, 0)
	call("POST", "/v1/password/reset", "/v1/password/reset", `{"token":"latch_pr_nope","new_password":"yet another passphrase"}`, js, "", nil, 400)
	call("GET", "/reset", "/reset?token=latch_pr_nope", "", "", "", nil, 0)
	call("POST", "/reset", "/reset", "token=latch_pr_nope&new_password=yet+another+passphrase", form, "", nil, 0)
	call("GET", "/verify", "/verify?token=latch_ev_nope", "", "", "", nil, 0)
	call("POST", "/verify", "/verify", "token=latch_ev_nope", form, "", nil, 0)
	call("GET", "/assets/latch.css", "/assets/latch.css", "", "", "", nil, 200)
	call("GET", "/account", "/account", "", "", "", nil, 200)
	call("GET", "/account/lib/{file}", "/account/lib/index.js", "", "", "", nil, 200)
	call("GET", "/account/{file}", "/account/account.js", "", "", "", nil, 200)
	call("GET", "/account/{file}", "/account/nope.js", "", "", "", nil, 404)

	// OAuth endpoints.
	env.Clock.Advance(time.Minute)
	var refreshed tokenResponse
	call("POST", "/oauth/token", "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app"}}.Encode(), form, "", nil, 200).decode(t, &refreshed)
	call("POST", "/oauth/token", "/oauth/token", url.Values{"grant_type": {"password"}, "username": {"ann@example.com"}, "password": {"another long passphrase"}}.Encode(), form, "", nil, 200)
	call("POST", "/oauth/token", "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"latch_rt_bogus"}}.Encode(), form, "", nil, 400)
	secret := newConfidential(t, env, session.Client{ID: "backend", Audiences: []string{testenv.Issuer, "app"}, Grants: []string{"client_credentials"}, Scopes: []string{"admin"}})
	basic := map[string]string{"Authorization": basicAuth("backend", secret)}
	var admin tokenResponse
	call("POST", "/oauth/token", "/oauth/token", "grant_type=client_credentials", form, "", basic, 200).decode(t, &admin)
	call("POST", "/oauth/introspect", "/oauth/introspect", url.Values{"token": {refreshed.AccessToken}}.Encode(), form, "", basic, 200)
	call("POST", "/oauth/introspect", "/oauth/introspect", url.Values{"token": {"nope"}}.Encode(), form, "", basic, 200)
	call("GET", "/v1/revocations", "/v1/revocations", "", "", "", basic, 200)
	call("POST", "/oauth/revoke", "/oauth/revoke", url.Values{"token": {refreshed.RefreshToken}, "client_id": {"app"}}.Encode(), form, "", nil, 200)

	// Admin endpoints.
	at := admin.AccessToken
	var u struct {
		ID string `json:"id"`
	}
	call("POST", "/admin/v1/users", "/admin/v1/users", `{"email":"carl@example.com","password":"`+testPassword+`","app_metadata":{"roles":["editor"]}}`, js, at, nil, 201).decode(t, &u)
	call("POST", "/admin/v1/users", "/admin/v1/users", `{"email":"dora@example.com"}`, js, at, nil, 201)
	call("POST", "/admin/v1/users", "/admin/v1/users", `{"email":"dora@example.com"}`, js, at, nil, 409)
	call("GET", "/admin/v1/users", "/admin/v1/users?limit=2", "", "", at, nil, 200)
	call("GET", "/admin/v1/users", "/admin/v1/users?email_prefix=c", "", "", at, nil, 200)
	call("GET", "/admin/v1/users", "/admin/v1/users", "", "", refreshed.AccessToken, nil, 403)
	call("GET", "/admin/v1/users/{id}", "/admin/v1/users/"+u.ID, "", "", at, nil, 200)
	call("GET", "/admin/v1/users/{id}", "/admin/v1/users/nobody", "", "", at, nil, 404)
	call("PATCH", "/admin/v1/users/{id}", "/admin/v1/users/"+u.ID, `{"app_metadata":{"roles":["admin"]},"disabled":true}`, js, at, nil, 200)
	call("PATCH", "/admin/v1/users/{id}", "/admin/v1/users/"+u.ID, `{"disabled":false}`, js, at, nil, 200)
	carl := login(t, srv, "carl@example.com", testPassword, testUA)
	call("GET", "/admin/v1/users/{id}/sessions", "/admin/v1/users/"+u.ID+"/sessions", "", "", at, nil, 200)
	call("DELETE", "/admin/v1/sessions/{sid}", "/admin/v1/sessions/"+carl.SessionID, "", "", at, nil, 204)
	call("DELETE", "/admin/v1/users/{id}/sessions", "/admin/v1/users/"+u.ID+"/sessions", "", "", at, nil, 200)
	call("DELETE", "/admin/v1/users/{id}", "/admin/v1/users/"+u.ID, "", "", at, nil, 204)
	call("GET", "/admin/v1/clients", "/admin/v1/clients", "", "", at, nil, 200)
	call("POST", "/admin/v1/clients", "/admin/v1/clients", `{"id":"worker","confidential":true,"audiences":["app"],"grants":["client_credentials"]}`, js, at, nil, 201)
	call("POST", "/admin/v1/clients", "/admin/v1/clients", `{"id":"x","audiences":["*"]}`, js, at, nil, 400)
	call("GET", "/admin/v1/clients/{id}", "/admin/v1/clients/worker", "", "", at, nil, 200)
	call("PATCH", "/admin/v1/clients/{id}", "/admin/v1/clients/worker", `{"scopes":["reports"],"claims":["roles"]}`, js, at, nil, 200)
	call("POST", "/admin/v1/clients/{id}/secret", "/admin/v1/clients/worker/secret", "", "", at, nil, 200)
	call("DELETE", "/admin/v1/clients/{id}", "/admin/v1/clients/worker", "", "", at, nil, 204)
	call("GET", "/admin/v1/audit", "/admin/v1/audit?limit=3", "", "", at, nil, 200)
	call("GET", "/admin/v1/audit", "/admin/v1/audit?type=user.created&user=dora@example.com", "", "", at, nil, 200)

	var gone tokenResponse
	call("POST", "/v1/signup", "/v1/signup", `{"email":"gone@example.com","password":"`+testPassword+`"}`, js, "", nil, 201).decode(t, &gone)
	call("DELETE", "/v1/me", "/v1/me", `{"password":"`+testPassword+`"}`, js, gone.AccessToken, nil, 204)

	routes := env.API.Routes()
	for _, r := range routes {
		if !covered[r] {
			t.Errorf("TestOpenAPIResponses does not call %s", r)
		}
	}
}
