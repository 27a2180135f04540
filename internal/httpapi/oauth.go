package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
)

// oauthRequest decodes the form body of an OAuth endpoint and
// authenticates its client.
func (s *Server) oauthRequest(w http.ResponseWriter, r *http.Request) (url.Values, session.Client, error) {
	form, err := decodeForm(w, r)
	if err != nil {
		return nil, session.Client{}, err
	}
	c, err := s.authenticateClient(r.Context(), r, form)
	return form, c, err
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
	if grant != session.GrantPassword && grant != session.GrantRefresh && grant != session.GrantClientCredentials {
		return apiError(http.StatusBadRequest, CodeUnsupportedGrantType, "supported grant types: password, refresh_token, client_credentials")
	}
	if grant == session.GrantClientCredentials && !c.Confidential() {
		// RFC 6749 section 4.4: confidential clients only.
		return apiError(http.StatusBadRequest, CodeUnauthorizedClient, "client_credentials is for confidential clients, which authenticate with a secret")
	}
	if !c.Allows(grant) {
		return apiError(http.StatusBadRequest, CodeUnauthorizedClient, "client may not use grant type "+strconv.Quote(grant))
	}
	res, err := resource(form)
	if err != nil {
		return err
	}
	// RFC 9449 section 5: a proof binds the tokens to its key.
	proof, err := s.dpopProof(w, r)
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
			DeviceToken: dt, DPoPJKT: proof.JKT})
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
		// A verified DPoP proof's iat (RFC 9449 section 4.2) says when the
		// client made the request.
		sent, serr := requestSentAt(form, proof.IssuedAt)
		if serr != nil {
			return serr
		}
		// A request its client has abandoned (Gone) or sent more than G ago
		// (SentAt) never abandons a token or revokes the session: the
		// service checks both just before the commit.
		t, err = s.sessions.Refresh(r.Context(), session.RefreshRequest{Token: rt, Client: c, Scope: form.Get("scope"), Resource: res, Meta: m,
			SentAt: sent, Gone: clientGone(r), DPoPJKT: proof.JKT})
		if c.Web && session.IsInvalidGrant(err) && !errors.Is(err, session.ErrDPoPMismatch) {
			// The session is over: drop the dead cookie. Not for a refresh
			// without the session's DPoP key: the session lives, and a
			// script in the page must not log its owner out that way.
			s.clearRefreshCookie(w, c.ID)
		}
	case session.GrantClientCredentials:
		// RFC 6749 section 4.4.3: no refresh token; the client simply
		// asks again with its credentials.
		t, err = s.sessions.ClientToken(r.Context(), session.ClientTokenRequest{Client: c, Scope: form.Get("scope"), Resource: res, Meta: s.meta(r)})
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
// The session service decides the rest (session.Service.RevokeToken):
// unknown or invalid tokens get 200, as section 2.2 requires; a token of
// another client is refused.
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
	req := session.RevokeTokenRequest{Token: tok, Client: c, Meta: s.meta(r)}
	// Inspect, not Verify: a DPoP-bound access token is revoked like any
	// other (RFC 7009 asks for no proof; the client authenticated itself
	// above). Verify refuses bound tokens presented without a proof, and
	// the token would then be taken for a refresh token, and "revoked"
	// with a 200 while its session went on.
	v, err := s.verifier(s.cfg.AccountAudience)
	if err != nil {
		return err
	}
	claims, err := v.Inspect(r.Context(), tok)
	switch {
	case err == nil:
		req.Access = &session.AccessToken{UserID: claims.Subject, SessionID: claims.SessionID, ClientID: claims.ClientID}
	case !errors.Is(err, bearer.ErrInvalidToken):
		return err
	}
	if err := s.sessions.RevokeToken(r.Context(), req); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
