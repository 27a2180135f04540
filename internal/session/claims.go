package session

import "time"

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
}
