package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
)

// The account lifecycle (docs/design.md "Account lifecycle (email)").
// Answers that could tell whether an address is registered (forgot
// password, enumeration-safe signup) are decided before any lookup: the
// request is checked and throttled, the work runs detached, and the answer
// is the same 202 for every address.

// acceptedBody is the one body of a 202: it says nothing about the address.
var acceptedBody = map[string]string{"status": "accepted", "message": "if the address can receive it, a message is on its way"}

func accepted(w http.ResponseWriter) error { return writeJSON(w, http.StatusAccepted, acceptedBody) }

// detachDelay is how long detached work waits for the answer to leave.
const detachDelay = 5 * time.Millisecond

// detach runs fn after the response, off the request, with a bounded
// lifetime; Close waits for it. Its error is logged, never answered.
func (s *Server) detach(r *http.Request, what string, fn func(context.Context) error) {
	id := requestIDFrom(r.Context())
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		// Start once the answer is out: work that runs only for a
		// registered address must not slow that address's own answer.
		time.Sleep(detachDelay)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := fn(ctx); err != nil {
			s.log.Error(what+" failed", "request_id", id, "err", err)
		}
	}()
}

// emailThrottle applies the per-IP and per-address limit of requests that
// send mail or use a link.
func (s *Server) emailThrottle(ctx context.Context, address, ip string) error {
	if s.cfg.Throttle == nil {
		return nil
	}
	d, err := s.cfg.Throttle.Email(ctx, address, ip)
	if err != nil {
		return err
	}
	if !d.Allowed {
		s.log.Info("email request throttled", "request_id", requestIDFrom(ctx), "limit", d.Reason, "retry_after", d.RetryAfter.String())
		return tooMany(d)
	}
	return nil
}

type meJSON struct {
	ID            string          `json:"id"`
	Email         string          `json:"email"`
	EmailVerified bool            `json:"email_verified"`
	CreatedAt     string          `json:"created_at"`
	UserMetadata  json.RawMessage `json:"user_metadata"`
}

func me(u session.User) meJSON {
	meta := json.RawMessage(u.Metadata)
	if len(meta) == 0 {
		meta = json.RawMessage("{}")
	}
	return meJSON{ID: u.ID, Email: u.Email, EmailVerified: !u.EmailVerifiedAt.IsZero(), CreatedAt: u.CreatedAt.Format(time.RFC3339), UserMetadata: meta}
}

// GET /v1/me
func (s *Server) getMe(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := s.sessions.Me(r.Context(), c.claims.Subject)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, me(u))
}

// PATCH /v1/me {"user_metadata": {…}}
func (s *Server) patchMe(w http.ResponseWriter, r *http.Request, c *caller) error {
	req, err := decodeJSON[struct {
		UserMetadata json.RawMessage `json:"user_metadata"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.UserMetadata == nil {
		return badRequest("user_metadata is required")
	}
	u, err := s.sessions.UpdateMetadata(r.Context(), c.claims.Subject, req.UserMetadata, s.meta(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, me(u))
}

// DELETE /v1/me {"password"}
func (s *Server) deleteMe(w http.ResponseWriter, r *http.Request, c *caller) error {
	req, err := decodeJSON[struct {
		Password string `json:"password"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.Password == "" {
		return badRequest("password is required")
	}
	err = s.sensitive(r, c, "account deletion", func(m session.Meta) error {
		return s.sessions.DeleteAccount(r.Context(), c.claims.Subject, req.Password, m)
	})
	if err != nil {
		return err
	}
	s.clearWebCookie(r.Context(), w, c.claims.ClientID) // every session is gone
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sensitive runs a change that needs the current password under the login
// throttle, keyed on the account's email (docs/design.md "Audiences"); a
// wrong password is 403 invalid_credentials, as for a password change.
func (s *Server) sensitive(r *http.Request, c *caller, what string, run func(session.Meta) error) error {
	u, err := s.sessions.User(r.Context(), c.claims.Subject)
	if err != nil {
		return err
	}
	m := s.meta(r)
	err = s.passwordCheck(r.Context(), what, Observer.PasswordChangeThrottled, u.Email, m.IP, "", func() error { return run(m) })
	if errors.Is(err, session.ErrBadCredential) {
		return apiError(http.StatusForbidden, CodeInvalidCredentials, "password is wrong")
	}
	return err
}

// POST /v1/email/verify/request
func (s *Server) requestVerification(w http.ResponseWriter, r *http.Request, c *caller) error {
	u, err := s.sessions.User(r.Context(), c.claims.Subject)
	if err != nil {
		return err
	}
	m := s.meta(r)
	if err := s.emailThrottle(r.Context(), u.Email, m.IP); err != nil {
		return err
	}
	if err := s.sessions.RequestVerification(r.Context(), u.ID, m); err != nil {
		return err
	}
	return accepted(w)
}

// POST /v1/email/verify {"token"}
func (s *Server) verifyEmail(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeJSON[struct {
		Token string `json:"token"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.Token == "" {
		return badRequest("token is required")
	}
	m := s.meta(r)
	if err := s.emailThrottle(r.Context(), "", m.IP); err != nil {
		return err
	}
	if err := s.sessions.VerifyEmail(r.Context(), req.Token, m); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// POST /v1/email/change {"new_email", "password"}
func (s *Server) changeEmail(w http.ResponseWriter, r *http.Request, c *caller) error {
	req, err := decodeJSON[struct {
		NewEmail string `json:"new_email"`
		Password string `json:"password"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.NewEmail == "" || req.Password == "" {
		return badRequest("new_email and password are required")
	}
	addr, err := session.NormalizeEmail(req.NewEmail)
	if err != nil {
		return err
	}
	if err := s.emailThrottle(r.Context(), addr, s.meta(r).IP); err != nil {
		return err
	}
	err = s.sensitive(r, c, "email change", func(m session.Meta) error {
		return s.sessions.ChangeEmail(r.Context(), c.claims.Subject, c.claims.SessionID, addr, req.Password, m)
	})
	if err != nil {
		return err
	}
	return accepted(w)
}

// POST /v1/password/forgot {"email"}
func (s *Server) forgotPassword(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeJSON[struct {
		Email string `json:"email"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.Email == "" {
		return badRequest("email is required")
	}
	// Only the form of the address is judged here, never its account.
	addr, err := session.NormalizeEmail(req.Email)
	if err != nil {
		return err
	}
	if !s.sessions.MailEnabled() {
		return session.ErrMailUnavailable
	}
	m := s.meta(r)
	if err := s.emailThrottle(r.Context(), addr, m.IP); err != nil {
		return err
	}
	s.detach(r, "forgot password", func(ctx context.Context) error { return s.sessions.ForgotPassword(ctx, addr, m) })
	return accepted(w)
}

// POST /v1/password/reset {"token", "new_password", "login", "client_id"}
func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeJSON[struct {
		Token       string `json:"token"`
		NewPassword string `json:"new_password"`
		Login       bool   `json:"login"`
		ClientID    string `json:"client_id"`
	}](w, r)
	if err != nil {
		return err
	}
	if req.Token == "" || req.NewPassword == "" {
		return badRequest("token and new_password are required")
	}
	m := s.meta(r)
	if err := s.emailThrottle(r.Context(), "", m.IP); err != nil {
		return err
	}
	rr := session.ResetRequest{Token: req.Token, NewPassword: req.NewPassword, Login: req.Login, Meta: m}
	if req.Login {
		if rr.Client, err = s.clientByID(r.Context(), req.ClientID); err != nil {
			return err
		}
		if !rr.Client.Allows(session.GrantPassword) {
			return apiError(http.StatusBadRequest, CodeUnauthorizedClient, "client may not log users in with a password")
		}
		// A web client logs in in cookie mode here too (cookie.go).
		if err := checkOrigin(r, rr.Client); err != nil {
			return err
		}
	}
	t, err := s.sessions.ResetPassword(r.Context(), rr)
	if err != nil {
		return err
	}
	if !req.Login {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if rr.Client.Web {
		s.setSessionCookies(w, rr.Client, &t)
	}
	return writeTokens(w, http.StatusOK, t, "")
}

// signupQuietly is POST /v1/signup with --signup-enumeration-safe: after
// the checks that depend on the request alone, 202 for every address; the
// account (or the notice to an existing one) is made off the request.
func (s *Server) signupQuietly(w http.ResponseWriter, r *http.Request, req session.SignupRequest) error {
	addr, err := session.NormalizeEmail(req.Email)
	if err != nil {
		return err
	}
	if err := password.CheckPolicy(req.Password, addr); err != nil {
		return err
	}
	if err := s.emailThrottle(r.Context(), addr, req.Meta.IP); err != nil {
		return err
	}
	req.Email, req.Login = addr, false
	s.detach(r, "signup", func(ctx context.Context) error { return s.sessions.SignupQuietly(ctx, req) })
	return accepted(w)
}
