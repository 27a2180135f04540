package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// audOf returns the aud claim of an access token (read, not verified).
func audOf(t *testing.T, at string) []string {
	t.Helper()
	parts := strings.Split(at, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", at)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	switch a := c.Aud.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// TestAccountAudience (docs/design.md "Audiences"): a token minted for a
// client registered only for a resource server (aud https://notes.example)
// gets 401 invalid_token from every account endpoint and cannot end its
// session through /oauth/revoke; a client registered with the account
// audience beside its own can, and so can the built-in app.
func TestAccountAudience(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	ctx := context.Background()
	for _, c := range []session.Client{
		{ID: "notes", Audiences: []string{"https://notes.example"}},
		{ID: "notes-web", Audiences: []string{"https://notes.example", testenv.Issuer}},
	} {
		c.Name, c.AccessTTL, c.Grants = c.ID, time.Minute, []string{session.GrantPassword, session.GrantRefresh}
		if err := env.Sessions.EnsureClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	signupOnly(t, srv, "ada@example.com", testenv.Password)
	loginAs := func(client string, extra url.Values) tokenResponse {
		form := url.Values{"grant_type": {"password"}, "client_id": {client}, "username": {"ada@example.com"}, "password": {testenv.Password}}
		for k, v := range extra {
			form[k] = v
		}
		return checkTokenResponse(t, postForm(t, srv, "/oauth/token", form), http.StatusOK)
	}
	// The account endpoints, each called with at; want is the status of an
	// allowed call.
	type call struct {
		name string
		do   func(at string, other tokenResponse) reply
		want int
	}
	calls := []call{
		{"GET /v1/sessions", func(at string, _ tokenResponse) reply { return get(t, srv, "/v1/sessions", at) }, 200},
		{"DELETE /v1/sessions/{id}", func(at string, other tokenResponse) reply {
			return send(t, srv, req{method: "DELETE", path: "/v1/sessions/" + other.SessionID, bearer: at})
		}, 204},
		{"POST /v1/password", func(at string, _ tokenResponse) reply {
			// A wrong current password: an allowed caller gets as far as
			// the password check.
			return postJSON(t, srv, "/v1/password", map[string]string{"current_password": "wrong password entirely", "new_password": "a brand new passphrase"}, at)
		}, 403},
		{"POST /v1/logout others", func(at string, _ tokenResponse) reply {
			return postJSON(t, srv, "/v1/logout", map[string]string{"scope": "others"}, at)
		}, 200},
		{"POST /v1/logout all", func(at string, _ tokenResponse) reply {
			return postJSON(t, srv, "/v1/logout", map[string]string{"scope": "all"}, at)
		}, 200},
	}
	cases := []struct {
		name    string
		token   func() tokenResponse
		aud     []string
		allowed bool
	}{
		{"client of a resource server only", func() tokenResponse { return loginAs("notes", nil) }, []string{"https://notes.example"}, false},
		{"the same, narrowed with resource", func() tokenResponse {
			return loginAs("notes", url.Values{"resource": {"https://notes.example"}})
		}, []string{"https://notes.example"}, false},
		{"client with the account audience, narrowed to the resource server", func() tokenResponse {
			return loginAs("notes-web", url.Values{"resource": {"https://notes.example"}})
		}, []string{"https://notes.example"}, false},
		{"client with the account audience", func() tokenResponse { return loginAs("notes-web", nil) }, []string{"https://notes.example", testenv.Issuer}, true},
		{"client with the account audience, narrowed to it", func() tokenResponse {
			return loginAs("notes-web", url.Values{"resource": {testenv.Issuer}})
		}, []string{testenv.Issuer}, true},
		{"built-in app", func() tokenResponse { return loginAs("app", nil) }, []string{"app", testenv.Issuer}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range calls {
				tok := tc.token()
				other := login(t, srv, "ada@example.com", testenv.Password, "other device")
				if got := audOf(t, tok.AccessToken); !slices.Equal(got, tc.aud) {
					t.Fatalf("aud = %q, want %q", got, tc.aud)
				}
				r := c.do(tok.AccessToken, other)
				if !tc.allowed {
					wantError(t, r, http.StatusUnauthorized, "invalid_token")
					if ch := r.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
						t.Errorf("%s: WWW-Authenticate = %q", c.name, ch)
					}
					// Nothing was ended: the other session still refreshes.
					mustRefresh(t, srv, other.RefreshToken)
					continue
				}
				if r.Status != c.want {
					t.Errorf("%s = %s, want %d", c.name, r, c.want)
				}
			}
		})
	}

	// RFC 7009 revocation with such an access token: 200 (section 2.2),
	// and the session lives on; the account-audience token ends its own.
	notes := loginAs("notes", nil)
	if r := postForm(t, srv, "/oauth/revoke", url.Values{"client_id": {"notes"}, "token": {notes.AccessToken}}); r.Status != 200 {
		t.Fatalf("revoke = %s, want 200", r)
	}
	mustRefreshClient(t, srv, "notes", notes.RefreshToken)
	web := loginAs("notes-web", nil)
	if r := postForm(t, srv, "/oauth/revoke", url.Values{"client_id": {"notes-web"}, "token": {web.AccessToken}}); r.Status != 200 {
		t.Fatalf("revoke = %s, want 200", r)
	}
	r := postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"notes-web"}, "refresh_token": {web.RefreshToken}})
	wantError(t, r, http.StatusBadRequest, "invalid_grant")
}

// mustRefreshClient refreshes rt as client and wants a token response.
func mustRefreshClient(t *testing.T, srv *httptest.Server, client, rt string) tokenResponse {
	t.Helper()
	r := postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {rt}})
	return checkTokenResponse(t, r, http.StatusOK)
}

// TestResourceParameter (RFC 8707): resource narrows the access token's aud
// to one of the client's audiences, at the password grant, the refresh
// grant, login and signup; a resource that is not one of them, an empty
// one, or two, answer 400 invalid_target and change nothing.
func TestResourceParameter(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "web", Name: "web",
		Audiences: []string{"https://notes.example", "https://photos.example", testenv.Issuer}, AccessTTL: time.Minute,
		Grants: []string{session.GrantPassword, session.GrantRefresh}}); err != nil {
		t.Fatal(err)
	}
	all := []string{"https://notes.example", "https://photos.example", testenv.Issuer}
	signupOnly(t, srv, "ada@example.com", testenv.Password)
	password := func(res ...string) reply {
		return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"},
			"username": {"ada@example.com"}, "password": {testenv.Password}, "resource": res})
	}
	tok := checkTokenResponse(t, password(), 200)
	if got := audOf(t, tok.AccessToken); !slices.Equal(got, all) {
		t.Fatalf("no resource: aud = %q, want all the client's audiences %q", got, all)
	}
	refreshRes := func(rt string, res ...string) reply {
		return postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"web"}, "refresh_token": {rt}, "resource": res})
	}
	tests := []struct {
		name string
		res  []string
		aud  []string // nil: refused with code
		code string
	}{
		{"one of the client's audiences", []string{"https://photos.example"}, []string{"https://photos.example"}, ""},
		{"the account audience", []string{testenv.Issuer}, []string{testenv.Issuer}, ""},
		{"another resource server", []string{"https://billing.example"}, nil, "invalid_target"},
		{"a prefix of an audience", []string{"https://notes.example/"}, nil, "invalid_target"},
		{"case variant", []string{"https://NOTES.example"}, nil, "invalid_target"},
		{"empty", []string{""}, nil, "invalid_target"},
		// Latch narrows to one audience; a repeated form parameter is
		// refused as every repeated parameter is (RFC 6749 section 3.2).
		{"two", []string{"https://notes.example", "https://photos.example"}, nil, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := password(tt.res...)
			if tt.aud == nil {
				wantError(t, r, http.StatusBadRequest, tt.code)
				wantError(t, refreshRes(tok.RefreshToken, tt.res...), http.StatusBadRequest, tt.code)
				if tt.res[0] != "" { // JSON: an empty resource is no resource
					wantError(t, postJSON(t, srv, "/v1/login", map[string]any{"email": "ada@example.com", "password": testenv.Password,
						"client_id": "web", "resource": strings.Join(tt.res, " ")}, ""), http.StatusBadRequest, "invalid_target")
				}
				return
			}
			if got := audOf(t, checkTokenResponse(t, r, 200).AccessToken); !slices.Equal(got, tt.aud) {
				t.Fatalf("password grant: aud = %q, want %q", got, tt.aud)
			}
			next := checkTokenResponse(t, refreshRes(tok.RefreshToken, tt.res...), 200)
			tok = next
			if got := audOf(t, next.AccessToken); !slices.Equal(got, tt.aud) {
				t.Fatalf("refresh: aud = %q, want %q", got, tt.aud)
			}
			l := postJSON(t, srv, "/v1/login", map[string]any{"email": "ada@example.com", "password": testenv.Password, "client_id": "web", "resource": tt.res[0]}, "")
			if got := audOf(t, checkTokenResponse(t, l, 200).AccessToken); !slices.Equal(got, tt.aud) {
				t.Fatalf("login: aud = %q, want %q", got, tt.aud)
			}
		})
	}
	// The session is not narrowed: a refresh without resource has them all.
	if got := audOf(t, mustRefreshClient(t, srv, "web", tok.RefreshToken).AccessToken); !slices.Equal(got, all) {
		t.Fatalf("refresh after narrowed ones: aud = %q, want %q", got, all)
	}
	// Signup with a resource.
	s := postJSON(t, srv, "/v1/signup", map[string]any{"email": "bob@example.com", "password": testenv.Password, "client_id": "web", "resource": "https://notes.example"}, "")
	if got := audOf(t, checkTokenResponse(t, s, 201).AccessToken); !slices.Equal(got, []string{"https://notes.example"}) {
		t.Fatalf("signup: aud = %q", got)
	}
	wantError(t, postJSON(t, srv, "/v1/signup", map[string]any{"email": "eve@example.com", "password": testenv.Password, "client_id": "web", "resource": "https://billing.example"}, ""),
		http.StatusBadRequest, "invalid_target")
}

// TestIntrospectionAudience (RFC 7662 section 4): a confidential client
// learns only of tokens for one of its own audiences; any other token,
// valid or not, is {"active":false}.
func TestIntrospectionAudience(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	ctx := context.Background()
	for _, c := range []session.Client{
		{ID: "web", Audiences: []string{"https://notes.example", testenv.Issuer}, Grants: []string{session.GrantPassword, session.GrantRefresh}},
		{ID: "notes-rs", Audiences: []string{"https://notes.example"}, SecretHash: session.HashClientSecret("s1")},
		{ID: "account-rs", Audiences: []string{testenv.Issuer}, SecretHash: session.HashClientSecret("s2")},
		{ID: "multi-rs", Audiences: []string{"https://photos.example", "https://notes.example"}, SecretHash: session.HashClientSecret("s3")},
	} {
		c.Name, c.AccessTTL = c.ID, time.Minute
		if err := env.Sessions.EnsureClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	app := signup(t, srv, "ada@example.com") // aud app and the account audience
	notes := checkTokenResponse(t, postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"password"}, "client_id": {"web"},
		"username": {"ada@example.com"}, "password": {testenv.Password}, "resource": {"https://notes.example"}}), 200)
	tests := []struct {
		client, secret string
		token          string
		active         bool
	}{
		{"notes-rs", "s1", notes.AccessToken, true},
		{"notes-rs", "s1", app.AccessToken, false},
		{"account-rs", "s2", app.AccessToken, true},
		{"account-rs", "s2", notes.AccessToken, false},
		{"multi-rs", "s3", notes.AccessToken, true},
		{"multi-rs", "s3", app.AccessToken, false},
	}
	for _, tt := range tests {
		r := postForm(t, srv, "/oauth/introspect", url.Values{"client_id": {tt.client}, "client_secret": {tt.secret}, "token": {tt.token}})
		var got map[string]any
		r.decode(t, &got)
		if r.Status != 200 || got["active"] != tt.active {
			t.Errorf("%s introspecting a token with aud %q: %s, want active %v", tt.client, audOf(t, tt.token), r, tt.active)
		}
		if !tt.active && len(got) != 1 {
			t.Errorf("%s: an inactive answer says more than active: %s", tt.client, r)
		}
	}
}

// TestResourceAfterReuse: an ancestor refresh token sent with a resource
// the client lacks is reuse all the same (the session ends), as with a
// wider scope: no answer tells a probe whether the session lives.
func TestResourceAfterReuse(t *testing.T) {
	_, srv := newServer(t, testenv.Options{})
	tr := signup(t, srv, "ada@example.com")
	// Two rotations on: tr is an ancestor, not the parent in grace.
	next := mustRefresh(t, srv, mustRefresh(t, srv, tr.RefreshToken).RefreshToken)
	r := postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"},
		"refresh_token": {tr.RefreshToken}, "resource": {"https://billing.example"}})
	wantError(t, r, http.StatusBadRequest, "invalid_grant")
	wantRefreshRejected(t, srv, next.RefreshToken)
	// On a live session the same resource is invalid_target.
	live := signup(t, srv, "bob@example.com")
	r = postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"},
		"refresh_token": {live.RefreshToken}, "resource": {"https://billing.example"}})
	wantError(t, r, http.StatusBadRequest, "invalid_target")
	mustRefresh(t, srv, live.RefreshToken)
}
