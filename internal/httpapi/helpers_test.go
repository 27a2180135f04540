package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/testenv"
)

// newServer builds a test stack and serves its API over a real listener.
func newServer(t *testing.T, o testenv.Options) (*testenv.Env, *httptest.Server) {
	t.Helper()
	env := testenv.New(t, o)
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	return env, srv
}

// testUA is the User-Agent requests send unless a test sets its own.
const testUA = "latch-httpapi-test/1"

// reply is a response read in full.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) String() string { return http.StatusText(r.Status) + ": " + string(r.Body) }

// decode unmarshals the body into v, failing the test if it is not JSON of
// that shape.
func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json (body %s)", ct, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// req is one request to send.
type req struct {
	method, path string
	body         string
	contentType  string
	bearer       string
	header       map[string]string
}

func send(t *testing.T, srv *httptest.Server, rq req) reply {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	r, err := http.NewRequest(rq.method, srv.URL+rq.path, body)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("User-Agent", testUA)
	if rq.contentType != "" {
		r.Header.Set("Content-Type", rq.contentType)
	}
	if rq.bearer != "" {
		r.Header.Set("Authorization", "Bearer "+rq.bearer)
	}
	for k, v := range rq.header {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", rq.method, rq.path, err)
	}
	rep := reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
	record(t, r, rep)
	return rep
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// postJSON posts v (a string is sent as is) as application/json.
func postJSON(t *testing.T, srv *httptest.Server, path string, v any, bearer string) reply {
	t.Helper()
	body, ok := v.(string)
	if !ok {
		body = mustJSON(t, v)
	}
	return send(t, srv, req{method: http.MethodPost, path: path, body: body, contentType: "application/json", bearer: bearer})
}

func postForm(t *testing.T, srv *httptest.Server, path string, form url.Values) reply {
	t.Helper()
	return send(t, srv, req{method: http.MethodPost, path: path, body: form.Encode(), contentType: "application/x-www-form-urlencoded"})
}

func get(t *testing.T, srv *httptest.Server, path, bearer string) reply {
	t.Helper()
	return send(t, srv, req{method: http.MethodGet, path: path, bearer: bearer})
}

// tokenResponse is the token response of docs/design.md.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
}

// checkTokenResponse checks the shape and headers of a token response and
// returns it.
func checkTokenResponse(t *testing.T, r reply, wantStatus int) tokenResponse {
	t.Helper()
	if r.Status != wantStatus {
		t.Fatalf("status = %d, want %d (body %s)", r.Status, wantStatus, r.Body)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want %q", got, "no-store")
	}
	if got := r.Header.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q, want %q", got, "no-cache")
	}
	var raw map[string]any
	r.decode(t, &raw)
	for _, k := range []string{"access_token", "token_type", "expires_in", "refresh_token", "session_id"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("token response lacks %q: %s", k, r.Body)
		}
	}
	var tr tokenResponse
	r.decode(t, &tr)
	if tr.TokenType != "Bearer" {
		t.Errorf("token_type = %q, want %q", tr.TokenType, "Bearer")
	}
	if tr.AccessToken == "" || tr.RefreshToken == "" || tr.SessionID == "" {
		t.Errorf("token response has empty tokens: %s", r.Body)
	}
	if tr.ExpiresIn <= 0 {
		t.Errorf("expires_in = %d, want > 0", tr.ExpiresIn)
	}
	return tr
}

// errorBody is the one error shape of every endpoint.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// wantError checks that r is the JSON error object with status and code,
// with exactly the fields error and error_description.
func wantError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status = %d, want %d (body %s)", r.Status, status, r.Body)
	}
	var raw map[string]any
	r.decode(t, &raw)
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"error", "error_description"}) {
		t.Errorf("error body fields = %v, want [error error_description] (body %s)", keys, r.Body)
	}
	var e errorBody
	r.decode(t, &e)
	if e.Error != code {
		t.Errorf("error = %q, want %q (body %s)", e.Error, code, r.Body)
	}
	if e.ErrorDescription == "" {
		t.Errorf("error_description is empty (body %s)", r.Body)
	}
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

const testPassword = "correct horse battery staple"

// signup creates a user over HTTP and returns its first session's tokens.
func signup(t *testing.T, srv *httptest.Server, email string) tokenResponse {
	t.Helper()
	return checkTokenResponse(t, postJSON(t, srv, "/v1/signup", credentials{email, testPassword}, ""), http.StatusCreated)
}

// signupOnly creates a user over HTTP without logging in.
func signupOnly(t *testing.T, srv *httptest.Server, email, password string) {
	t.Helper()
	r := postJSON(t, srv, "/v1/signup", map[string]any{"email": email, "password": password, "login": false}, "")
	if r.Status != http.StatusCreated {
		t.Fatalf("signup %s: %s", email, r)
	}
}

// login starts a session with the given User-Agent.
func login(t *testing.T, srv *httptest.Server, email, password, ua string) tokenResponse {
	t.Helper()
	r := send(t, srv, req{method: http.MethodPost, path: "/v1/login", body: mustJSON(t, credentials{email, password}),
		contentType: "application/json", header: map[string]string{"User-Agent": ua}})
	return checkTokenResponse(t, r, http.StatusOK)
}

// refresh presents a refresh token at the token endpoint.
func refresh(t *testing.T, srv *httptest.Server, rt string) reply {
	t.Helper()
	return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}})
}

// mustRefresh refreshes and returns the new tokens.
func mustRefresh(t *testing.T, srv *httptest.Server, rt string) tokenResponse {
	t.Helper()
	return checkTokenResponse(t, refresh(t, srv, rt), http.StatusOK)
}

// wantRefreshRejected checks that rt is refused with invalid_grant.
func wantRefreshRejected(t *testing.T, srv *httptest.Server, rt string) {
	t.Helper()
	wantError(t, refresh(t, srv, rt), http.StatusBadRequest, "invalid_grant")
}

// sessionEntry is one element of GET /v1/sessions.
type sessionEntry struct {
	ID         string `json:"id"`
	CreatedAt  string `json:"created_at"`
	LastUsedAt string `json:"last_used_at"`
	UserAgent  string `json:"user_agent"`
	IP         string `json:"ip"`
	ClientID   string `json:"client_id"`
	Current    bool   `json:"current"`
}

func listSessions(t *testing.T, srv *httptest.Server, at string) []sessionEntry {
	t.Helper()
	r := get(t, srv, "/v1/sessions", at)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/sessions: %s", r)
	}
	var out []sessionEntry
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode sessions %s: %v", r.Body, err)
	}
	return out
}
