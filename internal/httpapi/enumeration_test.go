package httpapi_test

import (
	"bytes"
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// Unknown email, wrong password and disabled account answer the same
// status, headers and body, and take, within noise, the same time: the
// login endpoints do not tell an attacker which accounts exist
// (docs/security.md LOGIN-01, LOGIN-02).
func TestLoginDoesNotRevealAccounts(t *testing.T) {
	// Production hashing cost, so that a skipped hash would show.
	env, srv := newServer(t, testenv.Options{RealClock: true, Argon2: password.OWASP})
	ctx := context.Background()
	env.Login(t, "known@example.com")
	env.Login(t, "disabled@example.com")
	u, err := env.Sessions.UserByEmail(ctx, "disabled@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Sessions.DisableUser(ctx, u.ID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	classes := []struct{ name, email, password string }{
		{"unknown email", "nobody@example.com", "wrong password 1"},
		{"wrong password", "known@example.com", "wrong password 1"},
		{"disabled account", "disabled@example.com", testenv.Password},
	}
	endpoints := []struct {
		name string
		req  func(email, pw string) req
	}{
		{"POST /v1/login", func(email, pw string) req {
			return req{method: "POST", path: "/v1/login", contentType: "application/json", body: `{"email":"` + email + `","password":"` + pw + `"}`}
		}},
		{"password grant", func(email, pw string) req {
			return req{method: "POST", path: "/oauth/token", contentType: "application/x-www-form-urlencoded",
				body: url.Values{"grant_type": {"password"}, "username": {email}, "password": {pw}, "client_id": {"app"}}.Encode()}
		}},
	}
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			const rounds = 15
			times := make([][]time.Duration, len(classes))
			var first reply
			// Interleaved, so machine noise falls on every class alike.
			for r := range rounds {
				for i, c := range classes {
					start := time.Now()
					got := send(t, srv, ep.req(c.email, c.password))
					times[i] = append(times[i], time.Since(start))
					if r == 0 && i == 0 {
						first = got
						continue
					}
					if got.Status != first.Status || !bytes.Equal(got.Body, first.Body) {
						t.Fatalf("%s answered %s, %s answered %s", c.name, got, classes[0].name, first)
					}
					for _, h := range []string{"Content-Type", "Cache-Control", "WWW-Authenticate", "Retry-After"} {
						if got.Header.Get(h) != first.Header.Get(h) {
							t.Fatalf("%s: header %s = %q, %s sent %q", c.name, h, got.Header.Get(h), classes[0].name, first.Header.Get(h))
						}
					}
				}
			}
			if first.Status != 400 && first.Status != 401 {
				t.Fatalf("a failed login answered %s", first)
			}
			medians := make([]time.Duration, len(classes))
			for i := range classes {
				slices.Sort(times[i])
				medians[i] = times[i][rounds/2]
			}
			t.Logf("median times: %s %v, %s %v, %s %v", classes[0].name, medians[0], classes[1].name, medians[1], classes[2].name, medians[2])
			// Skipping the hash for one class would make it ~100× faster;
			// half is far outside noise and far inside that.
			lo, hi := slices.Min(medians), slices.Max(medians)
			if lo < hi/2 {
				t.Fatalf("median times %v differ by more than 2×: the slow class is the one that hashes", medians)
			}
		})
	}
}
