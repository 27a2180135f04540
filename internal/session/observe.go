package session

import (
	"context"
	"errors"

	"github.com/latchauth/latch/internal/password"
)

// Observer is told the outcome of every login, refresh and revocation, for
// metrics. Each method is called once per operation, after its transaction
// committed or rolled back, on the caller's goroutine: implementations must
// be cheap, must not block and must be safe for concurrent use. Outcomes,
// causes and reasons are the constants below and the Reason constants.
type Observer interface {
	// LoggedIn reports a password login: LoginSuccess, LoginBadCredentials
	// or LoginError.
	LoggedIn(outcome string)
	// Refreshed reports a refresh_token grant; cause is one of the Reuse
	// causes when outcome is RefreshReuse, and empty otherwise.
	Refreshed(outcome, cause string)
	// Revoked reports n sessions revoked for reason (ReasonLogout, …) by
	// one committed transaction.
	Revoked(reason string, n int)
	// PasswordChanged reports a password change: PasswordChangeSuccess,
	// PasswordChangeBadCredentials, PasswordChangeWeak or
	// PasswordChangeError.
	PasswordChanged(outcome string)
}

// WithObserver sets the Observer; the default observes nothing.
func WithObserver(o Observer) Option { return func(s *Service) { s.obs = o } }

// Login outcomes reported to [Observer.LoggedIn].
const (
	LoginSuccess = "success"
	// LoginBadCredentials covers an unknown email, a wrong password and a
	// disabled account alike.
	LoginBadCredentials = "bad_credentials"
	// LoginError is anything else: storage unavailable, hashing capacity
	// exhausted (password.ErrBusy), a signing failure.
	LoginError = "error"
	// LoginClientGone: the client left before the login finished.
	LoginClientGone = "client_gone"
)

// Password change outcomes reported to [Observer.PasswordChanged].
const (
	PasswordChangeSuccess = "success"
	// PasswordChangeBadCredentials: the current password was wrong (or the
	// account was disabled meanwhile).
	PasswordChangeBadCredentials = "bad_credentials"
	// PasswordChangeWeak: the new password failed password.CheckPolicy;
	// the current one was not checked.
	PasswordChangeWeak = "weak_password"
	// PasswordChangeError is anything else: storage, hashing capacity, a
	// concurrent change.
	PasswordChangeError = "error"
)

// Refresh outcomes reported to [Observer.Refreshed].
const (
	RefreshRotated        = "rotated"         // the current token: rotated
	RefreshGraceDuplicate = "grace_duplicate" // the parent within G: the identical current token
	RefreshLostResponse   = "lost_response"   // the parent within L: a fresh successor
	RefreshReuse          = "reuse"           // the session was revoked (see the Reuse causes)
	RefreshExpired        = "expired"         // the session had expired (idle or absolute)
	RefreshRevoked        = "revoked"         // the session had been revoked before
	// RefreshStale: the request was abandoned by its client or sent more
	// than G before the server acted, and would have abandoned a token or
	// revoked the session; nothing changed (ErrStale).
	RefreshStale = "stale"
	// RefreshInvalid covers malformed, forged and unknown (swept) tokens, a
	// token of another client and a scope wider than the grant.
	RefreshInvalid = "invalid"
	// RefreshUnavailable is a storage failure: nothing changed and the
	// client retries.
	RefreshUnavailable = "unavailable"
	// RefreshClientGone: the client left before the refresh finished
	// (ErrCanceled), a client's fault that must not look like an outage.
	RefreshClientGone = "client_gone"
	// RefreshShed: no storage connection came free in time (ErrBusy): the
	// node was at capacity and shed the request; nothing changed.
	RefreshShed = "shed"
)

// RefreshOutcomes returns every Refresh outcome, for metrics that create
// their series up front.
func RefreshOutcomes() []string {
	return []string{RefreshRotated, RefreshGraceDuplicate, RefreshLostResponse, RefreshReuse,
		RefreshExpired, RefreshRevoked, RefreshStale, RefreshInvalid, RefreshUnavailable, RefreshClientGone, RefreshShed}
}

// ReuseCauses returns every Reuse cause.
func ReuseCauses() []string {
	return []string{ReuseAncestor, ReuseAbandoned, ReuseLateParent, ReuseUnknownGeneration}
}

// Reasons returns every revocation reason (the Reason constants).
func Reasons() []string {
	return []string{ReasonLogout, ReasonRemoteLogout, ReasonPasswordChange, ReasonUserDisabled, ReasonReuse, ReasonTokenRevoked, ReasonAdmin}
}

// LoginOutcomes returns every login outcome the service reports.
func LoginOutcomes() []string {
	return []string{LoginSuccess, LoginBadCredentials, LoginError, LoginClientGone}
}

// PasswordChangeOutcomes returns every password-change outcome the service
// reports.
func PasswordChangeOutcomes() []string {
	return []string{PasswordChangeSuccess, PasswordChangeBadCredentials, PasswordChangeWeak, PasswordChangeError}
}

// Reuse causes reported with RefreshReuse: which token came back.
const (
	// ReuseAncestor: a token older than the parent.
	ReuseAncestor = "ancestor"
	// ReuseAbandoned: a successor abandoned when a lost-response successor
	// replaced it (a generation between the parent and the current one).
	ReuseAbandoned = "abandoned_successor"
	// ReuseLateParent: the parent, after the grace window and after the
	// lost-response window (or with the lost-response window off).
	ReuseLateParent = "late_parent"
	// ReuseUnknownGeneration: a generation the session never handed out
	// (newer than the current one, or a parent before any rotation), which
	// only a restored database or a leaked MAC key explains.
	ReuseUnknownGeneration = "unknown_generation"
)

// observeRefresh reports one refresh: rot's outcome when it committed (err
// is nil), else the class of err.
func (s *Service) observeRefresh(rot rotation, err error) {
	if s.obs == nil {
		return
	}
	var o, cause string
	switch {
	case err == nil:
		o = rot.Outcome
		if o == RefreshReuse {
			cause = rot.Cause
		}
	case errors.Is(err, ErrStale):
		o = RefreshStale
	case errors.Is(err, ErrExpired):
		o = RefreshExpired
	case errors.Is(err, ErrRevoked):
		o = RefreshRevoked
	case errors.Is(err, ErrInvalidToken), errors.Is(err, ErrWrongClient), errors.Is(err, ErrInvalidScope), errors.Is(err, ErrInvalidTarget),
		errors.Is(err, ErrDPoPMismatch), errors.Is(err, ErrDPoPRequired):
		o = RefreshInvalid
	case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
		o = RefreshClientGone
	case errors.Is(err, ErrBusy):
		o = RefreshShed
	default:
		o = RefreshUnavailable
	}
	s.obs.Refreshed(o, cause)
}

// observeLogin reports one login by its error.
func (s *Service) observeLogin(err error) {
	if s.obs == nil {
		return
	}
	switch {
	case err == nil:
		s.obs.LoggedIn(LoginSuccess)
	case errors.Is(err, ErrBadCredential):
		s.obs.LoggedIn(LoginBadCredentials)
	case errors.Is(err, ErrCanceled), errors.Is(err, context.Canceled):
		s.obs.LoggedIn(LoginClientGone)
	default:
		s.obs.LoggedIn(LoginError)
	}
}

// observePasswordChange reports one password change by its error.
func (s *Service) observePasswordChange(err error) {
	if s.obs == nil {
		return
	}
	switch {
	case err == nil:
		s.obs.PasswordChanged(PasswordChangeSuccess)
	case errors.Is(err, ErrBadCredential):
		s.obs.PasswordChanged(PasswordChangeBadCredentials)
	case password.IsPolicy(err):
		s.obs.PasswordChanged(PasswordChangeWeak)
	default:
		s.obs.PasswordChanged(PasswordChangeError)
	}
}
