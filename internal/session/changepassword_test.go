package session_test

import (
	"errors"
	"maps"
	"testing"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestChangePasswordOutcomes: a weak new password is refused before the
// current one is checked, so the answer is the same whether the current
// password was guessed right or wrong; a wrong current password is audited
// with the caller's IP and user agent; every outcome is observed once.
// docs/security.md REV-04, LOGIN-12.
func TestChangePasswordOutcomes(t *testing.T) {
	const strong = "a brand new passphrase"
	m := session.Meta{IP: "198.51.100.7", UserAgent: "pw-test"}
	tests := []struct {
		name          string
		current, next string
		wantErr       error
		wantObserved  map[string]int
		wantFailures  int // user.password_change_failed events
		wantChanged   bool
	}{
		{"wrong current password", "not my password", strong, session.ErrBadCredential,
			map[string]int{"password/bad_credentials": 1}, 1, false},
		{"weak new password, right current", testenv.Password, "short", password.ErrTooShort,
			map[string]int{"password/weak_password": 1}, 0, false},
		{"weak new password, wrong current: the same answer", "not my password", "short", password.ErrTooShort,
			map[string]int{"password/weak_password": 1}, 0, false},
		{"common new password, wrong current", "not my password", "password123", password.ErrCommon,
			map[string]int{"password/weak_password": 1}, 0, false},
		{"success", testenv.Password, strong, nil,
			map[string]int{"password/success": 1, "revoked/password_change": 1}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var obs observer
			env := testenv.New(t, testenv.Options{Observer: &obs})
			tok := env.Login(t, "pw@example.com")
			// Another session, which a change ends.
			if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "pw@example.com", Password: testenv.Password, Client: env.Client}); err != nil {
				t.Fatal(err)
			}
			u, _ := env.Sessions.UserByEmail(ctx, "pw@example.com")
			obs.take()

			err := env.Sessions.ChangePassword(ctx, u.ID, tok.SessionID, tt.current, tt.next, m)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ChangePassword = %v, want %v", err, tt.wantErr)
			}
			if got := obs.take(); !maps.Equal(got, tt.wantObserved) {
				t.Errorf("observed %v, want %v", got, tt.wantObserved)
			}
			failed, err := env.Store.AuditEvents(ctx, audit.Query{Type: "user.password_change_failed"})
			if err != nil {
				t.Fatal(err)
			}
			if len(failed) != tt.wantFailures {
				t.Fatalf("%d user.password_change_failed events, want %d", len(failed), tt.wantFailures)
			}
			for _, e := range failed {
				if e.UserID != u.ID || e.SessionID != tok.SessionID || e.IP != m.IP || e.UserAgent != m.UserAgent {
					t.Errorf("failure event %+v, want the user, the calling session, its IP and user agent", e)
				}
			}
			after, _ := env.Sessions.UserByEmail(ctx, "pw@example.com")
			if changed := after.PasswordHash != u.PasswordHash; changed != tt.wantChanged {
				t.Errorf("password changed = %v, want %v", changed, tt.wantChanged)
			}
		})
	}
}

// TestChangePasswordGuessesLeaveATrace: every wrong guess is one audit
// event, so a guessing run through a stolen access token is visible.
func TestChangePasswordGuessesLeaveATrace(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	tok := env.Login(t, "guessed@example.com")
	u, _ := env.Sessions.UserByEmail(ctx, "guessed@example.com")
	const guesses = 30
	for i := range guesses {
		if err := env.Sessions.ChangePassword(ctx, u.ID, tok.SessionID, "guess number "+string(rune('a'+i)), "a brand new passphrase", session.Meta{}); !errors.Is(err, session.ErrBadCredential) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	failed, err := env.Store.AuditEvents(ctx, audit.Query{Type: "user.password_change_failed"})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != guesses {
		t.Fatalf("%d wrong guesses left %d audit events, want one each", guesses, len(failed))
	}
}
