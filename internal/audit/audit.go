// Package audit defines the security events Latch records.
package audit

import "time"

// Event types. They are stable strings: operators filter on them.
const (
	LoginSucceeded      = "login.succeeded"
	LoginFailed         = "login.failed"
	Signup              = "user.signup"
	RefreshLost         = "refresh.lost_response"
	RefreshReuse        = "refresh.reuse"
	Logout              = "session.logout"
	SessionRevoked      = "session.revoked"
	PasswordChanged     = "user.password_changed"
	UserDisabled        = "user.disabled"
	UserEnabled         = "user.enabled"
	ClientDeleted       = "client.deleted"
	ClientSecretRotated = "client.secret_rotated"
	TokenRevoked        = "token.revoked"
	ClientTokenIssued   = "client.token_issued"
	ClientCreated       = "client.created"
	ClientUpdated       = "client.updated"
	UserCreated         = "user.created"
	KeysRotated         = "keys.rotated"
	KeysRewrapped       = "keys.rewrapped"

	// The account lifecycle (docs/account-lifecycle.md).
	UserUpdated            = "user.updated"
	EmailVerifyRequested   = "user.email_verify_requested"
	EmailVerified          = "user.email_verified"
	EmailChangeRequested   = "user.email_change_requested"
	EmailChanged           = "user.email_changed"
	PasswordResetRequested = "user.password_reset_requested"
	PasswordReset          = "user.password_reset"
	UserDeleted            = "user.deleted"
	// AccountDeleteFailed: a deletion refused for a wrong password.
	AccountDeleteFailed = "user.delete_failed"
	// EmailChangeFailed: an email change refused for a wrong password.
	EmailChangeFailed = "user.email_change_failed"
)

// RefreshSuspiciousGrace: the parent refresh token, within the grace window,
// came from another IP or user agent than the rotation that made it the
// parent. The identical current token was handed out and nothing revoked,
// but a copy of the token may be in other hands.
const RefreshSuspiciousGrace = "refresh.suspicious_grace"

// RefreshDPoPMismatch: a refresh of a DPoP-bound session came without a
// proof, or with a proof by another key (RFC 9449 section 5): a copied
// refresh token used without the key. Refused; the session is untouched,
// so its owner keeps it.
const RefreshDPoPMismatch = "refresh.dpop_mismatch"

// PasswordChangeFailed: a password change refused because the current
// password was wrong, as a guess with a stolen access token would be.
const PasswordChangeFailed = "user.password_change_failed"

// Event is one audit record. It never holds a token, a password or a key.
type Event struct {
	// ID orders events (assigned by the store; newest is highest). It is
	// the cursor of an audit query.
	ID        int64
	At        time.Time
	Type      string
	UserID    string
	SessionID string
	ClientID  string
	IP        string
	UserAgent string
	// Detail is a short, non-secret explanation (for reuse: which token
	// generation came back and how old it was).
	Detail string
	// Actor is the admin client that made the change through the admin
	// API; empty for a user's own action or an operator's CLI command.
	Actor string
}

// Query selects audit events; zero fields do not filter. Results are newest
// first.
type Query struct {
	Since, Until time.Time
	Type         string
	UserID       string
	Limit        int
	// BeforeID continues a walk: only events whose ID is below it.
	BeforeID int64
}
