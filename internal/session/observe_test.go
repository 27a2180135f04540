package session_test

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// observer counts what session.Observer is told, as "kind/value" keys.
type observer struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *observer) add(k string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[k] += n
}

func (o *observer) LoggedIn(outcome string) { o.add("login/"+outcome, 1) }
func (o *observer) Refreshed(outcome, cause string) {
	o.add("refresh/"+outcome, 1)
	if cause != "" {
		o.add("reuse/"+cause, 1)
	}
}
func (o *observer) Revoked(reason string, n int)   { o.add("revoked/"+reason, n) }
func (o *observer) PasswordChanged(outcome string) { o.add("password/"+outcome, 1) }

func (o *observer) take() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.n
	o.n = nil
	return out
}

// TestObserver drives every login and refresh outcome and a logout, and
// checks the observer is told each once, with its cause or reason, and
// nothing of a transaction that rolled back.
func TestObserver(t *testing.T) {
	var obs observer
	fs := &faultStore{}
	env := testenv.New(t, testenv.Options{Grace: grace, LostWindow: lost, Observer: &obs, WrapStore: fs.wrap})
	users := 0
	login := func() session.Tokens {
		t.Helper()
		users++
		email := fmt.Sprintf("obs%d@example.com", users)
		env.Login(t, email) // signup: not a login
		tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: email, Password: testenv.Password, Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	step := func(name string, want map[string]int, do func()) {
		t.Helper()
		do()
		if got := obs.take(); !maps.Equal(got, want) {
			t.Errorf("%s: observed %v, want %v", name, got, want)
		}
	}

	var a0, a1, a2 session.Tokens
	step("login", map[string]int{"login/success": 1}, func() { a0 = login() })
	step("bad password", map[string]int{"login/bad_credentials": 1}, func() {
		env.Sessions.Login(ctx, session.LoginRequest{Email: "obs1@example.com", Password: "wrong", Client: env.Client})
	})
	step("rotate", map[string]int{"refresh/rotated": 1}, func() { a1 = mustRefresh(t, env, a0.RefreshToken) })
	step("grace duplicate", map[string]int{"refresh/grace_duplicate": 1}, func() { mustRefresh(t, env, a0.RefreshToken) })
	env.Clock.Advance(time.Minute)
	step("lost response", map[string]int{"refresh/lost_response": 1}, func() { a2 = mustRefresh(t, env, a0.RefreshToken) })
	step("abandoned successor", map[string]int{"refresh/reuse": 1, "reuse/abandoned_successor": 1, "revoked/refresh_token_reuse": 1}, func() {
		if _, err := refresh(env, a1.RefreshToken); !errors.Is(err, session.ErrReused) {
			t.Fatalf("reuse: %v", err)
		}
	})
	step("revoked", map[string]int{"refresh/revoked": 1}, func() { refresh(env, a2.RefreshToken) })

	var b0 session.Tokens
	step("second login", map[string]int{"login/success": 1}, func() { b0 = login() })
	b1 := mustRefresh(t, env, b0.RefreshToken)
	env.Clock.Advance(time.Minute)
	mustRefresh(t, env, b1.RefreshToken)
	obs.take()
	fs.failAt("Commit", errors.New("disk full"))
	step("rolled-back reuse", map[string]int{"refresh/unavailable": 1}, func() { refresh(env, b0.RefreshToken) })
	fs.failAt("", nil)
	step("ancestor", map[string]int{"refresh/reuse": 1, "reuse/ancestor": 1, "revoked/refresh_token_reuse": 1}, func() { refresh(env, b0.RefreshToken) })

	c0 := login()
	mustRefresh(t, env, c0.RefreshToken)
	env.Clock.Advance(2 * lost)
	obs.take()
	step("late parent", map[string]int{"refresh/reuse": 1, "reuse/late_parent": 1, "revoked/refresh_token_reuse": 1}, func() { refresh(env, c0.RefreshToken) })

	d0 := login()
	obs.take()
	// The signup's session and the login's.
	step("logout", map[string]int{"revoked/logout": 2}, func() {
		env.Sessions.Logout(ctx, userOf(t, env, d0.SessionID), d0.SessionID, session.ScopeAll, session.Meta{})
	})
	step("logout again", nil, func() {
		env.Sessions.Logout(ctx, userOf(t, env, d0.SessionID), d0.SessionID, session.ScopeAll, session.Meta{})
	})

	e0 := login()
	env.Clock.Advance(env.Config.Idle + time.Second)
	obs.take()
	step("expired", map[string]int{"refresh/expired": 1}, func() { refresh(env, e0.RefreshToken) })
	step("invalid", map[string]int{"refresh/invalid": 1}, func() { refresh(env, "latch_rt_garbage") })

	f0 := login()
	obs.take()
	fs.failAll(session.ErrUnavailable)
	step("unavailable", map[string]int{"refresh/unavailable": 1}, func() { refresh(env, f0.RefreshToken) })
	step("login, storage down", map[string]int{"login/error": 1}, func() {
		env.Sessions.Login(ctx, session.LoginRequest{Email: "obs1@example.com", Password: testenv.Password, Client: env.Client})
	})
	fs.failAll(nil)
}

func userOf(t *testing.T, env *testenv.Env, sid string) string {
	t.Helper()
	s, err := env.Store.Session(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	return s.UserID
}
