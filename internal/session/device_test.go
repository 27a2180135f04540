package session_test

import (
	"testing"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestDevice: Service.Device names the device of a valid device token for
// the account that holds the email now, and nothing for any other token
// (docs/design.md "Returning devices").
func TestDevice(t *testing.T) {
	const owner = "owner@example.com"
	m := session.Meta{IP: "192.0.2.1", UserAgent: "test"}
	tests := []struct {
		name  string
		email string
		// before runs before the check; tok, if set, replaces the token.
		before func(t *testing.T, env *testenv.Env, u session.User, tok session.Tokens) string
		valid  bool
	}{
		{"valid", owner, nil, true},
		{"the email as typed", "  Owner@Example.COM ", nil, true},
		{"another account's email", "other@example.com", nil, false},
		{"an unknown email", "ghost@example.com", nil, false},
		{"an invalid email", "not an email", nil, false},
		{"a refresh token", owner, func(_ *testing.T, _ *testenv.Env, _ session.User, tok session.Tokens) string {
			return tok.RefreshToken
		}, false},
		{"expired", owner, func(_ *testing.T, env *testenv.Env, _ session.User, _ session.Tokens) string {
			env.Clock.Advance(session.DeviceTTL)
			return ""
		}, false},
		{"the password changed", owner, func(t *testing.T, env *testenv.Env, u session.User, tok session.Tokens) string {
			if err := env.Sessions.ChangePassword(ctx, u.ID, tok.SessionID, testenv.Password, "another long passphrase", m); err != nil {
				t.Fatal(err)
			}
			return ""
		}, false},
		{"the account is disabled", owner, func(t *testing.T, env *testenv.Env, u session.User, _ session.Tokens) string {
			if err := env.Sessions.DisableUser(ctx, u.ID, m); err != nil {
				t.Fatal(err)
			}
			return ""
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.New(t, testenv.Options{})
			u, tok, err := env.Sessions.Signup(ctx, session.SignupRequest{Email: owner, Password: testenv.Password, Login: true, Client: env.Client, Meta: m})
			if err != nil {
				t.Fatal(err)
			}
			env.Login(t, "other@example.com")
			dt := tok.DeviceToken
			if tt.before != nil {
				if r := tt.before(t, env, u, tok); r != "" {
					dt = r
				}
			}
			id, err := env.Sessions.Device(ctx, tt.email, dt)
			if err != nil {
				t.Fatal(err)
			}
			if (id != "") != tt.valid {
				t.Fatalf("Device(%q, %s token) = %q, want valid %v", tt.email, tt.name, id, tt.valid)
			}
		})
	}
}

// TestDeviceKeptAcrossLogins: a login that presents a valid device token
// gets a fresh token for the same device (so the device keeps its throttle
// bucket); a login without one, or with one that no longer counts, is a new
// device.
func TestDeviceKeptAcrossLogins(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	const owner = "owner@example.com"
	first := env.Login(t, owner).DeviceToken
	login := func(dt string) string {
		t.Helper()
		tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: owner, Password: testenv.Password, Client: env.Client, DeviceToken: dt})
		if err != nil {
			t.Fatal(err)
		}
		return tok.DeviceToken
	}
	device := func(dt string) string {
		t.Helper()
		id, err := env.Sessions.Device(ctx, owner, dt)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	env.Clock.Advance(session.DeviceTTL / 2)
	again := login(first)
	if again == first || device(again) == "" || device(again) != device(first) {
		t.Fatalf("a returning device's new token names device %q, want %q in a fresh token", device(again), device(first))
	}
	// The renewed token counts a full lifetime from the second login.
	env.Clock.Advance(session.DeviceTTL / 2)
	if device(first) != "" || device(again) == "" {
		t.Fatalf("after one lifetime: first token device %q (want none), renewed %q (want valid)", device(first), device(again))
	}
	if other := login(""); device(other) == "" || device(other) == device(again) {
		t.Fatalf("a login without a device token names device %q, want a new one", device(other))
	}
	if stale := login(first); device(stale) == "" || device(stale) == device(again) {
		t.Fatalf("a login with an expired device token names device %q, want a new one", device(stale))
	}
}
