package session

import (
	"encoding/json"
	"time"
)

// AccessClaims are the claims of one access token as the domain decides
// them; the [Issuer] encodes them as an RFC 9068 JWT (section 2.2: "iss",
// "sub", "aud", "exp", "iat", "jti", "client_id", plus "nbf", "sid" and
// "scope"). The type is plain Go so that the domain links no JOSE library
// and no net/http (package token does the JWT encoding).
type AccessClaims struct {
	Issuer    string
	Subject   string
	Audience  []string
	Expiry    time.Time
	IssuedAt  time.Time
	NotBefore time.Time
	ID        string
	ClientID  string
	SessionID string
	Scope     string
	// Extra are custom claims: the keys of the user's app_metadata that
	// the client maps (docs/design.md "Admin API and claims"). A name for
	// which ReservedClaim is true is never issued.
	Extra map[string]json.RawMessage
	// DPoPJKT, when set, binds the token to that DPoP key: the JWT's
	// cnf.jkt (RFC 9449 section 6.1).
	DPoPJKT string
}

// reserved are the claims with a meaning of their own in an access token:
// the registered JWT claims (RFC 7519 section 4.1), those of RFC 9068
// section 2.2 and of OAuth extensions (client_id, scope, auth_time, acr,
// amr: RFC 9068 sections 2.2 and 2.2.1; cnf: RFC 7800 and RFC 9449
// section 6; act, may_act: RFC 8693 section 4), OpenID Connect's azp,
// nonce and sid, and typ.
var reserved = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true,
	"client_id": true, "scope": true, "sid": true, "cnf": true, "auth_time": true, "acr": true, "amr": true,
	"act": true, "may_act": true, "azp": true, "nonce": true, "typ": true,
}

// ReservedClaim reports whether name is a claim with a meaning of its own
// in a Latch access token (iss, sub, aud, exp, nbf, iat, jti, client_id,
// scope, sid, cnf, auth_time, acr, amr, act, may_act, azp, nonce, typ).
// A custom claim by one of these names is refused at registration
// (CheckClient), skipped when mapping and dropped by the issuer, so it can
// never stand in for the real one.
func ReservedClaim(name string) bool { return reserved[name] }
