package storetest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// adminAPI drives /admin/v1/ of a stack over a real listener with a
// client-credentials token of a registered admin client.
type adminAPI struct {
	t      *testing.T
	env    *testenv.Env
	srv    *httptest.Server
	token  string
	secret string
}

func newAdminAPI(t *testing.T, env *testenv.Env) *adminAPI {
	t.Helper()
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	_, secret, err := env.Sessions.CreateClient(ctx, session.Client{ID: "backend", Audiences: []string{testenv.Issuer}, AccessTTL: 5 * time.Minute,
		Grants: []string{session.GrantClientCredentials}, Scopes: []string{"admin"}}, true, session.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	a := &adminAPI{t: t, env: env, srv: srv, secret: secret}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	a.form("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "backend", secret).want(http.StatusOK).decode(&tok)
	a.token = tok.AccessToken
	return a
}

type adminReply struct {
	t      *testing.T
	what   string
	status int
	header http.Header
	body   []byte
}

func (r adminReply) want(status int) adminReply {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("%s = %d, want %d: %s", r.what, r.status, status, r.body)
	}
	return r
}

func (r adminReply) decode(v any) {
	r.t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		r.t.Fatalf("%s: decode %s: %v", r.what, r.body, err)
	}
}

// wantError checks the one error shape of the API.
func (r adminReply) wantError(status int, code string) {
	r.t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.want(status).decode(&e)
	if e.Error != code {
		r.t.Fatalf("%s: error %q, want %q: %s", r.what, e.Error, code, r.body)
	}
}

func (a *adminAPI) do(method, path, token string, body any) adminReply {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return a.send(req, method+" "+path)
}

func (a *adminAPI) send(req *http.Request, what string) adminReply {
	a.t.Helper()
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatalf("%s: %v", what, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return adminReply{t: a.t, what: what, status: resp.StatusCode, header: resp.Header, body: b}
}

// call is do with the admin token.
func (a *adminAPI) call(method, path string, body any) adminReply {
	a.t.Helper()
	return a.do(method, path, a.token, body)
}

func (a *adminAPI) form(path string, form url.Values, id, secret string) adminReply {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	}
	return a.send(req, "POST "+path)
}

type adminUser struct {
	ID          string          `json:"id"`
	Email       string          `json:"email"`
	Disabled    bool            `json:"disabled"`
	HasPassword bool            `json:"has_password"`
	AppMetadata json.RawMessage `json:"app_metadata"`
}

type adminEvent struct {
	ID, Type, UserID, ClientID, Actor string
}

// auditOf returns the audit events of type typ, newest first, as the
// admin API lists them.
func (a *adminAPI) auditOf(typ string) []adminEvent {
	a.t.Helper()
	var page struct {
		Events []struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			UserID   string `json:"user_id"`
			ClientID string `json:"client_id"`
			Actor    string `json:"actor"`
		} `json:"events"`
	}
	a.call("GET", "/admin/v1/audit?limit=200&type="+url.QueryEscape(typ), nil).want(http.StatusOK).decode(&page)
	var out []adminEvent
	for _, e := range page.Events {
		out = append(out, adminEvent{e.ID, e.Type, e.UserID, e.ClientID, e.Actor})
	}
	return out
}

// wantAudited checks that the newest event of typ names the user and the
// admin client as its actor.
func (a *adminAPI) wantAudited(typ, userID string) {
	a.t.Helper()
	ev := a.auditOf(typ)
	if len(ev) == 0 || ev[0].UserID != userID || ev[0].Actor != "backend" {
		a.t.Fatalf("audit %s = %+v; want the newest of user %q with actor backend", typ, ev, userID)
	}
}

// testAdminUsers drives every user endpoint of the admin API: create with
// and without a password, get by id and by email, update app_metadata,
// disable (sessions end) and enable, delete (sessions end, the user is
// gone); each change is audited with the admin client as actor.
func testAdminUsers(t *testing.T, env *testenv.Env) {
	a := newAdminAPI(t, env)

	var u adminUser
	a.call("POST", "/admin/v1/users", map[string]any{"email": "Ann@Example.com", "password": testenv.Password, "app_metadata": map[string]any{"roles": []string{"editor"}}}).
		want(http.StatusCreated).decode(&u)
	if u.Email != "ann@example.com" || !u.HasPassword || u.Disabled || string(u.AppMetadata) != `{"roles":["editor"]}` {
		t.Fatalf("created %+v", u)
	}
	a.wantAudited("user.created", u.ID)
	var nopw adminUser
	a.call("POST", "/admin/v1/users", map[string]any{"email": "bob@example.com"}).want(http.StatusCreated).decode(&nopw)
	if nopw.HasPassword || string(nopw.AppMetadata) != `{}` {
		t.Fatalf("created without password: %+v", nopw)
	}
	// Without a password nobody can log in as the user.
	if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "bob@example.com", Password: "", Client: env.Client}); !errors.Is(err, session.ErrBadCredential) {
		t.Fatalf("login without a password set: %v", err)
	}
	a.call("POST", "/admin/v1/users", map[string]any{"email": "ann@example.com"}).wantError(http.StatusConflict, "email_taken")
	a.call("POST", "/admin/v1/users", map[string]any{"email": "carl@example.com", "password": "short"}).wantError(http.StatusBadRequest, "weak_password")
	a.call("POST", "/admin/v1/users", map[string]any{"email": "nope"}).wantError(http.StatusBadRequest, "invalid_email")
	a.call("POST", "/admin/v1/users", map[string]any{"email": "dan@example.com", "app_metadata": []int{1}}).wantError(http.StatusBadRequest, "invalid_app_metadata")

	var got adminUser
	a.call("GET", "/admin/v1/users/"+u.ID, nil).want(http.StatusOK).decode(&got)
	if got.ID != u.ID || got.Email != u.Email {
		t.Fatalf("get by id = %+v", got)
	}
	a.call("GET", "/admin/v1/users/"+url.PathEscape("ANN@example.com"), nil).want(http.StatusOK).decode(&got)
	if got.ID != u.ID {
		t.Fatalf("get by email = %+v", got)
	}
	a.call("GET", "/admin/v1/users/nobody", nil).wantError(http.StatusNotFound, "not_found")
	a.call("GET", "/admin/v1/users/nobody@example.com", nil).wantError(http.StatusNotFound, "not_found")

	// app_metadata: replaced whole, bounded, cleared with {}.
	a.call("PATCH", "/admin/v1/users/"+u.ID, map[string]any{"app_metadata": map[string]any{"roles": []string{"admin"}, "tenant": "acme"}}).want(http.StatusOK).decode(&got)
	if string(got.AppMetadata) != `{"roles":["admin"],"tenant":"acme"}` {
		t.Fatalf("app_metadata after PATCH = %s", got.AppMetadata)
	}
	a.wantAudited("user.updated", u.ID)
	big := map[string]string{"blob": strings.Repeat("x", session.MaxAppMetadata)}
	a.call("PATCH", "/admin/v1/users/"+u.ID, map[string]any{"app_metadata": big}).wantError(http.StatusBadRequest, "invalid_app_metadata")
	a.call("PATCH", "/admin/v1/users/"+u.ID, map[string]any{"app_metadata": "roles"}).wantError(http.StatusBadRequest, "invalid_app_metadata")
	a.call("PATCH", "/admin/v1/users/"+u.ID, map[string]any{"roles": "x"}).wantError(http.StatusBadRequest, "invalid_request")
	stored, err := env.Sessions.User(ctx, u.ID)
	if err != nil || stored.AppMetadata != `{"roles":["admin"],"tenant":"acme"}` {
		t.Fatalf("stored app_metadata %q, %v: a refused PATCH changed it", stored.AppMetadata, err)
	}

	// Disable ends the sessions; enable lets the user log in again.
	tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "ann@example.com", Password: testenv.Password, Client: env.Client})
	if err != nil {
		t.Fatal(err)
	}
	a.call("PATCH", "/admin/v1/users/"+u.ID, map[string]any{"disabled": true}).want(http.StatusOK).decode(&got)
	if !got.Disabled {
		t.Fatalf("after disable: %+v", got)
	}
	a.wantAudited("user.disabled", u.ID)
	if ses, _ := env.Store.Session(ctx, tok.SessionID); ses.RevokedAt.IsZero() || ses.RevokeReason != session.ReasonUserDisabled {
		t.Fatalf("session after disable: revoked %v (%s)", ses.RevokedAt, ses.RevokeReason)
	}
	if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "ann@example.com", Password: testenv.Password, Client: env.Client}); !errors.Is(err, session.ErrBadCredential) {
		t.Fatalf("login of a disabled user: %v", err)
	}
	a.call("PATCH", "/admin/v1/users/"+u.ID, map[string]any{"disabled": false}).want(http.StatusOK).decode(&got)
	a.wantAudited("user.enabled", u.ID)
	tok, _, err = env.Sessions.Login(ctx, session.LoginRequest{Email: "ann@example.com", Password: testenv.Password, Client: env.Client})
	if err != nil || got.Disabled {
		t.Fatalf("login after enable: %v (%+v)", err, got)
	}

	// Delete: the session ends (the feed has it), the user is gone.
	before, _ := env.Store.Revocations(ctx, session.FeedCursor{}, 1000)
	a.call("DELETE", "/admin/v1/users/"+u.ID, nil).want(http.StatusNoContent)
	a.wantAudited("user.deleted", u.ID)
	a.call("GET", "/admin/v1/users/"+u.ID, nil).wantError(http.StatusNotFound, "not_found")
	a.call("DELETE", "/admin/v1/users/"+u.ID, nil).wantError(http.StatusNotFound, "not_found")
	after, _ := feedAtLeast(t, env.Store, session.FeedCursor{}, 1000, len(before)+1)
	if !slices.ContainsFunc(after, func(e session.FeedEntry) bool { return e.SessionID == tok.SessionID }) {
		t.Fatalf("the deleted user's session %s is not in the revocation feed", tok.SessionID)
	}
	if _, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok.RefreshToken, Client: env.Client}); !session.IsInvalidGrant(err) {
		t.Fatalf("refresh of a deleted user's session: %v", err)
	}
}

// testAdminSessions: list a user's sessions, revoke one (404 for none),
// revoke all; and revoke-all reaches a bearer verifier subscribed to the
// revocation feed, which then refuses the user's access tokens.
func testAdminSessions(t *testing.T, env *testenv.Env) {
	a := newAdminAPI(t, env)
	first := env.Login(t, "sue@example.com")
	var toks []session.Tokens
	for range 2 {
		tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "sue@example.com", Password: testenv.Password, Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	ses, _ := env.Store.Session(ctx, first.SessionID)
	userID := ses.UserID

	var list struct {
		Sessions []struct {
			ID       string `json:"id"`
			ClientID string `json:"client_id"`
		} `json:"sessions"`
	}
	a.call("GET", "/admin/v1/users/"+userID+"/sessions", nil).want(http.StatusOK).decode(&list)
	if len(list.Sessions) != 3 || list.Sessions[0].ClientID != "app" {
		t.Fatalf("sessions = %+v, want 3 of app", list.Sessions)
	}

	a.call("DELETE", "/admin/v1/sessions/"+first.SessionID, nil).want(http.StatusNoContent)
	a.wantAudited("session.revoked", userID)
	a.call("DELETE", "/admin/v1/sessions/"+session.NewID(), nil).wantError(http.StatusNotFound, "not_found")
	a.call("GET", "/admin/v1/users/"+userID+"/sessions", nil).want(http.StatusOK).decode(&list)
	if len(list.Sessions) != 2 {
		t.Fatalf("after revoking one: %d sessions, want 2", len(list.Sessions))
	}

	// A resource server's verifier, subscribed to the feed.
	if _, _, err := env.Sessions.CreateClient(ctx, session.Client{ID: "rs", Audiences: []string{"app"}, AccessTTL: time.Minute}, true, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	rsSecret, err := env.Sessions.RotateClientSecret(ctx, "rs", session.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.Issuer.VerifierConfig("app")
	cfg.CacheSize = -1
	cfg.Revocations = &bearer.FeedConfig{URL: a.srv.URL + "/v1/revocations", ClientID: "rs", ClientSecret: rsSecret}
	v, err := bearer.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	for _, tok := range toks {
		if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
			t.Fatalf("before revoke-all: %v", err)
		}
	}
	var n struct {
		Revoked int `json:"revoked"`
	}
	a.call("DELETE", "/admin/v1/users/"+userID+"/sessions", nil).want(http.StatusOK).decode(&n)
	if n.Revoked != 2 {
		t.Fatalf("revoke all: %d revoked, want 2", n.Revoked)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, tok := range toks {
		for {
			_, err := v.Verify(ctx, tok.AccessToken)
			if errors.Is(err, bearer.ErrRevoked) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("10 s after revoke-all, the verifier still says %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	a.call("GET", "/admin/v1/users/"+userID+"/sessions", nil).want(http.StatusOK).decode(&list)
	if len(list.Sessions) != 0 {
		t.Fatalf("after revoke-all: %d sessions", len(list.Sessions))
	}
	a.call("GET", "/admin/v1/users/nobody/sessions", nil).wantError(http.StatusNotFound, "not_found")
}

// testAdminClients: list, create (public and confidential; the secret is
// shown once and works), get, update (claims, scopes; bad values and
// reserved claims refused), rotate the secret (the old one stops working),
// delete (its sessions end).
func testAdminClients(t *testing.T, env *testenv.Env) {
	a := newAdminAPI(t, env)
	type client struct {
		ID           string   `json:"id"`
		Confidential bool     `json:"confidential"`
		Audiences    []string `json:"audiences"`
		AccessTTL    int64    `json:"access_ttl"`
		Grants       []string `json:"grants"`
		Scopes       []string `json:"scopes"`
		Claims       []string `json:"claims"`
		ClientSecret string   `json:"client_secret"`
	}
	var c client
	a.call("POST", "/admin/v1/clients", map[string]any{"id": "worker", "confidential": true, "audiences": []string{testenv.Issuer},
		"grants": []string{"client_credentials"}, "scopes": []string{"reports"}, "access_ttl": 120}).want(http.StatusCreated).decode(&c)
	if !c.Confidential || c.ClientSecret == "" || c.AccessTTL != 120 || !slices.Equal(c.Grants, []string{"client_credentials"}) {
		t.Fatalf("created %+v", c)
	}
	a.wantAudited("client.created", "")
	secret := c.ClientSecret
	a.form("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "worker", secret).want(http.StatusOK)

	var pub client
	a.call("POST", "/admin/v1/clients", map[string]any{"id": "mobile", "audiences": []string{"app", testenv.Issuer}, "claims": []string{"roles"}}).
		want(http.StatusCreated).decode(&pub)
	if pub.Confidential || pub.ClientSecret != "" || !slices.Equal(pub.Grants, []string{"password", "refresh_token"}) || pub.AccessTTL != 900 {
		t.Fatalf("created public %+v", pub)
	}
	a.call("POST", "/admin/v1/clients", map[string]any{"id": "mobile", "audiences": []string{"app"}}).wantError(http.StatusConflict, "client_exists")
	// A browser client in cookie mode, as latch clients create --web.
	var web struct {
		Web     bool     `json:"web"`
		Origins []string `json:"origins"`
	}
	a.call("POST", "/admin/v1/clients", map[string]any{"id": "spa", "audiences": []string{"app"}, "web": true, "origins": []string{"https://app.example.com"}}).
		want(http.StatusCreated).decode(&web)
	if !web.Web || !slices.Equal(web.Origins, []string{"https://app.example.com"}) {
		t.Fatalf("web client %+v", web)
	}
	a.call("POST", "/admin/v1/clients", map[string]any{"id": "spa2", "audiences": []string{"app"}, "web": true}).wantError(http.StatusBadRequest, "invalid_client_metadata")
	a.call("POST", "/admin/v1/clients", map[string]any{"id": "spa3", "audiences": []string{"app"}, "web": true, "confidential": true,
		"origins": []string{"https://app.example.com"}}).wantError(http.StatusBadRequest, "invalid_client_metadata")
	for _, bad := range []map[string]any{
		{"id": "x1", "audiences": []string{}},
		{"id": "x2", "audiences": []string{"*"}},
		{"id": "x3", "audiences": []string{"app"}, "access_ttl": 1},
		{"id": "x4", "audiences": []string{"app"}, "grants": []string{"implicit"}},
		{"id": "x5", "audiences": []string{"app"}, "grants": []string{"client_credentials"}},
		{"id": "x6", "audiences": []string{"app"}, "claims": []string{"sub"}},
		{"id": "bad id", "audiences": []string{"app"}},
	} {
		a.call("POST", "/admin/v1/clients", bad).wantError(http.StatusBadRequest, "invalid_client_metadata")
	}

	var list struct {
		Clients []client `json:"clients"`
	}
	a.call("GET", "/admin/v1/clients", nil).want(http.StatusOK).decode(&list)
	var ids []string
	for _, c := range list.Clients {
		ids = append(ids, c.ID)
		if c.ClientSecret != "" {
			t.Fatalf("the list shows a secret: %+v", c)
		}
	}
	if !slices.Equal(ids, []string{"app", "backend", "mobile", "spa", "worker"}) {
		t.Fatalf("clients = %v", ids)
	}
	c = client{}
	a.call("GET", "/admin/v1/clients/worker", nil).want(http.StatusOK).decode(&c)
	if c.ID != "worker" || c.ClientSecret != "" {
		t.Fatalf("get = %+v", c)
	}
	a.call("GET", "/admin/v1/clients/nobody", nil).wantError(http.StatusNotFound, "not_found")

	a.call("PATCH", "/admin/v1/clients/mobile", map[string]any{"claims": []string{"roles", "tenant"}, "access_ttl": 300}).want(http.StatusOK).decode(&pub)
	if !slices.Equal(pub.Claims, []string{"roles", "tenant"}) || pub.AccessTTL != 300 || !slices.Equal(pub.Audiences, []string{"app", testenv.Issuer}) {
		t.Fatalf("after PATCH %+v", pub)
	}
	a.wantAudited("client.updated", "")
	for _, reserved := range []string{"sub", "sid", "iss", "aud", "exp", "client_id", "scope", "cnf", "jti"} {
		a.call("PATCH", "/admin/v1/clients/mobile", map[string]any{"claims": []string{"roles", reserved}}).wantError(http.StatusBadRequest, "invalid_client_metadata")
	}
	a.call("PATCH", "/admin/v1/clients/nobody", map[string]any{"scopes": []string{"a"}}).wantError(http.StatusNotFound, "not_found")

	var rot struct {
		ClientSecret string `json:"client_secret"`
	}
	a.call("POST", "/admin/v1/clients/worker/secret", nil).want(http.StatusOK).decode(&rot)
	if rot.ClientSecret == "" || rot.ClientSecret == secret {
		t.Fatalf("rotated secret %q", rot.ClientSecret)
	}
	a.form("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "worker", secret).wantError(http.StatusUnauthorized, "invalid_client")
	a.form("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, "worker", rot.ClientSecret).want(http.StatusOK)
	a.call("POST", "/admin/v1/clients/mobile/secret", nil).wantError(http.StatusBadRequest, "invalid_request")

	// Deleting a client ends its sessions.
	if err := env.Sessions.EnsureClient(ctx, session.Client{ID: "gone", Name: "gone", Audiences: []string{"app"}, AccessTTL: time.Minute, Grants: []string{"password", "refresh_token"}}); err != nil {
		t.Fatal(err)
	}
	gone, _ := env.Sessions.Client(ctx, "gone")
	env.Login(t, "gina@example.com")
	tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "gina@example.com", Password: testenv.Password, Client: gone})
	if err != nil {
		t.Fatal(err)
	}
	a.call("DELETE", "/admin/v1/clients/gone", nil).want(http.StatusNoContent)
	if ses, _ := env.Store.Session(ctx, tok.SessionID); ses.RevokedAt.IsZero() {
		t.Fatal("a deleted client's session is still active")
	}
	a.call("DELETE", "/admin/v1/clients/gone", nil).wantError(http.StatusNotFound, "not_found")
	a.call("DELETE", "/admin/v1/clients/app", nil).wantError(http.StatusBadRequest, "invalid_request")
}

// testAdminAudit: events filtered by type, user and time, newest first,
// walked with the cursor.
func testAdminAudit(t *testing.T, env *testenv.Env) {
	a := newAdminAPI(t, env)
	var ids []string
	for i := range 5 {
		var u adminUser
		a.call("POST", "/admin/v1/users", map[string]any{"email": fmt.Sprintf("au%d@example.com", i)}).want(http.StatusCreated).decode(&u)
		ids = append(ids, u.ID)
		env.Clock.Advance(time.Second)
	}
	type page struct {
		Events []struct {
			ID     string `json:"id"`
			At     string `json:"at"`
			Type   string `json:"type"`
			UserID string `json:"user_id"`
			Actor  string `json:"actor"`
		} `json:"events"`
		NextCursor *string `json:"next_cursor"`
	}
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		var p page
		a.call("GET", "/admin/v1/audit?type=user.created&limit=2&cursor="+cursor, nil).want(http.StatusOK).decode(&p)
		for _, e := range p.Events {
			if e.Type != "user.created" || e.Actor != "backend" {
				t.Fatalf("event %+v", e)
			}
			seen = append(seen, e.UserID)
		}
		if p.NextCursor == nil {
			break
		}
		if pages > 5 {
			t.Fatal("the cursor never ends")
		}
		cursor = *p.NextCursor
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("walked %v, want newest first %v", seen, want)
	}
	var p page
	a.call("GET", "/admin/v1/audit?user="+ids[2], nil).want(http.StatusOK).decode(&p)
	if len(p.Events) != 1 || p.Events[0].UserID != ids[2] {
		t.Fatalf("user filter: %+v", p.Events)
	}
	a.call("GET", "/admin/v1/audit?user=au3@example.com", nil).want(http.StatusOK).decode(&p)
	if len(p.Events) != 1 || p.Events[0].UserID != ids[3] {
		t.Fatalf("user filter by email: %+v", p.Events)
	}
	// since is inclusive, until exclusive: the second and third creations.
	since := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC).Format(time.RFC3339)
	until := time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC).Format(time.RFC3339)
	a.call("GET", "/admin/v1/audit?type=user.created&since="+since+"&until="+until, nil).want(http.StatusOK).decode(&p)
	if len(p.Events) != 2 || p.Events[0].UserID != ids[2] || p.Events[1].UserID != ids[1] {
		t.Fatalf("time filter: %+v", p.Events)
	}
	a.call("GET", "/admin/v1/audit?since=yesterday", nil).wantError(http.StatusBadRequest, "invalid_request")
	a.call("GET", "/admin/v1/audit?cursor=x", nil).wantError(http.StatusBadRequest, "invalid_request")
	a.call("GET", "/admin/v1/audit?limit=0", nil).wantError(http.StatusBadRequest, "invalid_request")
}

// testAdminPagination: users inserted while an admin walks the list with
// the cursor never make the walk repeat a user or skip one that existed
// when it began; the email prefix filter holds on every page.
func testAdminPagination(t *testing.T, env *testenv.Env) {
	a := newAdminAPI(t, env)
	const n = 40
	existing := map[string]bool{}
	for i := range n {
		u, err := env.Sessions.CreateUser(ctx, session.CreateUserRequest{Email: fmt.Sprintf("p%02d@example.com", i)}, session.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		existing[u.ID] = true
		if i%3 == 0 {
			env.Clock.Advance(time.Millisecond) // some share a created_at: the id breaks the tie
		}
	}
	if _, err := env.Sessions.CreateUser(ctx, session.CreateUserRequest{Email: "other@example.com"}, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	// Concurrent inserts, some before and some after the walk's position
	// (the fake clock moves both ways).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				env.Clock.Advance(-time.Millisecond)
			} else {
				env.Clock.Advance(2 * time.Millisecond)
			}
			if _, err := env.Sessions.CreateUser(ctx, session.CreateUserRequest{Email: fmt.Sprintf("p-new%03d@example.com", i)}, session.Meta{}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	seen := map[string]int{}
	cursor := ""
	for pages := 0; pages < 100; pages++ {
		var p struct {
			Users      []adminUser `json:"users"`
			NextCursor *string     `json:"next_cursor"`
		}
		a.call("GET", "/admin/v1/users?email_prefix=P&limit=7&cursor="+url.QueryEscape(cursor), nil).want(http.StatusOK).decode(&p)
		for _, u := range p.Users {
			if !strings.HasPrefix(u.Email, "p") {
				t.Errorf("email_prefix=P returned %s", u.Email)
			}
			seen[u.ID]++
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	close(stop)
	wg.Wait()
	for id, c := range seen {
		if c > 1 {
			t.Errorf("user %s returned %d times", id, c)
		}
	}
	for id := range existing {
		if seen[id] != 1 {
			t.Errorf("user %s, there before the walk, was skipped", id)
		}
	}
	a.call("GET", "/admin/v1/users?cursor=!!!", nil).wantError(http.StatusBadRequest, "invalid_request")
	a.call("GET", "/admin/v1/users?cursor=bm9wZQ", nil).wantError(http.StatusBadRequest, "invalid_request")
	a.call("GET", "/admin/v1/users?limit=201", nil).wantError(http.StatusBadRequest, "invalid_request")
}

// testAdminRefusals: the admin API refuses no token, a user's token (even
// one whose client has the admin scope), a client token without the admin
// scope, a token for another audience, and the token of a client since
// deleted or stripped of the admin scope.
func testAdminRefusals(t *testing.T, env *testenv.Env) {
	a := newAdminAPI(t, env)
	a.do("GET", "/admin/v1/users", "", nil).wantError(http.StatusUnauthorized, "invalid_token")
	a.do("GET", "/admin/v1/users", "garbage", nil).wantError(http.StatusUnauthorized, "invalid_token")

	// A user's token through a public client that holds the admin scope.
	if _, _, err := env.Sessions.CreateClient(ctx, session.Client{ID: "console", Audiences: []string{testenv.Issuer}, AccessTTL: time.Minute,
		Grants: []string{"password", "refresh_token"}, Scopes: []string{"admin"}}, false, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	console, _ := env.Sessions.Client(ctx, "console")
	env.Login(t, "eve@example.com")
	user, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "eve@example.com", Password: testenv.Password, Client: console})
	if err != nil || user.Scope != "admin" {
		t.Fatalf("user login with admin scope: %v (%q)", err, user.Scope)
	}
	r := a.do("GET", "/admin/v1/users", user.AccessToken, nil)
	r.wantError(http.StatusForbidden, "insufficient_scope")
	if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
	}

	clientToken := func(id string, c session.Client) string {
		t.Helper()
		c.ID, c.AccessTTL, c.Grants = id, time.Minute, []string{"client_credentials"}
		_, secret, err := env.Sessions.CreateClient(ctx, c, true, session.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		a.form("/oauth/token", url.Values{"grant_type": {"client_credentials"}}, id, secret).want(http.StatusOK).decode(&tok)
		return tok.AccessToken
	}
	noAdmin := clientToken("reporter", session.Client{Audiences: []string{testenv.Issuer}, Scopes: []string{"reports"}})
	a.do("GET", "/admin/v1/users", noAdmin, nil).wantError(http.StatusForbidden, "insufficient_scope")
	otherAud := clientToken("api-admin", session.Client{Audiences: []string{"https://api.example"}, Scopes: []string{"admin"}})
	a.do("GET", "/admin/v1/users", otherAud, nil).wantError(http.StatusUnauthorized, "invalid_token")
	// The admin client narrowed to another of its audiences (RFC 8707).
	narrowed := clientToken("multi", session.Client{Audiences: []string{testenv.Issuer, "https://api.example"}, Scopes: []string{"admin"}})
	a.do("GET", "/admin/v1/users", narrowed, nil).want(http.StatusOK)
	_, secret, _ := env.Sessions.CreateClient(ctx, session.Client{ID: "multi2", Audiences: []string{testenv.Issuer, "https://api.example"}, AccessTTL: time.Minute,
		Grants: []string{"client_credentials"}, Scopes: []string{"admin"}}, true, session.Meta{})
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	a.form("/oauth/token", url.Values{"grant_type": {"client_credentials"}, "resource": {"https://api.example"}}, "multi2", secret).want(http.StatusOK).decode(&tok)
	a.do("GET", "/admin/v1/users", tok.AccessToken, nil).wantError(http.StatusUnauthorized, "invalid_token")

	// Losing the admin scope, or the client itself, ends access at once on
	// this node.
	scopes := []string{"reports"}
	if _, err := env.Sessions.UpdateClient(ctx, "multi", session.ClientUpdate{Scopes: &scopes}, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	a.do("GET", "/admin/v1/users", narrowed, nil).wantError(http.StatusForbidden, "insufficient_scope")
	a.call("GET", "/admin/v1/users", nil).want(http.StatusOK)
	if _, err := env.Sessions.DeleteClient(ctx, "backend", session.Meta{}); err != nil {
		t.Fatal(err)
	}
	a.call("GET", "/admin/v1/users", nil).wantError(http.StatusUnauthorized, "invalid_token")
}
