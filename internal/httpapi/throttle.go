package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/session"
)

// tooMany is the answer to a throttled request: 429 with Retry-After
// (RFC 6585 section 4). It does not say which limit was hit.
func tooMany(d ratelimit.Decision) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyRequests,
		Message: "too many attempts; retry after the time in Retry-After", RetryAfter: d.RetryAfter}
}

// passwordLogin runs a password login under the throttle: the account and
// IP limits are checked before the password is hashed, and the outcome is
// recorded afterwards. The key is the email as sent, so unknown and known
// accounts are throttled alike. A login with a device token valid for that
// account takes its device's bucket instead of the account's
// (docs/design.md "Returning devices"); an invalid one counts as none.
func (s *Server) passwordLogin(ctx context.Context, req session.LoginRequest) (session.Tokens, error) {
	t := s.cfg.Throttle
	if t != nil {
		device, err := s.sessions.Device(ctx, req.Email, req.DeviceToken)
		if err != nil {
			return session.Tokens{}, err
		}
		d, err := t.DeviceLogin(ctx, req.Email, req.Meta.IP, device)
		if err != nil {
			return session.Tokens{}, err
		}
		if !d.Allowed {
			if s.cfg.Observer != nil {
				s.cfg.Observer.LoginThrottled()
			}
			s.log.Info("login throttled", "request_id", requestIDFrom(ctx), "limit", d.Reason, "retry_after", d.RetryAfter.String())
			return session.Tokens{}, tooMany(d)
		}
	}
	tok, _, err := s.sessions.Login(ctx, req)
	if t != nil {
		// Recorded even if the client hung up: cancelling a request after
		// the hash must not erase the failure.
		rctx := context.WithoutCancel(ctx)
		var terr error
		switch {
		case errors.Is(err, session.ErrBadCredential):
			terr = t.LoginFailed(rctx, req.Email, req.Meta.IP)
		case err == nil:
			terr = t.LoginSucceeded(rctx, req.Email, req.Meta.IP)
		}
		if terr != nil {
			s.log.Warn("recording a login outcome for rate limits", "request_id", requestIDFrom(ctx), "err", terr)
		}
	}
	return tok, err
}

// allow checks a per-IP limit (signup, refresh).
func (s *Server) allow(ctx context.Context, check func(context.Context, string) (ratelimit.Decision, error), ip, what string) error {
	d, err := check(ctx, ip)
	if err != nil {
		return err
	}
	if !d.Allowed {
		s.log.Info(what+" throttled", "request_id", requestIDFrom(ctx), "limit", d.Reason, "retry_after", d.RetryAfter.String())
		return tooMany(d)
	}
	return nil
}
