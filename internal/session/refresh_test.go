package session_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

var ctx = context.Background()

const (
	grace = 30 * time.Second
	lost  = time.Hour
)

func refresh(env *testenv.Env, tok string) (session.Tokens, error) {
	return env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok, Client: env.Client, Meta: session.Meta{IP: "192.0.2.1", UserAgent: "test"}})
}

func mustRefresh(t *testing.T, env *testenv.Env, tok string) session.Tokens {
	t.Helper()
	got, err := refresh(env, tok)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return got
}

func state(t *testing.T, env *testenv.Env, id string) session.Session {
	t.Helper()
	s, err := env.Store.Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRefreshRules walks each row of docs/design.md's rotation table, with the
// window edges, on the real service and SQLite.
func TestRefreshRules(t *testing.T) {
	type step struct {
		advance time.Duration
		present string // "r0" (login token), "r1", ... as returned so far; "last" = newest
	}
	tests := []struct {
		name       string
		noLost     bool
		setup      []step // refreshes that must succeed first
		advance    time.Duration
		present    string
		want       string // "rotate", "same", "successor", "reuse"
		wantActive bool
	}{
		{name: "current token rotates", present: "r0", want: "rotate", wantActive: true},
		{name: "parent within grace gets identical token", setup: []step{{0, "r0"}}, advance: 10 * time.Second, present: "r0", want: "same", wantActive: true},
		{name: "parent exactly at grace edge gets identical token", setup: []step{{0, "r0"}}, advance: grace, present: "r0", want: "same", wantActive: true},
		{name: "parent just past grace is a lost response", setup: []step{{0, "r0"}}, advance: grace + time.Microsecond, present: "r0", want: "successor", wantActive: true},
		{name: "parent at lost-window edge is a lost response", setup: []step{{0, "r0"}}, advance: lost, present: "r0", want: "successor", wantActive: true},
		{name: "parent past lost window is reuse", setup: []step{{0, "r0"}}, advance: lost + time.Microsecond, present: "r0", want: "reuse"},
		{name: "parent past grace with lost window off is reuse", noLost: true, setup: []step{{0, "r0"}}, advance: grace + time.Microsecond, present: "r0", want: "reuse"},
		{name: "parent within grace with lost window off gets identical token", noLost: true, setup: []step{{0, "r0"}}, advance: grace, present: "r0", want: "same", wantActive: true},
		{name: "grandparent is reuse even within grace", setup: []step{{0, "r0"}, {0, "r1"}}, present: "r0", want: "reuse"},
		{name: "older ancestor is reuse", setup: []step{{0, "r0"}, {time.Minute, "r1"}, {time.Minute, "r2"}}, present: "r1", want: "reuse"},
		{name: "abandoned token is reuse even within grace", setup: []step{{0, "r0"}, {time.Minute, "r0"}}, present: "r1", want: "reuse"},
		{name: "grace restarts when a duplicate is answered", setup: []step{{0, "r0"}, {20 * time.Second, "r0"}}, advance: 20 * time.Second, present: "r0", want: "same", wantActive: true},
		{name: "lost window does not restart on a lost-response answer", setup: []step{{0, "r0"}, {50 * time.Minute, "r0"}}, advance: 11 * time.Minute, present: "r0", want: "reuse"},
		{name: "lost-response successor rotates normally", setup: []step{{0, "r0"}, {time.Minute, "r0"}}, present: "r2", want: "rotate", wantActive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.New(t, testenv.Options{Grace: grace, LostWindow: lost, NoLostWindow: tt.noLost})
			tok := env.Login(t, "u@example.com")
			issued := []string{tok.RefreshToken}
			for _, s := range tt.setup {
				env.Clock.Advance(s.advance)
				got := mustRefresh(t, env, issued[index(s.present)])
				if got.RefreshToken != issued[len(issued)-1] {
					issued = append(issued, got.RefreshToken)
				}
			}
			env.Clock.Advance(tt.advance)
			before := state(t, env, tok.SessionID)
			newest := issued[len(issued)-1]
			got, err := refresh(env, issued[index(tt.present)])
			switch tt.want {
			case "reuse":
				if !errors.Is(err, session.ErrReused) || !session.IsInvalidGrant(err) {
					t.Fatalf("error = %v, want ErrReused", err)
				}
			default:
				if err != nil {
					t.Fatalf("refresh: %v", err)
				}
				if got.AccessToken == "" || got.SessionID != tok.SessionID {
					t.Fatalf("tokens = %+v", got)
				}
			}
			switch tt.want {
			case "rotate", "successor":
				for _, old := range issued {
					if got.RefreshToken == old {
						t.Fatalf("%s: got a refresh token issued before", tt.want)
					}
				}
			case "same":
				if got.RefreshToken != newest {
					t.Fatalf("grace answer differs from the current token")
				}
			}
			after := state(t, env, tok.SessionID)
			if active := after.Active(env.Clock.Now()); active != tt.wantActive {
				t.Fatalf("session active = %v, want %v (reason %q)", active, tt.wantActive, after.RevokeReason)
			}
			if tt.want == "reuse" && after.RevokeReason != session.ReasonReuse {
				t.Fatalf("revoke reason = %q, want %q", after.RevokeReason, session.ReasonReuse)
			}
			if tt.want == "successor" && after.RotatedAt != before.RotatedAt {
				t.Fatalf("lost-response answer moved the rotation time (L restarted)")
			}
			if tt.want == "reuse" {
				// Nothing works after reuse: not even the newest token.
				if _, err := refresh(env, newest); !session.IsInvalidGrant(err) {
					t.Fatalf("newest token after reuse: error = %v, want invalid grant", err)
				}
			}
		})
	}
}

func index(name string) int {
	var i int
	for _, c := range name[1:] {
		i = i*10 + int(c-'0')
	}
	return i
}

func TestRefreshRejectsDeadSessions(t *testing.T) {
	tests := []struct {
		name string
		opts testenv.Options
		kill func(t *testing.T, env *testenv.Env, tok session.Tokens)
		want error
	}{
		{"revoked", testenv.Options{}, func(t *testing.T, env *testenv.Env, tok session.Tokens) {
			env.Sessions.RevokeSession(ctx, "", tok.SessionID, session.Meta{})
		}, session.ErrRevoked},
		{"idle expired", testenv.Options{Idle: time.Hour}, func(t *testing.T, env *testenv.Env, _ session.Tokens) {
			env.Clock.Advance(time.Hour)
		}, session.ErrExpired},
		{"past absolute lifetime", testenv.Options{MaxLifetime: 2 * time.Hour, Idle: time.Hour}, func(t *testing.T, env *testenv.Env, tok session.Tokens) {
			// Keep it from idling out: refresh every 50 minutes.
			for range 2 {
				env.Clock.Advance(50 * time.Minute)
				tok = mustRefresh(t, env, tok.RefreshToken)
			}
			env.Clock.Advance(20 * time.Minute)
		}, session.ErrExpired},
		{"user disabled", testenv.Options{}, func(t *testing.T, env *testenv.Env, tok session.Tokens) {
			s, _ := env.Store.Session(ctx, tok.SessionID)
			env.Sessions.DisableUser(ctx, s.UserID, session.Meta{})
		}, session.ErrRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.New(t, tt.opts)
			tok := env.Login(t, "u@example.com")
			tt.kill(t, env, tok)
			before := state(t, env, tok.SessionID)
			_, err := refresh(env, tok.RefreshToken)
			if !errors.Is(err, tt.want) || !session.IsInvalidGrant(err) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if after := state(t, env, tok.SessionID); after != before {
				t.Fatalf("a refused refresh changed the session:\n%+v\n%+v", before, after)
			}
		})
	}
}

func TestRefreshRejectsForgedTokensBeforeStorage(t *testing.T) {
	failing := &faultStore{}
	env := testenv.New(t, testenv.Options{WrapStore: failing.wrap})
	tok := env.Login(t, "u@example.com")
	failing.failAll(errors.New("storage must not be touched"))
	b := []byte(tok.RefreshToken)
	b[20] ^= 1
	for _, bad := range []string{"", "garbage", string(b), tok.AccessToken, tok.RefreshToken[:len(tok.RefreshToken)-2]} {
		if _, err := refresh(env, bad); !errors.Is(err, session.ErrInvalidToken) {
			t.Errorf("refresh(%.20q) error = %v, want ErrInvalidToken", bad, err)
		}
	}
	if n := failing.calls(); n != 0 {
		t.Fatalf("storage was called %d times for forged tokens", n)
	}
}

func TestRefreshChecksClientBinding(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tok := env.Login(t, "u@example.com")
	other := env.Client
	other.ID = "other"
	_, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok.RefreshToken, Client: other})
	if !errors.Is(err, session.ErrWrongClient) {
		t.Fatalf("error = %v, want ErrWrongClient", err)
	}
	mustRefresh(t, env, tok.RefreshToken) // the owner is unaffected
}

// TestConcurrentRefresh: 50 goroutines present the same token at once. One
// rotation happens; everyone gets the identical refresh token; the session
// stays active.
func TestConcurrentRefresh(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tok := env.Login(t, "u@example.com")
	const n = 50
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		got   = make([]string, n)
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := refresh(env, tok.RefreshToken)
			got[i], errs[i] = r.RefreshToken, err
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d got a different refresh token: the session forked", i)
		}
	}
	s := state(t, env, tok.SessionID)
	if s.Gen != 2 || s.ParentGen != 1 || !s.Active(env.Clock.Now()) {
		t.Fatalf("session after race: gen %d parent %d active %v; want one rotation", s.Gen, s.ParentGen, s.Active(env.Clock.Now()))
	}
	mustRefresh(t, env, got[0])
}

// TestRefreshFailureLeavesSessionUnchanged injects a storage error at each
// write of a refresh; the transaction rolls back and the client's old token
// still works.
func TestRefreshFailureLeavesSessionUnchanged(t *testing.T) {
	for _, at := range []string{"LockSession", "UpdateSession", "AppendAudit", "RevokeSessions", "Commit"} {
		t.Run(at, func(t *testing.T) {
			fs := &faultStore{}
			env := testenv.New(t, testenv.Options{WrapStore: fs.wrap})
			tok := env.Login(t, "u@example.com")
			r1 := mustRefresh(t, env, tok.RefreshToken)
			// AppendAudit runs on a lost response, RevokeSessions on reuse:
			// set the clock so the presented token reaches that write.
			present := r1.RefreshToken
			switch at {
			case "AppendAudit":
				env.Clock.Advance(time.Minute)
				present = tok.RefreshToken
			case "RevokeSessions":
				mustRefresh(t, env, r1.RefreshToken)
				present = tok.RefreshToken
			}
			before := state(t, env, tok.SessionID)
			fs.failAt(at, errors.New("injected fault"))
			if _, err := refresh(env, present); err == nil || session.IsInvalidGrant(err) {
				t.Fatalf("refresh with fault: error = %v, want a transient error", err)
			}
			fs.failAt("", nil)
			if after := state(t, env, tok.SessionID); after != before {
				t.Fatalf("fault changed the session:\nbefore %+v\nafter  %+v", before, after)
			}
			if at == "RevokeSessions" {
				return // the retry correctly detects the reuse; nothing more to show
			}
			if _, err := refresh(env, present); err != nil {
				t.Fatalf("retry after fault: %v", err)
			}
		})
	}
}

// TestTheft: whichever of thief and victim refreshes second with a stale
// token revokes the session.
func TestTheft(t *testing.T) {
	t.Run("thief first, then victim", func(t *testing.T) {
		env := testenv.New(t, testenv.Options{})
		tok := env.Login(t, "victim@example.com")
		stolen := mustRefresh(t, env, tok.RefreshToken).RefreshToken // the victim's current token
		// The thief uses the session as a client would: a refresh per
		// access-token lifetime.
		env.Clock.Advance(time.Hour)
		thief := mustRefresh(t, env, stolen)
		env.Clock.Advance(15 * time.Minute)
		thief = mustRefresh(t, env, thief.RefreshToken)
		env.Clock.Advance(time.Minute)
		// The victim comes back with its token, now an ancestor: reuse.
		if _, err := refresh(env, stolen); !errors.Is(err, session.ErrReused) {
			t.Fatalf("victim after thief: error = %v, want ErrReused", err)
		}
		if _, err := refresh(env, thief.RefreshToken); !session.IsInvalidGrant(err) {
			t.Fatalf("thief after detection: error = %v, want invalid grant", err)
		}
	})
	t.Run("thief first once, then victim, lost window off", func(t *testing.T) {
		env := testenv.New(t, testenv.Options{NoLostWindow: true})
		tok := env.Login(t, "victim@example.com")
		thief := mustRefresh(t, env, tok.RefreshToken)
		env.Clock.Advance(time.Hour)
		if _, err := refresh(env, tok.RefreshToken); !errors.Is(err, session.ErrReused) {
			t.Fatalf("victim after thief: error = %v, want ErrReused", err)
		}
		if _, err := refresh(env, thief.RefreshToken); !session.IsInvalidGrant(err) {
			t.Fatalf("thief after detection: error = %v, want invalid grant", err)
		}
	})
	t.Run("victim first, then thief", func(t *testing.T) {
		env := testenv.New(t, testenv.Options{})
		tok := env.Login(t, "victim@example.com")
		stolen := tok.RefreshToken
		env.Clock.Advance(time.Minute)
		v1 := mustRefresh(t, env, stolen)
		env.Clock.Advance(time.Minute)
		v2 := mustRefresh(t, env, v1.RefreshToken)
		env.Clock.Advance(time.Minute)
		if _, err := refresh(env, stolen); !errors.Is(err, session.ErrReused) {
			t.Fatalf("thief with an old token: error = %v, want ErrReused", err)
		}
		if _, err := refresh(env, v2.RefreshToken); !errors.Is(err, session.ErrRevoked) {
			t.Fatalf("victim after detection: error = %v, want ErrRevoked", err)
		}
	})
	t.Run("thief refreshes first and stops: documented exception", func(t *testing.T) {
		env := testenv.New(t, testenv.Options{})
		tok := env.Login(t, "victim@example.com")
		thief := mustRefresh(t, env, tok.RefreshToken) // stolen current token used first
		env.Clock.Advance(time.Hour)
		victim := mustRefresh(t, env, tok.RefreshToken) // looks like a lost response
		if victim.RefreshToken == thief.RefreshToken {
			t.Fatal("victim received the thief's token")
		}
		events, err := env.Store.AuditEvents(ctx, audit.Query{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if events[0].Type != "refresh.lost_response" || events[0].IP != "192.0.2.1" {
			t.Fatalf("newest audit event = %+v, want a lost-response event with the presenter's IP", events[0])
		}
		// The thief's token is now abandoned: using it revokes the session.
		if _, err := refresh(env, thief.RefreshToken); !errors.Is(err, session.ErrReused) {
			t.Fatalf("abandoned thief token: error = %v, want ErrReused", err)
		}
	})
}

func TestAccessTokenNeverOutlivesSession(t *testing.T) {
	env := testenv.New(t, testenv.Options{MaxLifetime: time.Hour, AccessTTL: 15 * time.Minute})
	tok := env.Login(t, "u@example.com")
	env.Clock.Advance(50 * time.Minute)
	r := mustRefresh(t, env, tok.RefreshToken)
	s := state(t, env, tok.SessionID)
	exp := accessExpiry(t, r.AccessToken)
	if !exp.Equal(s.ExpiresAt.Truncate(time.Second)) {
		t.Fatalf("access token exp = %s, want the session's absolute expiry %s", exp, s.ExpiresAt)
	}
	if r.ExpiresIn != 600 {
		t.Fatalf("expires_in = %d, want 600", r.ExpiresIn)
	}
}

func accessExpiry(t *testing.T, tok string) time.Time {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var c bearer.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	return c.Expiry.Time().UTC()
}

// TestRefreshStateIsConstant: many refreshes leave one session row and no
// growth elsewhere except the audit trail of unusual events.
func TestRefreshStateIsConstant(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tok := env.Login(t, "u@example.com")
	rows := func() (sessions, revocations int) {
		db := env.Store
		list, err := db.UserSessions(ctx, state(t, env, tok.SessionID).UserID)
		if err != nil {
			t.Fatal(err)
		}
		revs, err := db.Revocations(ctx, session.FeedCursor{}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return len(list), len(revs)
	}
	rt := tok.RefreshToken
	for range 200 {
		env.Clock.Advance(time.Minute)
		rt = mustRefresh(t, env, rt).RefreshToken
	}
	if s, r := rows(); s != 1 || r != 0 {
		t.Fatalf("after 200 refreshes: %d session rows, %d feed rows; want 1 and 0", s, r)
	}
	if g := state(t, env, tok.SessionID).Gen; g != 201 {
		t.Fatalf("generation = %d, want 201", g)
	}
}

// TestSweepBoundsTables: ended sessions are deleted after the retention
// period, so the table holds live sessions plus at most a retention's
// worth of ended ones.
func TestSweepBoundsTables(t *testing.T) {
	env := testenv.New(t, testenv.Options{Idle: 24 * time.Hour})
	count := func() int {
		var n int
		for _, email := range []string{"a@example.com", "b@example.com"} {
			u, err := env.Sessions.UserByEmail(ctx, email)
			if err != nil {
				t.Fatal(err)
			}
			list, err := env.Store.UserSessions(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			n += len(list)
		}
		return n
	}
	a := env.Login(t, "a@example.com")
	env.Login(t, "b@example.com") // will idle out
	for range 20 {
		tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "a@example.com", Password: testenv.Password, Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Sessions.Logout(ctx, "", tok.SessionID, session.ScopeOne, session.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 22 {
		t.Fatalf("%d session rows before sweeping, want 22", n)
	}
	if n, err := env.Sessions.Sweep(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("early sweep deleted %d, %v; want nothing inside retention", n, err)
	}
	// Keep a alive, let b idle out, and pass the retention.
	env.Clock.Advance(12 * time.Hour)
	a = mustRefresh(t, env, a.RefreshToken)
	env.Clock.Advance(13*time.Hour + time.Minute)
	a = mustRefresh(t, env, a.RefreshToken)
	n, err := env.Sessions.Sweep(ctx, time.Hour)
	if err != nil || n != 21 {
		t.Fatalf("sweep deleted %d, %v; want the 20 logged-out and 1 idle session", n, err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d session rows after sweeping, want the one live session", n)
	}
	if revs, _ := env.Store.Revocations(ctx, session.FeedCursor{}, 1000); len(revs) != 0 {
		t.Fatalf("%d revocation-feed entries past their until survived the sweep", len(revs))
	}
	mustRefresh(t, env, a.RefreshToken)
}

// TestWaitingForTheLockDoesNotShrinkGrace: a refresh that waits behind
// another for the session lock must judge, and record, the time it got the
// lock, not the time it arrived; otherwise it records a hand-out earlier
// than the real one and a later duplicate within G is taken for a lost
// response, abandoning the token the other tab holds.
func TestWaitingForTheLockDoesNotShrinkGrace(t *testing.T) {
	fs := &faultStore{}
	env := testenv.New(t, testenv.Options{WrapStore: fs.wrap})
	tok := env.Login(t, "u@example.com")
	env.Clock.Advance(time.Minute)

	locked, release := make(chan struct{}), make(chan struct{})
	fs.onLock = func() { close(locked); <-release }
	var b session.Tokens
	bDone := make(chan error)
	go func() { // tab B: rotates while holding the lock
		var err error
		b, err = refresh(env, tok.RefreshToken)
		bDone <- err
	}()
	<-locked
	// A's arrival: everything it does before its transaction (where a
	// clock read made too early would be) is done when it begins one.
	arrived := make(chan struct{})
	fs.mu.Lock()
	fs.beforeTx = func() { close(arrived) }
	fs.mu.Unlock()
	aDone := make(chan error)
	go func() { // tab A: same token, arrives now, waits for B
		_, err := refresh(env, tok.RefreshToken)
		aDone <- err
	}()
	<-arrived
	env.Clock.Advance(10 * time.Second)
	close(release)
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	// 25 s after B's rotation (within G of it) another duplicate arrives.
	env.Clock.Advance(25 * time.Second)
	dup := mustRefresh(t, env, tok.RefreshToken)
	if dup.RefreshToken != b.RefreshToken {
		t.Fatal("a duplicate within G of the real hand-out got a new successor")
	}
	mustRefresh(t, env, b.RefreshToken) // tab B's token still works
}

// TestDisableWinsOverConcurrentChanges: a user disabled while a login or a
// password change is between checking the password and writing stays
// disabled, and gets no session.
func TestDisableWinsOverConcurrentChanges(t *testing.T) {
	tests := []struct {
		name string
		run  func(env *testenv.Env, u session.User, keep string) error
	}{
		{"login", func(env *testenv.Env, u session.User, _ string) error {
			_, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: u.Email, Password: testenv.Password, Client: env.Client})
			return err
		}},
		{"password change", func(env *testenv.Env, u session.User, keep string) error {
			return env.Sessions.ChangePassword(ctx, u.ID, keep, testenv.Password, "a different passphrase", session.Meta{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &faultStore{}
			env := testenv.New(t, testenv.Options{WrapStore: fs.wrap})
			tok := env.Login(t, "u@example.com")
			u, _ := env.Sessions.UserByEmail(ctx, "u@example.com")
			fs.beforeTx = func() {
				if err := env.Sessions.DisableUser(ctx, u.ID, session.Meta{}); err != nil {
					t.Error(err)
				}
			}
			if err := tt.run(env, u, tok.SessionID); !errors.Is(err, session.ErrBadCredential) {
				t.Fatalf("error = %v, want ErrBadCredential", err)
			}
			after, _ := env.Sessions.User(ctx, u.ID)
			if after.DisabledAt.IsZero() || after.PasswordHash != u.PasswordHash {
				t.Fatalf("user after the race: disabled %v, password changed %v", !after.DisabledAt.IsZero(), after.PasswordHash != u.PasswordHash)
			}
			if list, _ := env.Sessions.Sessions(ctx, u.ID); len(list) != 0 {
				t.Fatalf("%d active sessions for a disabled user", len(list))
			}
		})
	}
}

// TestDatabaseHoldsNoRefreshToken reads the raw database files after a
// login and refreshes: neither any refresh token nor its MAC is there.
func TestDatabaseHoldsNoRefreshToken(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tok := env.Login(t, "u@example.com")
	issued := []string{tok.RefreshToken}
	for range 3 {
		env.Clock.Advance(time.Minute)
		tok = mustRefresh(t, env, tok.RefreshToken)
		issued = append(issued, tok.RefreshToken)
	}
	var dump []byte
	for _, name := range []string{"latch.db", "latch.db-wal"} {
		b, err := os.ReadFile(filepath.Join(env.Dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		dump = append(dump, b...)
	}
	if len(dump) == 0 {
		t.Fatal("read no database bytes")
	}
	for _, rt := range issued {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(rt, "latch_rt_"))
		if err != nil {
			t.Fatal(err)
		}
		mac := raw[1+16+8 : 1+16+8+32]
		if bytes.Contains(dump, []byte(rt)) || bytes.Contains(dump, mac) || bytes.Contains(dump, []byte(base64.RawURLEncoding.EncodeToString(mac))) {
			t.Fatal("a refresh token or its MAC is stored in the database")
		}
	}
}

// TestExpiryEdges: one second before the idle or absolute end a refresh is
// accepted; at the end it is refused (docs/security.md RT-11). The
// server's clock decides; the client sends no time.
func TestExpiryEdges(t *testing.T) {
	tests := []struct {
		name  string
		opts  testenv.Options
		until time.Duration // from login to the end
	}{
		{"idle", testenv.Options{Idle: time.Hour}, time.Hour},
		{"absolute", testenv.Options{MaxLifetime: 30 * time.Minute, Idle: time.Hour}, 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, edge := range []struct {
				at     time.Duration
				accept bool
			}{{tt.until - time.Second, true}, {tt.until, false}} {
				env := testenv.New(t, tt.opts)
				tok := env.Login(t, "edge@example.com")
				env.Clock.Advance(edge.at)
				_, err := refresh(env, tok.RefreshToken)
				if edge.accept && err != nil {
					t.Fatalf("refresh %s after login (1 s before the end): %v", edge.at, err)
				}
				if !edge.accept && !errors.Is(err, session.ErrExpired) {
					t.Fatalf("refresh exactly at the end: %v, want expired", err)
				}
			}
		})
	}
}

// TestLoginAuditTrail: successful and failed logins are recorded with the
// client's IP and user agent (docs/security.md LOGIN-12, RT-08).
func TestLoginAuditTrail(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	env.Login(t, "audit@example.com")
	m := session.Meta{IP: "198.51.100.4", UserAgent: "audit-test"}
	if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "audit@example.com", Password: "not the password", Client: env.Client, Meta: m}); !errors.Is(err, session.ErrBadCredential) {
		t.Fatalf("bad login: %v", err)
	}
	if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "nobody@example.com", Password: "not the password", Client: env.Client, Meta: m}); !errors.Is(err, session.ErrBadCredential) {
		t.Fatalf("unknown login: %v", err)
	}
	tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "audit@example.com", Password: testenv.Password, Client: env.Client, Meta: m})
	if err != nil {
		t.Fatal(err)
	}
	failed, _ := env.Store.AuditEvents(ctx, audit.Query{Type: audit.LoginFailed})
	ok, _ := env.Store.AuditEvents(ctx, audit.Query{Type: audit.LoginSucceeded})
	if len(failed) != 2 || failed[0].IP != m.IP || failed[0].UserAgent != m.UserAgent {
		t.Fatalf("login.failed events %+v, want two with the client's IP and user agent", failed)
	}
	if len(ok) != 2 || ok[0].SessionID != tok.SessionID || ok[0].IP != m.IP {
		t.Fatalf("login.succeeded events %+v, want the new session with the client's IP", ok)
	}
	for _, e := range append(failed, ok...) {
		if strings.Contains(e.Detail, "password") || strings.Contains(e.Detail, testenv.Password) {
			t.Fatalf("an audit event carries a password: %+v", e)
		}
	}
}

// TestLoginRehashes: a hash made with weaker parameters than the current
// ones is replaced at the next successful login (docs/security.md
// LOGIN-09), and the password still works after it.
func TestLoginRehashes(t *testing.T) {
	stronger := password.Params{MemoryKiB: 9 * 1024, Iterations: 2, Parallelism: 1}
	env := testenv.New(t, testenv.Options{Argon2: stronger})
	weak, err := password.NewHasher(testenv.FastArgon2, 1)
	if err != nil {
		t.Fatal(err)
	}
	env.Login(t, "old@example.com")
	u, _ := env.Sessions.UserByEmail(ctx, "old@example.com")
	old, err := weak.Hash(ctx, u.Email, testenv.Password)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Store.InTx(ctx, func(tx session.Tx) error {
		lu, err := tx.LockUser(ctx, u.ID)
		if err != nil {
			return err
		}
		lu.PasswordHash = old
		return tx.UpdateUser(ctx, lu)
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "old@example.com", Password: testenv.Password, Client: env.Client}); err != nil {
			t.Fatalf("login with a hash of older parameters: %v", err)
		}
		got, _ := env.Sessions.UserByEmail(ctx, "old@example.com")
		if !strings.Contains(got.PasswordHash, "m=9216,t=2,p=1") {
			t.Fatalf("after login the hash is %s, want the current parameters m=9216,t=2,p=1", got.PasswordHash)
		}
	}
}

// TestGraceIsBounded replays the reported attack: a holder of the parent
// presents it every 2 s for 30 s with G 5 s. Grace answers restart G, but
// end L after the rotation (G after it when L is 0); the next replay is
// reuse and revokes the session. Before, every one of the 15 replays got a
// fresh access token.
func TestGraceIsBounded(t *testing.T) {
	const g, every = 5 * time.Second, 2 * time.Second
	tests := []struct {
		name    string
		lost    time.Duration
		noLost  bool
		answers int // replays answered, at 2 s, 4 s, …
	}{
		{name: "L 12s", lost: 12 * time.Second, answers: 6},
		{name: "L 0", noLost: true, answers: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.New(t, testenv.Options{Grace: g, LostWindow: tt.lost, NoLostWindow: tt.noLost})
			tok := env.Login(t, "u@example.com")
			cur := mustRefresh(t, env, tok.RefreshToken)
			answered := 0
			var err error
			for range 15 {
				env.Clock.Advance(every)
				var got session.Tokens
				if got, err = refresh(env, tok.RefreshToken); err != nil {
					break
				}
				if got.RefreshToken != cur.RefreshToken {
					t.Fatalf("replay %d got another refresh token than the current one", answered+1)
				}
				answered++
			}
			if answered != tt.answers || !errors.Is(err, session.ErrReused) {
				t.Fatalf("%d replays answered, then %v; want %d, then reuse", answered, err, tt.answers)
			}
			if s := state(t, env, tok.SessionID); s.RevokeReason != session.ReasonReuse {
				t.Fatalf("session after the late replay: revoke reason %q, want %q", s.RevokeReason, session.ReasonReuse)
			}
			if _, err := refresh(env, cur.RefreshToken); !session.IsInvalidGrant(err) {
				t.Fatalf("current token after reuse: %v, want invalid grant", err)
			}
		})
	}
}

// TestSuspiciousGrace: a grace answer to another IP or user agent than the
// rotation's is audited (and reaches the OnCommit hooks that feed webhooks)
// with the presenter's IP and user agent; one to the rotating client is
// not. Either way the answer is the identical current token and nothing is
// revoked.
func TestSuspiciousGrace(t *testing.T) {
	rotator := session.Meta{IP: "192.0.2.1", UserAgent: "app/1.0"}
	tests := []struct {
		name      string
		presenter session.Meta
		audited   bool
	}{
		{"the rotating client", rotator, false},
		{"another IP", session.Meta{IP: "203.0.113.5", UserAgent: rotator.UserAgent}, true},
		{"another user agent", session.Meta{IP: rotator.IP, UserAgent: "curl/8.0"}, true},
		{"another device", session.Meta{IP: "2001:db8::5", UserAgent: "thief/0.1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooks commits
			env := testenv.New(t, testenv.Options{OnCommit: hooks.add})
			tok := env.Login(t, "u@example.com")
			env.Clock.Advance(time.Minute)
			cur, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok.RefreshToken, Client: env.Client, Meta: rotator})
			if err != nil {
				t.Fatal(err)
			}
			hooks.take()
			env.Clock.Advance(10 * time.Second)
			got, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok.RefreshToken, Client: env.Client, Meta: tt.presenter})
			if err != nil || got.RefreshToken != cur.RefreshToken {
				t.Fatalf("parent within G: %v; want the identical current token", err)
			}
			evs, err := env.Store.AuditEvents(ctx, audit.Query{Type: audit.RefreshSuspiciousGrace})
			if err != nil {
				t.Fatal(err)
			}
			committed := hooks.take()
			if !tt.audited {
				if len(evs) != 0 || len(committed) != 0 {
					t.Fatalf("grace answer to the rotating client: audit %+v, hooks %+v; want neither", evs, committed)
				}
				return
			}
			if len(evs) != 1 || evs[0].IP != tt.presenter.IP || evs[0].UserAgent != tt.presenter.UserAgent || evs[0].SessionID != tok.SessionID {
				t.Fatalf("audit %+v; want one %s event of the session with the presenter's IP and user agent", evs, audit.RefreshSuspiciousGrace)
			}
			if len(committed) != 1 || len(committed[0].Events) != 1 || committed[0].Events[0].Type != audit.RefreshSuspiciousGrace || len(committed[0].Revoked) != 0 {
				t.Fatalf("hooks saw %+v; want the suspicious-grace event and no revocation", committed)
			}
			if s := state(t, env, tok.SessionID); !s.Active(env.Clock.Now()) {
				t.Fatalf("a suspicious grace answer revoked the session (%s)", s.RevokeReason)
			}
		})
	}
}

// TestReuseDecidedFirst: an old token is reuse whatever else is wrong with
// the request (a scope wider than the grant, another client), so a probe
// cannot tell a live session from a revoked one without revoking it. A bad
// scope or client with a token that is not reuse still only fails.
func TestReuseDecidedFirst(t *testing.T) {
	other := func(env *testenv.Env) session.Client { c := env.Client; c.ID = "other"; return c }
	same := func(env *testenv.Env) session.Client { return env.Client }
	tests := []struct {
		name    string
		present string // "ancestor", "abandoned", "late parent", "parent", "current"
		scope   string
		client  func(*testenv.Env) session.Client
		want    error
	}{
		{"ancestor with a wider scope", "ancestor", "admin", same, session.ErrReused},
		{"ancestor from another client", "ancestor", "", other, session.ErrReused},
		{"abandoned token with a wider scope", "abandoned", "admin", same, session.ErrReused},
		{"parent after L with a wider scope", "late parent", "admin", same, session.ErrReused},
		{"parent within G with a wider scope", "parent", "admin", same, session.ErrInvalidScope},
		{"parent within G from another client", "parent", "", other, session.ErrWrongClient},
		{"current token with a wider scope", "current", "admin", same, session.ErrInvalidScope},
		{"current token from another client", "current", "", other, session.ErrWrongClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.New(t, testenv.Options{Grace: grace, LostWindow: lost})
			r0 := env.Login(t, "u@example.com").RefreshToken
			env.Clock.Advance(time.Minute)
			r1 := mustRefresh(t, env, r0).RefreshToken
			var tok string
			switch tt.present {
			case "ancestor": // r0 is the grandparent of r2
				env.Clock.Advance(time.Minute)
				mustRefresh(t, env, r1)
				tok = r0
			case "abandoned": // r1 is abandoned by a lost-response successor
				env.Clock.Advance(time.Minute)
				mustRefresh(t, env, r0)
				tok = r1
			case "late parent":
				env.Clock.Advance(lost + time.Second)
				tok = r0
			case "parent":
				tok = r0
			case "current":
				tok = r1
			}
			c := tt.client(env)
			var id string
			if raw, _, err := env.Codec.Decode(tok); err == nil {
				id = base64.RawURLEncoding.EncodeToString(raw[:])
			}
			before := state(t, env, id)
			_, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok, Client: c, Scope: tt.scope})
			if !errors.Is(err, tt.want) {
				t.Fatalf("refresh = %v, want %v", err, tt.want)
			}
			after := state(t, env, id)
			if tt.want == session.ErrReused {
				if after.RevokeReason != session.ReasonReuse {
					t.Fatalf("session after reuse: revoke reason %q, want %q", after.RevokeReason, session.ReasonReuse)
				}
			} else if after != before {
				t.Fatalf("a refused refresh changed the session:\n%+v\n%+v", before, after)
			}
		})
	}
}
