package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
)

// AdminScope is the scope a client's own token needs for /admin/v1/.
const AdminScope = "admin"

// Page sizes of the admin lists.
const (
	defaultPage = 50
	maxPage     = 200
)

func (s *Server) adminRoutes() {
	a := func(fn func(http.ResponseWriter, *http.Request, *adminCaller) error) http.Handler {
		return s.handle(s.admin(fn))
	}
	s.route("GET /admin/v1/users", a(s.adminListUsers))
	s.route("POST /admin/v1/users", a(s.adminCreateUser))
	s.route("GET /admin/v1/users/{id}", a(s.adminGetUser))
	s.route("PATCH /admin/v1/users/{id}", a(s.adminUpdateUser))
	s.route("DELETE /admin/v1/users/{id}", a(s.adminDeleteUser))
	s.route("GET /admin/v1/users/{id}/sessions", a(s.adminUserSessions))
	s.route("DELETE /admin/v1/users/{id}/sessions", a(s.adminRevokeUserSessions))
	s.route("DELETE /admin/v1/sessions/{sid}", a(s.adminRevokeSession))
	s.route("GET /admin/v1/clients", a(s.adminListClients))
	s.route("POST /admin/v1/clients", a(s.adminCreateClient))
	s.route("GET /admin/v1/clients/{id}", a(s.adminGetClient))
	s.route("PATCH /admin/v1/clients/{id}", a(s.adminUpdateClient))
	s.route("DELETE /admin/v1/clients/{id}", a(s.adminDeleteClient))
	s.route("POST /admin/v1/clients/{id}/secret", a(s.adminRotateSecret))
	s.route("GET /admin/v1/audit", a(s.adminAudit))
}

// adminCaller is the admin client behind a request.
type adminCaller struct {
	claims bearer.Claims
	client session.Client
}

// meta is the request's audit metadata, naming the admin client as the
// actor of every change.
func (s *Server) adminMeta(r *http.Request, c *adminCaller) session.Meta {
	m := s.meta(r)
	m.Actor = c.client.ID
	return m
}

// admin admits a client's own access token (client_credentials, RFC 6749
// section 4.4) for the account audience with the admin scope, checked by
// bearer like every token (docs/design.md "Admin API and claims"). A
// user's token is refused whatever its scope: the admin API acts for a
// backend, never for a person holding a session. The client is read again
// (this node at once, others by NOTIFY or within session.ClientCacheTTL): a deleted
// client, or one that lost the admin scope, is refused before its tokens
// expire.
func (s *Server) admin(fn func(http.ResponseWriter, *http.Request, *adminCaller) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok, err := bearer.TokenFromHeader(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="latch-admin"`)
			return apiError(http.StatusUnauthorized, CodeInvalidToken, "an access token is required")
		}
		v, err := s.adminVerifier()
		if err != nil {
			return err
		}
		claims, err := v.Verify(r.Context(), tok)
		var client session.Client
		if err == nil && claims.IsClient() {
			client, err = s.sessions.Client(r.Context(), claims.ClientID)
			if errors.Is(err, session.ErrNotFound) {
				err = fmt.Errorf("%w: the client no longer exists", bearer.ErrInvalidToken)
			}
		}
		if err != nil {
			if !errors.Is(err, bearer.ErrInvalidToken) {
				return err // storage trouble: 503, not a verdict on the token
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="latch-admin", error="invalid_token", error_description="the access token is invalid or expired"`)
			return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Message: "the access token is invalid or expired", Err: err}
		}
		// RFC 6750 section 3.1: a valid token without the rights is 403
		// insufficient_scope.
		forbid := func(msg string) error {
			w.Header().Set("WWW-Authenticate", `Bearer realm="latch-admin", error="insufficient_scope", scope="admin", error_description="`+msg+`"`)
			return apiError(http.StatusForbidden, CodeInsufficientScope, msg)
		}
		switch {
		case !claims.IsClient():
			return forbid("the admin API takes a client's own token (client_credentials grant), not a user's")
		case !claims.HasScope(AdminScope) || !slices.Contains(client.Scopes, AdminScope) || !client.Confidential():
			return forbid("the token lacks the admin scope")
		}
		return fn(w, r, &adminCaller{claims: *claims, client: client})
	}
}

// adminVerifier is bearer's verifier for the account audience that also
// accepts a client's own tokens (they have no session: bearer.Config
// AcceptClientTokens).
func (s *Server) adminVerifier() (*bearer.Verifier, error) {
	const key = "\x00admin"
	if v, ok := s.verifiers.Load(key); ok {
		return v.(*bearer.Verifier), nil
	}
	cfg := s.issuer.VerifierConfig(s.cfg.AccountAudience)
	cfg.AcceptClientTokens = true
	v, err := bearer.New(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("httpapi: admin verifier: %w", err)
	}
	got, _ := s.verifiers.LoadOrStore(key, v)
	return got.(*bearer.Verifier), nil
}

// ---- users ----

type adminUserJSON struct {
	ID          string          `json:"id"`
	Email       string          `json:"email"`
	CreatedAt   string          `json:"created_at"`
	Verified    bool            `json:"email_verified"`
	Disabled    bool            `json:"disabled"`
	DisabledAt  *string         `json:"disabled_at"`
	HasPassword bool            `json:"has_password"`
	AppMetadata json.RawMessage `json:"app_metadata"`
}

func adminUser(u session.User) adminUserJSON {
	out := adminUserJSON{ID: u.ID, Email: u.Email, CreatedAt: rfc3339(u.CreatedAt), Verified: !u.EmailVerifiedAt.IsZero(), Disabled: !u.DisabledAt.IsZero(),
		HasPassword: u.PasswordHash != "", AppMetadata: json.RawMessage("{}")}
	if !u.DisabledAt.IsZero() {
		t := rfc3339(u.DisabledAt)
		out.DisabledAt = &t
	}
	if u.AppMetadata != "" {
		out.AppMetadata = json.RawMessage(u.AppMetadata)
	}
	return out
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// pageLimit reads ?limit= (default 50, at most 200).
func pageLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return defaultPage, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPage {
		return 0, badRequest(fmt.Sprintf("limit must be an integer from 1 to %d", maxPage))
	}
	return n, nil
}

// The users cursor is opaque to clients: base64url of "micros.id", the
// last user of the page (a keyset position on immutable columns).
func userCursor(c *session.UserCursor) *string {
	if c == nil {
		return nil
	}
	s := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID))
	return &s
}

func parseUserCursor(v string) (*session.UserCursor, error) {
	if v == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	at, id, ok := strings.Cut(string(b), ".")
	us, perr := strconv.ParseInt(at, 10, 64)
	if err != nil || !ok || perr != nil || id == "" {
		return nil, badRequest("cursor is not one this API returned")
	}
	return &session.UserCursor{CreatedAt: time.UnixMicro(us).UTC(), ID: id}, nil
}

// GET /admin/v1/users?email_prefix=&cursor=&limit=
func (s *Server) adminListUsers(w http.ResponseWriter, r *http.Request, _ *adminCaller) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	after, err := parseUserCursor(q.Get("cursor"))
	if err != nil {
		return err
	}
	users, next, err := s.sessions.ListUsers(r.Context(), session.UserQuery{EmailPrefix: q.Get("email_prefix"), After: after, Limit: limit})
	if err != nil {
		return err
	}
	out := make([]adminUserJSON, 0, len(users))
	for _, u := range users {
		out = append(out, adminUser(u))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"users": out, "next_cursor": userCursor(next)})
}

// POST /admin/v1/users {"email", "password"?, "app_metadata"?}
func (s *Server) adminCreateUser(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	req, err := decodeJSON[struct {
		Email       string          `json:"email"`
		Password    string          `json:"password"`
		AppMetadata json.RawMessage `json:"app_metadata"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.Email == "" {
		return badRequest("email is required")
	}
	u, err := s.sessions.CreateUser(r.Context(), session.CreateUserRequest{Email: req.Email, Password: req.Password, AppMetadata: req.AppMetadata}, s.adminMeta(r, c))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, adminUser(u))
}

// adminFindUser reads {id}: a user id, or an email address (it holds an
// "@", which an id never does).
func (s *Server) adminFindUser(r *http.Request) (session.User, error) {
	id := r.PathValue("id")
	var (
		u   session.User
		err error
	)
	if strings.Contains(id, "@") {
		u, err = s.sessions.UserByEmail(r.Context(), id)
		if errors.Is(err, session.ErrInvalidEmail) {
			err = session.ErrNotFound
		}
	} else {
		u, err = s.sessions.User(r.Context(), id)
	}
	if errors.Is(err, session.ErrNotFound) {
		return u, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such user", Err: err}
	}
	return u, err
}

// GET /admin/v1/users/{id} (id or email)
func (s *Server) adminGetUser(w http.ResponseWriter, r *http.Request, _ *adminCaller) error {
	u, err := s.adminFindUser(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, adminUser(u))
}

// PATCH /admin/v1/users/{id} {"app_metadata"?, "disabled"?}
func (s *Server) adminUpdateUser(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	req, err := decodeJSON[struct {
		AppMetadata json.RawMessage `json:"app_metadata"`
		Disabled    *bool           `json:"disabled"`
	}](w, r)
	if err != nil {
		return err
	}
	u, err := s.adminFindUser(r)
	if err != nil {
		return err
	}
	u, err = s.sessions.UpdateUser(r.Context(), u.ID, session.UserUpdate{AppMetadata: req.AppMetadata, Disabled: req.Disabled}, s.adminMeta(r, c))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, adminUser(u))
}

// DELETE /admin/v1/users/{id}
func (s *Server) adminDeleteUser(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	u, err := s.adminFindUser(r)
	if err != nil {
		return err
	}
	if err := s.sessions.DeleteUser(r.Context(), u.ID, s.adminMeta(r, c)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type adminSessionJSON struct {
	ID            string  `json:"id"`
	ClientID      string  `json:"client_id"`
	Scope         string  `json:"scope"`
	CreatedAt     string  `json:"created_at"`
	LastUsedAt    string  `json:"last_used_at"`
	UserAgent     string  `json:"user_agent"`
	IP            string  `json:"ip"`
	IdleExpiresAt string  `json:"idle_expires_at"`
	ExpiresAt     *string `json:"expires_at"`
}

// GET /admin/v1/users/{id}/sessions: the user's active sessions.
func (s *Server) adminUserSessions(w http.ResponseWriter, r *http.Request, _ *adminCaller) error {
	u, err := s.adminFindUser(r)
	if err != nil {
		return err
	}
	list, err := s.sessions.Sessions(r.Context(), u.ID)
	if err != nil {
		return err
	}
	out := make([]adminSessionJSON, 0, len(list))
	for _, ses := range list {
		j := adminSessionJSON{ID: ses.ID, ClientID: ses.ClientID, Scope: ses.Scope, CreatedAt: rfc3339(ses.CreatedAt), LastUsedAt: rfc3339(ses.LastUsedAt),
			UserAgent: ses.UserAgent, IP: ses.IP, IdleExpiresAt: rfc3339(ses.IdleExpiresAt)}
		if !ses.ExpiresAt.IsZero() {
			t := rfc3339(ses.ExpiresAt)
			j.ExpiresAt = &t
		}
		out = append(out, j)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// DELETE /admin/v1/users/{id}/sessions: revoke them all (the user may log
// in again).
func (s *Server) adminRevokeUserSessions(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	u, err := s.adminFindUser(r)
	if err != nil {
		return err
	}
	ids, err := s.sessions.RevokeUserSessions(r.Context(), u.ID, s.adminMeta(r, c))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": len(ids)})
}

// DELETE /admin/v1/sessions/{sid}
func (s *Server) adminRevokeSession(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	err := s.sessions.RevokeSession(r.Context(), "", r.PathValue("sid"), s.adminMeta(r, c))
	if errors.Is(err, session.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such session", Err: err}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- clients ----

type adminClientJSON struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Confidential bool     `json:"confidential"`
	Audiences    []string `json:"audiences"`
	AccessTTL    int64    `json:"access_ttl"`
	Grants       []string `json:"grants"`
	Scopes       []string `json:"scopes"`
	Claims       []string `json:"claims"`
	Web          bool     `json:"web"`
	Origins      []string `json:"origins"`
	CreatedAt    string   `json:"created_at"`
	// ClientSecret is set once: in the answer that created it.
	ClientSecret string `json:"client_secret,omitempty"`
}

func adminClient(c session.Client) adminClientJSON {
	orEmpty := func(v []string) []string {
		if v == nil {
			return []string{}
		}
		return v
	}
	return adminClientJSON{ID: c.ID, Name: c.Name, Confidential: c.Confidential(), Audiences: orEmpty(c.Audiences),
		AccessTTL: int64(c.AccessTTL / time.Second), Grants: orEmpty(c.Grants), Scopes: orEmpty(c.Scopes), Claims: orEmpty(c.Claims),
		Web: c.Web, Origins: orEmpty(c.Origins), CreatedAt: rfc3339(c.CreatedAt)}
}

// GET /admin/v1/clients
func (s *Server) adminListClients(w http.ResponseWriter, r *http.Request, _ *adminCaller) error {
	list, err := s.sessions.Clients(r.Context())
	if err != nil {
		return err
	}
	out := make([]adminClientJSON, 0, len(list))
	for _, c := range list {
		out = append(out, adminClient(c))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"clients": out})
}

// POST /admin/v1/clients
func (s *Server) adminCreateClient(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	req, err := decodeJSON[struct {
		ID           string    `json:"id"`
		Name         string    `json:"name"`
		Confidential bool      `json:"confidential"`
		Audiences    []string  `json:"audiences"`
		AccessTTL    *int64    `json:"access_ttl"`
		Grants       *[]string `json:"grants"`
		Scopes       []string  `json:"scopes"`
		Claims       []string  `json:"claims"`
		Web          bool      `json:"web"`
		Origins      []string  `json:"origins"`
	}](w, r)
	if err != nil {
		return err
	}
	ttl := 15 * time.Minute
	if req.AccessTTL != nil {
		ttl = time.Duration(*req.AccessTTL) * time.Second
	}
	// As latch clients create: a public first-party app logs users in;
	// a confidential client (resource server, backend) gets no grant
	// unless asked for (docs/security.md LOGIN-13).
	grants := []string{}
	if !req.Confidential {
		grants = []string{session.GrantPassword, session.GrantRefresh}
	}
	if req.Grants != nil {
		grants = *req.Grants
	}
	cl, secret, err := s.sessions.CreateClient(r.Context(), session.Client{ID: req.ID, Name: req.Name, Audiences: req.Audiences, AccessTTL: ttl,
		Grants: grants, Scopes: req.Scopes, Claims: req.Claims, Web: req.Web, Origins: req.Origins}, req.Confidential, s.adminMeta(r, c))
	if err != nil {
		return err
	}
	out := adminClient(cl)
	out.ClientSecret = secret
	return writeJSON(w, http.StatusCreated, out)
}

func (s *Server) adminLoadClient(r *http.Request) (session.Client, error) {
	// Straight from storage, not the token endpoint's cache: an admin
	// reads what is registered now.
	c, err := s.sessions.StoredClient(r.Context(), r.PathValue("id"))
	if errors.Is(err, session.ErrNotFound) {
		return c, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such client", Err: err}
	}
	return c, err
}

// GET /admin/v1/clients/{id}
func (s *Server) adminGetClient(w http.ResponseWriter, r *http.Request, _ *adminCaller) error {
	c, err := s.adminLoadClient(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, adminClient(c))
}

// PATCH /admin/v1/clients/{id}
func (s *Server) adminUpdateClient(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	req, err := decodeJSON[struct {
		Name      *string   `json:"name"`
		Audiences *[]string `json:"audiences"`
		AccessTTL *int64    `json:"access_ttl"`
		Grants    *[]string `json:"grants"`
		Scopes    *[]string `json:"scopes"`
		Claims    *[]string `json:"claims"`
		Origins   *[]string `json:"origins"`
	}](w, r)
	if err != nil {
		return err
	}
	u := session.ClientUpdate{Name: req.Name, Audiences: req.Audiences, Grants: req.Grants, Scopes: req.Scopes, Claims: req.Claims, Origins: req.Origins}
	if req.AccessTTL != nil {
		ttl := time.Duration(*req.AccessTTL) * time.Second
		u.AccessTTL = &ttl
	}
	cl, err := s.sessions.UpdateClient(r.Context(), r.PathValue("id"), u, s.adminMeta(r, c))
	if errors.Is(err, session.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such client", Err: err}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, adminClient(cl))
}

// DELETE /admin/v1/clients/{id}: the client and every session it holds.
func (s *Server) adminDeleteClient(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	id := r.PathValue("id")
	if id == s.cfg.DefaultClientID {
		// latch serve registers it again at every start.
		return badRequest("the built-in client cannot be deleted")
	}
	_, err := s.sessions.DeleteClient(r.Context(), id, s.adminMeta(r, c))
	if errors.Is(err, session.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such client", Err: err}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// POST /admin/v1/clients/{id}/secret: a new secret, shown this once.
func (s *Server) adminRotateSecret(w http.ResponseWriter, r *http.Request, c *adminCaller) error {
	id := r.PathValue("id")
	secret, err := s.sessions.RotateClientSecret(r.Context(), id, s.adminMeta(r, c))
	switch {
	case errors.Is(err, session.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such client", Err: err}
	case errors.Is(err, session.ErrPublicClient):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: "a public client has no secret", Err: err}
	case err != nil:
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"client_id": id, "client_secret": secret})
}

// ---- audit ----

type auditJSON struct {
	ID        string `json:"id"`
	At        string `json:"at"`
	Type      string `json:"type"`
	UserID    string `json:"user_id"`
	SessionID string `json:"session_id"`
	ClientID  string `json:"client_id"`
	Actor     string `json:"actor"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Detail    string `json:"detail"`
}

// GET /admin/v1/audit?since=&until=&type=&user=&cursor=&limit=, newest
// first. The cursor is the id of the last event seen: ids never change,
// so a walk never repeats an event, and events that existed throughout
// are all returned.
func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request, _ *adminCaller) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	aq := audit.Query{Type: q.Get("type"), Limit: limit + 1}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(p.name); v != "" {
			if *p.dst, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return badRequest(p.name + " must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
			}
		}
	}
	if v := q.Get("cursor"); v != "" {
		if aq.BeforeID, err = strconv.ParseInt(v, 10, 64); err != nil || aq.BeforeID <= 0 {
			return badRequest("cursor is not one this API returned")
		}
	}
	if v := q.Get("user"); v != "" {
		aq.UserID = v
		if strings.Contains(v, "@") {
			u, err := s.sessions.UserByEmail(r.Context(), v)
			if err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrInvalidEmail) {
				return err
			}
			aq.UserID = u.ID
			if aq.UserID == "" {
				// An unknown address has no events; no id matches "@".
				aq.UserID = v
			}
		}
	}
	events, err := s.sessions.AuditEvents(r.Context(), aq)
	if err != nil {
		return err
	}
	var next *string
	if len(events) > limit {
		events = events[:limit]
		c := strconv.FormatInt(events[limit-1].ID, 10)
		next = &c
	}
	out := make([]auditJSON, 0, len(events))
	for _, e := range events {
		out = append(out, auditJSON{ID: strconv.FormatInt(e.ID, 10), At: rfc3339(e.At), Type: e.Type, UserID: e.UserID, SessionID: e.SessionID,
			ClientID: e.ClientID, Actor: e.Actor, IP: e.IP, UserAgent: e.UserAgent, Detail: e.Detail})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"events": out, "next_cursor": next})
}
