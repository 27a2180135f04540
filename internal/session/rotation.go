package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// The rotation table of docs/design.md ("Sessions and rotation") lives
// here, and only here: rotate is the one pure function that reads a locked
// session row and a presented generation and says what happens (outcome,
// cause, audit event, next row). Refresh applies its result; the Observer,
// the audit log and the metrics use its constants.

// rotationIn is everything rotate decides on.
type rotationIn struct {
	// Row is the session as locked by the transaction.
	Row Session
	// Gen is the generation of the presented refresh token.
	Gen uint64
	// Now is the time, read once the row is locked.
	Now time.Time
	// Awaited is false when the request is stale: its client no longer
	// waits for the answer (the connection closed) or sent it more than G
	// before Now. A stale request changes nothing: above all it never
	// abandons a token or revokes a session (docs/design.md "Abandoned and
	// late requests").
	Awaited bool
	// Meta is who presents the token.
	Meta Meta
}

// rotation is rotate's result.
type rotation struct {
	// Outcome is one of the Refresh outcome constants: RefreshRotated,
	// RefreshGraceDuplicate, RefreshLostResponse, RefreshReuse,
	// RefreshRevoked, RefreshExpired or RefreshStale.
	Outcome string
	// Cause is the Reuse cause when Outcome is RefreshReuse; for
	// RefreshStale, the outcome the request would have had.
	Cause string
	// Err is the error Refresh returns for an outcome that issues nothing
	// (ErrReused, ErrRevoked, ErrExpired, ErrStale); nil otherwise.
	Err error
	// Audit is the audit event type to append (audit.Refresh*), or "";
	// Detail is its detail.
	Audit, Detail string
	// Next is the row to write when Write is set. Write is false for every
	// outcome that leaves the row alone (reuse changes only the revoked
	// columns, which RevokeSessions writes).
	Next  Session
	Write bool
}

// issues reports whether the outcome hands out tokens.
func (r rotation) issues() bool { return r.Err == nil }

// needsAwaited reports whether the outcome may only be committed for a
// request its client still awaits: every outcome that changes the row.
// Abandoning a token (a lost-response successor) or revoking a session
// (reuse) for a client that left is the false logout of issue 19; a
// rotation nobody receives is harmless only while L tolerates the lost
// answer (with L = 0 the client's next attempt, later than G, would be
// reuse), and a grace answer nobody receives is pointless. So a stale
// request changes nothing at all.
func (r rotation) needsAwaited() bool {
	switch r.Outcome {
	case RefreshRotated, RefreshGraceDuplicate, RefreshLostResponse, RefreshReuse:
		return true
	}
	return false
}

// rotate applies the rotation table to a locked session. The windows are
// inclusive: a repeat exactly G after the hand-out is still a duplicate.
// Grace answers restart G but never outlast L from the rotation (G from it
// when L is 0): otherwise a holder of the parent could replay it every < G
// and be answered for ever. Only cfg.Grace, cfg.LostWindow and cfg.Idle
// are read.
func rotate(in rotationIn, cfg Config) rotation {
	s, gen, now := in.Row, in.Gen, in.Now
	if err := s.state(now); err != nil {
		out := RefreshExpired
		if errors.Is(err, ErrRevoked) {
			out = RefreshRevoked
		}
		return rotation{Outcome: out, Err: err, Next: s}
	}
	r := table(&s, gen, now, cfg.Grace, cfg.LostWindow)
	if r.needsAwaited() && !in.Awaited {
		// Nothing changes; the client, if it still listens, sends a new
		// request, which is decided afresh.
		return rotation{Outcome: RefreshStale, Cause: r.Outcome, Err: ErrStale, Next: s}
	}
	next := s
	switch r.Outcome {
	case RefreshReuse:
		r.Err, r.Audit = ErrReused, audit.RefreshReuse
		r.Detail = fmt.Sprintf("generation %d presented; current %d, parent %d; parent rotated %s ago", gen, s.Gen, s.ParentGen, now.Sub(s.RotatedAt))
		r.Next = s
		return r
	case RefreshRotated:
		next.ParentGen, next.Gen = s.Gen, s.Gen+1
		next.RotatedAt = now
		next.RotatedIP, next.RotatedUserAgent = in.Meta.IP, in.Meta.UserAgent
	case RefreshLostResponse:
		// The unused current token is abandoned; the parent stays the
		// parent and L keeps running from the original rotation.
		next.Gen = s.Gen + 1
		r.Audit = audit.RefreshLost
		r.Detail = fmt.Sprintf("parent %d repeated %s after rotation; generation %d abandoned, %d issued", gen, now.Sub(s.RotatedAt), s.Gen, next.Gen)
	case RefreshGraceDuplicate:
		// Nothing rotates: the identical current token is returned. The
		// same token from another device within G is either a client that
		// changed networks mid-retry or a copy.
		if in.Meta.IP != s.RotatedIP || in.Meta.UserAgent != s.RotatedUserAgent {
			r.Audit = audit.RefreshSuspiciousGrace
			r.Detail = fmt.Sprintf("parent %d repeated %s after rotation from another IP or user agent than the rotation's (%s, %q); current %d handed out again",
				gen, now.Sub(s.RotatedAt), s.RotatedIP, s.RotatedUserAgent, s.Gen)
		}
	}
	// A clock stepping back (or a node whose clock lags) must not move the
	// grace window's anchor backwards.
	next.HandedAt = laterOf(now, s.HandedAt)
	next.LastUsedAt = now
	next.IdleExpiresAt = now.Add(cfg.Idle)
	next.IP, next.UserAgent = in.Meta.IP, in.Meta.UserAgent
	r.Next, r.Write = next, true
	return r
}

// table is the rotation table proper, for a live session: the outcome,
// and the Reuse cause when it is reuse.
func table(s *Session, gen uint64, now time.Time, grace, lost time.Duration) rotation {
	graceEnd := s.RotatedAt.Add(lost)
	if lost == 0 {
		graceEnd = s.RotatedAt.Add(grace)
	}
	reuse := func(cause string) rotation { return rotation{Outcome: RefreshReuse, Cause: cause} }
	switch {
	case gen == s.Gen:
		return rotation{Outcome: RefreshRotated}
	case gen > s.Gen || s.ParentGen == 0:
		// Never handed out: only a restored database or a leaked MAC key
		// explains it.
		return reuse(ReuseUnknownGeneration)
	case gen < s.ParentGen:
		return reuse(ReuseAncestor)
	case gen > s.ParentGen:
		// Between the parent and the current one: a successor abandoned
		// when a lost-response successor replaced it.
		return reuse(ReuseAbandoned)
	case !now.After(s.HandedAt.Add(grace)) && !now.After(graceEnd):
		return rotation{Outcome: RefreshGraceDuplicate}
	case lost > 0 && !now.After(s.RotatedAt.Add(lost)):
		return rotation{Outcome: RefreshLostResponse}
	default:
		return reuse(ReuseLateParent)
	}
}

func laterOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// Rotation is the rotation table's common row as one conditional write: the
// presented generation is the current one of a live session of this client
// (and of this DPoP key), and its client awaits the answer. Nearly every
// refresh takes this row, and a store that writes it in one statement
// (Rotator) saves the locked read and its round trip: BEGIN, SELECT … FOR
// UPDATE, UPDATE, COMMIT become one UPDATE. Every other case (a parent
// within G or L, reuse, a stale request, a narrowed scope) finds the
// conditions false, changes nothing, and goes through the transaction,
// where rotate decides.
//
// A store applies it only to the row that holds all of
//
//	id = ID, gen = Gen, client_id = ClientID, dpop_jkt "" or DPoPJKT,
//	revoked_at unset, expires_at unset or after Now, idle_expires_at after Now
//
// and then sets
//
//	parent_gen = Gen, gen = Gen + 1, rotated_at = Now,
//	handed_at = the later of handed_at and Now, last_used_at = Now,
//	idle_expires_at = IdleExpiresAt, ip, rotated_ip = IP,
//	user_agent, rotated_user_agent = UserAgent
//
// which is exactly rotate's RefreshRotated (Rotates says so for one row;
// storetest checks both stores against it).
type Rotation struct {
	ID, ClientID, DPoPJKT string
	Gen                   uint64
	Now, IdleExpiresAt    time.Time
	IP, UserAgent         string
	// Awaited, if set, is asked once the store holds what the statement
	// needs (SQLite: the write lock; PostgreSQL: the connection, the row
	// lock being skipped if held): false means the client left while the
	// store waited, and the store changes nothing and answers ErrNotFound,
	// so that the transaction decides (ErrStale).
	Awaited func() bool
}

// RotatedFields keeps of s the fields that Rotator.RotateSession returns:
// those a refresh mints its tokens from.
func RotatedFields(s Session) Session {
	return Session{ID: s.ID, UserID: s.UserID, ClientID: s.ClientID, Scope: s.Scope, ExpiresAt: s.ExpiresAt, Gen: s.Gen, DPoPJKT: s.DPoPJKT}
}

// Rotates is rotate's verdict on row for r, presented by an awaited
// request: the next row, and whether it is the RefreshRotated that r writes
// (of r's client, with r's DPoP key). It is the reference a Rotator is held
// to.
func (r Rotation) Rotates(row Session) (Session, bool) {
	rot := rotate(rotationIn{Row: row, Gen: r.Gen, Now: r.Now, Awaited: true, Meta: Meta{IP: r.IP, UserAgent: r.UserAgent}},
		Config{Idle: r.IdleExpiresAt.Sub(r.Now)})
	// Refresh's own checks beside rotate: the client's binding (RFC 6749
	// section 10.4) and the DPoP key's (RFC 9449 section 5); an unbound
	// session stays unbound whatever key the request has.
	ok := rot.Outcome == RefreshRotated && rot.Write && row.ClientID == r.ClientID && (row.DPoPJKT == "" || row.DPoPJKT == r.DPoPJKT)
	return rot.Next, ok
}
