package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/dtoken"
	"github.com/latchauth/latch/internal/password"
)

// SignupRequest creates a user and, when Login is set, starts a session
// for them in the same transaction.
type SignupRequest struct {
	Email    string
	Password string
	Login    bool
	Client   Client
	Scope    string
	// Resource optionally narrows the access token's aud to one of the
	// client's audiences (RFC 8707).
	Resource string
	Meta     Meta
	// DPoPJKT binds the new session to the key of the request's verified
	// DPoP proof (RFC 9449 section 5); "" for none.
	DPoPJKT string
}

// Signup creates a user. The email is normalised; the password must meet
// password.CheckPolicy. With req.Login the tokens of a new session are
// returned too; without, Tokens is zero.
func (s *Service) Signup(ctx context.Context, req SignupRequest) (User, Tokens, error) {
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		return User{}, Tokens{}, err
	}
	if req.Client, err = req.Client.Narrow(req.Resource); err != nil {
		return User{}, Tokens{}, err
	}
	if req.Login && req.Client.DPoPRequired && req.DPoPJKT == "" {
		return User{}, Tokens{}, ErrDPoPRequired
	}
	if err := password.CheckPolicy(req.Password, email); err != nil {
		return User{}, Tokens{}, err
	}
	scope := grantScope(req.Scope, &req.Client)
	hash, err := s.hasher.Hash(ctx, email, req.Password)
	if err != nil {
		return User{}, Tokens{}, err
	}
	now := s.now()
	u := User{ID: NewID(), Email: email, PasswordHash: hash, CreatedAt: now, PasswordChangedAt: now}
	ses := s.newSession(&u, &req.Client, scope, req.Meta, now)
	ses.DPoPJKT = req.DPoPJKT
	err = s.inTx(ctx, func(tx Tx) error {
		if err := tx.InsertUser(ctx, u); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.Signup, UserID: u.ID}, req.Meta)); err != nil {
			return err
		}
		if s.composer != nil {
			// The first verification link, written with the user.
			if err := s.sendToken(ctx, tx, &u, PurposeVerify, u.Email, "", KindVerify, now); err != nil {
				return err
			}
		}
		if !req.Login {
			return nil
		}
		return s.insertSession(ctx, tx, &ses, req.Meta)
	})
	if err != nil {
		return User{}, Tokens{}, fmt.Errorf("session: signup: %w", err)
	}
	if !req.Login {
		return u, Tokens{}, nil
	}
	t, err := s.tokens(&ses, &req.Client, scope, u.AppMetadata, ses.DPoPJKT, now)
	if err != nil {
		return User{}, Tokens{}, err
	}
	t.DeviceToken = s.deviceToken(&u, [dtoken.IDSize]byte{}, now)
	return u, t, nil
}

func (s *Service) newSession(u *User, c *Client, scope string, m Meta, now time.Time) Session {
	ses := Session{
		ID: NewID(), UserID: u.ID, ClientID: c.ID, Scope: scope,
		CreatedAt: now, LastUsedAt: now, UserAgent: m.UserAgent, IP: m.IP,
		IdleExpiresAt: now.Add(s.cfg.Idle),
		Gen:           1, HandedAt: now, RotatedAt: now,
		RotatedIP: m.IP, RotatedUserAgent: m.UserAgent,
	}
	if s.cfg.MaxLifetime > 0 {
		ses.ExpiresAt = now.Add(s.cfg.MaxLifetime)
	}
	return ses
}

func (s *Service) insertSession(ctx context.Context, tx Tx, ses *Session, m Meta) error {
	if err := tx.InsertSession(ctx, *ses); err != nil {
		return err
	}
	return tx.AppendAudit(ctx, s.audit(audit.Event{At: ses.CreatedAt, Type: audit.LoginSucceeded, UserID: ses.UserID, SessionID: ses.ID, ClientID: ses.ClientID}, m))
}

// LoginRequest is a password login.
type LoginRequest struct {
	Email    string
	Password string
	Client   Client
	Scope    string
	// Resource optionally narrows the access token's aud to one of the
	// client's audiences (RFC 8707).
	Resource string
	Meta     Meta
	// DeviceToken is the device token the client sent, if any; a valid one
	// keeps its device id in the token the login returns.
	DeviceToken string
	// DPoPJKT binds the new session to the key of the request's verified
	// DPoP proof (RFC 9449 section 5); "" for none.
	DPoPJKT string
}

// Login checks the password and starts a session. Unknown email, wrong
// password and disabled account all return ErrBadCredential after one
// Argon2id run each, so neither answer nor timing tells them apart.
func (s *Service) Login(ctx context.Context, req LoginRequest) (Tokens, User, error) {
	// A resource the client has no audience for is refused before the
	// password is looked at: the answer depends on the client alone.
	var err error
	if req.Client, err = req.Client.Narrow(req.Resource); err != nil {
		return Tokens{}, User{}, err
	}
	if req.Client.DPoPRequired && req.DPoPJKT == "" {
		return Tokens{}, User{}, ErrDPoPRequired
	}
	t, u, err := s.login(ctx, req)
	s.observeLogin(err)
	return t, u, err
}

func (s *Service) login(ctx context.Context, req LoginRequest) (Tokens, User, error) {
	scope := grantScope(req.Scope, &req.Client)
	u, err := s.authenticate(ctx, req.Email, req.Password, req.Meta)
	if err != nil {
		return Tokens{}, User{}, err
	}
	now := s.now()
	ses := s.newSession(&u, &req.Client, scope, req.Meta, now)
	ses.DPoPJKT = req.DPoPJKT
	rehash := ""
	if s.hasher.NeedsRehash(u.PasswordHash) {
		// Raised parameters take effect at the next successful login.
		if rehash, err = s.hasher.Hash(ctx, u.Email, req.Password); err != nil {
			return Tokens{}, User{}, err
		}
	}
	err = s.inTx(ctx, func(tx Tx) error {
		locked, err := tx.LockUser(ctx, u.ID)
		if err != nil {
			return err
		}
		// The account may have been disabled, or its password changed,
		// while the hash was being checked.
		if !locked.DisabledAt.IsZero() || locked.PasswordHash != u.PasswordHash {
			return ErrBadCredential
		}
		if rehash != "" {
			locked.PasswordHash = rehash
			if err := tx.UpdateUser(ctx, locked); err != nil {
				return err
			}
		}
		return s.insertSession(ctx, tx, &ses, req.Meta)
	})
	if err != nil {
		return Tokens{}, User{}, fmt.Errorf("session: login: %w", err)
	}
	t, err := s.tokens(&ses, &req.Client, scope, u.AppMetadata, ses.DPoPJKT, now)
	if err != nil {
		return Tokens{}, User{}, err
	}
	device := s.returningDevice(&u, req.DeviceToken, now)
	if rehash != "" {
		u.PasswordHash = rehash // the epoch follows the stored hash
	}
	t.DeviceToken = s.deviceToken(&u, device, now)
	return t, u, nil
}

func (s *Service) authenticate(ctx context.Context, email, pw string, m Meta) (User, error) {
	norm, err := NormalizeEmail(email)
	// The hasher's per-key limit is per account, known or not.
	key := norm
	var u User
	if err == nil {
		u, err = s.store.UserByEmail(ctx, norm)
	} else {
		key = strings.ToLower(strings.TrimSpace(email))
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidEmail):
		// Unknown account: pay for a hash anyway.
		if err := s.hasher.Verify(ctx, key, pw, ""); errors.Is(err, password.ErrBusy) {
			return User{}, err
		}
		s.auditFailure(ctx, "", m)
		return User{}, ErrBadCredential
	default:
		return User{}, err
	}
	if err := s.hasher.Verify(ctx, key, pw, u.PasswordHash); err != nil {
		if errors.Is(err, password.ErrBusy) {
			return User{}, err
		}
		s.auditFailure(ctx, u.ID, m)
		return User{}, ErrBadCredential
	}
	if !u.DisabledAt.IsZero() {
		s.auditFailure(ctx, u.ID, m)
		return User{}, ErrBadCredential
	}
	// Told only to the holder of the right password.
	if s.mailCfg.RequireVerified && u.EmailVerifiedAt.IsZero() {
		return User{}, ErrEmailNotVerified
	}
	return u, nil
}

// auditFailure records a failed login. Its own failure is logged, not
// returned: the caller's answer must not depend on it.
func (s *Service) auditFailure(ctx context.Context, userID string, m Meta) {
	now := s.now()
	err := s.inTx(ctx, func(tx Tx) error {
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.LoginFailed, UserID: userID}, m))
	})
	if err != nil {
		s.log.Error("audit login failure", "err", err)
	}
}

// grantScope decides the scope of a new session: the client's scopes when
// none is asked for, else the requested scopes the client may have. RFC 6749
// section 3.3 lets the server ignore what it does not grant (the response
// then names the granted scope), which keeps clients that always ask for,
// say, "openid" working; a refresh, by contrast, may never widen the scope.
func grantScope(req string, c *Client) string {
	if req == "" {
		return strings.Join(c.Scopes, " ")
	}
	var granted []string
	for _, sc := range strings.Fields(req) {
		if slices.Contains(c.Scopes, sc) && !slices.Contains(granted, sc) {
			granted = append(granted, sc)
		}
	}
	return strings.Join(granted, " ")
}
