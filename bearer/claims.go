// Package bearer verifies Latch access tokens for resource servers.
//
// This file holds the claims type that Latch mints and that verifiers read;
// the verifier and middleware build on it.
package bearer

import "github.com/go-jose/go-jose/v4/jwt"

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
}
