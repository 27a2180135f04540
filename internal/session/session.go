// Package session is Latch's domain core: users, clients, and the sessions
// they hold, with refresh-token rotation, reuse detection and revocation.
//
// Every multi-step change runs in one storage transaction (Transactor.InTx), and
// every decision about a refresh token is taken on a row the transaction has
// locked, so many server processes sharing one database agree. The package
// links neither net/http nor a JOSE library (CI checks it with go list
// -deps): the HTTP layer maps its errors, and package token encodes its
// AccessClaims as a JWT.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/rtoken"
)

// Errors returned by the service and by stores. Stores translate driver
// errors into these at their boundary.
var (
	ErrNotFound      = errors.New("session: not found")
	ErrRevoked       = errors.New("session: revoked")
	ErrExpired       = errors.New("session: expired")
	ErrReused        = errors.New("session: refresh token reused")
	ErrInvalidToken  = errors.New("session: invalid refresh token")
	ErrWrongClient   = errors.New("session: refresh token issued to another client")
	ErrInvalidScope  = errors.New("session: requested scope exceeds the grant")
	ErrInvalidTarget = errors.New("session: requested resource is not an audience of the client")
	ErrEmailTaken    = errors.New("session: email already registered")
	ErrInvalidEmail  = errors.New("session: invalid email address")
	ErrBadCredential = errors.New("session: invalid email or password")
	ErrConflict      = errors.New("session: changed concurrently; retry")
	// ErrStale reports a refresh that its client had abandoned, or sent
	// more than the grace window before the server acted on it, and that
	// would have abandoned a token or revoked the session: nothing
	// changed, and a new request (if anyone still waits) is decided
	// afresh. It is not an invalid_grant.
	ErrStale = errors.New("session: refresh request abandoned or sent too long ago; nothing changed")
	// ErrDPoPMismatch reports a refresh of a DPoP-bound session without a
	// proof by its key (RFC 9449 section 5): refused, the session untouched.
	ErrDPoPMismatch = errors.New("session: refresh token is bound to another DPoP key")
	// ErrDPoPRequired reports a token request without a DPoP proof by a
	// client registered to require one.
	ErrDPoPRequired = errors.New("session: this client must send a DPoP proof")
	// ErrUnavailable reports that storage could not be reached or timed out;
	// the operation did not happen and may be retried.
	ErrUnavailable = errors.New("session: storage unavailable")
	// ErrCanceled reports that the caller's context was canceled (its
	// client left) before the operation finished: a client's fault, not
	// the storage's, counted apart from ErrUnavailable. It may wrap
	// ErrUnavailable too (the store saw the cancellation as a failure).
	ErrCanceled = errors.New("session: canceled by the caller")
	// ErrBusy reports that no storage connection came free within the
	// store's wait bound: the node is at capacity and sheds the request
	// (503, retry). Stores return it wrapped with ErrUnavailable.
	ErrBusy = errors.New("session: storage busy: no connection free in time")
)

// canceled marks err with ErrCanceled when ctx was canceled: stores report
// a cancellation in their own terms (PostgreSQL as a broken query, SQLite
// as an interrupt), and only the context tells that the caller left.
func canceled(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrCanceled) || !errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrCanceled, err)
}

// IsInvalidGrant reports whether err means the presented refresh token can
// no longer be used: the RFC 6749 section 5.2 "invalid_grant" cases.
func IsInvalidGrant(err error) bool {
	for _, e := range []error{ErrRevoked, ErrExpired, ErrReused, ErrInvalidToken, ErrWrongClient, ErrDPoPMismatch} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Revocation reasons, stored with the session and shown to operators.
const (
	ReasonLogout         = "logout"
	ReasonRemoteLogout   = "remote_logout"
	ReasonPasswordChange = "password_change"
	ReasonUserDisabled   = "user_disabled"
	ReasonReuse          = "refresh_token_reuse"
	ReasonTokenRevoked   = "token_revoked"
	ReasonAdmin          = "admin"
	ReasonPasswordReset  = "password_reset"
	ReasonUserDeleted    = "user_deleted"
	ReasonEmailChange    = "email_change"
)

// Session is one login on one device.
type Session struct {
	ID       string
	UserID   string
	ClientID string
	Scope    string

	CreatedAt  time.Time
	LastUsedAt time.Time
	UserAgent  string
	IP         string

	// ExpiresAt is the absolute expiry; zero means none.
	ExpiresAt     time.Time
	IdleExpiresAt time.Time

	// Refresh state, O(1) per session. Gen is the current token's
	// generation; ParentGen the token whose rotation made it (0: none yet).
	// HandedAt is when the current token was last handed out (the grace
	// window's start); RotatedAt is when ParentGen became the parent (the
	// lost-response window's start).
	Gen       uint64
	ParentGen uint64
	HandedAt  time.Time
	RotatedAt time.Time
	// RotatedIP and RotatedUserAgent are the request that made ParentGen
	// the parent (at login: the login's). A grace answer to anyone else is
	// audited as suspicious: the parent came back from another device.
	RotatedIP        string
	RotatedUserAgent string

	// DPoPJKT is the RFC 7638 thumbprint of the DPoP key the session is
	// bound to (RFC 9449 section 5), "" for none: every refresh must then
	// prove that key. Set at login and never changed.
	DPoPJKT string

	RevokedAt    time.Time
	RevokeReason string
}

// Active reports whether s can still be used at now.
func (s *Session) Active(now time.Time) bool { return s.state(now) == nil }

func (s *Session) state(now time.Time) error {
	switch {
	case !s.RevokedAt.IsZero():
		return ErrRevoked
	case !s.ExpiresAt.IsZero() && !now.Before(s.ExpiresAt):
		return ErrExpired
	case !now.Before(s.IdleExpiresAt):
		return ErrExpired
	}
	return nil
}

// User is an account.
type User struct {
	ID                string
	Email             string
	PasswordHash      string
	CreatedAt         time.Time
	PasswordChangedAt time.Time
	DisabledAt        time.Time
	// EmailVerifiedAt is when the user last proved they receive mail at
	// Email (a verification or reset link); zero while unverified.
	EmailVerifiedAt time.Time
	// Metadata is the user's own JSON object (PATCH /v1/me), compact,
	// never put in tokens; "" stands for {}.
	Metadata string
	// AppMetadata is a JSON object (at most MaxAppMetadata bytes) that
	// only admins write; a client's Claims pick keys of it for its access
	// tokens. Empty for a user who has none.
	AppMetadata string
}

// Client is an OAuth 2.0 client registered with Latch.
type Client struct {
	ID   string
	Name string
	// SecretHash is SHA-256 of the client secret; nil for public clients.
	// Secrets are 256-bit random values, so a fast hash suffices.
	SecretHash []byte
	// Audiences are the resource servers the client's access tokens are
	// for, each an exact "aud" value; a token carries all of them unless
	// the request names one with RFC 8707 "resource". Only a client with
	// the account audience among them can call Latch's account endpoints
	// (docs/design.md "Audiences").
	Audiences []string
	AccessTTL time.Duration
	Grants    []string
	Scopes    []string
	// Web marks a browser client in cookie mode (docs/design.md "Browser
	// clients: cookie mode"): its refresh token is set as an HttpOnly
	// cookie and never put in a response body, and every request that
	// carries that cookie must come from one of Origins (exact
	// scheme://host[:port] values; CORS with credentials for them only).
	Web     bool
	Origins []string
	// Claims names the keys of a user's app_metadata that become claims of
	// this client's access tokens (docs/design.md "Admin API and claims").
	Claims    []string
	CreatedAt time.Time
	// DPoPRequired makes every token request of the client carry a DPoP
	// proof (RFC 9449 section 5.2, dpop_bound_access_tokens).
	DPoPRequired bool
}

// CheckOrigin reports whether o can be a web client's origin: an exact
// serialized origin (RFC 6454 section 6.2: lower-case scheme and host, a
// port only when not the default, no path or slash), https, or http on a
// loopback host for development. A browser's Origin header is compared
// with it byte for byte.
func CheckOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" ||
		u.Scheme+"://"+u.Host != o || strings.ToLower(o) != o || strings.HasSuffix(o, ":") {
		return fmt.Errorf("origin %q: must be an exact origin like https://app.example.com (lower case, no path or trailing slash)", o)
	}
	if (u.Scheme == "https" && u.Port() == "443") || (u.Scheme == "http" && u.Port() == "80") {
		return fmt.Errorf("origin %q: a browser sends it without the default port", o)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip, err := netip.ParseAddr(h); h == "localhost" || (err == nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("origin %q: http only on a loopback host (localhost, 127.0.0.1) for development; use https", o)
	}
	return fmt.Errorf("origin %q: scheme must be https", o)
}

// AllowsOrigin reports whether origin is one of the web client's origins
// (exact match; an Origin header is already serialized, RFC 6454 section 6).
func (c *Client) AllowsOrigin(origin string) bool {
	return c.Web && origin != "" && slices.Contains(c.Origins, origin)
}

// Grant types.
const (
	GrantPassword = "password"
	GrantRefresh  = "refresh_token"
	// GrantClientCredentials is RFC 6749 section 4.4: a confidential
	// client's token for itself, with no user and no session.
	GrantClientCredentials = "client_credentials"
)

// Confidential reports whether the client authenticates with a secret.
func (c *Client) Confidential() bool { return c.SecretHash != nil }

// Narrow returns c with its audiences narrowed to resource, the RFC 8707
// "resource" parameter of a token request (section 2): the access token
// then carries that one audience. An empty resource keeps them all; one
// that is not among them is ErrInvalidTarget.
func (c Client) Narrow(resource string) (Client, error) {
	if resource == "" {
		return c, nil
	}
	if !slices.Contains(c.Audiences, resource) {
		return c, ErrInvalidTarget
	}
	c.Audiences = []string{resource}
	return c, nil
}

// Allows reports whether the client may use grant.
func (c *Client) Allows(grant string) bool { return slices.Contains(c.Grants, grant) }

// CheckSecret compares secret with the stored hash in constant time.
func (c *Client) CheckSecret(secret string) bool {
	if c.SecretHash == nil {
		return false
	}
	sum := HashClientSecret(secret)
	return subtle.ConstantTimeCompare(sum, c.SecretHash) == 1
}

// HashClientSecret returns the stored form of a client secret.
func HashClientSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// Revocation selects sessions to revoke in RevokeSessions.
type Revocation struct {
	// UserID limits the revocation to one user's sessions; required unless
	// Scope is ScopeOne, or ScopeAll with ClientID.
	UserID string
	// ClientID, with ScopeAll, limits the revocation to the sessions of
	// one client (deleting a client ends them all).
	ClientID string
	// SessionID is the session revoked (ScopeOne) or spared (ScopeOthers).
	SessionID string
	Scope     Scope
	Reason    string
	At        time.Time
	// Until is when the revocation-feed entry may be dropped: At plus the
	// longest access-token lifetime.
	Until time.Time
}

// Scope says which of a user's sessions a logout ends.
type Scope string

// Logout scopes, as in POST /v1/logout.
const (
	ScopeOne    Scope = "current"
	ScopeOthers Scope = "others"
	ScopeAll    Scope = "all"
)

// FeedCursor is a position in the revocation feed. Entries are ordered by
// Txn, then Seq. Txn groups the entries of one transaction (PostgreSQL: its
// transaction id, which a reader may pass only once the transaction has
// ended; SQLite, whose one writer commits in Seq order: Seq itself). Txn
// alone is the cursor subscribers see, since a reader always receives a
// transaction's entries together.
type FeedCursor struct {
	Txn, Seq int64
}

// After reports whether c sorts after d.
func (c FeedCursor) After(d FeedCursor) bool {
	return c.Txn > d.Txn || c.Txn == d.Txn && c.Seq > d.Seq
}

// FeedEntry is one revocation-feed entry: no access token of the session is
// valid after RevokedAt, and none can exist after Until.
type FeedEntry struct {
	Txn       int64
	Seq       int64
	SessionID string
	RevokedAt time.Time
	Until     time.Time
}

// Cursor is the entry's position in the feed.
func (e FeedEntry) Cursor() FeedCursor { return FeedCursor{Txn: e.Txn, Seq: e.Seq} }

// NewID returns a random 128-bit identifier, base64url without padding.
func NewID() string {
	var b [rtoken.IDSize]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func rawID(id string) ([rtoken.IDSize]byte, bool) {
	var b [rtoken.IDSize]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(id))
	return b, err == nil && n == rtoken.IDSize && len(id) == 22
}

func idString(b [rtoken.IDSize]byte) string { return base64.RawURLEncoding.EncodeToString(b[:]) }

// scopeSubset reports whether every scope in req is in granted.
func scopeSubset(req string, granted []string) bool {
	for _, s := range strings.Fields(req) {
		if !slices.Contains(granted, s) {
			return false
		}
	}
	return true
}
