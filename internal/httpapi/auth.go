package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
)

// The one way in: every endpoint that acts for a user or a client
// authenticates here, and only here.
//
//   - A user, by access token: [Server.authed] wraps an account endpoint
//     (the token from the Authorization header, for the account audience);
//     any other use (introspection, a new endpoint that takes the token
//     elsewhere or for other audiences) calls [Server.authenticate].
//   - A client: [Server.authenticateClient] (OAuth endpoints, RFC 6749
//     section 2.3.1), [Server.confidentialClient] (introspection, the
//     feed), [Server.clientByID] (first-party JSON endpoints).
//
// Verdicts are errors that toError maps (errNoAccessToken, errAccessToken,
// the *Error of invalidClient); anything else they return is the server's
// trouble (storage: 503), never a verdict on the credential.

// caller is an authenticated user: the verified access token and its
// session, active when it was checked.
type caller struct {
	claims  bearer.Claims
	session session.Session
}

// verifier returns the verifier of Latch's access tokens for audience aud:
// bearer's, the one resource servers run, with the keys from the issuer's
// memory, so Latch and its resource servers apply one set of rules
// (docs/design.md "Audiences"). One is built per audience and kept.
func (s *Server) verifier(aud string) (*bearer.Verifier, error) {
	if v, ok := s.verifiers.Load(aud); ok {
		return v.(*bearer.Verifier), nil
	}
	// No I/O: with keys in memory and no feed, New only checks the config.
	// Clients address Latch by its issuer URL: that and the path are a
	// proof's htu (RFC 9449 section 4.3).
	cfg := s.issuer.VerifierConfig(aud)
	cfg.DPoP, cfg.ExternalURL = s.dpop, s.cfg.Issuer
	v, err := bearer.New(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("httpapi: verifier for %q: %w", aud, err)
	}
	got, _ := s.verifiers.LoadOrStore(aud, v)
	return got.(*bearer.Verifier), nil
}

// verify checks an access token presented as a bearer token for audience
// aud, by signature and claims only (no session lookup): a DPoP-bound
// token is refused (RFC 9449 section 7.1). A refused token wraps
// bearer.ErrInvalidToken; any other error is the server's.
func (s *Server) verify(ctx context.Context, aud, tok string) (*bearer.Claims, error) {
	v, err := s.verifier(aud)
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, tok)
}

// authenticate checks an access token whatever its DPoP binding, for
// introspection (RFC 7662), which reports cnf to the resource server that
// then checks the proof (RFC 9449 section 6.2): bearer's checks for one of
// auds (the first that accepts it), then that its session is still
// active; Latch has the database at hand, so its own endpoints refuse a
// revoked session's token at once. A refused token is errAccessToken,
// wrapping why; any other error is storage trouble. Requests that present
// a token for themselves go through authed, which checks its binding.
func (s *Server) authenticate(ctx context.Context, tok string, auds ...string) (*caller, error) {
	if tok == "" {
		return nil, errNoAccessToken
	}
	var claims *bearer.Claims
	var err error
	for _, aud := range auds {
		v, verr := s.verifier(aud)
		if verr != nil {
			return nil, verr
		}
		if claims, err = v.Inspect(ctx, tok); err == nil || !errors.Is(err, bearer.ErrInvalidToken) {
			break
		}
	}
	if err == nil && claims == nil {
		err = bearer.ErrInvalidToken // no audience to check against
	}
	return s.active(ctx, claims, err)
}

// active completes a token check: the session of verified claims must
// still be active.
func (s *Server) active(ctx context.Context, claims *bearer.Claims, err error) (*caller, error) {
	var ses session.Session
	if err == nil {
		ses, err = s.sessions.ActiveSession(ctx, claims.Subject, claims.SessionID)
	}
	switch {
	case err == nil:
		return &caller{claims: *claims, session: ses}, nil
	case errors.Is(err, bearer.ErrInvalidToken), errors.Is(err, session.ErrNotFound),
		errors.Is(err, session.ErrRevoked), errors.Is(err, session.ErrExpired):
		return nil, fmt.Errorf("%w: %w", errAccessToken, err)
	}
	return nil, err
}

// authed wraps an account endpoint: the caller is authenticated by the
// access token of the Authorization header (RFC 6750 section 2.1, header
// only) for the account audience, before fn runs: "Bearer", or "DPoP"
// with its proof for this request (RFC 9449 section 7; bearer's
// VerifyRequest, the check resource servers run). A new account endpoint
// is routed as h(s.authed(fn)) and reads the user from c.claims.Subject
// and the session from c.claims.SessionID (or c.session).
func (s *Server) authed(fn func(http.ResponseWriter, *http.Request, *caller) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := s.verifier(s.cfg.AccountAudience)
		if err != nil {
			return err
		}
		claims, err := v.VerifyRequest(r)
		if errors.Is(err, bearer.ErrMissingToken) {
			// RFC 6750 section 3.1: no error code when credentials are
			// absent; both schemes are offered (RFC 9449 section 7.1).
			v.SetChallenge(w.Header(), err)
			return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Message: "an access token is required", Err: errNoAccessToken}
		}
		c, err := s.active(r.Context(), claims, err)
		if errors.Is(err, errAccessToken) {
			// The challenge names the scheme and the error (RFC 6750
			// section 3.1, RFC 9449 section 7.1), and for use_dpop_nonce
			// carries a fresh DPoP-Nonce.
			code := v.SetChallenge(w.Header(), err)
			msg := invalidTokenMessage
			switch code {
			case CodeInvalidDPoPProof:
				msg = "the DPoP proof is invalid"
			case CodeUseDPoPNonce:
				msg = "the DPoP proof must carry the nonce of the DPoP-Nonce header"
			}
			return &Error{Status: http.StatusUnauthorized, Code: code, Message: msg, Err: err}
		}
		if err != nil {
			return err
		}
		return fn(w, r, c)
	}
}

// authenticateClient identifies the client of an OAuth request (RFC 6749
// section 2.3.1): HTTP Basic or client_secret in the body for confidential
// clients, client_id alone for public ones. A request naming no client at
// all is taken as the built-in first-party client.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (session.Client, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: credentials are form-urlencoded first.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return session.Client{}, invalidClient(basic)
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
		return c, invalidClient(basic)
	}
	if err != nil {
		return c, err
	}
	switch {
	case c.Confidential() && !c.CheckSecret(secret):
		return c, invalidClient(basic)
	case !c.Confidential() && secret != "":
		return c, invalidClient(basic)
	}
	return c, nil
}

// invalidClient is the refusal of a client's authentication; with Basic,
// RFC 6749 section 5.2 asks for 401 with the scheme the client used.
func invalidClient(basic bool) *Error {
	e := apiError(http.StatusUnauthorized, CodeInvalidClient, "client authentication failed")
	if basic {
		e.Challenge = basicChallenge
	}
	return e
}

// confidentialClient authenticates a confidential client with HTTP Basic
// (RFC 6749 section 2.3.1). Public clients and bad secrets are
// invalid_client, with a Basic challenge (RFC 7235 section 4.1: a 401
// carries one; these endpoints take one scheme, Basic, also when the
// request sent none).
func (s *Server) confidentialClient(ctx context.Context, r *http.Request, form url.Values) (session.Client, error) {
	c, err := s.authenticateClient(ctx, r, form)
	if err == nil && !c.Confidential() {
		err = invalidClient(true)
	}
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized && e.Challenge == "" {
		e.Challenge = basicChallenge
	}
	return c, err
}

// clientByID loads a client named in a JSON request (first-party endpoints).
func (s *Server) clientByID(ctx context.Context, id string) (session.Client, error) {
	if id == "" {
		id = s.cfg.DefaultClientID
	}
	c, err := s.sessions.Client(ctx, id)
	if errors.Is(err, session.ErrNotFound) {
		return c, apiError(http.StatusUnauthorized, CodeInvalidClient, "unknown client")
	}
	if err == nil && c.Confidential() {
		// Confidential clients authenticate at /oauth/token.
		return c, apiError(http.StatusUnauthorized, CodeInvalidClient, "confidential clients must use /oauth/token with client authentication")
	}
	return c, err
}
