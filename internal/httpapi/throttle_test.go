package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/testenv"
)

// throttled builds a stack with the default rate-limit policy on the fake
// clock, trusting the loopback proxy so a test can speak from many IPs
// through X-Forwarded-For.
func throttled(t *testing.T) (*testenv.Env, *httptest.Server) {
	t.Helper()
	var env *testenv.Env
	clock := func() time.Time { return env.Clock.Now() }
	th, err := ratelimit.New(ratelimit.NewMemory(ratelimit.MemoryClock(clock)), ratelimit.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	env, srv := newServer(t, testenv.Options{API: func(c *httpapi.Config) {
		c.Throttle = th
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}})
	return env, srv
}

func loginFrom(t *testing.T, srv *httptest.Server, ip, email, pw string) reply {
	t.Helper()
	return send(t, srv, req{method: "POST", path: "/v1/login", contentType: "application/json",
		body: `{"email":"` + email + `","password":"` + pw + `"}`, header: map[string]string{"X-Forwarded-For": ip}})
}

// attempts counts the failed logins admitted before the first 429, trying
// at most max, and returns that 429.
func attempts(t *testing.T, max int, try func(i int) reply) (int, reply) {
	t.Helper()
	for i := range max {
		got := try(i)
		switch got.Status {
		case http.StatusTooManyRequests:
			return i, got
		case http.StatusUnauthorized, http.StatusBadRequest:
		default:
			t.Fatalf("attempt %d: %s", i, got)
		}
	}
	return max, reply{}
}

func want429(t *testing.T, r reply, what string) {
	t.Helper()
	var body struct{ Error string }
	r.decode(t, &body)
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if r.Status != http.StatusTooManyRequests || body.Error != "too_many_requests" || err != nil || secs < 1 {
		t.Fatalf("%s: %s (Retry-After %q), want 429 too_many_requests with Retry-After in whole seconds", what, r, r.Header.Get("Retry-After"))
	}
}

// TestLoginThrottle: per account, per IP and per (account, IP) limits on
// password login, identical for unknown and existing accounts, with
// growing delays that end, and no way to lock the owner out for good.
// docs/security.md LOGIN-03..07, DOS-08.
func TestLoginThrottle(t *testing.T) {
	t.Run("per account, across many IPs, known and unknown alike", func(t *testing.T) {
		env, srv := throttled(t)
		env.Login(t, "victim@example.com")
		var first reply
		for _, email := range []string{"victim@example.com", "ghost@example.com"} {
			n, r := attempts(t, 50, func(i int) reply {
				return loginFrom(t, srv, fmt.Sprintf("198.51.100.%d", i+1), email, "wrong password!")
			})
			if n != 10 {
				t.Fatalf("%s: %d failed attempts from distinct IPs before 429, want the account burst of 10", email, n)
			}
			want429(t, r, email)
			if first.Status == 0 {
				first = r
			} else if string(first.Body) != string(r.Body) {
				// Retry-After is random in [E, 2E) (TestAccountRetryAfterJitter),
				// for both alike.
				t.Fatalf("unknown and existing accounts are throttled differently: %s vs %s", first, r)
			}
		}
		// Over an hour, at most 100 attempts on one account get through.
		admitted := 10
		for minute := range 60 {
			env.Clock.Advance(time.Minute)
			n, _ := attempts(t, 20, func(i int) reply { // fresh IPs: no pair lockout
				return loginFrom(t, srv, fmt.Sprintf("10.0.%d.%d", minute, i+1), "victim@example.com", "wrong password!")
			})
			admitted += n
		}
		if admitted > 100+10 || admitted < 90 {
			t.Fatalf("%d attempts on one account admitted in the first hour (+10 burst), want about 100", admitted)
		}
		t.Logf("one account, attacked from many IPs: 10 attempts at once, then %d in the next 60 minutes", admitted-10)
	})

	t.Run("per account, whatever the spelling of the address", func(t *testing.T) {
		_, srv := throttled(t)
		// Rotating through NFC, NFD, case and Unicode or ASCII domain
		// spellings of one address draws on one account bucket.
		spellings := []string{"jos\u00e9@b\u00fccher.de", "jose\u0301@b\u00fccher.de", "JOS\u00c9@xn--bcher-kva.de", "jose\u0301@BU\u0308CHER.de"}
		n, r := attempts(t, 50, func(i int) reply {
			return loginFrom(t, srv, fmt.Sprintf("198.51.100.%d", i+1), spellings[i%len(spellings)], "wrong password!")
		})
		if n != 10 {
			t.Fatalf("%d failed attempts over %d spellings of one address before 429, want the account burst of 10", n, len(spellings))
		}
		want429(t, r, spellings[0])
	})

	t.Run("per IP, across many accounts", func(t *testing.T) {
		env, srv := throttled(t)
		n, r := attempts(t, 100, func(i int) reply {
			return loginFrom(t, srv, "192.0.2.9", fmt.Sprintf("user%d@example.com", i), "wrong password!")
		})
		if n != 30 {
			t.Fatalf("%d attempts from one IP over many accounts before 429, want the IP burst of 30", n)
		}
		want429(t, r, "IP limit")
		env.Clock.Advance(time.Minute)
		m, _ := attempts(t, 100, func(i int) reply {
			return loginFrom(t, srv, "192.0.2.9", fmt.Sprintf("other%d@example.com", i), "wrong password!")
		})
		if m < 29 || m > 31 {
			t.Fatalf("%d attempts admitted a minute later, want about 30 (one every 2 s)", m)
		}
		t.Logf("one IP spraying many accounts: 30 attempts at once, then %d per minute", m)
	})

	t.Run("soft lockout grows, ends, and resets on success", func(t *testing.T) {
		env, srv := throttled(t)
		env.Login(t, "ada@example.com")
		ip := "192.0.2.20"
		for i := range 5 {
			if r := loginFrom(t, srv, ip, "ada@example.com", "wrong password!"); r.Status == http.StatusTooManyRequests {
				t.Fatalf("failure %d was throttled; the lockout starts after 5", i+1)
			}
		}
		var waits []int
		for range 4 {
			r := loginFrom(t, srv, ip, "ada@example.com", "wrong password!")
			want429(t, r, "locked pair")
			secs, _ := strconv.Atoi(r.Header.Get("Retry-After"))
			waits = append(waits, secs)
			env.Clock.Advance(time.Duration(secs) * time.Second)
			if r := loginFrom(t, srv, ip, "ada@example.com", "wrong password!"); r.Status == http.StatusTooManyRequests {
				t.Fatalf("still throttled after waiting the announced %d s", secs)
			}
		}
		for i := 1; i < len(waits); i++ {
			if waits[i] <= waits[i-1] {
				t.Fatalf("lockout delays %v do not grow", waits)
			}
		}
		r := loginFrom(t, srv, ip, "ada@example.com", testenv.Password)
		want429(t, r, "locked pair, right password")
		secs, _ := strconv.Atoi(r.Header.Get("Retry-After"))
		env.Clock.Advance(time.Duration(secs) * time.Second)
		if r := loginFrom(t, srv, ip, "ada@example.com", testenv.Password); r.Status != http.StatusOK {
			t.Fatalf("the owner's login after the delay: %s", r)
		}
		// Success resets the pair: the next failures start from zero.
		if r := loginFrom(t, srv, ip, "ada@example.com", "wrong password!"); r.Status == http.StatusTooManyRequests {
			t.Fatalf("a failure right after a success was throttled: %s", r)
		}
		t.Logf("one (account, IP) pair: 5 failures free, then waits of %v seconds", waits)
	})

	t.Run("an attacker cannot lock the owner out", func(t *testing.T) {
		env, srv := throttled(t)
		env.Login(t, "owner@example.com")
		home := "192.0.2.50"
		if r := loginFrom(t, srv, home, "owner@example.com", testenv.Password); r.Status != http.StatusOK {
			t.Fatalf("owner's first login: %s", r)
		}
		// Many IPs drain the account bucket.
		attempts(t, 50, func(i int) reply {
			return loginFrom(t, srv, fmt.Sprintf("198.51.100.%d", i+1), "owner@example.com", "wrong password!")
		})
		if r := loginFrom(t, srv, "198.51.100.200", "owner@example.com", "wrong password!"); r.Status != http.StatusTooManyRequests {
			t.Fatalf("the account bucket is not exhausted: %s", r)
		}
		// The owner's known device is not behind the account bucket.
		if r := loginFrom(t, srv, home, "owner@example.com", testenv.Password); r.Status != http.StatusOK {
			t.Fatalf("the owner, from a device that logged in before, during the attack: %s", r)
		}
		// From a new device the owner waits at most the announced time.
		r := loginFrom(t, srv, "192.0.2.77", "owner@example.com", testenv.Password)
		want429(t, r, "owner on a new device during the attack")
		secs, _ := strconv.Atoi(r.Header.Get("Retry-After"))
		if secs > 80 { // one refill (40 s), announced in [E, 2E)
			t.Fatalf("the owner on a new device is told to wait %d s", secs)
		}
		env.Clock.Advance(time.Duration(secs) * time.Second)
		if r := loginFrom(t, srv, "192.0.2.77", "owner@example.com", testenv.Password); r.Status != http.StatusOK {
			t.Fatalf("the owner after the announced wait: %s", r)
		}
	})

	t.Run("password grant shares the limits", func(t *testing.T) {
		_, srv := throttled(t)
		n, r := attempts(t, 50, func(i int) reply {
			return send(t, srv, req{method: "POST", path: "/oauth/token", contentType: "application/x-www-form-urlencoded",
				body:   "grant_type=password&client_id=app&username=pg%40example.com&password=wrong+password",
				header: map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i+1)}})
		})
		if n != 10 {
			t.Fatalf("%d password-grant attempts before 429, want 10", n)
		}
		want429(t, r, "password grant")
	})
}

// TestRefreshThrottle: many refresh attempts from one IP (guessing refresh
// tokens) meet a looser limit of their own (RT-25).
func TestRefreshThrottle(t *testing.T) {
	_, srv := throttled(t)
	n, r := attempts(t, 400, func(i int) reply {
		return send(t, srv, req{method: "POST", path: "/oauth/token", contentType: "application/x-www-form-urlencoded",
			body: "grant_type=refresh_token&client_id=app&refresh_token=latch_rt_guess" + strconv.Itoa(i), header: map[string]string{"X-Forwarded-For": "192.0.2.99"}})
	})
	if n != 200 {
		t.Fatalf("%d refresh attempts from one IP before 429, want the burst of 200", n)
	}
	want429(t, r, "refresh")
}

// TestSignupThrottle: account creation is limited per IP.
func TestSignupThrottle(t *testing.T) {
	_, srv := throttled(t)
	n, r := attempts(t, 50, func(i int) reply {
		got := send(t, srv, req{method: "POST", path: "/v1/signup", contentType: "application/json",
			body: fmt.Sprintf(`{"email":"new%d@example.com","password":"x"}`, i), header: map[string]string{"X-Forwarded-For": "192.0.2.150"}})
		if got.Status == http.StatusUnprocessableEntity || got.Status == http.StatusCreated {
			got.Status = http.StatusBadRequest // a weak-password refusal still counts as an attempt
		}
		return got
	})
	if n != 10 {
		t.Fatalf("%d signups from one IP before 429, want the burst of 10", n)
	}
	want429(t, r, "signup")
}

func changeFrom(t *testing.T, srv *httptest.Server, ip, at, current, next string) reply {
	t.Helper()
	return send(t, srv, req{method: "POST", path: "/v1/password", contentType: "application/json", bearer: at,
		body:   mustJSON(t, map[string]string{"current_password": current, "new_password": next}),
		header: map[string]string{"X-Forwarded-For": ip}})
}

// TestPasswordChangeThrottle: POST /v1/password is a password check like a
// login, so it meets the login limits (IP, account, (account, IP)
// lockout), shares them with logins, and answers 429 with Retry-After.
// Before, one access token bought an unthrottled guessing channel.
// docs/security.md LOGIN-04, LOGIN-05, REV-04.
func TestPasswordChangeThrottle(t *testing.T) {
	const (
		wrong  = "not the password"
		newPW  = "a brand new passphrase"
		victim = "victim@example.com"
	)
	tests := []struct {
		name string
		// before spends limits; probe must then be refused with 429.
		before func(t *testing.T, srv *httptest.Server, at string)
		probe  func(t *testing.T, srv *httptest.Server, at string) reply
	}{
		{"pair lockout after 5 wrong current passwords, even for the right one",
			func(t *testing.T, srv *httptest.Server, at string) {
				for i := range 5 {
					if r := changeFrom(t, srv, "203.0.113.5", at, wrong, newPW); r.Status != http.StatusForbidden {
						t.Fatalf("guess %d: %s, want 403: the lockout starts after 5", i+1, r)
					}
				}
			},
			func(t *testing.T, srv *httptest.Server, at string) reply {
				return changeFrom(t, srv, "203.0.113.5", at, testenv.Password, newPW)
			}},
		{"wrong current passwords lock out the pair's logins",
			func(t *testing.T, srv *httptest.Server, at string) {
				for range 5 {
					changeFrom(t, srv, "203.0.113.6", at, wrong, newPW)
				}
			},
			func(t *testing.T, srv *httptest.Server, _ string) reply {
				return loginFrom(t, srv, "203.0.113.6", victim, testenv.Password)
			}},
		{"the account bucket is shared with logins",
			func(t *testing.T, srv *httptest.Server, _ string) {
				for i := range 10 {
					loginFrom(t, srv, fmt.Sprintf("198.51.100.%d", i+1), victim, wrong)
				}
			},
			func(t *testing.T, srv *httptest.Server, at string) reply {
				return changeFrom(t, srv, "198.51.100.200", at, testenv.Password, newPW)
			}},
		{"the account bucket holds across many IPs",
			func(t *testing.T, srv *httptest.Server, at string) {
				for i := range 10 {
					if r := changeFrom(t, srv, fmt.Sprintf("198.51.100.%d", i+1), at, wrong, newPW); r.Status != http.StatusForbidden {
						t.Fatalf("guess %d: %s, want 403 within the account burst of 10", i+1, r)
					}
				}
			},
			func(t *testing.T, srv *httptest.Server, at string) reply {
				return changeFrom(t, srv, "198.51.100.200", at, wrong, newPW)
			}},
		{"the IP bucket is shared with logins",
			func(t *testing.T, srv *httptest.Server, _ string) {
				for i := range 30 {
					loginFrom(t, srv, "192.0.2.9", fmt.Sprintf("user%d@example.com", i), wrong)
				}
			},
			func(t *testing.T, srv *httptest.Server, at string) reply {
				return changeFrom(t, srv, "192.0.2.9", at, testenv.Password, newPW)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, srv := throttled(t)
			at := env.Login(t, victim).AccessToken
			tt.before(t, srv, at)
			want429(t, tt.probe(t, srv, at), "probe")
			// The password is unchanged.
			env.Clock.Advance(time.Minute)
			if r := loginFrom(t, srv, "192.0.2.250", victim, testenv.Password); r.Status != http.StatusOK {
				t.Fatalf("the old password after the throttled attempts: %s", r)
			}
		})
	}

	t.Run("after the announced wait the owner changes the password", func(t *testing.T) {
		env, srv := throttled(t)
		at := env.Login(t, victim).AccessToken
		ip := "203.0.113.9"
		for range 5 {
			changeFrom(t, srv, ip, at, wrong, newPW)
		}
		r := changeFrom(t, srv, ip, at, testenv.Password, newPW)
		want429(t, r, "locked pair")
		secs, _ := strconv.Atoi(r.Header.Get("Retry-After"))
		env.Clock.Advance(time.Duration(secs) * time.Second)
		if r := changeFrom(t, srv, ip, at, testenv.Password, newPW); r.Status != http.StatusNoContent {
			t.Fatalf("the owner after the announced %d s: %s, want 204", secs, r)
		}
		// Success resets the pair: a mistyped login right after is not throttled.
		if r := loginFrom(t, srv, ip, victim, wrong); r.Status != http.StatusUnauthorized {
			t.Fatalf("a failure right after a successful change: %s, want 401", r)
		}
	})
}
