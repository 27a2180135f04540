// Package bearer verifies Latch access tokens for resource servers written
// in Go, with no call to Latch per request.
//
// A [Verifier] is built from the issuer URL (RFC 8414 discovery, then the
// JWKS) with the audience and the algorithms it accepts; there is no
// default that accepts anything. [Verifier.Verify] checks one token;
// [Verifier.Middleware] protects a net/http handler and puts the [Claims]
// in the request context ([FromContext]). The checks follow RFC 9068
// section 4 and RFC 8725.
//
// With [Config.Revocations] set, the verifier subscribes to Latch's
// revocation feed and rejects tokens of sessions revoked since they were
// issued, about a second after the logout, without a lookup per request.
//
// The keys come from the issuer's JWKS by default; [Config.Keys] takes
// them from another [KeySource] instead. Latch itself verifies its own
// tokens that way, with the keys it holds, so its endpoints and its
// resource servers apply the same checks.
//
// DPoP (RFC 9449): [Verifier.VerifyRequest] and the middleware accept
// "Authorization: DPoP" with its proof, and refuse a DPoP-bound token sent
// as "Bearer"; [DPoPChecker] verifies proofs on their own, for an
// authorization server's token endpoint.
//
// The package imports only the standard library and go-jose.
package bearer

import (
	"encoding/json"

	"github.com/go-jose/go-jose/v4/jwt"
)

// Claims are the claims of a Latch access token, an RFC 9068 JWT
// ("JWT Profile for OAuth 2.0 Access Tokens", section 2.2).
type Claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	ID        string           `json:"jti"`
	ClientID  string           `json:"client_id"`
	SessionID string           `json:"sid"`
	Scope     string           `json:"scope,omitempty"`
	// Confirmation is the token's cnf claim (RFC 7800): with JKT set, the
	// token is bound to that DPoP key (RFC 9449 section 6.1) and is
	// accepted only with a proof by it. A token with any cnf is never
	// accepted as a plain bearer token.
	Confirmation *Confirmation `json:"cnf,omitempty"`
	// Extra holds every other claim, as its raw JSON value: custom claims
	// such as the roles or tenant a Latch client maps from a user's
	// app_metadata (docs/design.md "Admin API and claims"). Nil when the
	// token has none. Latch never issues one named like a claim above or
	// another registered claim (cnf, auth_time, acr, amr, act, azp, …).
	Extra map[string]json.RawMessage `json:"-"`
}

// IsClient reports whether the token was issued to a client for itself
// (the client-credentials grant, RFC 6749 section 4.4): no session, and
// sub is the client id (RFC 9068 section 2.2). A Verifier accepts such
// tokens only with [Config.AcceptClientTokens].
func (c *Claims) IsClient() bool {
	return c.SessionID == "" && c.Subject != "" && c.Subject == c.ClientID
}

// Claim decodes the custom claim name into v and reports whether the
// token has it.
func (c *Claims) Claim(name string, v any) (bool, error) {
	raw, ok := c.Extra[name]
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

// Confirmation is the cnf claim of a sender-constrained token.
type Confirmation struct {
	// JKT is the base64url SHA-256 JWK thumbprint (RFC 7638) of the DPoP
	// key the token is bound to.
	JKT string `json:"jkt,omitempty"`
}
