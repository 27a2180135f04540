package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/latchauth/latch/internal/email"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
)

// Error codes: stable strings clients may switch on. RFC 6749 section 5.2
// names are used where they apply.
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeInvalidScope           = "invalid_scope"
	CodeInvalidTarget          = "invalid_target" // RFC 8707 section 2
	CodeUnsupportedTokenType   = "unsupported_token_type"
	CodeInvalidToken           = "invalid_token" // RFC 6750 section 3.1
	CodeInvalidCredentials     = "invalid_credentials"
	CodeEmailTaken             = "email_taken"
	CodeInvalidEmail           = "invalid_email"
	CodeWeakPassword           = "weak_password"
	CodeNotFound               = "not_found"
	CodeConflict               = "conflict"
	CodeMethodNotAllowed       = "method_not_allowed"
	CodeUnsupportedMediaType   = "unsupported_media_type"
	CodeRequestTooLarge        = "request_too_large"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeServerError            = "server_error"
	CodeTooManyRequests        = "too_many_requests"
	CodeCORSForbidden          = "cors_forbidden"
)

// Error is an API error: the status, a public code and message, and the
// internal cause (logged, never sent).
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error
	// RetryAfter, when set, is sent as Retry-After (429 and 503).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func apiError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

func badRequest(msg string) *Error { return apiError(http.StatusBadRequest, CodeInvalidRequest, msg) }

// toError maps any error to the one API error a client sees. It is the
// single place where domain errors become statuses.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var maxBytes *http.MaxBytesError
	wrap := func(status int, code, msg string) *Error {
		return &Error{Status: status, Code: code, Message: msg, Err: err}
	}
	switch {
	case errors.As(err, &maxBytes):
		return wrap(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "request body too large")
	case errors.Is(err, session.ErrInvalidScope):
		return wrap(http.StatusBadRequest, CodeInvalidScope, "requested scope exceeds the grant")
	case errors.Is(err, session.ErrInvalidTarget):
		return wrap(http.StatusBadRequest, CodeInvalidTarget, "resource is not an audience of the client")
	case session.IsInvalidGrant(err):
		// One message for forged, expired, revoked and reused tokens, so the
		// answer is no oracle (checklist RT-15); the audit log tells them apart.
		return wrap(http.StatusBadRequest, CodeInvalidGrant, "refresh token is invalid, expired or revoked")
	case errors.Is(err, session.ErrNotFound):
		return wrap(http.StatusNotFound, CodeNotFound, "not found")
	case errors.Is(err, session.ErrConflict):
		return wrap(http.StatusConflict, CodeConflict, "changed concurrently; retry")
	case errors.Is(err, session.ErrBadCredential):
		return wrap(http.StatusUnauthorized, CodeInvalidCredentials, "invalid email or password")
	case errors.Is(err, session.ErrEmailTaken):
		return wrap(http.StatusConflict, CodeEmailTaken, "an account with this email already exists")
	case errors.Is(err, email.ErrInvisible):
		return wrap(http.StatusBadRequest, CodeInvalidEmail, "email contains an invisible or control character")
	case errors.Is(err, session.ErrInvalidEmail):
		return wrap(http.StatusBadRequest, CodeInvalidEmail, "email is not a valid address")
	case errors.Is(err, password.ErrTooShort), errors.Is(err, password.ErrTooLong),
		errors.Is(err, password.ErrCommon), errors.Is(err, password.ErrInvalid):
		return wrap(http.StatusBadRequest, CodeWeakPassword, trimPrefix(err))
	case errors.Is(err, password.ErrBusy):
		return wrap(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "server busy; retry shortly")
	case errors.Is(err, session.ErrStale):
		// Retryable, never invalid_grant: the request came too late to be
		// decided (abandoned, or sent more than G ago) and changed nothing;
		// a client still waiting sends a new one (docs/design.md
		// "Abandoned and late requests").
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable, Err: err, RetryAfter: time.Second,
			Message: "the refresh request was abandoned or sent too long ago; nothing changed; send a new request"}
	case errors.Is(err, session.ErrUnavailable):
		return wrap(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "storage unavailable; retry shortly")
	}
	return wrap(http.StatusInternalServerError, CodeServerError, "internal error")
}

// trimPrefix drops the "password: " package prefix from policy errors,
// which are written to be shown to users.
func trimPrefix(err error) string {
	for _, e := range []error{password.ErrTooShort, password.ErrTooLong, password.ErrCommon, password.ErrInvalid} {
		if errors.Is(err, e) {
			return e.Error()[len("password: "):]
		}
	}
	return err.Error()
}
