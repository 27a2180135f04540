package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// ErrPublicClient is returned when a secret is asked of a public client.
var ErrPublicClient = errors.New("session: public client has no secret")

// EnableUser lets a disabled user log in again. Their sessions stay ended
// (DisableUser revoked them). Enabling a user who is not disabled changes
// nothing and records nothing.
func (s *Service) EnableUser(ctx context.Context, userID string, m Meta) (changed bool, err error) {
	now := s.now()
	err = s.inTx(ctx, func(tx Tx) error {
		u, err := tx.LockUser(ctx, userID)
		if err != nil {
			return err
		}
		if changed = !u.DisabledAt.IsZero(); !changed {
			return nil
		}
		u.DisabledAt = time.Time{}
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.UserEnabled, UserID: userID}, m))
	})
	if err != nil {
		return false, fmt.Errorf("session: enable user: %w", err)
	}
	return changed, nil
}

// RevokeUserSessions ends every active session of a user (an operator's
// remote logout of all their devices) and returns the ids it ended; a user
// with none changes nothing and records nothing. Unlike DisableUser, the
// user may log in again.
func (s *Service) RevokeUserSessions(ctx context.Context, userID string, m Meta) ([]string, error) {
	now := s.now()
	var ids []string
	err := s.inTx(ctx, func(tx Tx) error {
		if _, err := tx.LockUser(ctx, userID); err != nil {
			return err
		}
		var err error
		ids, err = tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: userID, Scope: ScopeAll, Reason: ReasonAdmin}, now))
		if err != nil || len(ids) == 0 {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.SessionRevoked, UserID: userID,
			Detail: fmt.Sprintf("%s, all %d sessions", ReasonAdmin, len(ids))}, m))
	})
	if err != nil {
		return nil, fmt.Errorf("session: revoke user sessions: %w", err)
	}
	return ids, nil
}

// DeleteClient deletes a registered client and, in the same transaction,
// ends every session it holds: their refresh tokens could no longer be
// used, and their access tokens must not outlive the client (they enter
// the revocation feed). It returns how many sessions it ended;
// ErrNotFound if there is no such client.
func (s *Service) DeleteClient(ctx context.Context, id string, m Meta) (int, error) {
	defer s.ForgetClient(id) // this node's cache; other nodes hear of it by NOTIFY (ClientChangesHeard), or within ClientCacheTTL
	now := s.now()
	var ids []string
	err := s.inTx(ctx, func(tx Tx) error {
		if err := tx.DeleteClient(ctx, id); err != nil {
			return err
		}
		var err error
		ids, err = tx.RevokeSessions(ctx, s.revocation(Revocation{ClientID: id, Scope: ScopeAll, Reason: ReasonAdmin}, now))
		if err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.ClientDeleted, ClientID: id,
			Detail: fmt.Sprintf("%d sessions ended", len(ids))}, m))
	})
	if err != nil {
		return 0, fmt.Errorf("session: delete client: %w", err)
	}
	return len(ids), nil
}

// RotateClientSecret gives a confidential client a new random secret and
// returns it; the old one stops working at once on this node, and on the
// others as soon as they hear of the commit (PostgreSQL NOTIFY), or within
// ClientCacheTTL where changes are not heard (ClientChangesHeard). Only its hash is stored,
// so the secret cannot be shown again. A public client is ErrPublicClient.
func (s *Service) RotateClientSecret(ctx context.Context, id string, m Meta) (string, error) {
	defer s.ForgetClient(id)
	now := s.now()
	b := make([]byte, 32)
	rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	err := s.inTx(ctx, func(tx Tx) error {
		// Read once the transaction has begun (on SQLite it holds the
		// write lock), so that a delete committed before it is seen and
		// not undone by the upsert below.
		c, err := s.store.Client(ctx, id)
		if err != nil {
			return err
		}
		if !c.Confidential() {
			return ErrPublicClient
		}
		c.SecretHash = HashClientSecret(secret)
		if err := tx.PutClient(ctx, c); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.ClientSecretRotated, ClientID: id}, m))
	})
	if err != nil {
		return "", fmt.Errorf("session: rotate client secret: %w", err)
	}
	return secret, nil
}

// UserSessions returns every session of the user not yet swept, revoked and
// expired ones included, newest first (Sessions returns the active ones).
func (s *Service) UserSessions(ctx context.Context, userID string) ([]Session, error) {
	return s.store.UserSessions(ctx, userID)
}

// AuditEvents returns the audit events q selects, newest first.
func (s *Service) AuditEvents(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	return s.store.AuditEvents(ctx, q)
}

// RecordAudit records an operator action that changes nothing the service
// holds (a signing-key rotation, a rewrap of the sealed keys) in the audit
// trail, through the same commit path as every other change: the OnCommit
// hooks see it, so a configured webhook sends it. A zero e.At is now.
func (s *Service) RecordAudit(ctx context.Context, e audit.Event, m Meta) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	err := s.inTx(ctx, func(tx Tx) error { return tx.AppendAudit(ctx, s.audit(e, m)) })
	if err != nil {
		return fmt.Errorf("session: record %s: %w", e.Type, err)
	}
	return nil
}
