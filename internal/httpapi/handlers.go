package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/session"
)

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	// Resource narrows the access token's aud to one of the client's
	// audiences (RFC 8707).
	Resource string `json:"resource"`
}

func (c *credentials) check() error {
	if c.Email == "" || c.Password == "" {
		return badRequest("email and password are required")
	}
	return nil
}

// POST /v1/signup
func (s *Server) signup(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeJSON[struct {
		credentials
		Login *bool `json:"login"`
	}](w, r)
	if err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	m := s.meta(r)
	if s.cfg.Throttle != nil {
		if err := s.allow(r.Context(), s.cfg.Throttle.Signup, m.IP, "signup"); err != nil {
			return err
		}
	}
	if s.cfg.SignupEnumerationSafe {
		return s.signupQuietly(w, r, session.SignupRequest{Email: req.Email, Password: req.Password, Meta: m})
	}
	// With verified addresses required, a signup cannot log in yet: it
	// answers the user, and the verification link is on its way.
	login := (req.Login == nil || *req.Login) && !s.sessions.RequireVerified()
	proof, err := s.dpopProof(w, r)
	if err != nil {
		return err
	}
	var c session.Client
	if login {
		if c, err = s.clientByID(r.Context(), req.ClientID); err != nil {
			return err
		}
		if !c.Allows(session.GrantPassword) {
			return apiError(http.StatusBadRequest, CodeUnauthorizedClient, "client may not log users in with a password")
		}
		if err := checkOrigin(r, c); err != nil {
			return err
		}
	}
	u, t, err := s.sessions.Signup(r.Context(), session.SignupRequest{
		Email: req.Email, Password: req.Password, Login: login, Client: c, Scope: req.Scope, Resource: req.Resource, Meta: m, DPoPJKT: proof.JKT})
	if err != nil {
		return err
	}
	if !login {
		return writeJSON(w, http.StatusCreated, userJSON(u))
	}
	if c.Web {
		s.setSessionCookies(w, c, &t)
	}
	return writeTokens(w, http.StatusCreated, t, req.Scope)
}

func userJSON(u session.User) map[string]any {
	return map[string]any{"id": u.ID, "email": u.Email, "created_at": u.CreatedAt.Format(time.RFC3339)}
}

// POST /v1/login
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	// Flat rather than embedding credentials, so that a type error names
	// the field as the client spelled it.
	req, err := decodeJSON[struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
		// Resource narrows the access token's aud to one of the
		// client's audiences (RFC 8707).
		Resource string `json:"resource"`
		// DeviceToken is the device token of an earlier login
		// (docs/design.md "Returning devices").
		DeviceToken string `json:"device_token"`
	}](w, r)
	if err != nil {
		return err
	}
	if err := (&credentials{Email: req.Email, Password: req.Password}).check(); err != nil {
		return err
	}
	c, err := s.clientByID(r.Context(), req.ClientID)
	if err != nil {
		return err
	}
	if !c.Allows(session.GrantPassword) {
		return apiError(http.StatusBadRequest, CodeUnauthorizedClient, "client may not log users in with a password")
	}
	if err := checkOrigin(r, c); err != nil {
		return err
	}
	if c.Web && req.DeviceToken == "" {
		req.DeviceToken = s.readCookie(r, deviceCookie, c.ID)
	}
	proof, err := s.dpopProof(w, r)
	if err != nil {
		return err
	}
	t, err := s.passwordLogin(r.Context(), session.LoginRequest{Email: req.Email, Password: req.Password, Client: c, Scope: req.Scope, Resource: req.Resource, Meta: s.meta(r), DeviceToken: req.DeviceToken, DPoPJKT: proof.JKT})
	if err != nil {
		return err
	}
	if c.Web {
		s.setSessionCookies(w, c, &t)
	}
	return writeTokens(w, http.StatusOK, t, req.Scope)
}

// POST /v1/logout {"scope": "current" | "others" | "all"}
func (s *Server) logout(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		Scope string `json:"scope"`
	}
	if r.ContentLength != 0 {
		var err error
		if req, err = decodeJSON[struct {
			Scope string `json:"scope"`
		}](w, r); err != nil {
			return err
		}
	}
	scope := session.Scope(req.Scope)
	switch scope {
	case "":
		scope = session.ScopeOne
	case session.ScopeOne, session.ScopeOthers, session.ScopeAll:
	default:
		return badRequest(`scope must be "current", "others" or "all"`)
	}
	ids, err := s.sessions.Logout(r.Context(), c.claims.Subject, c.claims.SessionID, scope, s.meta(r))
	if err != nil {
		return err
	}
	if scope != session.ScopeOthers {
		s.clearWebCookie(r.Context(), w, c.claims.ClientID)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": len(ids)})
}

type sessionJSON struct {
	ID         string `json:"id"`
	CreatedAt  string `json:"created_at"`
	LastUsedAt string `json:"last_used_at"`
	UserAgent  string `json:"user_agent"`
	IP         string `json:"ip"`
	ClientID   string `json:"client_id"`
	Current    bool   `json:"current"`
}

// GET /v1/sessions
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request, c *caller) error {
	list, err := s.sessions.Sessions(r.Context(), c.claims.Subject)
	if err != nil {
		return err
	}
	out := make([]sessionJSON, 0, len(list))
	for _, ses := range list {
		out = append(out, sessionJSON{
			ID: ses.ID, CreatedAt: ses.CreatedAt.Format(time.RFC3339), LastUsedAt: ses.LastUsedAt.Format(time.RFC3339),
			UserAgent: ses.UserAgent, IP: ses.IP, ClientID: ses.ClientID, Current: ses.ID == c.claims.SessionID,
		})
	}
	return writeJSON(w, http.StatusOK, out)
}

// DELETE /v1/sessions/{id}
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := s.sessions.RevokeSession(r.Context(), c.claims.Subject, r.PathValue("id"), s.meta(r)); err != nil {
		return err
	}
	if r.PathValue("id") == c.claims.SessionID {
		s.clearWebCookie(r.Context(), w, c.claims.ClientID)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// POST /v1/password {"current_password", "new_password", "device_token"}
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, c *caller) error {
	req, err := decodeJSON[struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
		// DeviceToken, optional, is the device token of the caller's
		// login: as for a login, a valid one takes its device's bucket
		// instead of the account's, which an attacker can keep empty
		// (docs/design.md "Returning devices").
		DeviceToken string `json:"device_token"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.Current == "" || req.New == "" {
		return badRequest("current_password and new_password are required")
	}
	// The throttle is keyed on the account's email, as logins are.
	u, err := s.sessions.User(r.Context(), c.claims.Subject)
	if err != nil {
		return err
	}
	m := s.meta(r)
	device := ""
	if req.DeviceToken == "" {
		// A web client's device token is in its HttpOnly cookie. The
		// request is authenticated by the bearer token; the cookie only
		// picks the throttle bucket.
		if cl, err := s.sessions.Client(r.Context(), c.claims.ClientID); err == nil && cl.Web {
			req.DeviceToken = s.readCookie(r, deviceCookie, cl.ID)
		}
	}
	if s.cfg.Throttle != nil {
		if device, err = s.sessions.Device(r.Context(), u.Email, req.DeviceToken); err != nil {
			return err
		}
	}
	err = s.passwordCheck(r.Context(), "password change", Observer.PasswordChangeThrottled, u.Email, m.IP, device, func() error {
		return s.sessions.ChangePassword(r.Context(), c.claims.Subject, c.claims.SessionID, req.Current, req.New, m)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- discovery and health ----

// GET /.well-known/jwks.json
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) error {
	body, maxAge := s.issuer.JWKS()
	w.Header().Set("Cache-Control", "public, max-age="+itoa(int64(maxAge/time.Second)))
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(body)
	return err
}

// GET /.well-known/oauth-authorization-server (RFC 8414 section 3)
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) error {
	iss := strings.TrimSuffix(s.cfg.Issuer, "/")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	m := map[string]any{
		"issuer":                                        iss,
		"token_endpoint":                                iss + "/oauth/token",
		"revocation_endpoint":                           iss + "/oauth/revoke",
		"introspection_endpoint":                        iss + "/oauth/introspect",
		"jwks_uri":                                      iss + "/.well-known/jwks.json",
		"grant_types_supported":                         []string{session.GrantPassword, session.GrantRefresh, session.GrantClientCredentials},
		"response_types_supported":                      []string{},
		"token_endpoint_auth_methods_supported":         authMethods,
		"revocation_endpoint_auth_methods_supported":    authMethods,
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		// Latch's own endpoints, as extension fields (RFC 8414 section 2:
		// "Additional authorization server metadata parameters MAY also be
		// used"), named latch_* so they cannot meet a registered name;
		// docs/design.md "HTTP API" lists them.
		// RFC 9449 section 5.1: the proof algorithms the token endpoint
		// and the account endpoints accept.
		"dpop_signing_alg_values_supported": s.dpop.Algorithms(),
		"latch_signup_endpoint":             iss + "/v1/signup",
		"latch_login_endpoint":              iss + "/v1/login",
		"latch_logout_endpoint":             iss + "/v1/logout",
		"latch_sessions_endpoint":           iss + "/v1/sessions",
		"latch_password_endpoint":           iss + "/v1/password",
	}
	if s.cfg.Feed != nil {
		// Named only where it is served (otherwise 404).
		m["latch_revocation_feed_endpoint"] = iss + "/v1/revocations"
	}
	return writeJSON(w, http.StatusOK, m)
}

var authMethods = []string{"none", "client_secret_basic", "client_secret_post"}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable, Message: "storage unreachable", Err: err}
	}
	body := map[string]string{"status": "ready"}
	for _, d := range s.cfg.Optional {
		// The error itself goes to the log, not to this unauthenticated
		// endpoint: it may name internal addresses.
		if err := d.Check(ctx); err != nil {
			body[d.Name], body["status"] = "unreachable", "degraded"
			s.log.Warn("readiness: optional dependency unreachable", "dependency", d.Name, "err", err)
		} else {
			body[d.Name] = "ok"
		}
	}
	return writeJSON(w, http.StatusOK, body)
}
