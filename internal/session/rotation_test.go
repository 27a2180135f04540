package session

import (
	"errors"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// TestRotateTable checks rotate row by row against the rotation table of
// docs/design.md: outcome, cause, error, audit event and the next row.
func TestRotateTable(t *testing.T) {
	const (
		g = 30 * time.Second
		l = 24 * time.Hour
	)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rotatedBy := Meta{IP: "192.0.2.1", UserAgent: "app/1"}
	// A session whose gen 5 was made by rotating gen 4 at t0 and handed out
	// then; gens 1 to 3 are ancestors.
	base := Session{ID: "s", UserID: "u", ClientID: "app", Gen: 5, ParentGen: 4, HandedAt: t0, RotatedAt: t0,
		RotatedIP: rotatedBy.IP, RotatedUserAgent: rotatedBy.UserAgent, LastUsedAt: t0, IdleExpiresAt: t0.Add(30 * 24 * time.Hour),
		IP: rotatedBy.IP, UserAgent: rotatedBy.UserAgent}
	abandoned := base // a lost-response successor (6) abandoned 5; the parent is still 4
	abandoned.Gen = 6
	other := Meta{IP: "203.0.113.9", UserAgent: "other/1"}
	cfg := Config{Grace: g, LostWindow: l, Idle: 30 * 24 * time.Hour}
	noLost := cfg
	noLost.LostWindow = 0

	type want struct {
		outcome, cause, audit string
		err                   error
		// next, when write is set: gen and parent, and whether this
		// presentation rotated (RotatedAt = now and the presenter's meta).
		write       bool
		gen, parent uint64
		rotated     bool
	}
	tests := []struct {
		name    string
		row     Session
		gen     uint64
		at      time.Duration // after t0
		cfg     Config
		meta    Meta
		stale   bool // not awaited
		want    want
		handed  time.Duration // expected HandedAt - t0 when written (default: at)
		handedS bool
	}{
		{name: "current token rotates", row: base, gen: 5, at: time.Minute, want: want{outcome: RefreshRotated, write: true, gen: 6, parent: 5, rotated: true}},
		{name: "parent within G: identical token", row: base, gen: 4, at: g / 2, want: want{outcome: RefreshGraceDuplicate, write: true, gen: 5, parent: 4}},
		{name: "parent exactly G after the hand-out: still grace (inclusive)", row: base, gen: 4, at: g, want: want{outcome: RefreshGraceDuplicate, write: true, gen: 5, parent: 4}},
		{name: "parent within G from another device: suspicious grace", row: base, gen: 4, at: time.Second, meta: other,
			want: want{outcome: RefreshGraceDuplicate, audit: audit.RefreshSuspiciousGrace, write: true, gen: 5, parent: 4}},
		{name: "parent just after G, within L: lost-response successor", row: base, gen: 4, at: g + time.Microsecond,
			want: want{outcome: RefreshLostResponse, audit: audit.RefreshLost, write: true, gen: 6, parent: 4}},
		{name: "parent exactly L after the rotation: lost response (inclusive)", row: base, gen: 4, at: l,
			want: want{outcome: RefreshLostResponse, audit: audit.RefreshLost, write: true, gen: 6, parent: 4}},
		{name: "parent after L: reuse", row: base, gen: 4, at: l + time.Microsecond,
			want: want{outcome: RefreshReuse, cause: ReuseLateParent, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "parent within G of a hand-out but past L: reuse (grace never outlasts L)",
			row: func() Session { s := base; s.HandedAt = t0.Add(l); return s }(), gen: 4, at: l + time.Second,
			want: want{outcome: RefreshReuse, cause: ReuseLateParent, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "L off: parent after G is reuse", row: base, gen: 4, at: g + time.Microsecond, cfg: noLost,
			want: want{outcome: RefreshReuse, cause: ReuseLateParent, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "L off: grace ends G after the rotation even if handed out since",
			row: func() Session { s := base; s.HandedAt = t0.Add(g); return s }(), gen: 4, at: g + time.Second, cfg: noLost,
			want: want{outcome: RefreshReuse, cause: ReuseLateParent, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "older ancestor: reuse even within G", row: base, gen: 3, at: time.Second,
			want: want{outcome: RefreshReuse, cause: ReuseAncestor, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "abandoned successor: reuse even within G", row: abandoned, gen: 5, at: time.Second,
			want: want{outcome: RefreshReuse, cause: ReuseAbandoned, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "generation never handed out: reuse", row: base, gen: 9, at: time.Second,
			want: want{outcome: RefreshReuse, cause: ReuseUnknownGeneration, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "a parent before any rotation: reuse",
			row: func() Session { s := base; s.Gen, s.ParentGen = 1, 0; return s }(), gen: 0, at: time.Second,
			want: want{outcome: RefreshReuse, cause: ReuseUnknownGeneration, audit: audit.RefreshReuse, err: ErrReused}},
		{name: "revoked session", row: func() Session { s := base; s.RevokedAt = t0; return s }(), gen: 5, at: time.Second,
			want: want{outcome: RefreshRevoked, err: ErrRevoked}},
		{name: "idle-expired session", row: base, gen: 5, at: 30 * 24 * time.Hour, want: want{outcome: RefreshExpired, err: ErrExpired}},
		{name: "past the absolute lifetime", row: func() Session { s := base; s.ExpiresAt = t0.Add(time.Hour); return s }(), gen: 5, at: time.Hour,
			want: want{outcome: RefreshExpired, err: ErrExpired}},
		{name: "revoked beats reuse", row: func() Session { s := base; s.RevokedAt = t0; return s }(), gen: 3, at: time.Second,
			want: want{outcome: RefreshRevoked, err: ErrRevoked}},

		// Stale requests: abandoned, or sent more than G ago.
		{name: "stale current token: refused, nothing rotates", row: base, gen: 5, at: time.Minute, stale: true,
			want: want{outcome: RefreshStale, cause: RefreshRotated, err: ErrStale}},
		{name: "stale parent within G: refused, G does not restart", row: base, gen: 4, at: time.Second, stale: true,
			want: want{outcome: RefreshStale, cause: RefreshGraceDuplicate, err: ErrStale}},
		{name: "stale lost response: refused, nothing abandoned", row: base, gen: 4, at: time.Hour, stale: true,
			want: want{outcome: RefreshStale, cause: RefreshLostResponse, err: ErrStale}},
		{name: "stale ancestor: refused, nothing revoked", row: base, gen: 3, at: time.Second, stale: true,
			want: want{outcome: RefreshStale, cause: RefreshReuse, err: ErrStale}},
		{name: "stale late parent: refused, nothing revoked", row: base, gen: 4, at: l + time.Second, stale: true,
			want: want{outcome: RefreshStale, cause: RefreshReuse, err: ErrStale}},
		{name: "stale request to a revoked session: invalid as ever", row: func() Session { s := base; s.RevokedAt = t0; return s }(), gen: 3, stale: true,
			want: want{outcome: RefreshRevoked, err: ErrRevoked}},

		{name: "clock stepped back: the grace anchor does not move back",
			row: func() Session { s := base; s.HandedAt = t0.Add(time.Minute); return s }(), gen: 4, at: 40 * time.Second,
			want: want{outcome: RefreshGraceDuplicate, write: true, gen: 5, parent: 4}, handed: time.Minute, handedS: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			if c == (Config{}) {
				c = cfg
			}
			meta := tt.meta
			if meta == (Meta{}) {
				meta = rotatedBy
			}
			now := t0.Add(tt.at)
			got := rotate(rotationIn{Row: tt.row, Gen: tt.gen, Now: now, Awaited: !tt.stale, Meta: meta}, c)
			w := tt.want
			if got.Outcome != w.outcome || got.Cause != w.cause || got.Audit != w.audit || !errors.Is(got.Err, w.err) || (w.err == nil) != (got.Err == nil) {
				t.Fatalf("rotate = outcome %q cause %q audit %q err %v; want %q %q %q %v", got.Outcome, got.Cause, got.Audit, got.Err, w.outcome, w.cause, w.audit, w.err)
			}
			if (got.Audit == "") != (got.Detail == "") {
				t.Errorf("audit %q with detail %q", got.Audit, got.Detail)
			}
			if got.Write != w.write {
				t.Fatalf("Write = %v, want %v", got.Write, w.write)
			}
			if !w.write {
				if got.Next != tt.row {
					t.Errorf("an outcome that writes nothing changed the row:\n got  %+v\n want %+v", got.Next, tt.row)
				}
				return
			}
			n := got.Next
			if n.Gen != w.gen || n.ParentGen != w.parent {
				t.Errorf("next gen %d parent %d, want %d %d", n.Gen, n.ParentGen, w.gen, w.parent)
			}
			wantRotatedAt, wantRotatedBy := tt.row.RotatedAt, Meta{IP: tt.row.RotatedIP, UserAgent: tt.row.RotatedUserAgent}
			if w.rotated {
				wantRotatedAt, wantRotatedBy = now, meta
			}
			if !n.RotatedAt.Equal(wantRotatedAt) || (Meta{IP: n.RotatedIP, UserAgent: n.RotatedUserAgent}) != wantRotatedBy {
				t.Errorf("next rotated at %v by %s/%s, want %v by %+v (L runs from the rotation, never from a grace or lost-response answer)",
					n.RotatedAt, n.RotatedIP, n.RotatedUserAgent, wantRotatedAt, wantRotatedBy)
			}
			wantHanded := now
			if tt.handedS {
				wantHanded = t0.Add(tt.handed)
			}
			if !n.HandedAt.Equal(wantHanded) {
				t.Errorf("next handed at %v, want %v (G restarts at every hand-out, never moves back)", n.HandedAt, wantHanded)
			}
			if !n.LastUsedAt.Equal(now) || !n.IdleExpiresAt.Equal(now.Add(c.Idle)) || n.IP != meta.IP || n.UserAgent != meta.UserAgent {
				t.Errorf("next last use %v, idle expiry %v, from %s/%s; want %v, %v, %+v", n.LastUsedAt, n.IdleExpiresAt, n.IP, n.UserAgent, now, now.Add(c.Idle), meta)
			}
			if n.ID != tt.row.ID || n.UserID != tt.row.UserID || n.Scope != tt.row.Scope || !n.ExpiresAt.Equal(tt.row.ExpiresAt) || !n.RevokedAt.IsZero() {
				t.Errorf("next changed what rotation never touches: %+v", n)
			}
		})
	}
}

// TestRotateOutcomesAreKnown: every outcome and cause rotate returns is one
// the Observer documents, so metrics create their series up front.
func TestRotateOutcomesAreKnown(t *testing.T) {
	known := map[string]bool{}
	for _, o := range append(RefreshOutcomes(), ReuseCauses()...) {
		known[o] = true
	}
	for _, o := range []string{RefreshRotated, RefreshGraceDuplicate, RefreshLostResponse, RefreshReuse, RefreshExpired, RefreshRevoked, RefreshStale,
		ReuseAncestor, ReuseAbandoned, ReuseLateParent, ReuseUnknownGeneration} {
		if !known[o] {
			t.Errorf("%q is missing from RefreshOutcomes or ReuseCauses", o)
		}
	}
}
