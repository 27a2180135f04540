package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
)

// authenticateClient identifies the client of an OAuth request (RFC 6749
// section 2.3.1): HTTP Basic or client_secret in the body for confidential
// clients, client_id alone for public ones. A request naming no client at
// all is taken as the built-in first-party client.
func (s *Server) authenticateClient(ctx context.Context, w http.ResponseWriter, r *http.Request, form url.Values) (session.Client, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: credentials are form-urlencoded first.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return session.Client{}, s.invalidClient(w, basic)
		}
		if form.Get("client_secret") != "" {
			return session.Client{}, badRequest("use one client authentication method, not two")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return session.Client{}, badRequest("client_id does not match the authenticated client")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id == "" {
		id = s.cfg.DefaultClientID
	}
	c, err := s.sessions.Client(ctx, id)
	if errors.Is(err, session.ErrNotFound) {
		return c, s.invalidClient(w, basic)
	}
	if err != nil {
		return c, err
	}
	switch {
	case c.Confidential() && !c.CheckSecret(secret):
		return c, s.invalidClient(w, basic)
	case !c.Confidential() && secret != "":
		return c, s.invalidClient(w, basic)
	}
	return c, nil
}

// oauthRequest decodes the form body of an OAuth endpoint and
// authenticates its client.
func (s *Server) oauthRequest(w http.ResponseWriter, r *http.Request) (url.Values, session.Client, error) {
	form, err := decodeForm(w, r)
	if err != nil {
		return nil, session.Client{}, err
	}
	c, err := s.authenticateClient(r.Context(), w, r, form)
	return form, c, err
}

func (s *Server) invalidClient(w http.ResponseWriter, basic bool) error {
	if basic {
		// RFC 6749 section 5.2: 401 with the scheme the client used.
		w.Header().Set("WWW-Authenticate", `Basic realm="latch"`)
	}
	return apiError(http.StatusUnauthorized, CodeInvalidClient, "client authentication failed")
}

// POST /oauth/token (RFC 6749 sections 4.3 and 6)
func (s *Server) token(w http.ResponseWriter, r *http.Request) error {
	form, c, err := s.oauthRequest(w, r)
	if err != nil {
		return err
	}
	if err := checkOrigin(r, c); err != nil {
		return err
	}
	grant := form.Get("grant_type")
	if grant == "" {
		return badRequest("grant_type is required")
	}
	if grant != session.GrantPassword && grant != session.GrantRefresh {
		return apiError(http.StatusBadRequest, CodeUnsupportedGrantType, "supported grant types: password, refresh_token")
	}
	if !c.Allows(grant) {
		return apiError(http.StatusBadRequest, CodeUnauthorizedClient, "client may not use grant type "+strconv.Quote(grant))
	}
	res, err := resource(form)
	if err != nil {
		return err
	}
	var t session.Tokens
	switch grant {
	case session.GrantPassword:
		user, pw := form.Get("username"), form.Get("password")
		if user == "" || pw == "" {
			return badRequest("username and password are required")
		}
		dt := form.Get("device_token")
		if c.Web && dt == "" {
			dt = s.readCookie(r, deviceCookie, c.ID)
		}
		t, err = s.passwordLogin(r.Context(), session.LoginRequest{Email: user, Password: pw, Client: c, Scope: form.Get("scope"), Resource: res, Meta: s.meta(r),
			DeviceToken: dt})
		if errors.Is(err, session.ErrBadCredential) {
			// RFC 6749 section 5.2: wrong resource-owner credentials are
			// invalid_grant on the token endpoint.
			return &Error{Status: http.StatusBadRequest, Code: CodeInvalidGrant, Message: "invalid username or password", Err: err}
		}
	case session.GrantRefresh:
		rt := form.Get("refresh_token")
		switch {
		case c.Web && rt != "":
			// A page never holds a web client's refresh token; one sent in
			// the body was taken from somewhere it should not have been.
			return badRequest("a web client's refresh token travels in its cookie; send no refresh_token parameter")
		case c.Web:
			if rt = s.readCookie(r, refreshCookie, c.ID); rt == "" {
				return &Error{Status: http.StatusBadRequest, Code: CodeInvalidGrant, Message: "no refresh cookie: sign in again"}
			}
		case rt == "":
			return badRequest("refresh_token is required")
		}
		m := s.meta(r)
		if s.cfg.Throttle != nil {
			if err := s.allow(r.Context(), s.cfg.Throttle.Refresh, m.IP, "refresh"); err != nil {
				return err
			}
		}
		t, err = s.sessions.Refresh(r.Context(), session.RefreshRequest{Token: rt, Client: c, Scope: form.Get("scope"), Resource: res, Meta: m})
		if c.Web && session.IsInvalidGrant(err) {
			s.clearRefreshCookie(w, c.ID) // the session is over: drop the dead cookie
		}
	}
	if err != nil {
		return err
	}
	if c.Web {
		s.setSessionCookies(w, c, &t)
	}
	return writeTokens(w, http.StatusOK, t, form.Get("scope"))
}

// resource reads the RFC 8707 "resource" parameter. Latch narrows a
// token to one audience, so it takes one value (decodeForm refuses a
// repeated parameter); the session package checks that it is one of the
// client's audiences, compared exactly as aud is (an audience need not be
// a URI here).
func resource(form url.Values) (string, error) {
	vals, ok := form["resource"]
	if ok && vals[0] == "" {
		// RFC 8707 section 2: invalid_target.
		return "", apiError(http.StatusBadRequest, CodeInvalidTarget, "resource must name one of the client's audiences")
	}
	return form.Get("resource"), nil
}

// POST /oauth/revoke (RFC 7009). A refresh token ends its session; so does
// an access token for the account audience, which Latch verifies itself.
// Unknown or invalid tokens
// get 200, as section 2.2 requires.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	form, c, err := s.oauthRequest(w, r)
	if err != nil {
		return err
	}
	if err := checkOrigin(r, c); err != nil {
		return err
	}
	tok := form.Get("token")
	if c.Web {
		// A web client signs out by revoking its cookie's token (or an
		// access token of the session); either way the cookie goes.
		s.clearRefreshCookie(w, c.ID)
		if tok == "" {
			tok = s.readCookie(r, refreshCookie, c.ID)
			if tok == "" {
				w.WriteHeader(http.StatusOK) // nothing to revoke (RFC 7009 section 2.2)
				return nil
			}
		}
	}
	if tok == "" {
		return badRequest("token is required")
	}
	// token_type_hint is only a hint (section 2.1); the token itself tells.
	// An access token ends its session only if it may manage the account:
	// one for the account audience (docs/design.md "Audiences"); any other
	// string is tried as a refresh token.
	claims, verr := s.verify(r.Context(), s.cfg.AccountAudience, tok)
	if verr != nil && !errors.Is(verr, bearer.ErrInvalidToken) {
		return verr
	}
	if verr == nil {
		if claims.ClientID != c.ID {
			err = session.ErrWrongClient
		} else if err = s.sessions.RevokeSession(r.Context(), claims.Subject, claims.SessionID, s.meta(r)); errors.Is(err, session.ErrNotFound) {
			err = nil
		}
	} else {
		err = s.sessions.RevokeRefreshToken(r.Context(), tok, c, s.meta(r))
	}
	if errors.Is(err, session.ErrWrongClient) {
		// RFC 7009 section 2.1: refused, with an RFC 6749 section 5.2 error.
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: "the token was not issued to this client", Err: err}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
