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

// passwordLogin runs a password login under the throttle. The key is the
// email as sent, so unknown and known accounts are throttled alike. A login
// with a device token valid for that account takes its device's bucket
// instead of the account's (docs/design.md "Returning devices"); an
// invalid one counts as none.
func (s *Server) passwordLogin(ctx context.Context, req session.LoginRequest) (session.Tokens, error) {
	device := ""
	if s.cfg.Throttle != nil {
		var err error
		if device, err = s.sessions.Device(ctx, req.Email, req.DeviceToken); err != nil {
			return session.Tokens{}, err
		}
	}
	var tok session.Tokens
	err := s.passwordCheck(ctx, "login", Observer.LoginThrottled, req.Email, req.Meta.IP, device, func() (err error) {
		tok, _, err = s.sessions.Login(ctx, req)
		return err
	})
	return tok, err
}

// passwordCheck runs check, which verifies a password of account (a login,
// or a password change's current password), under the login throttle; a
// refusal is logged as what and reported to the Observer by throttled. The
// account (or device, see [Throttle].DeviceLogin), IP and (account, IP)
// limits are checked before the password is hashed, and the outcome
// (session.ErrBadCredential is a failure) is recorded afterwards. A password
// change counts as a login attempt on its account, so that an access token
// does not buy a second, unthrottled guessing channel; both share one
// account bucket and one pair lockout.
func (s *Server) passwordCheck(ctx context.Context, what string, throttled func(Observer), account, ip, device string, check func() error) error {
	t := s.cfg.Throttle
	if t == nil {
		return check()
	}
	d, err := t.DeviceLogin(ctx, account, ip, device)
	if err != nil {
		return err
	}
	if !d.Allowed {
		if s.cfg.Observer != nil {
			throttled(s.cfg.Observer)
		}
		s.log.Info(what+" throttled", "request_id", requestIDFrom(ctx), "limit", d.Reason, "retry_after", d.RetryAfter.String())
		return tooMany(d)
	}
	err = check()
	// Recorded even if the client hung up: cancelling a request after the
	// hash must not erase the failure.
	rctx := context.WithoutCancel(ctx)
	var terr error
	switch {
	case errors.Is(err, session.ErrBadCredential):
		terr = t.LoginFailed(rctx, account, ip)
	case err == nil:
		terr = t.LoginSucceeded(rctx, account, ip)
	}
	if terr != nil {
		s.log.Warn("recording a "+what+" outcome for rate limits", "request_id", requestIDFrom(ctx), "err", terr)
	}
	return err
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
