package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/password"
)

// Logout ends sessions of the user who holds session sid: that session
// (ScopeOne), the user's other sessions (ScopeOthers) or all of them. It
// returns the ids it revoked; repeating a logout is not an error.
func (s *Service) Logout(ctx context.Context, userID, sid string, scope Scope, m Meta) ([]string, error) {
	switch scope {
	case ScopeOne, ScopeOthers, ScopeAll:
	default:
		return nil, fmt.Errorf("session: unknown logout scope %q", scope)
	}
	now := s.now()
	var ids []string
	err := s.inTx(ctx, func(tx Tx) error {
		var err error
		ids, err = tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: userID, SessionID: sid, Scope: scope, Reason: ReasonLogout}, now))
		if err != nil || len(ids) == 0 {
			// A logout that ended nothing changes nothing: no audit row,
			// no webhook (docs/design.md "Security baseline").
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.Logout, UserID: userID, SessionID: sid, Detail: fmt.Sprintf("scope %s, %d sessions", scope, len(ids))}, m))
	})
	if err != nil {
		return nil, fmt.Errorf("session: logout: %w", err)
	}
	return ids, nil
}

// RevokeSession ends one session of userID (remote logout). A session of
// another user, or none, is ErrNotFound; an already revoked one is not an
// error. With userID empty (operators), any session may be revoked.
func (s *Service) RevokeSession(ctx context.Context, userID, target string, m Meta) error {
	now := s.now()
	reason := ReasonRemoteLogout
	if userID == "" {
		reason = ReasonAdmin
	}
	err := s.inTx(ctx, func(tx Tx) error {
		ses, err := tx.LockSession(ctx, target)
		if err != nil {
			return err
		}
		if userID != "" && ses.UserID != userID {
			return ErrNotFound
		}
		if !ses.RevokedAt.IsZero() {
			return nil // already ended: nothing to audit or announce
		}
		if _, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: ses.UserID, SessionID: target, Scope: ScopeOne, Reason: reason}, now)); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.SessionRevoked, UserID: ses.UserID, SessionID: target, Detail: reason}, m))
	})
	if err != nil {
		return fmt.Errorf("session: revoke: %w", err)
	}
	return nil
}

// RevokeTokenRequest is an RFC 7009 revocation request.
type RevokeTokenRequest struct {
	// Token is the token as presented: a refresh token, or an access token
	// the caller has verified (then Access is set).
	Token string
	// Access, when set, is what the verified access token Token names.
	// The session package does not verify access tokens: the HTTP layer
	// does, with the verifier resource servers run.
	Access *AccessToken
	// Client is the authenticated client asking.
	Client Client
	Meta   Meta
}

// AccessToken is what a verified access token names.
type AccessToken struct {
	UserID    string // sub
	SessionID string // sid
	ClientID  string // client_id
}

// RevokeToken implements RFC 7009 for both kinds of token: a valid token
// issued to req.Client ends its session. Per section 2.2 an invalid or
// unknown token, or one whose session has ended already, is not an error
// (and records nothing); per section 2.1 a token issued to another client
// is refused with ErrWrongClient, the one place that rule lives for
// revocation (Refresh applies it to grants).
func (s *Service) RevokeToken(ctx context.Context, req RevokeTokenRequest) error {
	sid, issuedTo := "", ""
	if a := req.Access; a != nil {
		sid, issuedTo = a.SessionID, a.ClientID
	} else {
		raw, _, err := s.codec.Decode(req.Token)
		if err != nil {
			return nil
		}
		sid = idString(raw)
	}
	now := s.now()
	err := s.inTx(ctx, func(tx Tx) error {
		ses, err := tx.LockSession(ctx, sid)
		if err != nil {
			return err
		}
		if req.Access != nil && ses.UserID != req.Access.UserID {
			return ErrNotFound // not this token's session
		}
		if issuedTo == "" {
			issuedTo = ses.ClientID // a refresh token belongs to its session's client
		}
		if issuedTo != req.Client.ID {
			// RFC 7009 section 2.1: the token must have been issued to the
			// client asking; otherwise the request is refused.
			return ErrWrongClient
		}
		if !ses.RevokedAt.IsZero() {
			return nil // already ended: nothing to audit or announce
		}
		if _, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: ses.UserID, SessionID: sid, Scope: ScopeOne, Reason: ReasonTokenRevoked}, now)); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.TokenRevoked, UserID: ses.UserID, SessionID: sid, ClientID: req.Client.ID}, req.Meta))
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: revoke token: %w", err)
	}
	return nil
}

// ActiveSession returns session sid if it is active and belongs to userID;
// the account endpoints call it for every request they serve.
func (s *Service) ActiveSession(ctx context.Context, userID, sid string) (Session, error) {
	ses, err := s.store.Session(ctx, sid)
	if err != nil {
		return Session{}, err
	}
	if ses.UserID != userID {
		return Session{}, ErrNotFound
	}
	if err := ses.state(s.now()); err != nil {
		return Session{}, err
	}
	return ses, nil
}

// Sessions returns the user's active sessions, newest first.
func (s *Service) Sessions(ctx context.Context, userID string) ([]Session, error) {
	all, err := s.store.UserSessions(ctx, userID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	active := all[:0]
	for _, ses := range all {
		if ses.Active(now) {
			active = append(active, ses)
		}
	}
	return active, nil
}

// ChangePassword sets a new password after checking the current one, and
// ends every other session of the user in the same transaction; session
// keep (the caller's) stays.
//
// The new password's policy is checked first, so that a weak_password
// answer says nothing about the current password (else a correct guess
// with a short new password would be told apart from a wrong one without
// changing anything). A wrong current password is audited
// (audit.PasswordChangeFailed) and returns ErrBadCredential; like a login,
// the caller throttles attempts (the HTTP API runs them through the login
// throttle).
func (s *Service) ChangePassword(ctx context.Context, userID, keep, current, next string, m Meta) error {
	err := s.changePassword(ctx, userID, keep, current, next, m)
	s.observePasswordChange(err)
	return err
}

func (s *Service) changePassword(ctx context.Context, userID, keep, current, next string, m Meta) error {
	u, err := s.store.User(ctx, userID)
	if err != nil {
		return err
	}
	if err := password.CheckPolicy(next, u.Email); err != nil {
		return err
	}
	if err := s.hasher.Verify(ctx, u.Email, current, u.PasswordHash); err != nil {
		if errors.Is(err, password.ErrBusy) {
			return err
		}
		s.auditPasswordChangeFailure(ctx, userID, keep, m)
		return ErrBadCredential
	}
	hash, err := s.hasher.Hash(ctx, u.Email, next)
	if err != nil {
		return err
	}
	now := s.now()
	err = s.inTx(ctx, func(tx Tx) error {
		locked, err := tx.LockUser(ctx, userID)
		if err != nil {
			return err
		}
		if locked.PasswordHash != u.PasswordHash {
			return ErrConflict // changed since the current password was checked
		}
		if !locked.DisabledAt.IsZero() {
			return ErrBadCredential
		}
		locked.PasswordHash, locked.PasswordChangedAt = hash, now
		if err := tx.UpdateUser(ctx, locked); err != nil {
			return err
		}
		// A new password voids every link sent before it.
		if err := tx.DeleteMessageTokens(ctx, userID); err != nil {
			return err
		}
		ids, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: userID, SessionID: keep, Scope: ScopeOthers, Reason: ReasonPasswordChange}, now))
		if err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.PasswordChanged, UserID: userID, SessionID: keep, Detail: fmt.Sprintf("%d other sessions ended", len(ids))}, m))
	})
	if err != nil {
		return fmt.Errorf("session: change password: %w", err)
	}
	return nil
}

// auditPasswordChangeFailure records a wrong current password. Like
// auditFailure, its own failure is logged, not returned.
func (s *Service) auditPasswordChangeFailure(ctx context.Context, userID, sid string, m Meta) {
	now := s.now()
	err := s.inTx(ctx, func(tx Tx) error {
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.PasswordChangeFailed, UserID: userID, SessionID: sid}, m))
	})
	if err != nil {
		s.log.Error("audit password change failure", "err", err)
	}
}

// DisableUser blocks the user's logins and ends all their sessions.
func (s *Service) DisableUser(ctx context.Context, userID string, m Meta) error {
	now := s.now()
	err := s.inTx(ctx, func(tx Tx) error {
		u, err := tx.LockUser(ctx, userID)
		if err != nil {
			return err
		}
		changed := u.DisabledAt.IsZero()
		if changed {
			u.DisabledAt = now
			if err := tx.UpdateUser(ctx, u); err != nil {
				return err
			}
		}
		// Sessions of a disabled user are ended again, in case one was
		// started before the disable committed; a repeat that ends none
		// says nothing.
		ids, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: userID, Scope: ScopeAll, Reason: ReasonUserDisabled}, now))
		if err != nil || (!changed && len(ids) == 0) {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.UserDisabled, UserID: userID, Detail: fmt.Sprintf("%d sessions ended", len(ids))}, m))
	})
	if err != nil {
		return fmt.Errorf("session: disable user: %w", err)
	}
	return nil
}

// Sweep deletes sessions that were revoked or expired more than retention
// ago, revocation-feed entries past their until, and audit events older
// than Config.AuditRetention (when set), so tables stay bounded. It returns
// the sessions deleted.
func (s *Service) Sweep(ctx context.Context, retention time.Duration) (int64, error) {
	now := s.now()
	n, err := s.store.DeleteStale(ctx, now.Add(-retention), now)
	if err != nil {
		return 0, fmt.Errorf("session: sweep: %w", err)
	}
	if s.cfg.AuditRetention > 0 {
		if _, err := s.store.DeleteAudit(ctx, now.Add(-s.cfg.AuditRetention)); err != nil {
			return n, fmt.Errorf("session: sweep audit events: %w", err)
		}
	}
	return n, nil
}

// User returns a user by id.
func (s *Service) User(ctx context.Context, id string) (User, error) { return s.store.User(ctx, id) }

// UserByEmail returns a user by (normalised) email.
func (s *Service) UserByEmail(ctx context.Context, email string) (User, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	return s.store.UserByEmail(ctx, e)
}

// Users returns all users.
func (s *Service) Users(ctx context.Context) ([]User, error) { return s.store.Users(ctx) }
