package httpapi

import (
	"errors"
	"net/http"
)

// POST /oauth/introspect (RFC 7662), for confidential clients. An access
// token Latch issued, whose session is still active and whose aud names the
// calling client's audience, is active; anything else (invalid, expired,
// revoked, another resource server's token, refresh tokens) answers
// {"active": false}, as section 2.2 allows.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) error {
	form, err := decodeForm(w, r)
	if err != nil {
		return err
	}
	c, err := s.confidentialClient(r.Context(), r, form)
	if err != nil {
		return err
	}
	tok := form.Get("token")
	if tok == "" {
		return badRequest("token is required")
	}
	// The token must be for one of the caller's audiences, by the checks
	// its resource servers run (RFC 7662 section 4: a resource server
	// learns nothing of another's tokens), and its session active.
	who, err := s.authenticate(r.Context(), tok, c.Audiences...)
	if errors.Is(err, errAccessToken) {
		return writeJSON(w, http.StatusOK, map[string]bool{"active": false})
	}
	if err != nil {
		return err // storage trouble: 503, not a verdict on the token
	}
	claims := &who.claims
	resp := map[string]any{
		"active": true, "sub": claims.Subject, "client_id": claims.ClientID, "sid": claims.SessionID,
		"aud": claims.Audience, "iss": claims.Issuer, "token_type": "Bearer", "jti": claims.ID,
	}
	if claims.Scope != "" {
		resp["scope"] = claims.Scope
	}
	if claims.Confirmation != nil {
		// RFC 9449 section 6.2: the key a bound token is for, so that a
		// resource server checking proofs knows it; its token_type is DPoP.
		resp["cnf"] = claims.Confirmation
		resp["token_type"] = "DPoP"
	}
	if claims.Expiry != nil {
		resp["exp"] = claims.Expiry.Time().Unix()
	}
	if claims.IssuedAt != nil {
		resp["iat"] = claims.IssuedAt.Time().Unix()
	}
	if claims.NotBefore != nil {
		resp["nbf"] = claims.NotBefore.Time().Unix()
	}
	return writeJSON(w, http.StatusOK, resp)
}
