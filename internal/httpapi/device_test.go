package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// deviceLogin is loginFrom with a device token (none when device is "").
func deviceLogin(t *testing.T, srv *httptest.Server, ip, email, pw, device string) reply {
	t.Helper()
	body := map[string]string{"email": email, "password": pw}
	if device != "" {
		body["device_token"] = device
	}
	return send(t, srv, req{method: "POST", path: "/v1/login", contentType: "application/json",
		body: mustJSON(t, body), header: map[string]string{"X-Forwarded-For": ip}})
}

// deviceToken returns the device token of a successful login's answer.
func deviceToken(t *testing.T, r reply) string {
	t.Helper()
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("login: %s", r)
	}
	var body struct {
		DeviceToken string `json:"device_token"`
	}
	r.decode(t, &body)
	if !strings.HasPrefix(body.DeviceToken, "latch_dt_") {
		t.Fatalf("login answer has device_token %q, want a latch_dt_ token: %s", body.DeviceToken, r.Body)
	}
	return body.DeviceToken
}

// drain spends the account's bucket with wrong passwords from fresh
// addresses until one is throttled, and returns that 429 and how many
// guesses got through.
func drain(t *testing.T, srv *httptest.Server, email string, next func() string) (int, reply) {
	t.Helper()
	n, r := attempts(t, 50, func(int) reply { return loginFrom(t, srv, next(), email, "wrong password!") })
	want429(t, r, "draining the account bucket")
	return n, r
}

// addrs returns a source of distinct addresses in 203.0.113.0/24 and up.
func addrs(base int) func() string {
	i := base
	return func() string { i++; return fmt.Sprintf("100.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
}

// TestOwnerLockout: the attack of issue 11 item 7. An attacker drains the
// account's bucket and then sends one guess each time Retry-After says a
// token is back, for minutes; the owner, with the device token of an
// earlier login, logs in every time from a new network, through
// /v1/login and the password grant, while a new device without one is
// still held to the account's limit (docs/design.md "Returning devices";
// docs/security.md LOGIN-04).
func TestOwnerLockout(t *testing.T) {
	env, srv := throttled(t)
	const owner = "owner@example.com"
	env.Login(t, owner)
	dt := deviceToken(t, deviceLogin(t, srv, "192.0.2.50", owner, testenv.Password, ""))

	attacker, owners := addrs(0), addrs(1<<16)
	// The owner's first login from home took one of the burst of 10.
	if n, _ := drain(t, srv, owner, attacker); n != 9 {
		t.Fatalf("%d guesses before the first 429, want the 9 left of the account burst of 10", n)
	}
	start := env.Clock.Now()
	for round := range 8 {
		// The attacker comes back when told to and spends every token.
		r := loginFrom(t, srv, attacker(), owner, "wrong password!")
		want429(t, r, "attacker")
		secs, _ := strconv.Atoi(r.Header.Get("Retry-After"))
		env.Clock.Advance(time.Duration(secs) * time.Second)
		if n, _ := drain(t, srv, owner, attacker); n < 1 {
			t.Fatalf("round %d: the attacker, back after the announced %d s, was throttled", round, secs)
		}
		// The owner's new device without a token is behind the attacker.
		want429(t, deviceLogin(t, srv, owners(), owner, testenv.Password, ""), "the owner on a new device without a device token")
		// The owner's returning device gets in, from a new address each time.
		var got reply
		if round%2 == 0 {
			got = deviceLogin(t, srv, owners(), owner, testenv.Password, dt)
		} else {
			got = send(t, srv, req{method: "POST", path: "/oauth/token", contentType: "application/x-www-form-urlencoded",
				body: url.Values{"grant_type": {"password"}, "client_id": {"app"}, "username": {owner},
					"password": {testenv.Password}, "device_token": {dt}}.Encode(),
				header: map[string]string{"X-Forwarded-For": owners()}})
		}
		if got.Status != http.StatusOK {
			t.Fatalf("round %d, %v into the attack: the owner with a device token got %s", round, env.Clock.Now().Sub(start), got)
		}
		dt = deviceToken(t, got)
	}
	if d := env.Clock.Now().Sub(start); d < 75*time.Second {
		t.Fatalf("the attack lasted %v, want longer than the reported 75 s", d)
	}
	t.Logf("attacker timing guesses by Retry-After for %v: the owner with a device token logged in 8 times of 8", env.Clock.Now().Sub(start))
}

// TestDeviceTokenRefused: only a valid device token of the account lifts
// the account's bucket; a tampered, expired, foreign or pre-password-change
// token counts as none (the login answers 429 while the bucket is empty),
// and a stolen valid token meets its device's own bucket.
func TestDeviceTokenRefused(t *testing.T) {
	const owner, other = "owner@example.com", "other@example.com"
	newPassword := "a brand new passphrase, long enough"
	tests := []struct {
		name string
		// token returns the device token to present; pw is then the
		// owner's password.
		token  func(t *testing.T, env *testenv.Env, srv *httptest.Server, dt string) (tok, pw string)
		status int
	}{
		{"valid", func(_ *testing.T, _ *testenv.Env, _ *httptest.Server, dt string) (string, string) {
			return dt, testenv.Password
		}, http.StatusOK},
		{"tampered", func(_ *testing.T, _ *testenv.Env, _ *httptest.Server, dt string) (string, string) {
			b := []byte(dt)
			b[len("latch_dt_")+3] ^= 1
			return string(b), testenv.Password
		}, http.StatusTooManyRequests},
		{"not a token", func(_ *testing.T, _ *testenv.Env, _ *httptest.Server, _ string) (string, string) {
			return "latch_dt_guess", testenv.Password
		}, http.StatusTooManyRequests},
		{"expired", func(_ *testing.T, env *testenv.Env, _ *httptest.Server, dt string) (string, string) {
			env.Clock.Advance(session.DeviceTTL)
			return dt, testenv.Password
		}, http.StatusTooManyRequests},
		{"another user's", func(t *testing.T, _ *testenv.Env, srv *httptest.Server, _ string) (string, string) {
			return deviceToken(t, deviceLogin(t, srv, "192.0.2.60", other, testenv.Password, "")), testenv.Password
		}, http.StatusTooManyRequests},
		{"issued before the password changed", func(t *testing.T, _ *testenv.Env, srv *httptest.Server, dt string) (string, string) {
			at := checkTokenResponse(t, deviceLogin(t, srv, "192.0.2.61", owner, testenv.Password, ""), http.StatusOK).AccessToken
			r := postJSON(t, srv, "/v1/password", map[string]string{"current_password": testenv.Password, "new_password": newPassword}, at)
			if r.Status != http.StatusNoContent {
				t.Fatalf("password change: %s", r)
			}
			return dt, newPassword
		}, http.StatusTooManyRequests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, srv := throttled(t)
			env.Login(t, owner)
			env.Login(t, other)
			dt := deviceToken(t, deviceLogin(t, srv, "192.0.2.50", owner, testenv.Password, ""))
			tok, pw := tt.token(t, env, srv, dt)
			drain(t, srv, owner, addrs(0))
			got := deviceLogin(t, srv, "198.18.0.1", owner, pw, tok)
			if got.Status != tt.status {
				t.Fatalf("login with a %s device token while the account's bucket is empty: %s, want %d", tt.name, got, tt.status)
			}
			if got.Status == http.StatusTooManyRequests {
				want429(t, got, tt.name)
			}
		})
	}

	t.Run("a stolen token meets its device's bucket", func(t *testing.T) {
		env, srv := throttled(t)
		env.Login(t, owner)
		dt := deviceToken(t, deviceLogin(t, srv, "192.0.2.50", owner, testenv.Password, ""))
		next := addrs(0)
		n, r := attempts(t, 50, func(int) reply { return deviceLogin(t, srv, next(), owner, "wrong password!", dt) })
		if n != 10 {
			t.Fatalf("%d guesses with one device token before 429, want the device burst of 10", n)
		}
		want429(t, r, "stolen device token")
		// The owner's other devices and the account's bucket are untouched.
		if r := deviceLogin(t, srv, next(), owner, testenv.Password, ""); r.Status != http.StatusOK {
			t.Fatalf("a new device after the device bucket ran dry: %s", r)
		}
	})
}

// TestPasswordChangeUnderAttack: a password change counts as a login, so
// it takes from the account's bucket, which an attacker can keep empty with
// wrong guesses from anywhere; the owner, signed in on a returning device
// on a new network, must still be able to change the password (the first
// thing to do under attack), so /v1/password takes the device token as the
// logins do (docs/design.md "Returning devices"). Without one, or with an
// access token alone, the change stays behind the account's limit.
func TestPasswordChangeUnderAttack(t *testing.T) {
	env, srv := throttled(t)
	const owner = "owner@example.com"
	env.Login(t, owner)
	home := deviceLogin(t, srv, "192.0.2.50", owner, testenv.Password, "")
	dt := deviceToken(t, home)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	home.decode(t, &tok)
	drain(t, srv, owner, addrs(0))

	change := func(ip, device, next string) reply {
		body := map[string]string{"current_password": testenv.Password, "new_password": next}
		if device != "" {
			body["device_token"] = device
		}
		return send(t, srv, req{method: "POST", path: "/v1/password", contentType: "application/json", bearer: tok.AccessToken,
			body: mustJSON(t, body), header: map[string]string{"X-Forwarded-For": ip}})
	}
	want429(t, change("198.51.100.7", "", "a brand new passphrase"), "a password change without a device token")
	if r := change("198.51.100.8", dt, "a brand new passphrase"); r.Status != http.StatusNoContent {
		t.Fatalf("the owner's password change with the device token, from a new network, under attack: %s", r)
	}
}
