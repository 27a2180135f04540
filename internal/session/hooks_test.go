package session_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

type commits struct {
	mu  sync.Mutex
	all []session.Committed
}

func (c *commits) add(x session.Committed) { c.mu.Lock(); c.all = append(c.all, x); c.mu.Unlock() }

func (c *commits) take() []session.Committed {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.all
	c.all = nil
	return out
}

// OnCommit hooks see what committed transactions recorded, and nothing of a
// transaction that rolled back.
func TestOnCommitHooks(t *testing.T) {
	var got commits
	fs := &faultStore{}
	env := testenv.New(t, testenv.Options{OnCommit: got.add, WrapStore: fs.wrap})
	a := env.Login(t, "hook@example.com")
	if c := got.take(); len(c) != 1 || c[0].Events[0].Type != audit.Signup || len(c[0].Revoked) != 0 {
		t.Fatalf("signup and login reported %+v", c)
	}
	// A plain rotation records nothing: no hook call on the hot path.
	env.Clock.Advance(time.Minute)
	b := mustRefresh(t, env, a.RefreshToken)
	if c := got.take(); len(c) != 0 {
		t.Fatalf("a plain rotation reported %+v", c)
	}
	// A rolled-back reuse reports nothing.
	env.Clock.Advance(time.Minute)
	mustRefresh(t, env, b.RefreshToken)
	fs.failAt("Commit", errors.New("disk full"))
	if _, err := refresh(env, a.RefreshToken); err == nil {
		t.Fatal("refresh with a failing commit succeeded")
	}
	if c := got.take(); len(c) != 0 {
		t.Fatalf("a rolled-back transaction reported %+v", c)
	}
	fs.failAt("", nil)
	// The committed reuse reports its event and the revoked session.
	if _, err := refresh(env, a.RefreshToken); !errors.Is(err, session.ErrReused) {
		t.Fatalf("reuse: %v", err)
	}
	cs := got.take()
	if len(cs) != 1 || !slices.Equal(cs[0].Revoked, []string{a.SessionID}) || cs[0].Events[0].Type != audit.RefreshReuse {
		t.Fatalf("reuse reported %+v", cs)
	}
}

// TestRevocationsThatChangeNothingSayNothing: repeating a remote logout, a
// logout or a user disable writes no second audit row and calls no hook
// (so no webhook with a new id is sent for nothing).
func TestRevocationsThatChangeNothingSayNothing(t *testing.T) {
	var got commits
	env := testenv.New(t, testenv.Options{OnCommit: got.add})
	a := env.Login(t, "repeat@example.com")
	user := userOf(t, env, a.SessionID)
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"remote logout", func() error { return env.Sessions.RevokeSession(ctx, user, a.SessionID, session.Meta{}) }, audit.SessionRevoked},
		{"logout of others", func() error {
			_, err := env.Sessions.Logout(ctx, user, a.SessionID, session.ScopeOthers, session.Meta{})
			return err
		}, ""},
		{"admin revoke", func() error { return env.Sessions.RevokeSession(ctx, "", a.SessionID, session.Meta{}) }, ""},
		{"disable user", func() error { return env.Sessions.DisableUser(ctx, user, session.Meta{}) }, audit.UserDisabled},
	}
	got.take()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			first := got.take()
			if tt.want != "" && (len(first) != 1 || first[0].Events[0].Type != tt.want) {
				t.Fatalf("first call reported %+v, want one %s", first, tt.want)
			}
			if err := tt.do(); err != nil {
				t.Fatalf("repeat: %v", err)
			}
			if again := got.take(); len(again) != 0 {
				t.Fatalf("a repeat that changed nothing reported %+v", again)
			}
		})
	}
}
