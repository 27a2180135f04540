package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// RefreshRequest is one refresh_token grant (RFC 6749 section 6).
type RefreshRequest struct {
	Token string
	// Client is the authenticated client presenting the token.
	Client Client
	// Scope optionally narrows the new access token; the session keeps its
	// scope (RFC 6749 section 6: it may not grow).
	Scope string
	// Resource optionally narrows the new access token's aud to one of the
	// client's audiences (RFC 8707 section 2).
	Resource string
	Meta     Meta
}

type outcome int

const (
	outRotate outcome = iota // the current token: rotate
	outGrace                 // parent within G: the identical current token
	outLost                  // parent within L: a fresh successor
	outReuse                 // anything else: revoke the session
)

// decide applies the rotation table of docs/design.md to a locked session.
// The windows are inclusive: a repeat exactly G after the hand-out is still
// a duplicate. Grace answers restart G but never outlast L from the
// rotation (G from it when L is 0): otherwise a holder of the parent could
// replay it every < G and be answered for ever.
func decide(s *Session, gen uint64, now time.Time, grace, lost time.Duration) outcome {
	graceEnd := s.RotatedAt.Add(lost)
	if lost == 0 {
		graceEnd = s.RotatedAt.Add(grace)
	}
	switch {
	case gen == s.Gen:
		return outRotate
	case gen != s.ParentGen || s.ParentGen == 0:
		// Older ancestors and abandoned successors (gens between the parent
		// and the current one) land here.
		return outReuse
	case !now.After(s.HandedAt.Add(grace)) && !now.After(graceEnd):
		return outGrace
	case lost > 0 && !now.After(s.RotatedAt.Add(lost)):
		return outLost
	default:
		return outReuse
	}
}

// suspiciousGrace reports whether a grace answer goes to another device
// than the rotation that made the parent: the same token from two places
// within G is either a client that changed networks mid-retry or a copy.
func suspiciousGrace(s *Session, m Meta) bool {
	return m.IP != s.RotatedIP || m.UserAgent != s.RotatedUserAgent
}

// Refresh exchanges a refresh token for new tokens. Every case is decided
// inside one transaction on the locked session row, so concurrent refreshes
// on any number of server processes serialise in the database. A storage
// failure leaves the session exactly as it was.
//
// Errors for which IsInvalidGrant is true mean the token is dead; ErrReused
// additionally means the session was revoked because of it.
func (s *Service) Refresh(ctx context.Context, req RefreshRequest) (Tokens, error) {
	// Malformed and forged tokens are refused before any database work.
	raw, gen, err := s.codec.Decode(req.Token)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrInvalidToken, err)
		s.observeRefresh(0, nil, 0, err)
		return Tokens{}, err
	}
	sid := idString(raw)
	var (
		ses   Session
		out   outcome
		scope string
		now   time.Time
	)
	err = s.inTx(ctx, func(tx Tx) error {
		var err error
		ses, err = tx.LockSession(ctx, sid)
		if errors.Is(err, ErrNotFound) {
			return ErrInvalidToken // swept, or never existed
		}
		if err != nil {
			return err
		}
		// The time is read once the row is locked: a request that waited for
		// the lock must not record a hand-out earlier than the one it waited
		// behind, or G would shrink for the client that holds that token.
		now = s.now()
		if err := ses.state(now); err != nil {
			return err
		}
		// Reuse is decided before anything else about the request (client,
		// scope, resource): an ancestor sent with a bad scope or by another client
		// must not learn whether the session lives without revoking it.
		out = decide(&ses, gen, now, s.cfg.Grace, s.cfg.LostWindow)
		if out == outReuse {
			if _, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: ses.UserID, SessionID: ses.ID, Scope: ScopeOne, Reason: ReasonReuse}, now)); err != nil {
				return err
			}
			return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.RefreshReuse, UserID: ses.UserID, SessionID: ses.ID, ClientID: ses.ClientID,
				Detail: fmt.Sprintf("generation %d presented; current %d, parent %d; parent rotated %s ago", gen, ses.Gen, ses.ParentGen, now.Sub(ses.RotatedAt))}, req.Meta))
		}
		if ses.ClientID != req.Client.ID {
			// RFC 6749 section 10.4: the binding to the client is checked.
			return ErrWrongClient
		}
		scope = ses.Scope
		if req.Scope != "" {
			if !scopeSubset(req.Scope, strings.Fields(ses.Scope)) {
				return ErrInvalidScope
			}
			scope = req.Scope
		}
		// RFC 8707: resource narrows the access token to one of the
		// client's audiences; decided after reuse, as scope is.
		if req.Client, err = req.Client.Narrow(req.Resource); err != nil {
			return err
		}
		switch out {
		case outRotate:
			ses.ParentGen, ses.Gen = ses.Gen, ses.Gen+1
			ses.RotatedAt = now
			ses.RotatedIP, ses.RotatedUserAgent = req.Meta.IP, req.Meta.UserAgent
		case outLost:
			// The unused current token is abandoned; the parent stays the
			// parent and L keeps running from the original rotation.
			abandoned := ses.Gen
			ses.Gen++
			if err := tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.RefreshLost, UserID: ses.UserID, SessionID: ses.ID, ClientID: ses.ClientID,
				Detail: fmt.Sprintf("parent %d repeated %s after rotation; generation %d abandoned, %d issued", gen, now.Sub(ses.RotatedAt), abandoned, ses.Gen)}, req.Meta)); err != nil {
				return err
			}
		case outGrace:
			// Nothing rotates: the identical current token is returned.
			if suspiciousGrace(&ses, req.Meta) {
				if err := tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.RefreshSuspiciousGrace, UserID: ses.UserID, SessionID: ses.ID, ClientID: ses.ClientID,
					Detail: fmt.Sprintf("parent %d repeated %s after rotation from another IP or user agent than the rotation's (%s, %q); current %d handed out again", gen, now.Sub(ses.RotatedAt), ses.RotatedIP, ses.RotatedUserAgent, ses.Gen)}, req.Meta)); err != nil {
					return err
				}
			}
		}
		// A clock stepping back (or a node whose clock lags) must not move
		// the grace window's anchor backwards.
		ses.HandedAt = laterOf(now, ses.HandedAt)
		ses.LastUsedAt = now
		ses.IdleExpiresAt = now.Add(s.cfg.Idle)
		ses.IP, ses.UserAgent = req.Meta.IP, req.Meta.UserAgent
		return tx.UpdateSession(ctx, ses)
	})
	s.observeRefresh(out, &ses, gen, err)
	if err != nil {
		return Tokens{}, fmt.Errorf("session: refresh: %w", err)
	}
	if out == outReuse {
		s.log.Warn("refresh token reuse; session revoked", "session_id", ses.ID, "user_id", ses.UserID, "ip", req.Meta.IP)
		return Tokens{}, fmt.Errorf("session: refresh: %w", ErrReused)
	}
	if out == outLost {
		s.log.Info("refresh lost-response successor issued", "session_id", ses.ID, "ip", req.Meta.IP)
	}
	// Should signing fail after the commit, the client retries with the
	// same token and the grace or lost-response rule answers it.
	return s.tokens(&ses, &req.Client, scope, now)
}

func laterOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
