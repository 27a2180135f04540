package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/latchauth/latch/bearer"
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
	CodeRequestTimeout         = "request_timeout"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeServerError            = "server_error"
	CodeTooManyRequests        = "too_many_requests"
	CodeCORSForbidden          = "cors_forbidden"
	CodeEmailNotVerified       = "email_not_verified"
	CodeInvalidMetadata        = "invalid_metadata"
	CodeInsufficientScope      = "insufficient_scope"      // RFC 6750 section 3.1
	CodeInvalidClientMetadata  = "invalid_client_metadata" // RFC 7591 section 3.2.2
	CodeClientExists           = "client_exists"
	CodeInvalidAppMetadata     = "invalid_app_metadata"
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
	// Challenge, when set, is sent as WWW-Authenticate (RFC 7235 section
	// 4.1: a 401 carries one).
	Challenge string
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

// Verdicts of the authenticate step (auth.go), mapped below.
var (
	// errNoAccessToken: the request carries no access token.
	errNoAccessToken = errors.New("httpapi: no access token")
	// errAccessToken: the access token is invalid, expired, for another
	// audience, or its session is no longer active. It wraps the reason.
	errAccessToken = errors.New("httpapi: access token refused")
	// errBodyTimeout: the client did not send its body within the
	// server's read timeout (a slow or stalled sender).
	errBodyTimeout = errors.New("httpapi: request body not received in time")
	// errTruncatedBody: the connection ended before the body its
	// Content-Length announced.
	errTruncatedBody = errors.New("httpapi: request body truncated")
	// errClientGone: the client closed its connection before the answer;
	// nothing is sent (handle).
	errClientGone = errors.New("httpapi: client closed the connection")
)

// Challenges sent with 401 answers (RFC 6750 section 3, RFC 6749 section
// 5.2).
const (
	bearerChallenge        = `Bearer realm="latch"`
	invalidTokenChallenge  = `Bearer realm="latch", error="invalid_token", error_description="the access token is invalid, expired or revoked"`
	basicChallenge         = `Basic realm="latch"`
	invalidTokenMessage    = "the access token is invalid, expired or revoked"
	invalidRefreshMessage  = "refresh token is invalid, expired or revoked"
	storageUnavailableText = "storage unavailable; retry shortly"
)

// rule is one row of the error table: the errors it matches and the answer
// they get.
type rule struct {
	match     func(error) bool
	status    int
	code, msg string
	challenge string
	// retryAfter, when set, is sent as Retry-After (RFC 9110 section 10.2.3).
	retryAfter time.Duration
}

func is(targets ...error) func(error) bool {
	return func(err error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
}

func isMaxBytes(err error) bool {
	var e *http.MaxBytesError
	return errors.As(err, &e)
}

// errorRules map every error a handler returns to the one answer a client
// sees; the first row that matches wins, and an error no row matches is a
// 500 (a bug, which clients must not retry). routeRules come first for
// their route.
var errorRules = []rule{
	{match: is(errClientGone, session.ErrCanceled), status: StatusClientClosedRequest, code: CodeInvalidRequest, msg: "the client closed the connection"},
	{match: isMaxBytes, status: http.StatusRequestEntityTooLarge, code: CodeRequestTooLarge, msg: "request body too large"},
	// RFC 9110 section 15.5.9: the server timed out waiting for the body.
	{match: is(errBodyTimeout), status: http.StatusRequestTimeout, code: CodeRequestTimeout, msg: "the request body did not arrive in time"},
	{match: is(errTruncatedBody), status: http.StatusBadRequest, code: CodeInvalidRequest, msg: "the request body is shorter than its Content-Length"},
	// RFC 6750 section 3.1: no error code when credentials are absent.
	{match: is(errNoAccessToken), status: http.StatusUnauthorized, code: CodeInvalidToken, msg: "an access token is required", challenge: bearerChallenge},
	{match: is(errAccessToken), status: http.StatusUnauthorized, code: CodeInvalidToken, msg: invalidTokenMessage, challenge: invalidTokenChallenge},
	{match: is(session.ErrInvalidClient), status: http.StatusBadRequest, code: CodeInvalidClientMetadata}, // message: the rules broken
	{match: is(session.ErrClientExists), status: http.StatusConflict, code: CodeClientExists, msg: "a client with this id already exists"},
	{match: is(session.ErrAppMetadata), status: http.StatusBadRequest, code: CodeInvalidAppMetadata}, // message: what is wrong
	{match: is(session.ErrGrantNotAllowed), status: http.StatusBadRequest, code: CodeUnauthorizedClient, msg: "client may not use this grant type"},
	{match: is(session.ErrInvalidScope), status: http.StatusBadRequest, code: CodeInvalidScope, msg: "requested scope exceeds the grant"},
	{match: is(session.ErrInvalidTarget), status: http.StatusBadRequest, code: CodeInvalidTarget, msg: "resource is not an audience of the client"},
	// One message for forged, expired, revoked and reused tokens, so the
	// answer is no oracle (checklist RT-15); the audit log tells them apart.
	// A client registered to require DPoP sent no proof (RFC 9449 section 5.2).
	{match: is(session.ErrDPoPRequired), status: http.StatusBadRequest, code: CodeInvalidDPoPProof, msg: "this client must send a DPoP proof"},
	{match: session.IsInvalidGrant, status: http.StatusBadRequest, code: CodeInvalidGrant, msg: invalidRefreshMessage},
	// One answer for malformed, unknown, used, expired, voided and
	// wrong-purpose link tokens (docs/design.md "Account lifecycle").
	{match: is(session.ErrInvalidMessageToken), status: http.StatusBadRequest, code: CodeInvalidToken, msg: "the link is invalid, has expired or was already used"},
	{match: is(session.ErrEmailNotVerified), status: http.StatusForbidden, code: CodeEmailNotVerified, msg: "the email address is not verified yet; use the link sent to it"},
	{match: is(session.ErrInvalidMetadata), status: http.StatusBadRequest, code: CodeInvalidMetadata, msg: "user_metadata must be a JSON object of at most 4 KiB"},
	{match: is(session.ErrMailUnavailable), status: http.StatusServiceUnavailable, code: CodeTemporarilyUnavailable, msg: "email is not configured on this server"},
	{match: is(session.ErrNotFound), status: http.StatusNotFound, code: CodeNotFound, msg: "not found"},
	{match: is(session.ErrConflict), status: http.StatusConflict, code: CodeConflict, msg: "changed concurrently; retry"},
	{match: is(session.ErrBadCredential), status: http.StatusUnauthorized, code: CodeInvalidCredentials, msg: "invalid email or password"},
	{match: is(session.ErrEmailTaken), status: http.StatusConflict, code: CodeEmailTaken, msg: "an account with this email already exists"},
	{match: is(email.ErrInvisible), status: http.StatusBadRequest, code: CodeInvalidEmail, msg: "email contains an invisible or control character"},
	{match: is(session.ErrInvalidEmail), status: http.StatusBadRequest, code: CodeInvalidEmail, msg: "email is not a valid address"},
	{match: password.IsPolicy, status: http.StatusBadRequest, code: CodeWeakPassword}, // message: the policy's own
	// The DPoP replay cache is full: a proof cannot be checked now, which
	// says nothing of the request (bearer refuses proofs until it drains).
	{match: is(bearer.ErrReplayCacheFull), status: http.StatusServiceUnavailable, code: CodeTemporarilyUnavailable, msg: "cannot check DPoP proofs now; retry shortly"},
	{match: is(password.ErrBusy), status: http.StatusServiceUnavailable, code: CodeTemporarilyUnavailable, msg: "server busy; retry shortly"},
	// Retryable, never invalid_grant: the refresh came too late to be
	// decided (abandoned, or sent more than G ago) and changed nothing; a
	// client still waiting sends a new one (docs/design.md "Abandoned and
	// late requests").
	{match: is(session.ErrStale), status: http.StatusServiceUnavailable, code: CodeTemporarilyUnavailable, retryAfter: time.Second,
		msg: "the refresh request was abandoned or sent too long ago; nothing changed; send a new request"},
	{match: is(session.ErrUnavailable, context.DeadlineExceeded), status: http.StatusServiceUnavailable, code: CodeTemporarilyUnavailable, msg: storageUnavailableText},
}

// routeRules give a domain error another answer on one route, where a
// standard or the endpoint's meaning says so.
var routeRules = map[string][]rule{
	// RFC 6749 section 5.2: wrong resource-owner credentials are
	// invalid_grant on the token endpoint.
	"POST /oauth/token": {{match: is(session.ErrBadCredential), status: http.StatusBadRequest, code: CodeInvalidGrant, msg: "invalid username or password"}},
	// RFC 7009 section 2.1: a token of another client is refused, with an
	// RFC 6749 section 5.2 error.
	"POST /oauth/revoke": {{match: is(session.ErrWrongClient), status: http.StatusBadRequest, code: CodeInvalidRequest, msg: "the token was not issued to this client"}},
	// The caller is authenticated: a wrong current password is forbidden,
	// not a failed authentication.
	"POST /v1/password":        {{match: is(session.ErrBadCredential), status: http.StatusForbidden, code: CodeInvalidCredentials, msg: "current password is wrong"}},
	"DELETE /v1/sessions/{id}": {{match: is(session.ErrNotFound), status: http.StatusNotFound, code: CodeNotFound, msg: "no such session"}},
}

// StatusClientClosedRequest is what the access log and metrics record for
// a request whose client left before the answer (nginx's 499; never sent,
// there is nobody to send it to).
const StatusClientClosedRequest = 499

// toError maps any error a handler of route returns to the one API error a
// client sees. It is the single place where errors become statuses: an
// *Error a handler built passes through; every other error goes through
// routeRules[route], then errorRules.
func toError(route string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, rules := range [][]rule{routeRules[route], errorRules} {
		for _, r := range rules {
			if r.match(err) {
				msg := r.msg
				if msg == "" {
					msg = trimPrefix(err)
				}
				return &Error{Status: r.status, Code: r.code, Message: msg, Err: err, Challenge: r.challenge, RetryAfter: r.retryAfter}
			}
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeServerError, Message: "internal error", Err: err}
}

// trimPrefix drops the "password: " package prefix from policy errors,
// which are written to be shown to users.
func trimPrefix(err error) string {
	for _, e := range []error{password.ErrTooShort, password.ErrTooLong, password.ErrCommon, password.ErrInvalid} {
		if errors.Is(err, e) {
			return e.Error()[len("password: "):]
		}
	}
	// CheckClient's and CheckAppMetadata's complaints, written to be shown.
	if errors.Is(err, session.ErrInvalidClient) {
		return strings.ReplaceAll(strings.TrimPrefix(err.Error(), session.ErrInvalidClient.Error()+": "), "\n", "; ")
	}
	if errors.Is(err, session.ErrAppMetadata) {
		return "app_metadata" + strings.TrimPrefix(err.Error(), session.ErrAppMetadata.Error())
	}
	return err.Error()
}
