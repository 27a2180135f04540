package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/password"
)

// Signup creates a user. The email is normalised; the password must meet
// password.CheckPolicy.
func (s *Service) Signup(ctx context.Context, email, pw string, m Meta) (User, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	if err := password.CheckPolicy(pw, email); err != nil {
		return User{}, err
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return User{}, err
	}
	now := s.now()
	u := User{ID: NewID(), Email: email, PasswordHash: hash, CreatedAt: now, PasswordChangedAt: now}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if err := tx.InsertUser(ctx, u); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.Signup, UserID: u.ID}, m))
	})
	if err != nil {
		return User{}, fmt.Errorf("session: signup: %w", err)
	}
	return u, nil
}

// LoginRequest is a password login.
type LoginRequest struct {
	Email    string
	Password string
	Client   Client
	Scope    string
	Meta     Meta
}

// Login checks the password and starts a session. Unknown email, wrong
// password and disabled account all return ErrBadCredential after one
// Argon2id run each, so neither answer nor timing tells them apart.
func (s *Service) Login(ctx context.Context, req LoginRequest) (Tokens, User, error) {
	scope, err := grantScope(req.Scope, &req.Client)
	if err != nil {
		return Tokens{}, User{}, err
	}
	u, err := s.authenticate(ctx, req.Email, req.Password, req.Meta)
	if err != nil {
		return Tokens{}, User{}, err
	}
	now := s.now()
	ses := Session{
		ID: NewID(), UserID: u.ID, ClientID: req.Client.ID, Scope: scope,
		CreatedAt: now, LastUsedAt: now, UserAgent: req.Meta.UserAgent, IP: req.Meta.IP,
		IdleExpiresAt: now.Add(s.cfg.Idle),
		Gen:           1, HandedAt: now, RotatedAt: now,
	}
	if s.cfg.MaxLifetime > 0 {
		ses.ExpiresAt = now.Add(s.cfg.MaxLifetime)
	}
	rehash := ""
	if s.hasher.NeedsRehash(u.PasswordHash) {
		// Raised parameters take effect at the next successful login.
		if rehash, err = s.hasher.Hash(ctx, req.Password); err != nil {
			return Tokens{}, User{}, err
		}
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if rehash != "" {
			u.PasswordHash = rehash
			if err := tx.UpdateUser(ctx, u); err != nil {
				return err
			}
		}
		if err := tx.InsertSession(ctx, ses); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.LoginSucceeded, UserID: u.ID, SessionID: ses.ID, ClientID: ses.ClientID}, req.Meta))
	})
	if err != nil {
		return Tokens{}, User{}, fmt.Errorf("session: login: %w", err)
	}
	t, err := s.tokens(&ses, &req.Client, scope, now)
	return t, u, err
}

func (s *Service) authenticate(ctx context.Context, email, pw string, m Meta) (User, error) {
	norm, err := NormalizeEmail(email)
	var u User
	if err == nil {
		u, err = s.store.UserByEmail(ctx, norm)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidEmail):
		// Unknown account: pay for a hash anyway.
		if err := s.hasher.Verify(ctx, pw, ""); errors.Is(err, password.ErrBusy) {
			return User{}, err
		}
		s.auditFailure(ctx, "", m)
		return User{}, ErrBadCredential
	default:
		return User{}, err
	}
	if err := s.hasher.Verify(ctx, pw, u.PasswordHash); err != nil {
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
	return u, nil
}

// auditFailure records a failed login. Its own failure is logged, not
// returned: the caller's answer must not depend on it.
func (s *Service) auditFailure(ctx context.Context, userID string, m Meta) {
	now := s.now()
	err := s.store.InTx(ctx, func(tx Tx) error {
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.LoginFailed, UserID: userID}, m))
	})
	if err != nil {
		s.log.Error("audit login failure", "err", err)
	}
}

func grantScope(req string, c *Client) (string, error) {
	if req == "" {
		return strings.Join(c.Scopes, " "), nil
	}
	if !scopeSubset(req, c.Scopes) {
		return "", ErrInvalidScope
	}
	return strings.Join(strings.Fields(req), " "), nil
}

func fieldsOf(s string) []string { return strings.Fields(s) }
