package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// harness runs the behavioural suite on one backend.
type harness struct {
	// unit is the time unit of the lockout and refill tests: a fake second
	// on Memory, a real 200ms on Redis.
	unit time.Duration
	// exact: RetryAfter is exact (fake clock), else only bounded.
	exact bool
	// newThrottle returns a throttle on fresh backend state and a function
	// that lets time pass for it.
	newThrottle func(t *testing.T, p Policy) (*Throttle, func(time.Duration))
}

// roomy is a policy whose limits the suite's tests do not reach unless
// they tighten them.
func roomy() Policy {
	big := Bucket{Every: time.Hour, Burst: 1000}
	return Policy{
		LoginPerIP: big, LoginPerAccount: big, LoginPerDevice: big, SignupPerIP: big, RefreshPerIP: big,
		LockoutThreshold: 1000, LockoutBase: time.Hour, LockoutMax: time.Hour, LockoutIdle: time.Hour,
		KnownDeviceTTL: time.Hour,
	}
}

var ctx = context.Background()

func login(t *testing.T, th *Throttle, account, ip string) Decision {
	t.Helper()
	d, err := th.Login(ctx, account, ip)
	if err != nil {
		t.Fatalf("Login(%q, %q): %v", account, ip, err)
	}
	if d.Allowed != (d.Reason == "") || d.Allowed != (d.RetryAfter == 0) {
		t.Fatalf("Login(%q, %q) = %+v: inconsistent decision", account, ip, d)
	}
	return d
}

// attempt is one login that fails whenever it is allowed.
func attempt(t *testing.T, th *Throttle, account, ip string) Decision {
	t.Helper()
	d := login(t, th, account, ip)
	if d.Allowed {
		if err := th.LoginFailed(ctx, account, ip); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func succeed(t *testing.T, th *Throttle, account, ip string) {
	t.Helper()
	if d := login(t, th, account, ip); !d.Allowed {
		t.Fatalf("Login(%q, %q) = %+v, want allowed", account, ip, d)
	}
	if err := th.LoginSucceeded(ctx, account, ip); err != nil {
		t.Fatal(err)
	}
}

func wantDenied(t *testing.T, d Decision, reason string, maxWait time.Duration) {
	t.Helper()
	if d.Allowed || d.Reason != reason || d.RetryAfter <= 0 || d.RetryAfter > maxWait {
		t.Fatalf("decision = %+v, want denied for %q with 0 < RetryAfter <= %v", d, reason, maxWait)
	}
}

func ip4(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }

func runSuite(t *testing.T, h harness) {
	u := h.unit
	t.Run("per IP bucket limits spraying many accounts", func(t *testing.T) {
		p := roomy()
		p.LoginPerIP = Bucket{Every: time.Hour, Burst: 5}
		th, _ := h.newThrottle(t, p)
		allowed := 0
		for i := range 8 {
			d := attempt(t, th, fmt.Sprintf("user%d@example.com", i), "192.0.2.1")
			if d.Allowed {
				allowed++
			} else {
				wantDenied(t, d, ReasonIP, time.Hour)
			}
		}
		if allowed != 5 {
			t.Errorf("allowed = %d, want 5", allowed)
		}
		if d := login(t, th, "user0@example.com", "192.0.2.2"); !d.Allowed {
			t.Errorf("other address: %+v, want allowed", d)
		}
		for name, f := range map[string]func(context.Context, string) (Decision, error){"signup": th.Signup, "refresh": th.Refresh} {
			if d, err := f(ctx, "192.0.2.1"); err != nil || !d.Allowed {
				t.Errorf("%s after logins exhausted the login bucket = %+v, %v; want allowed", name, d, err)
			}
		}
	})

	t.Run("bucket refills", func(t *testing.T) {
		p := roomy()
		p.LoginPerIP = Bucket{Every: 4 * u, Burst: 1}
		th, sleep := h.newThrottle(t, p)
		if d := login(t, th, "a@example.com", "192.0.2.1"); !d.Allowed {
			t.Fatalf("first: %+v", d)
		}
		d := login(t, th, "a@example.com", "192.0.2.1")
		wantDenied(t, d, ReasonIP, 4*u)
		if h.exact && d.RetryAfter != 4*u {
			t.Errorf("RetryAfter = %v, want %v", d.RetryAfter, 4*u)
		}
		sleep(d.RetryAfter)
		if d := login(t, th, "a@example.com", "192.0.2.1"); !d.Allowed {
			t.Errorf("after RetryAfter: %+v, want allowed", d)
		}
	})

	t.Run("per account bucket across many addresses", func(t *testing.T) {
		p := roomy()
		p.LoginPerAccount = Bucket{Every: time.Hour, Burst: 5}
		th, _ := h.newThrottle(t, p)
		allowed := 0
		for i := range 20 {
			d := attempt(t, th, "victim@example.com", ip4(i))
			if d.Allowed {
				allowed++
			} else {
				wantDenied(t, d, ReasonAccount, 2*time.Hour) // E < 1h, announced in [E, 2E)
			}
		}
		if allowed != 5 {
			t.Errorf("allowed = %d, want 5", allowed)
		}
		if d := login(t, th, "other@example.com", ip4(0)); !d.Allowed {
			t.Errorf("other account: %+v, want allowed", d)
		}
	})

	t.Run("lockout delays grow, cap, and reset on success", func(t *testing.T) {
		p := roomy()
		p.LockoutThreshold, p.LockoutBase, p.LockoutMax, p.LockoutIdle = 2, u, 4*u, 100*u
		th, sleep := h.newThrottle(t, p)
		const acct, ip = "victim@example.com", "192.0.2.1"
		for range 2 {
			if d := attempt(t, th, acct, ip); !d.Allowed {
				t.Fatalf("below threshold: %+v", d)
			}
		}
		// Failures 2, 3, 4, 5 give delays u, 2u, 4u, 4u (capped).
		prev := time.Duration(0)
		for i, want := range []time.Duration{u, 2 * u, 4 * u, 4 * u} {
			d := login(t, th, acct, ip)
			wantDenied(t, d, ReasonLockout, want)
			switch {
			case h.exact && d.RetryAfter != want:
				t.Errorf("delay %d: RetryAfter = %v, want %v", i, d.RetryAfter, want)
			case !h.exact && d.RetryAfter <= want/2:
				t.Errorf("delay %d: RetryAfter = %v, want about %v", i, d.RetryAfter, want)
			case i < 3 && d.RetryAfter <= prev:
				t.Errorf("delay %d: RetryAfter = %v, not above the previous %v", i, d.RetryAfter, prev)
			}
			prev = d.RetryAfter
			if d := login(t, th, acct, "192.0.2.2"); !d.Allowed {
				t.Fatalf("same account, other address: %+v, want allowed", d)
			}
			sleep(d.RetryAfter)
			if i < 3 {
				if d := attempt(t, th, acct, ip); !d.Allowed {
					t.Fatalf("after waiting: %+v, want allowed", d)
				}
			}
		}
		succeed(t, th, acct, ip)
		for range 2 {
			if d := attempt(t, th, acct, ip); !d.Allowed {
				t.Fatalf("after success, below threshold again: %+v, want allowed", d)
			}
		}
		wantDenied(t, login(t, th, acct, ip), ReasonLockout, u)
	})

	t.Run("unknown and existing accounts are throttled alike", func(t *testing.T) {
		p := roomy()
		p.LoginPerAccount = Bucket{Every: time.Hour, Burst: 6}
		p.LockoutThreshold = 3
		th, _ := h.newThrottle(t, p)
		// The existing account has logged in before, from its owner's address.
		succeed(t, th, "exists@example.com", "198.51.100.7")
		run := func(account string) []Decision {
			var ds []Decision
			for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
				for range 4 {
					ds = append(ds, attempt(t, th, account, ip))
				}
			}
			return ds
		}
		// A success costs the existing account one token; give the unknown
		// one the same history (a login attempt from elsewhere).
		login(t, th, "nobody@example.com", "198.51.100.8")
		known, unknown := run("exists@example.com"), run(" Nobody@Example.COM")
		for i := range known {
			k, u := known[i], unknown[i]
			if !h.exact {
				k.RetryAfter, u.RetryAfter = k.RetryAfter.Round(time.Minute), u.RetryAfter.Round(time.Minute)
			}
			if k.Reason == ReasonAccount && u.Reason == ReasonAccount && k.RetryAfter > 0 && u.RetryAfter > 0 {
				// Random by design (TestAccountRetryAfterJitter); alike
				// only in being there.
				k.RetryAfter, u.RetryAfter = 0, 0
			}
			if k != u {
				t.Errorf("attempt %d: existing %+v, unknown %+v", i, known[i], unknown[i])
			}
		}
		if d := unknown[len(unknown)-1]; d.Reason != ReasonAccount {
			t.Errorf("last attempt %+v, want denied by the account bucket", d)
		}
		if d := login(t, th, "nobody@example.com", "192.0.2.1"); d.Reason != ReasonLockout {
			t.Errorf("normalised name: %+v, want the same lockout as the raw name", d)
		}
	})

	t.Run("known device is exempt from the account bucket, not from its lockout", func(t *testing.T) {
		p := roomy()
		p.LoginPerAccount = Bucket{Every: time.Hour, Burst: 3}
		p.LockoutThreshold = 2
		th, _ := h.newThrottle(t, p)
		const acct, home = "victim@example.com", "2001:db8:aaaa:1::10"
		succeed(t, th, acct, home)
		for i := range 10 {
			attempt(t, th, acct, ip4(i))
		}
		wantDenied(t, login(t, th, acct, "192.0.2.99"), ReasonAccount, 2*time.Hour)
		for range 5 {
			succeed(t, th, acct, "2001:db8:aaaa:1::11") // same /64
		}
		for range 2 {
			if d := attempt(t, th, acct, home); !d.Allowed {
				t.Fatalf("known device: %+v, want allowed", d)
			}
		}
		wantDenied(t, login(t, th, acct, home), ReasonLockout, time.Hour)
	})

	t.Run("a device token login has its own bucket, not the account's", func(t *testing.T) {
		p := roomy()
		p.LoginPerAccount = Bucket{Every: time.Hour, Burst: 3}
		p.LoginPerDevice = Bucket{Every: time.Hour, Burst: 2}
		th, _ := h.newThrottle(t, p)
		const acct = "owner@example.com"
		for i := range 10 {
			attempt(t, th, acct, ip4(i))
		}
		wantDenied(t, login(t, th, acct, "192.0.2.99"), ReasonAccount, 2*time.Hour)
		device := func(dev, ip string) Decision {
			t.Helper()
			d, err := th.DeviceLogin(ctx, acct, ip, dev)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		// The owner's device, from new addresses, while the account's
		// bucket is empty; then its own bucket runs dry, and no other's.
		for i := range 2 {
			if d := device("phone", ip4(100+i)); !d.Allowed {
				t.Fatalf("device login %d during the attack: %+v, want allowed", i, d)
			}
		}
		wantDenied(t, device("phone", ip4(102)), ReasonDevice, time.Hour)
		if d := device("laptop", ip4(103)); !d.Allowed {
			t.Fatalf("a second device: %+v, want allowed", d)
		}
		wantDenied(t, login(t, th, acct, ip4(104)), ReasonAccount, 2*time.Hour)
		// However the email is spelt, the device has one bucket.
		wantDenied(t, func() Decision {
			d, err := th.DeviceLogin(ctx, " Owner@Example.com", ip4(105), "phone")
			if err != nil {
				t.Fatal(err)
			}
			return d
		}(), ReasonDevice, time.Hour)
	})

	t.Run("a device token does not lift the pair lockout", func(t *testing.T) {
		p := roomy()
		p.LockoutThreshold = 2
		th, _ := h.newThrottle(t, p)
		const acct, ip = "owner@example.com", "192.0.2.5"
		attempt(t, th, acct, ip)
		attempt(t, th, acct, ip)
		d, err := th.DeviceLogin(ctx, acct, ip, "phone")
		if err != nil {
			t.Fatal(err)
		}
		wantDenied(t, d, ReasonLockout, time.Hour)
	})

	t.Run("IPv6 addresses share the limits of their /64", func(t *testing.T) {
		p := roomy()
		p.LoginPerIP = Bucket{Every: time.Hour, Burst: 3}
		th, _ := h.newThrottle(t, p)
		for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff::2", "2001:DB8:1:2:aaaa:bbbb:cccc:dddd"} {
			if d := login(t, th, "a@example.com", ip); !d.Allowed {
				t.Fatalf("%s: %+v", ip, d)
			}
		}
		wantDenied(t, login(t, th, "a@example.com", "2001:db8:1:2::99"), ReasonIP, time.Hour)
		if d := login(t, th, "a@example.com", "2001:db8:1:3::1"); !d.Allowed {
			t.Errorf("next /64: %+v, want allowed", d)
		}
		for range 3 {
			login(t, th, "a@example.com", "::ffff:192.0.2.5")
		}
		wantDenied(t, login(t, th, "a@example.com", "192.0.2.5"), ReasonIP, time.Hour)
	})

	t.Run("signup and refresh have their own buckets", func(t *testing.T) {
		p := roomy()
		p.SignupPerIP = Bucket{Every: time.Hour, Burst: 2}
		p.RefreshPerIP = Bucket{Every: time.Hour, Burst: 5}
		th, _ := h.newThrottle(t, p)
		for name, c := range map[string]struct {
			f    func(context.Context, string) (Decision, error)
			want int
		}{"signup": {th.Signup, 2}, "refresh": {th.Refresh, 5}} {
			allowed := 0
			for range 8 {
				d, err := c.f(ctx, "192.0.2.1")
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					allowed++
				} else {
					wantDenied(t, d, ReasonIP, time.Hour)
				}
			}
			if allowed != c.want {
				t.Errorf("%s: allowed = %d, want %d", name, allowed, c.want)
			}
		}
		if d := login(t, th, "a@example.com", "192.0.2.1"); !d.Allowed {
			t.Errorf("login after signup and refresh exhausted: %+v, want allowed", d)
		}
	})

	t.Run("concurrent attempts cannot share the last token", func(t *testing.T) {
		p := roomy()
		p.LoginPerAccount = Bucket{Every: time.Hour, Burst: 5}
		th, _ := h.newThrottle(t, p)
		var allowed atomic.Int32
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				d, err := th.Login(ctx, "victim@example.com", ip4(i))
				if err != nil {
					t.Error(err)
				}
				if d.Allowed {
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != 5 {
			t.Errorf("allowed = %d, want 5", got)
		}
	})
}
