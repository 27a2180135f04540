package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

func TestSignup(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, testenv.Options{})
	signupOnly(t, srv, "taken@example.com", testPassword)
	signupOnly(t, srv, "josé@example.com", testPassword)
	signupOnly(t, srv, "user@xn--bcher-kva.de", testPassword)

	tests := []struct {
		name       string
		body       any
		wantStatus int
		wantCode   string // error code; "" for success
		wantTokens bool
	}{
		{"login by default", map[string]any{"email": "new@example.com", "password": testPassword}, http.StatusCreated, "", true},
		{"login true", map[string]any{"email": "new2@example.com", "password": testPassword, "login": true}, http.StatusCreated, "", true},
		{"login false", map[string]any{"email": "nologin@example.com", "password": testPassword, "login": false}, http.StatusCreated, "", false},
		{"duplicate email", map[string]any{"email": "taken@example.com", "password": testPassword}, http.StatusConflict, "email_taken", false},
		{"duplicate email other case", map[string]any{"email": " Taken@Example.COM", "password": testPassword, "login": false}, http.StatusConflict, "email_taken", false},
		{"short password", map[string]any{"email": "short@example.com", "password": "abc12"}, http.StatusBadRequest, "weak_password", false},
		{"common password", map[string]any{"email": "common@example.com", "password": "password123"}, http.StatusBadRequest, "weak_password", false},
		{"password is the email's local part", map[string]any{"email": "averylongname@example.com", "password": "AveryLongName"}, http.StatusBadRequest, "weak_password", false},
		{"no at sign", map[string]any{"email": "not-an-email", "password": testPassword}, http.StatusBadRequest, "invalid_email", false},
		{"display name", map[string]any{"email": "Bob <bob@example.com>", "password": testPassword}, http.StatusBadRequest, "invalid_email", false},
		{"no dot in domain", map[string]any{"email": "bob@localhost", "password": testPassword}, http.StatusBadRequest, "invalid_email", false},
		{"missing password", map[string]any{"email": "nopw@example.com"}, http.StatusBadRequest, "invalid_request", false},
		{"zero-width space", map[string]any{"email": "ta​ken@example.com", "password": testPassword}, http.StatusBadRequest, "invalid_email", false},
		{"bidi override", map[string]any{"email": "bob‮@example.com", "password": testPassword}, http.StatusBadRequest, "invalid_email", false},
		{"duplicate email in NFD", map[string]any{"email": "josé@example.com", "password": testPassword}, http.StatusConflict, "email_taken", false},
		{"duplicate email with Unicode domain", map[string]any{"email": "user@bücher.de", "password": testPassword}, http.StatusConflict, "email_taken", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := postJSON(t, srv, "/v1/signup", tt.body, "")
			switch {
			case tt.wantCode != "":
				wantError(t, r, tt.wantStatus, tt.wantCode)
			case tt.wantTokens:
				tr := checkTokenResponse(t, r, tt.wantStatus)
				if tr.ExpiresIn != 900 {
					t.Errorf("expires_in = %d, want 900", tr.ExpiresIn)
				}
				// The tokens work: the new session is listed.
				if got := listSessions(t, srv, tr.AccessToken); len(got) != 1 || got[0].ID != tr.SessionID {
					t.Errorf("sessions = %+v, want the one session %s", got, tr.SessionID)
				}
			default:
				if r.Status != tt.wantStatus {
					t.Fatalf("status = %d, want %d (body %s)", r.Status, tt.wantStatus, r.Body)
				}
				var u map[string]any
				r.decode(t, &u)
				if id, _ := u["id"].(string); id == "" {
					t.Errorf("user id missing: %s", r.Body)
				}
				if got, want := u["email"], tt.body.(map[string]any)["email"]; got != want {
					t.Errorf("email = %v, want %v", got, want)
				}
				for _, k := range []string{"access_token", "refresh_token", "session_id"} {
					if _, ok := u[k]; ok {
						t.Errorf("signup with login false answered %q: %s", k, r.Body)
					}
				}
				// The user exists and can log in.
				login(t, srv, tt.body.(map[string]any)["email"].(string), testPassword, testUA)
			}
		})
	}
}

// TestRejectedRequestWritesNothing checks that a refused signup leaves no
// user behind.
func TestRejectedRequestWritesNothing(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	tests := []struct {
		name, email, body string
		wantStatus        int
		wantCode          string
	}{
		{"weak password", "weak@example.com", `{"email":"weak@example.com","password":"password123"}`, http.StatusBadRequest, "weak_password"},
		{"short password", "short@example.com", `{"email":"short@example.com","password":"1234567"}`, http.StatusBadRequest, "weak_password"},
		{"unknown field", "field@example.com", `{"email":"field@example.com","password":"correct horse battery staple","admin":true}`, http.StatusBadRequest, "invalid_request"},
		{"trailing data", "trail@example.com", `{"email":"trail@example.com","password":"correct horse battery staple"}{}`, http.StatusBadRequest, "invalid_request"},
		{"unknown client", "client@example.com", `{"email":"client@example.com","password":"correct horse battery staple","client_id":"nope"}`, http.StatusUnauthorized, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, postJSON(t, srv, "/v1/signup", tt.body, ""), tt.wantStatus, tt.wantCode)
			if _, err := env.Sessions.UserByEmail(context.Background(), tt.email); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("UserByEmail(%s) after refused signup: err = %v, want %v", tt.email, err, session.ErrNotFound)
			}
			// The address is still free.
			signupOnly(t, srv, tt.email, testPassword)
		})
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	signupOnly(t, srv, "user@example.com", testPassword)
	signupOnly(t, srv, "disabled@example.com", testPassword)
	ctx := context.Background()
	u, err := env.Sessions.UserByEmail(ctx, "disabled@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Sessions.DisableUser(ctx, u.ID, session.Meta{}); err != nil {
		t.Fatal(err)
	}

	t.Run("success", func(t *testing.T) {
		tr := checkTokenResponse(t, postJSON(t, srv, "/v1/login", credentials{"user@example.com", testPassword}, ""), http.StatusOK)
		if got := listSessions(t, srv, tr.AccessToken); len(got) != 1 || got[0].ID != tr.SessionID {
			t.Errorf("sessions = %+v, want the one session %s", got, tr.SessionID)
		}
	})
	t.Run("email is case-insensitive", func(t *testing.T) {
		checkTokenResponse(t, postJSON(t, srv, "/v1/login", credentials{"  USER@Example.com ", testPassword}, ""), http.StatusOK)
	})

	failures := []struct {
		name  string
		creds credentials
	}{
		{"wrong password", credentials{"user@example.com", "not the right password"}},
		{"unknown email", credentials{"nobody@example.com", testPassword}},
		{"malformed email", credentials{"nobody", testPassword}},
		{"disabled user", credentials{"disabled@example.com", testPassword}},
	}
	var first []byte
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			r := postJSON(t, srv, "/v1/login", tt.creds, "")
			wantError(t, r, http.StatusUnauthorized, "invalid_credentials")
			if first == nil {
				first = r.Body
			} else if !bytes.Equal(r.Body, first) {
				t.Errorf("body = %s, want the same as for %q: %s", r.Body, failures[0].name, first)
			}
		})
	}
}

// TestRefreshRules drives the rotation table of docs/design.md over HTTP with the
// fake clock (G = 30s, L = 24h).
func TestRefreshRules(t *testing.T) {
	t.Parallel()
	type want int
	const (
		fresh     want = iota // a refresh token never seen before
		identical             // the token issued at step sameAs
		rejected              // invalid_grant
	)
	type step struct {
		advance time.Duration
		present int // index into the refresh tokens received, 0 = login's
		want    want
		sameAs  int
	}
	tests := []struct {
		name       string
		steps      []step
		wantActive bool // the newest access token still works at the end
	}{
		{"current token rotates", []step{
			{present: 0, want: fresh},
			{advance: time.Minute, present: 1, want: fresh},
			{advance: time.Minute, present: 2, want: fresh},
		}, true},
		{"duplicate within grace gets the identical token", []step{
			{present: 0, want: fresh},
			{advance: 10 * time.Second, present: 0, want: identical, sameAs: 1},
			{present: 0, want: identical, sameAs: 1},
			{present: 1, want: fresh},
		}, true},
		{"grace restarts at each hand-out", []step{
			{present: 0, want: fresh},
			{advance: 25 * time.Second, present: 0, want: identical, sameAs: 1},
			{advance: 25 * time.Second, present: 0, want: identical, sameAs: 1},
			{advance: 25 * time.Second, present: 0, want: identical, sameAs: 1},
			{present: 1, want: fresh},
		}, true},
		{"parent after grace within lost window gets a new successor", []step{
			{present: 0, want: fresh},
			{advance: time.Hour, present: 0, want: fresh},
			{present: 2, want: fresh},
		}, true},
		{"abandoned token after a lost response is reuse", []step{
			{present: 0, want: fresh},
			{advance: time.Hour, present: 0, want: fresh},
			{present: 1, want: rejected},
			{present: 2, want: rejected},
		}, false},
		{"grandparent is reuse and revokes the session", []step{
			{present: 0, want: fresh},
			{present: 1, want: fresh},
			{present: 0, want: rejected},
			{present: 2, want: rejected},
		}, false},
		{"parent after the lost window is reuse", []step{
			{present: 0, want: fresh},
			{advance: 24*time.Hour + time.Second, present: 0, want: rejected},
			{present: 1, want: rejected},
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, srv := newServer(t, testenv.Options{})
			tr := signup(t, srv, "user@example.com")
			rts := []string{tr.RefreshToken}
			newestAT := tr.AccessToken
			for i, s := range tt.steps {
				env.Clock.Advance(s.advance)
				r := refresh(t, srv, rts[s.present])
				if s.want == rejected {
					wantError(t, r, http.StatusBadRequest, "invalid_grant")
					if t.Failed() {
						t.Fatalf("step %d", i)
					}
					continue
				}
				got := checkTokenResponse(t, r, http.StatusOK)
				if got.SessionID != tr.SessionID {
					t.Errorf("step %d: session_id = %s, want %s", i, got.SessionID, tr.SessionID)
				}
				if got.AccessToken == newestAT {
					t.Errorf("step %d: access token was not renewed", i)
				}
				switch s.want {
				case fresh:
					if slices.Contains(rts, got.RefreshToken) {
						t.Fatalf("step %d: refresh token %d was handed out again, want a new one", i, slices.Index(rts, got.RefreshToken))
					}
				case identical:
					if got.RefreshToken != rts[s.sameAs] {
						t.Fatalf("step %d: refresh token differs from token %d, want the identical token", i, s.sameAs)
					}
				}
				rts = append(rts, got.RefreshToken)
				newestAT = got.AccessToken
			}
			r := get(t, srv, "/v1/sessions", newestAT)
			if tt.wantActive {
				if r.Status != http.StatusOK {
					t.Errorf("GET /v1/sessions with the newest access token: %s, want 200", r)
				}
			} else {
				wantError(t, r, http.StatusUnauthorized, "invalid_token")
			}
		})
	}
}

// TestAncestorProbeIsReuse: an ancestor refresh token sent with a scope
// wider than the grant used to answer invalid_scope while the session lived
// and invalid_grant once it was revoked, and one sent by another client was
// refused without revoking anything: probes that skipped reuse detection.
// Any presentation of an ancestor is reuse: invalid_grant, and the session
// ends.
func TestAncestorProbeIsReuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		form url.Values
	}{
		{"wider scope", url.Values{"client_id": {"app"}, "scope": {"admin"}}},
		{"another client", url.Values{"client_id": {"notes"}}},
		{"another client and a wider scope", url.Values{"client_id": {"notes"}, "scope": {"admin"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, srv := newServer(t, testenv.Options{})
			if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "notes", Audiences: []string{"notes"},
				AccessTTL: time.Minute, Grants: []string{session.GrantPassword, session.GrantRefresh}, Scopes: []string{"read"}}); err != nil {
				t.Fatal(err)
			}
			tr := signup(t, srv, "user@example.com")
			r1 := mustRefresh(t, srv, tr.RefreshToken)
			r2 := mustRefresh(t, srv, r1.RefreshToken)
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
			for k, v := range tt.form {
				form[k] = v
			}
			wantError(t, postForm(t, srv, "/oauth/token", form), http.StatusBadRequest, "invalid_grant")
			if t.Failed() {
				t.FailNow()
			}
			wantRefreshRejected(t, srv, r2.RefreshToken)
			wantError(t, get(t, srv, "/v1/sessions", r2.AccessToken), http.StatusUnauthorized, "invalid_token")
		})
	}
}

// TestGraceBoundedOverHTTP reruns the reported attack against the API: with
// G 5 s and L 12 s, a thief replays the parent every 2 s for 30 s from
// another device. It used to get 15 fresh access tokens with nothing
// audited. Now the answers stop at L after the victim's rotation, each is
// audited as suspicious, and the next replay is reuse.
func TestGraceBoundedOverHTTP(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{Grace: 5 * time.Second, LostWindow: 12 * time.Second})
	tr := signup(t, srv, "user@example.com")
	victim := mustRefresh(t, srv, tr.RefreshToken) // rotated with testUA
	thief := func() reply {
		return send(t, srv, req{method: http.MethodPost, path: "/oauth/token", contentType: "application/x-www-form-urlencoded",
			body:   url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"app"}}.Encode(),
			header: map[string]string{"User-Agent": "thief/0.1"}})
	}
	answered := 0
	for range 15 {
		env.Clock.Advance(2 * time.Second)
		r := thief()
		if r.Status != http.StatusOK {
			wantError(t, r, http.StatusBadRequest, "invalid_grant")
			break
		}
		if got := checkTokenResponse(t, r, http.StatusOK); got.RefreshToken != victim.RefreshToken {
			t.Fatal("a grace answer was not the identical current refresh token")
		}
		answered++
	}
	if answered != 6 {
		t.Fatalf("the thief got %d answers in 30 s, want 6 (every 2 s up to L = 12 s)", answered)
	}
	wantRefreshRejected(t, srv, victim.RefreshToken)
	count := func(typ string) int {
		evs, err := env.Store.AuditEvents(context.Background(), audit.Query{Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.UserAgent != "thief/0.1" {
				t.Errorf("%s event with user agent %q, want the thief's", typ, e.UserAgent)
			}
		}
		return len(evs)
	}
	if s, r := count(audit.RefreshSuspiciousGrace), count(audit.RefreshReuse); s != 6 || r != 1 {
		t.Fatalf("audit: %d suspicious grace and %d reuse events, want 6 and 1", s, r)
	}
}

func TestLogoutScopes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string // "" sends no body
		wantRevoked int
		wantCaller  bool // the caller's session survives
		wantOthers  bool // the other two sessions survive
	}{
		{"default ends only the current session", "", 1, false, true},
		{"current", `{"scope":"current"}`, 1, false, true},
		{"others", `{"scope":"others"}`, 2, true, false},
		{"all", `{"scope":"all"}`, 3, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, srv := newServer(t, testenv.Options{})
			signupOnly(t, srv, "user@example.com", testPassword)
			// A bystander's session is never touched.
			bystander := signup(t, srv, "bystander@example.com")
			var ses []tokenResponse
			for _, ua := range []string{"phone", "laptop", "cli"} {
				ses = append(ses, login(t, srv, "user@example.com", testPassword, ua))
			}
			caller, others := ses[0], ses[1:]

			rq := req{method: http.MethodPost, path: "/v1/logout", bearer: caller.AccessToken}
			if tt.body != "" {
				rq.body, rq.contentType = tt.body, "application/json"
			}
			r := send(t, srv, rq)
			if r.Status != http.StatusOK {
				t.Fatalf("logout: %s", r)
			}
			var got struct {
				Revoked int `json:"revoked"`
			}
			r.decode(t, &got)
			if got.Revoked != tt.wantRevoked {
				t.Errorf("revoked = %d, want %d", got.Revoked, tt.wantRevoked)
			}

			if tt.wantCaller {
				list := listSessions(t, srv, caller.AccessToken)
				if len(list) != 1 || list[0].ID != caller.SessionID {
					t.Errorf("sessions after logout = %+v, want only the caller's %s", list, caller.SessionID)
				}
				mustRefresh(t, srv, caller.RefreshToken)
			} else {
				wantError(t, get(t, srv, "/v1/sessions", caller.AccessToken), http.StatusUnauthorized, "invalid_token")
				wantRefreshRejected(t, srv, caller.RefreshToken)
			}
			for i, o := range others {
				if tt.wantOthers {
					mustRefresh(t, srv, o.RefreshToken)
				} else {
					wantRefreshRejected(t, srv, o.RefreshToken)
				}
				if t.Failed() {
					t.Fatalf("other session %d", i)
				}
			}
			mustRefresh(t, srv, bystander.RefreshToken)
		})
	}
}

func TestLogoutBadScope(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, testenv.Options{})
	tr := signup(t, srv, "user@example.com")
	wantError(t, postJSON(t, srv, "/v1/logout", `{"scope":"everything"}`, tr.AccessToken), http.StatusBadRequest, "invalid_request")
	// Nothing was revoked.
	mustRefresh(t, srv, tr.RefreshToken)
}

func TestListSessions(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	signupOnly(t, srv, "user@example.com", testPassword)
	other := signup(t, srv, "other@example.com")
	uas := []string{"phone/1.0", "laptop/2.0", "cli/3.0"}
	ids := map[string]string{} // session id -> user agent
	var toks []tokenResponse
	for _, ua := range uas {
		tr := login(t, srv, "user@example.com", testPassword, ua)
		ids[tr.SessionID] = ua
		toks = append(toks, tr)
	}
	caller := toks[1]

	list := listSessions(t, srv, caller.AccessToken)
	if len(list) != len(uas) {
		t.Fatalf("len(sessions) = %d, want %d: %+v", len(list), len(uas), list)
	}
	current := 0
	for _, s := range list {
		ua, ok := ids[s.ID]
		if !ok {
			t.Errorf("listed session %s is not one of the user's (other user's is %s)", s.ID, other.SessionID)
			continue
		}
		if s.Current {
			current++
			if s.ID != caller.SessionID {
				t.Errorf("session %s is marked current, want %s", s.ID, caller.SessionID)
			}
		}
		if s.UserAgent != ua {
			t.Errorf("session %s user_agent = %q, want %q", s.ID, s.UserAgent, ua)
		}
		if s.IP != "127.0.0.1" {
			t.Errorf("session %s ip = %q, want %q", s.ID, s.IP, "127.0.0.1")
		}
		if s.ClientID != "app" {
			t.Errorf("session %s client_id = %q, want %q", s.ID, s.ClientID, "app")
		}
		for name, v := range map[string]string{"created_at": s.CreatedAt, "last_used_at": s.LastUsedAt} {
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				t.Errorf("session %s %s = %q: %v", s.ID, name, v, err)
			}
		}
	}
	if current != 1 {
		t.Errorf("%d sessions marked current, want 1", current)
	}

	// A refresh records the time, user agent and address of the last use.
	env.Clock.Advance(time.Minute)
	r := send(t, srv, req{method: http.MethodPost, path: "/oauth/token", contentType: "application/x-www-form-urlencoded",
		body:   url.Values{"grant_type": {"refresh_token"}, "refresh_token": {toks[2].RefreshToken}, "client_id": {"app"}}.Encode(),
		header: map[string]string{"User-Agent": "cli/4.0"}})
	checkTokenResponse(t, r, http.StatusOK)
	for _, s := range listSessions(t, srv, caller.AccessToken) {
		if s.ID != toks[2].SessionID {
			continue
		}
		created, _ := time.Parse(time.RFC3339, s.CreatedAt)
		used, _ := time.Parse(time.RFC3339, s.LastUsedAt)
		if used.Sub(created) != time.Minute {
			t.Errorf("after refresh: created_at %s, last_used_at %s, want one minute apart", s.CreatedAt, s.LastUsedAt)
		}
		if s.UserAgent != "cli/4.0" {
			t.Errorf("after refresh: user_agent = %q, want %q", s.UserAgent, "cli/4.0")
		}
	}

	// A revoked session leaves the list.
	r = send(t, srv, req{method: http.MethodDelete, path: "/v1/sessions/" + toks[0].SessionID, bearer: caller.AccessToken})
	if r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %s", r)
	}
	list = listSessions(t, srv, caller.AccessToken)
	if len(list) != 2 || slices.ContainsFunc(list, func(s sessionEntry) bool { return s.ID == toks[0].SessionID }) {
		t.Errorf("sessions after DELETE = %+v, want two without %s", list, toks[0].SessionID)
	}
}

func TestDeleteSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		target     func(own, other tokenResponse) string
		wantStatus int
		ownDies    bool // the caller's second session ends
	}{
		{"own remote session", func(own, _ tokenResponse) string { return own.SessionID }, http.StatusNoContent, true},
		{"another user's session", func(_, other tokenResponse) string { return other.SessionID }, http.StatusNotFound, false},
		{"unknown session", func(_, _ tokenResponse) string { return "AAAAAAAAAAAAAAAAAAAAAA" }, http.StatusNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, srv := newServer(t, testenv.Options{})
			caller := signup(t, srv, "user@example.com")
			own := login(t, srv, "user@example.com", testPassword, "tablet")
			other := signup(t, srv, "other@example.com")

			r := send(t, srv, req{method: http.MethodDelete, path: "/v1/sessions/" + tt.target(own, other), bearer: caller.AccessToken})
			if tt.wantStatus == http.StatusNoContent {
				if r.Status != http.StatusNoContent || len(r.Body) != 0 {
					t.Errorf("DELETE = %d %q, want 204 with no body", r.Status, r.Body)
				}
			} else {
				wantError(t, r, tt.wantStatus, "not_found")
			}
			if tt.ownDies {
				wantRefreshRejected(t, srv, own.RefreshToken)
				wantError(t, get(t, srv, "/v1/sessions", own.AccessToken), http.StatusUnauthorized, "invalid_token")
			} else {
				mustRefresh(t, srv, own.RefreshToken)
			}
			// The caller and the other user are unaffected.
			mustRefresh(t, srv, caller.RefreshToken)
			mustRefresh(t, srv, other.RefreshToken)
		})
	}
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	const newPassword = "a brand new passphrase"
	_, srv := newServer(t, testenv.Options{})
	caller := signup(t, srv, "user@example.com")
	other := login(t, srv, "user@example.com", testPassword, "other device")

	refused := []struct {
		name       string
		body       map[string]string
		wantStatus int
		wantCode   string
	}{
		{"wrong current password", map[string]string{"current_password": "not my password", "new_password": newPassword}, http.StatusForbidden, "invalid_credentials"},
		{"weak new password", map[string]string{"current_password": testPassword, "new_password": "password123"}, http.StatusBadRequest, "weak_password"},
		// The policy is checked first: weak_password says nothing about
		// the current password.
		{"weak new password, wrong current password", map[string]string{"current_password": "not my password", "new_password": "password123"}, http.StatusBadRequest, "weak_password"},
		{"short new password, wrong current password", map[string]string{"current_password": "not my password", "new_password": "short"}, http.StatusBadRequest, "weak_password"},
		{"missing new password", map[string]string{"current_password": testPassword}, http.StatusBadRequest, "invalid_request"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, postJSON(t, srv, "/v1/password", tt.body, caller.AccessToken), tt.wantStatus, tt.wantCode)
			// Nothing changed: the old password still logs in, the other
			// session still works.
			login(t, srv, "user@example.com", testPassword, testUA)
			other = mustRefresh(t, srv, other.RefreshToken)
		})
	}

	t.Run("success", func(t *testing.T) {
		r := postJSON(t, srv, "/v1/password", map[string]string{"current_password": testPassword, "new_password": newPassword}, caller.AccessToken)
		if r.Status != http.StatusNoContent {
			t.Fatalf("POST /v1/password = %s, want 204", r)
		}
		// The calling session stays.
		next := mustRefresh(t, srv, caller.RefreshToken)
		if list := listSessions(t, srv, next.AccessToken); len(list) != 1 || list[0].ID != caller.SessionID {
			t.Errorf("sessions after password change = %+v, want only the caller's %s", list, caller.SessionID)
		}
		// The other sessions end.
		wantRefreshRejected(t, srv, other.RefreshToken)
		wantError(t, get(t, srv, "/v1/sessions", other.AccessToken), http.StatusUnauthorized, "invalid_token")
		// Only the new password logs in.
		wantError(t, postJSON(t, srv, "/v1/login", credentials{"user@example.com", testPassword}, ""), http.StatusUnauthorized, "invalid_credentials")
		login(t, srv, "user@example.com", newPassword, testUA)
	})
}

// TestRevoke covers RFC 7009 token revocation.
func TestRevoke(t *testing.T) {
	t.Parallel()
	type tokens struct{ victim, bystander tokenResponse }
	tests := []struct {
		name       string
		token      func(env *testenv.Env, tk tokens) string
		victimDies bool
	}{
		{"refresh token", func(_ *testenv.Env, tk tokens) string { return tk.victim.RefreshToken }, true},
		{"access token", func(_ *testenv.Env, tk tokens) string { return tk.victim.AccessToken }, true},
		{"garbage", func(_ *testenv.Env, _ tokens) string { return "garbage" }, false},
		{"well-formed refresh token of no session", func(env *testenv.Env, _ tokens) string {
			return env.Codec.Encode([16]byte{1, 2, 3}, 1)
		}, false},
		{"forged refresh token", func(_ *testenv.Env, tk tokens) string {
			b := []byte(tk.victim.RefreshToken)
			b[len(b)/2] ^= 1
			return string(b)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, srv := newServer(t, testenv.Options{})
			tk := tokens{victim: signup(t, srv, "user@example.com")}
			tk.bystander = login(t, srv, "user@example.com", testPassword, "other")

			r := postForm(t, srv, "/oauth/revoke", url.Values{"token": {tt.token(env, tk)}, "client_id": {"app"}})
			if r.Status != http.StatusOK {
				t.Fatalf("revoke = %s, want 200", r)
			}
			if tt.victimDies {
				wantError(t, get(t, srv, "/v1/sessions", tk.victim.AccessToken), http.StatusUnauthorized, "invalid_token")
				wantRefreshRejected(t, srv, tk.victim.RefreshToken)
			} else {
				mustRefresh(t, srv, tk.victim.RefreshToken)
			}
			mustRefresh(t, srv, tk.bystander.RefreshToken)
		})
	}
}
