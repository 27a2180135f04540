package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/email"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
)

// TestToError is the error table row by row: every error a handler can
// return, wrapped as the service and stores wrap it, gets its one answer,
// on any route or on the route that answers it differently.
func TestToError(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("session: op: %w", err) }
	built := &Error{Status: http.StatusTeapot, Code: "built", Message: "by the handler"}
	tests := []struct {
		name       string
		route      string
		err        error
		status     int
		code       string
		challenge  string
		retryAfter bool
	}{
		{"an *Error passes through", "", fmt.Errorf("ctx: %w", built), http.StatusTeapot, "built", "", false},
		{"client gone", "", fmt.Errorf("%w: %w", errClientGone, session.ErrUnavailable), StatusClientClosedRequest, CodeInvalidRequest, "", false},
		{"canceled by the caller, even as unavailable", "POST /oauth/token", wrap(fmt.Errorf("%w: %w", session.ErrCanceled, session.ErrUnavailable)), StatusClientClosedRequest, CodeInvalidRequest, "", false},
		{"body too large", "", wrap(&http.MaxBytesError{Limit: 1}), http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "", false},
		{"body timeout", "", errBodyTimeout, http.StatusRequestTimeout, CodeRequestTimeout, "", false},
		{"truncated body", "", errTruncatedBody, http.StatusBadRequest, CodeInvalidRequest, "", false},
		{"no access token", "GET /v1/sessions", errNoAccessToken, http.StatusUnauthorized, CodeInvalidToken, bearerChallenge, false},
		{"refused access token", "GET /v1/sessions", fmt.Errorf("%w: %w", errAccessToken, bearer.ErrInvalidToken), http.StatusUnauthorized, CodeInvalidToken, invalidTokenChallenge, false},
		{"invalid scope", "", wrap(session.ErrInvalidScope), http.StatusBadRequest, CodeInvalidScope, "", false},
		{"invalid target", "", wrap(session.ErrInvalidTarget), http.StatusBadRequest, CodeInvalidTarget, "", false},
		{"reused refresh token", "POST /oauth/token", wrap(session.ErrReused), http.StatusBadRequest, CodeInvalidGrant, "", false},
		{"revoked", "", wrap(session.ErrRevoked), http.StatusBadRequest, CodeInvalidGrant, "", false},
		{"wrong client at the token endpoint", "POST /oauth/token", wrap(session.ErrWrongClient), http.StatusBadRequest, CodeInvalidGrant, "", false},
		{"wrong client at revocation", "POST /oauth/revoke", wrap(session.ErrWrongClient), http.StatusBadRequest, CodeInvalidRequest, "", false},
		{"not found", "", wrap(session.ErrNotFound), http.StatusNotFound, CodeNotFound, "", false},
		{"no such session", "DELETE /v1/sessions/{id}", wrap(session.ErrNotFound), http.StatusNotFound, CodeNotFound, "", false},
		{"conflict", "", wrap(session.ErrConflict), http.StatusConflict, CodeConflict, "", false},
		{"bad credentials at login", "POST /v1/login", wrap(session.ErrBadCredential), http.StatusUnauthorized, CodeInvalidCredentials, "", false},
		{"bad credentials at the token endpoint", "POST /oauth/token", wrap(session.ErrBadCredential), http.StatusBadRequest, CodeInvalidGrant, "", false},
		{"wrong current password", "POST /v1/password", wrap(session.ErrBadCredential), http.StatusForbidden, CodeInvalidCredentials, "", false},
		{"email taken", "", wrap(session.ErrEmailTaken), http.StatusConflict, CodeEmailTaken, "", false},
		{"invisible character", "", wrap(fmt.Errorf("%w: %w", session.ErrInvalidEmail, email.ErrInvisible)), http.StatusBadRequest, CodeInvalidEmail, "", false},
		{"invalid email", "", wrap(session.ErrInvalidEmail), http.StatusBadRequest, CodeInvalidEmail, "", false},
		{"weak password", "", wrap(password.ErrTooShort), http.StatusBadRequest, CodeWeakPassword, "", false},
		{"hashing busy", "", wrap(password.ErrBusy), http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "", true},
		{"storage unavailable", "", wrap(session.ErrUnavailable), http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "", true},
		{"storage deadline", "", wrap(context.DeadlineExceeded), http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "", true},
		{"unknown error: a bug, not retried", "", errors.New("scan: wrong type"), http.StatusInternalServerError, CodeServerError, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := toError(tc.route, tc.err)
			if e.Status != tc.status || e.Code != tc.code || e.Challenge != tc.challenge {
				t.Fatalf("toError(%q, %v) = %d %s challenge %q; want %d %s challenge %q", tc.route, tc.err, e.Status, e.Code, e.Challenge, tc.status, tc.code, tc.challenge)
			}
			if e.Message == "" {
				t.Error("no message")
			}
			w := &recorder{h: http.Header{}}
			writeError(w, e)
			if got := w.h.Get("Retry-After") != ""; got != tc.retryAfter {
				t.Errorf("Retry-After sent: %v, want %v", got, tc.retryAfter)
			}
			if got := w.h.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
		})
	}
}

// TestRouteRulesAreRoutes: every route-specific rule names a route the
// server has, so a renamed route cannot silently drop its answer.
func TestRouteRulesAreRoutes(t *testing.T) {
	t.Parallel()
	s := &Server{mux: http.NewServeMux(), cfg: Config{Metrics: http.NotFoundHandler()}}
	s.routes()
	for route := range routeRules {
		method, path, _ := strings.Cut(route, " ")
		r, _ := http.NewRequest(method, "http://latch.test"+path, nil)
		if _, pattern := s.mux.Handler(r); pattern != route {
			t.Errorf("routeRules[%q]: %s %s is served by %q", route, method, path, pattern)
		}
	}
}

type recorder struct {
	h      http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }
