package authclient

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoSession is returned by [Client.Resume] when the store holds no
// session: the user has to log in.
var ErrNoSession = errors.New("authclient: no saved session; log in")

// Error is a request the Latch server refused: its HTTP status and the
// machine code and message of its error object (RFC 6749 section 5.2, the
// shape every Latch endpoint uses).
type Error struct {
	Status      int
	Code        string // e.g. "invalid_credentials", "invalid_grant", "weak_password"
	Description string
}

func (e *Error) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("authclient: server answered %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("authclient: server answered %d %s: %s", e.Status, e.Code, e.Description)
}

// SessionEndedError reports that the session is over: the server answered
// invalid_grant to a refresh (revoked, expired, logged out elsewhere, or
// reuse detected), or the session was logged out through this client. The
// saved credentials have been cleared; the app should ask the user to log
// in again. Test for it with errors.As.
type SessionEndedError struct {
	// Reason says why, for logs: "invalid_grant" or "logged out".
	Reason string
	// Err is the server's answer, when there was one.
	Err error
}

func (e *SessionEndedError) Error() string {
	return "authclient: session ended (" + e.Reason + "); log in again"
}

func (e *SessionEndedError) Unwrap() error { return e.Err }

// UnavailableError reports that a fresh access token could not be had right
// now: the server was unreachable, rate limited the client (429) or failed
// (5xx), and the current access token is expired. The session is kept; try
// again after RetryAfter. Test for it with errors.As.
type UnavailableError struct {
	// RetryAfter is when the session will try the server again: the
	// server's Retry-After when it sent one, else the client's backoff.
	RetryAfter time.Duration
	// Err is the cause: a network error or an *Error with a 429 or 5xx status.
	Err error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("authclient: server unavailable, retry in %s: %v", e.RetryAfter.Round(time.Millisecond), e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// PersistError reports that a rotated refresh token could not be saved to
// the [Store]. The session keeps the new tokens in memory, so this process
// goes on working, but it hands out no access token until a save succeeds
// (retried on every call): a token is never used before it is durable.
type PersistError struct {
	Err error
}

func (e *PersistError) Error() string { return "authclient: saving the session: " + e.Err.Error() }

func (e *PersistError) Unwrap() error { return e.Err }
