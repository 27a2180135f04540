package session

import (
	"context"
	"crypto/subtle"
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
	// SentAt is when the client sent the request, in the server's time
	// (the request_time parameter: the client's clock corrected by its
	// estimate of the server's; or a DPoP proof's iat), or zero if the
	// client did not say. A request sent more than G before the server
	// acts on it is stale (see Gone).
	SentAt time.Time
	// Gone, if set, reports whether the client has stopped waiting for
	// the answer (its connection closed). A request whose ctx is done, or
	// for which Gone or SentAt says so, is stale: it changes nothing (above
	// all it never abandons a token with a lost-response successor or
	// revokes the session for reuse) and ends in ErrStale; a revoked or
	// expired session is answered as ever. It is checked when the outcome
	// is decided and again just before the commit.
	Gone func() bool
	// DPoPJKT is the thumbprint of the key of the request's verified DPoP
	// proof (RFC 9449 section 5), "" without one. A bound session needs its
	// own key here; an unbound one stays unbound, its access token then
	// bound to this key.
	DPoPJKT string
}

// Refresh exchanges a refresh token for new tokens. The common case, the
// current token of a live session, is one conditional statement (Rotation,
// refreshInOne); every other case is decided inside one transaction on the
// locked session row (rotate, rotation.go). Either way concurrent refreshes
// on any number of server processes serialise on the row in the database,
// and a storage failure leaves the session exactly as it was.
//
// Errors for which IsInvalidGrant is true mean the token is dead; ErrReused
// additionally means the session was revoked because of it. ErrStale means
// the request came too late to be decided and nothing changed.
func (s *Service) Refresh(ctx context.Context, req RefreshRequest) (Tokens, error) {
	// Malformed and forged tokens are refused before any database work.
	raw, gen, err := s.codec.Decode(req.Token)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrInvalidToken, err)
		s.observeRefresh(rotation{}, err)
		return Tokens{}, err
	}
	if req.Client.DPoPRequired && req.DPoPJKT == "" {
		return Tokens{}, fmt.Errorf("session: refresh: %w", ErrDPoPRequired)
	}
	sid := idString(raw)
	if tok, done, err := s.refreshInOne(ctx, &req, sid, gen); done {
		return tok, err
	}
	var (
		rot      rotation
		scope    string
		now      time.Time
		mismatch bool
	)
	err = s.inTx(ctx, func(tx Tx) error {
		ses, err := tx.LockSession(ctx, sid)
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
		rot = rotate(rotationIn{Row: ses, Gen: gen, Now: now, Awaited: s.awaited(ctx, &req, now), Meta: req.Meta}, s.cfg)
		event := func() audit.Event {
			return s.audit(audit.Event{At: now, Type: rot.Audit, UserID: ses.UserID, SessionID: ses.ID, ClientID: ses.ClientID, Detail: rot.Detail}, req.Meta)
		}
		// RFC 9449 section 5: a bound session's refresh token is used only
		// with a proof by its key. Checked before reuse (a dead session
		// aside, which answers as always): a copy used without the key,
		// current token or ancestor, changes nothing (no rotation, no
		// revocation), so its owner keeps the session; it is audited and
		// refused.
		dead := errors.Is(rot.Err, ErrRevoked) || errors.Is(rot.Err, ErrExpired)
		if !dead && ses.DPoPJKT != "" && subtle.ConstantTimeCompare([]byte(ses.DPoPJKT), []byte(req.DPoPJKT)) != 1 {
			mismatch = true
			detail := "no DPoP proof"
			if req.DPoPJKT != "" {
				detail = "a DPoP proof by another key (jkt " + req.DPoPJKT + ")"
			}
			return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.RefreshDPoPMismatch, UserID: ses.UserID, SessionID: ses.ID, ClientID: ses.ClientID,
				Detail: fmt.Sprintf("generation %d presented with %s; the session is bound to jkt %s", gen, detail, ses.DPoPJKT)}, req.Meta))
		}
		// Reuse is decided before anything else about the request (client,
		// scope, resource): an ancestor sent with a bad scope or by another client
		// must not learn whether the session lives without revoking it.
		if rot.Outcome == RefreshReuse {
			if _, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: ses.UserID, SessionID: ses.ID, Scope: ScopeOne, Reason: ReasonReuse}, now)); err != nil {
				return err
			}
			if err := tx.AppendAudit(ctx, event()); err != nil {
				return err
			}
			return s.beforeCommit(ctx, &req, rot)
		}
		if !rot.issues() {
			return rot.Err // revoked, expired or stale: nothing changes
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
		if rot.Audit != "" {
			if err := tx.AppendAudit(ctx, event()); err != nil {
				return err
			}
		}
		if rot.Write {
			if err := tx.UpdateSession(ctx, rot.Next); err != nil {
				return err
			}
		}
		return s.beforeCommit(ctx, &req, rot)
	})
	if mismatch && err == nil {
		err = ErrDPoPMismatch
		s.log.Warn("refresh of a DPoP-bound session without its key; refused, nothing changed", "session_id", sid, "ip", req.Meta.IP)
	}
	s.observeRefresh(rot, err)
	switch {
	case errors.Is(err, ErrStale):
		// Info, not Warn: a client that left (a paused node, a phone that
		// changed networks) is ordinary; what it would have been says
		// whether anyone presented an old token.
		s.log.Info("refresh refused: request abandoned or sent more than the grace window ago; nothing changed",
			"session_id", sid, "would_be", staleWouldBe(rot), "ip", req.Meta.IP)
	case err != nil:
	case rot.Outcome == RefreshReuse:
		s.log.Warn("refresh token reuse; session revoked", "session_id", rot.Next.ID, "user_id", rot.Next.UserID, "cause", rot.Cause, "ip", req.Meta.IP)
		return Tokens{}, fmt.Errorf("session: refresh: %w", ErrReused)
	case rot.Outcome == RefreshLostResponse:
		s.log.Info("refresh lost-response successor issued", "session_id", rot.Next.ID, "ip", req.Meta.IP)
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("session: refresh: %w", err)
	}
	return s.refreshed(ctx, &req, &rot.Next, scope, now)
}

// refreshInOne answers a refresh that takes the rotation table's common row
// with the store's one-statement rotation (Rotation): the decision rotate
// would take on the locked row, taken by the row's own conditions in the
// same statement that writes it. done is false, and nothing changed, when
// the store has no such statement or the request is not that row: a scope
// or resource that does not fit, or any row but a live session at gen of
// this client and key. Refresh then decides it in the transaction.
func (s *Service) refreshInOne(ctx context.Context, req *RefreshRequest, sid string, gen uint64) (tok Tokens, done bool, err error) {
	if s.rotator == nil || req.Scope != "" {
		// A narrowed scope is checked against the session's only after
		// reuse is ruled out, which takes the locked read.
		return Tokens{}, false, nil
	}
	client, err := req.Client.Narrow(req.Resource)
	if err != nil {
		return Tokens{}, false, nil // refused in the transaction, after reuse
	}
	// The time is read just before the statement, as the transaction reads
	// it once the row is locked. The statement never waits for the lock (a
	// row another transaction holds falls back to the transaction), so the
	// only waits between the two are for a connection and, on PostgreSQL,
	// for the batched statement before it (both bounded by the call's
	// deadline).
	now := s.now()
	if !s.awaited(ctx, req, now) {
		// A stale request changes nothing; the transaction answers a dead
		// session as ever and anything else with ErrStale.
		return Tokens{}, false, nil
	}
	next, err := s.rotator.RotateSession(ctx, Rotation{ID: sid, Gen: gen, ClientID: req.Client.ID, DPoPJKT: req.DPoPJKT,
		Now: now, IdleExpiresAt: now.Add(s.cfg.Idle), IP: req.Meta.IP, UserAgent: req.Meta.UserAgent,
		Awaited: func() bool { return s.awaited(ctx, req, s.now()) }})
	if errors.Is(err, ErrNotFound) {
		return Tokens{}, false, nil
	}
	if err != nil {
		err = canceled(ctx, err)
		s.observeRefresh(rotation{}, err)
		return Tokens{}, true, fmt.Errorf("session: refresh: %w", err)
	}
	s.observeRefresh(rotation{Outcome: RefreshRotated}, nil)
	req.Client = client
	tok, err = s.refreshed(ctx, req, &next, next.Scope, now)
	return tok, true, err
}

// refreshed mints the tokens of a committed refresh: next is the session as
// written, scope the access token's.
func (s *Service) refreshed(ctx context.Context, req *RefreshRequest, next *Session, scope string, now time.Time) (Tokens, error) {
	// Should signing (or reading the claims) fail after the commit, the
	// client retries with the same token and the grace or lost-response
	// rule answers it.
	appMeta := ""
	if len(req.Client.Claims) > 0 {
		// Only a client that maps claims pays for this read, after the
		// transaction: a refresh of any other client stays at its round
		// trips (docs/performance.md). app_metadata set by an admin thus
		// reaches the next refreshed token.
		u, err := s.store.User(ctx, next.UserID)
		if err != nil {
			return Tokens{}, fmt.Errorf("session: refresh: read claims: %w", err)
		}
		appMeta = u.AppMetadata
	}
	jkt := next.DPoPJKT
	if jkt == "" {
		jkt = req.DPoPJKT
	}
	return s.tokens(next, &req.Client, scope, appMeta, jkt, now)
}

// awaited reports whether req's client still waits for the answer at now:
// the request context is not done, the connection is not closed (Gone),
// and it was sent (SentAt) at most G ago.
func (s *Service) awaited(ctx context.Context, req *RefreshRequest, now time.Time) bool {
	switch {
	case ctx.Err() != nil:
		return false
	case req.Gone != nil && req.Gone():
		return false
	case !req.SentAt.IsZero() && now.Sub(req.SentAt) > max(s.cfg.Grace, minStaleAge):
		return false
	}
	return true
}

// minStaleAge is the least age at which a request's send time makes it
// stale, whatever G: a client's estimate of the server's clock is off by
// some milliseconds and a DPoP iat by up to a second, so with a G of 0 or
// close to it every honest refresh that says when it was sent would be
// refused, for ever.
const minStaleAge = 2 * time.Second

// beforeCommit is the last step of a refresh transaction: it commits only
// if the client still awaits the answer, checked again now, after the
// statements ran (a node paused between the decision and here must not
// act for a client that left).
func (s *Service) beforeCommit(ctx context.Context, req *RefreshRequest, rot rotation) error {
	if rot.needsAwaited() && !s.awaited(ctx, req, s.now()) {
		return fmt.Errorf("%w (found just before the commit; would be %s)", ErrStale, rot.Outcome)
	}
	return nil
}

// staleWouldBe names the outcome a stale request would have had.
func staleWouldBe(rot rotation) string {
	if rot.Outcome == RefreshStale {
		return rot.Cause
	}
	return rot.Outcome // refused in beforeCommit
}
