package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/dtoken"
	"github.com/latchauth/latch/internal/password"
)

// MaxMetadata bounds a user's user_metadata, in bytes of compact JSON.
const MaxMetadata = 4 << 10

// ErrInvalidMetadata is user_metadata that is not a JSON object of at most
// MaxMetadata bytes.
var ErrInvalidMetadata = errors.New("session: user_metadata must be a JSON object of at most 4 KiB")

// Me returns the user (GET /v1/me).
func (s *Service) Me(ctx context.Context, userID string) (User, error) {
	return s.store.User(ctx, userID)
}

// UpdateMetadata replaces the user's own metadata with meta, a JSON object
// of at most MaxMetadata bytes once compacted, and returns the user.
func (s *Service) UpdateMetadata(ctx context.Context, userID string, meta []byte, m Meta) (User, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, meta); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' || buf.Len() > MaxMetadata {
		return User{}, ErrInvalidMetadata
	}
	now := s.now()
	var u User
	err := s.inTx(ctx, func(tx Tx) error {
		var err error
		if u, err = tx.LockUser(ctx, userID); err != nil {
			return err
		}
		u.Metadata = buf.String()
		if u.Metadata == "{}" {
			u.Metadata = ""
		}
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.UserUpdated, UserID: userID, Detail: "user_metadata"}, m))
	})
	if err != nil {
		return User{}, fmt.Errorf("session: update metadata: %w", err)
	}
	return u, nil
}

// sendToken makes a token of purpose for u, sent to addr, voiding u's
// older token of that purpose, and writes its message to the outbox: all
// in tx, so a message exists exactly when its token does.
func (s *Service) sendToken(ctx context.Context, tx Tx, u *User, purpose, addr, sid string, kind MessageKind, now time.Time) error {
	ttl := s.mailCfg.VerifyTTL
	if purpose == PurposeReset {
		ttl = s.mailCfg.ResetTTL
	}
	tok, hash := newMessageToken(purpose)
	if err := tx.PutMessageToken(ctx, MessageToken{Hash: hash, UserID: u.ID, Purpose: purpose, Email: addr, CreatedAt: now, ExpiresAt: now.Add(ttl), SessionID: sid}); err != nil {
		return err
	}
	d := MessageData{Kind: kind, To: addr, Expires: ttl}
	if purpose == PurposeEmailChange {
		d.NewEmail = addr
	}
	msg, err := s.message(u.ID, d, tok, now)
	if err != nil {
		return err
	}
	return tx.EnqueueMessage(ctx, msg)
}

// notice writes a message without a token to the outbox.
func (s *Service) notice(ctx context.Context, tx Tx, userID string, d MessageData, now time.Time) error {
	msg, err := s.message(userID, d, "", now)
	if err != nil {
		return err
	}
	return tx.EnqueueMessage(ctx, msg)
}

// RequestVerification sends a verification link to the user's address
// (POST /v1/email/verify/request); an address already verified gets
// nothing, and that is not an error.
func (s *Service) RequestVerification(ctx context.Context, userID string, m Meta) error {
	if s.composer == nil {
		return ErrMailUnavailable
	}
	now := s.now()
	err := s.inTx(ctx, func(tx Tx) error {
		u, err := tx.LockUser(ctx, userID)
		if err != nil {
			return err
		}
		if !u.EmailVerifiedAt.IsZero() || !u.DisabledAt.IsZero() {
			return nil
		}
		if err := s.sendToken(ctx, tx, &u, PurposeVerify, u.Email, "", KindVerify, now); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.EmailVerifyRequested, UserID: userID}, m))
	})
	if err != nil {
		return fmt.Errorf("session: request verification: %w", err)
	}
	return nil
}

// takeToken takes the token with hash in tx and checks it: unexpired, of
// one of purposes, issued since its user's password last changed, for a
// user that is not disabled. It returns the token and its user, locked.
// Any failure is ErrInvalidMessageToken, whose transaction rolls back and
// so leaves a token that was not used where it was.
func (s *Service) takeToken(ctx context.Context, tx Tx, hash []byte, now time.Time, purposes ...string) (MessageToken, User, error) {
	t, err := tx.TakeMessageToken(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return MessageToken{}, User{}, ErrInvalidMessageToken
	}
	if err != nil {
		return MessageToken{}, User{}, err
	}
	ok := false
	for _, p := range purposes {
		ok = ok || t.Purpose == p
	}
	if !ok || !now.Before(t.ExpiresAt) {
		return MessageToken{}, User{}, ErrInvalidMessageToken
	}
	u, err := tx.LockUser(ctx, t.UserID)
	if errors.Is(err, ErrNotFound) {
		return MessageToken{}, User{}, ErrInvalidMessageToken
	}
	if err != nil {
		return MessageToken{}, User{}, err
	}
	// A new password voids every link sent before it.
	if t.CreatedAt.Before(u.PasswordChangedAt) || !u.DisabledAt.IsZero() {
		return MessageToken{}, User{}, ErrInvalidMessageToken
	}
	return t, u, nil
}

// VerifyEmail takes a verification token (POST /v1/email/verify): the
// address it was sent to is verified; for an email change, that address
// becomes the user's. ErrInvalidMessageToken for any token that cannot be
// used; ErrEmailTaken if the new address was registered meanwhile.
func (s *Service) VerifyEmail(ctx context.Context, tok string, m Meta) error {
	hash, err := parseMessageToken(tok, PrefixVerify)
	if err != nil {
		return err
	}
	now := s.now()
	err = s.inTx(ctx, func(tx Tx) error {
		t, u, err := s.takeToken(ctx, tx, hash, now, PurposeVerify, PurposeEmailChange)
		if err != nil {
			return err
		}
		ev := audit.Event{At: now, Type: audit.EmailVerified, UserID: u.ID}
		switch t.Purpose {
		case PurposeVerify:
			if t.Email != u.Email {
				return ErrInvalidMessageToken // sent to an address the user has left
			}
		case PurposeEmailChange:
			u.Email = t.Email
			ev.Type = audit.EmailChanged
			// Links sent to the old address (a reset, a verification)
			// must not act on the account any more.
			if err := tx.DeleteMessageTokens(ctx, u.ID); err != nil {
				return err
			}
			// Whoever else is signed in loses the account with its old
			// address; the session that asked stays.
			rv := Revocation{UserID: u.ID, SessionID: t.SessionID, Scope: ScopeOthers, Reason: ReasonEmailChange}
			if t.SessionID == "" {
				rv.Scope = ScopeAll
			}
			ids, err := tx.RevokeSessions(ctx, s.revocation(rv, now))
			if err != nil {
				return err
			}
			ev.Detail = fmt.Sprintf("%d other sessions ended", len(ids))
		}
		u.EmailVerifiedAt = now
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(ev, m))
	})
	if err != nil {
		return fmt.Errorf("session: verify email: %w", err)
	}
	return nil
}

// ChangeEmail starts an email change (POST /v1/email/change) after
// checking the password: a link to the new address makes the change, and
// the old address is told. A new address that already has an account gets
// a notice instead, so the answer is the same either way. When the change
// happens, the user's sessions other than sid (the one asking) end. A
// wrong password is ErrBadCredential (audited; the caller throttles it as
// a login).
func (s *Service) ChangeEmail(ctx context.Context, userID, sid, newEmail, pw string, m Meta) error {
	if s.composer == nil {
		return ErrMailUnavailable
	}
	addr, err := NormalizeEmail(newEmail)
	if err != nil {
		return err
	}
	u, err := s.store.User(ctx, userID)
	if err != nil {
		return err
	}
	if err := s.checkPassword(ctx, &u, pw, audit.EmailChangeFailed, m); err != nil {
		return err
	}
	other, err := s.store.UserByEmail(ctx, addr)
	taken := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	now := s.now()
	err = s.inTx(ctx, func(tx Tx) error {
		locked, err := tx.LockUser(ctx, userID)
		if err != nil {
			return err
		}
		if locked.Email == addr {
			return nil // nothing to change
		}
		switch {
		case taken:
			if err := s.notice(ctx, tx, other.ID, MessageData{Kind: KindAccountExists, To: addr}, now); err != nil {
				return err
			}
		default:
			if err := s.sendToken(ctx, tx, &locked, PurposeEmailChange, addr, sid, KindEmailChange, now); err != nil {
				return err
			}
		}
		if err := s.notice(ctx, tx, userID, MessageData{Kind: KindEmailChangeNotice, To: locked.Email, NewEmail: addr}, now); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.EmailChangeRequested, UserID: userID}, m))
	})
	if err != nil {
		return fmt.Errorf("session: change email: %w", err)
	}
	return nil
}

// checkPassword verifies pw for u, auditing a wrong one as failType.
func (s *Service) checkPassword(ctx context.Context, u *User, pw, failType string, m Meta) error {
	if err := s.hasher.Verify(ctx, u.Email, pw, u.PasswordHash); err != nil {
		if errors.Is(err, password.ErrBusy) {
			return err
		}
		now := s.now()
		if aerr := s.inTx(ctx, func(tx Tx) error {
			return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: failType, UserID: u.ID}, m))
		}); aerr != nil {
			s.log.Error("audit failed password check", "err", aerr)
		}
		return ErrBadCredential
	}
	if !u.DisabledAt.IsZero() {
		return ErrBadCredential
	}
	return nil
}

// ForgotPassword sends a reset link to email if it names an account that
// is not disabled (POST /v1/password/forgot). Whether it does is not
// returned: an unknown address is not an error. The HTTP layer runs it
// off the request, so its answer and timing are the same either way.
func (s *Service) ForgotPassword(ctx context.Context, email string, m Meta) error {
	if s.composer == nil {
		return ErrMailUnavailable
	}
	addr, err := NormalizeEmail(email)
	if err != nil {
		return nil
	}
	u, err := s.store.UserByEmail(ctx, addr)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: forgot password: %w", err)
	}
	now := s.now()
	err = s.inTx(ctx, func(tx Tx) error {
		locked, err := tx.LockUser(ctx, u.ID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil || !locked.DisabledAt.IsZero() {
			return err
		}
		if err := s.sendToken(ctx, tx, &locked, PurposeReset, locked.Email, "", KindReset, now); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.PasswordResetRequested, UserID: u.ID}, m))
	})
	if err != nil {
		return fmt.Errorf("session: forgot password: %w", err)
	}
	return nil
}

// ResetRequest sets a new password with a reset token.
type ResetRequest struct {
	Token       string
	NewPassword string
	// Login starts a session for Client in the same transaction.
	Login  bool
	Client Client
	Meta   Meta
}

// ResetPassword takes a reset token and sets the new password (POST
// /v1/password/reset). In one transaction: the token is used, every
// session of the user is revoked (and reaches the revocation feed), every
// other link of the user is voided, device tokens die with the old
// password hash, and the address counts as verified (the link reached
// it). The new password's policy is checked before the token is used, so
// a weak password does not burn the link.
func (s *Service) ResetPassword(ctx context.Context, req ResetRequest) (Tokens, error) {
	hash, err := parseMessageToken(req.Token, PrefixReset)
	if err != nil {
		return Tokens{}, err
	}
	now := s.now()
	t, err := s.store.MessageToken(ctx, hash)
	if errors.Is(err, ErrNotFound) || err == nil && (t.Purpose != PurposeReset || !now.Before(t.ExpiresAt)) {
		return Tokens{}, ErrInvalidMessageToken
	}
	if err != nil {
		return Tokens{}, err
	}
	u, err := s.store.User(ctx, t.UserID)
	if errors.Is(err, ErrNotFound) {
		return Tokens{}, ErrInvalidMessageToken
	}
	if err != nil {
		return Tokens{}, err
	}
	if err := password.CheckPolicy(req.NewPassword, u.Email); err != nil {
		return Tokens{}, err
	}
	pwHash, err := s.hasher.Hash(ctx, u.Email, req.NewPassword)
	if err != nil {
		return Tokens{}, err
	}
	var ses Session
	scope := grantScope("", &req.Client)
	err = s.inTx(ctx, func(tx Tx) error {
		tok, locked, err := s.takeToken(ctx, tx, hash, now, PurposeReset)
		if err != nil {
			return err
		}
		if locked.PasswordHash != u.PasswordHash {
			return ErrInvalidMessageToken // the password changed since the check
		}
		locked.PasswordHash, locked.PasswordChangedAt = pwHash, now
		if tok.Email == locked.Email && locked.EmailVerifiedAt.IsZero() {
			locked.EmailVerifiedAt = now
		}
		if err := tx.UpdateUser(ctx, locked); err != nil {
			return err
		}
		if err := tx.DeleteMessageTokens(ctx, locked.ID); err != nil {
			return err
		}
		ids, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: locked.ID, Scope: ScopeAll, Reason: ReasonPasswordReset}, now))
		if err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.PasswordReset, UserID: locked.ID, Detail: fmt.Sprintf("%d sessions ended", len(ids))}, req.Meta)); err != nil {
			return err
		}
		if err := s.notice(ctx, tx, locked.ID, MessageData{Kind: KindPasswordChanged, To: locked.Email}, now); err != nil {
			return err
		}
		u = locked
		if !req.Login {
			return nil
		}
		ses = s.newSession(&locked, &req.Client, scope, req.Meta, now)
		return s.insertSession(ctx, tx, &ses, req.Meta)
	})
	if err != nil {
		return Tokens{}, fmt.Errorf("session: reset password: %w", err)
	}
	if !req.Login {
		return Tokens{}, nil
	}
	out, err := s.tokens(&ses, &req.Client, scope, u.AppMetadata, ses.DPoPJKT, now)
	if err != nil {
		return Tokens{}, err
	}
	out.DeviceToken = s.deviceToken(&u, [dtoken.IDSize]byte{}, now)
	return out, nil
}

// DeleteAccount deletes the caller's account after checking the password
// (DELETE /v1/me); see DeleteUser. A wrong password is ErrBadCredential
// (audited; the caller throttles it as a login).
func (s *Service) DeleteAccount(ctx context.Context, userID, pw string, m Meta) error {
	u, err := s.store.User(ctx, userID)
	if err != nil {
		return err
	}
	if err := s.checkPassword(ctx, &u, pw, audit.AccountDeleteFailed, m); err != nil {
		return err
	}
	return s.DeleteUser(ctx, userID, Meta{})
}

// DeleteUser deletes an account, in one transaction: every session is
// revoked (the revocation feed hears of each), then the user row goes with
// their email, metadata, sessions (their IPs and user agents), links and
// queued messages; their audit events stay, stripped to the user id, type,
// time and session and client ids. The deletion itself is audited the
// same way, with no IP or user agent. Operators call it too (latch users
// delete), and so does the admin API: m.Actor, the admin client, is kept
// with the event (m's IP and user agent are not).
func (s *Service) DeleteUser(ctx context.Context, userID string, m Meta) error {
	now := s.now()
	err := s.inTx(ctx, func(tx Tx) error {
		if _, err := tx.LockUser(ctx, userID); err != nil {
			return err
		}
		ids, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: userID, Scope: ScopeAll, Reason: ReasonUserDeleted}, now))
		if err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, audit.Event{At: now, Type: audit.UserDeleted, UserID: userID, Detail: fmt.Sprintf("%d sessions ended", len(ids)), Actor: m.Actor}); err != nil {
			return err
		}
		return tx.DeleteUser(ctx, userID)
	})
	if err != nil {
		return fmt.Errorf("session: delete user: %w", err)
	}
	return nil
}

// SignupQuietly is signup for --signup-enumeration-safe: a new address
// gets an account (without a session) and a verification link; an address
// that already has one gets a notice, and nothing is created. The caller
// answers the same either way and runs it off the request.
func (s *Service) SignupQuietly(ctx context.Context, req SignupRequest) error {
	if s.composer == nil {
		return ErrMailUnavailable
	}
	addr, err := NormalizeEmail(req.Email)
	if err != nil {
		return err
	}
	u, err := s.store.UserByEmail(ctx, addr)
	if err == nil {
		// The same password hash a new account costs, thrown away: the
		// work after the answer takes the server's CPU alike for both, so
		// the latency of an attacker's next request does not tell whether
		// the address it just tried was registered.
		if _, err := s.hasher.Hash(ctx, addr, req.Password); err != nil {
			return err
		}
		now := s.now()
		return s.inTx(ctx, func(tx Tx) error {
			return s.notice(ctx, tx, u.ID, MessageData{Kind: KindAccountExists, To: u.Email}, now)
		})
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	req.Login = false
	_, _, err = s.Signup(ctx, req)
	if errors.Is(err, ErrEmailTaken) {
		return nil // a concurrent signup won; its owner has the link
	}
	return err
}

// RequireVerified reports whether logins need a verified address.
func (s *Service) RequireVerified() bool { return s.mailCfg.RequireVerified }

// MailEnabled reports whether the account email flows are on.
func (s *Service) MailEnabled() bool { return s.composer != nil }

// CheckLink reports whether tok is now a usable link of purpose
// (PurposeReset, or PurposeVerify for verification and email-change
// links), without using it: the hosted pages show a form only for a
// link that can work. ErrInvalidMessageToken otherwise.
func (s *Service) CheckLink(ctx context.Context, tok, purpose string) error {
	prefix, purposes := PrefixVerify, []string{PurposeVerify, PurposeEmailChange}
	if purpose == PurposeReset {
		prefix, purposes = PrefixReset, []string{PurposeReset}
	}
	hash, err := parseMessageToken(tok, prefix)
	if err != nil {
		return err
	}
	t, err := s.store.MessageToken(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return ErrInvalidMessageToken
	}
	if err != nil {
		return err
	}
	if !slices.Contains(purposes, t.Purpose) || !s.now().Before(t.ExpiresAt) {
		return ErrInvalidMessageToken
	}
	u, err := s.store.User(ctx, t.UserID)
	if errors.Is(err, ErrNotFound) || err == nil && (t.CreatedAt.Before(u.PasswordChangedAt) || !u.DisabledAt.IsZero()) {
		return ErrInvalidMessageToken
	}
	return err
}
