package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Reasons a [Decision] denies. They are for logs and metrics; never send
// them to the client.
const (
	ReasonIP      = "ip"      // the address's bucket is empty
	ReasonAccount = "account" // the account's bucket is empty
	ReasonLockout = "lockout" // the (account, IP) pair must wait after failures
	ReasonDevice  = "device"  // the device's bucket is empty (a login with a device token)
)

// Decision is the answer to one attempt.
type Decision struct {
	// Allowed reports whether the attempt may proceed.
	Allowed bool
	// RetryAfter is, when not Allowed, how long until the same attempt
	// could be allowed; the HTTP layer sends it as Retry-After (rounded up
	// to whole seconds) with status 429.
	RetryAfter time.Duration
	// Reason names the limit that denied: ReasonIP, ReasonAccount or
	// ReasonLockout or ReasonDevice. It is empty when Allowed. Logs and
	// metrics only.
	Reason string
}

func deny(wait time.Duration, reason string) Decision {
	return Decision{RetryAfter: wait, Reason: reason}
}

var allow = Decision{Allowed: true}

// Throttle applies a [Policy] to logins, signups and refreshes. It is safe
// for concurrent use.
type Throttle struct {
	backend  Backend
	local    Backend
	p        Policy
	onErr    func(error)
	timeout  time.Duration
	cooldown time.Duration
	// jitter returns a random duration in [0, d); tests replace it.
	jitter func(d time.Duration) time.Duration
	// downUntil is when, in Unix nanoseconds, to try the backend again
	// after it failed; 0 while it works.
	downUntil atomic.Int64
}

// Option configures a [Throttle].
type Option func(*Throttle) error

// WithOnBackendError sets a function called with each backend error that
// made the Throttle fall back to its local [Memory] (to log it or count
// it): once per failed call, not for the calls skipped during the
// cool-down that follows (see [WithBackendCooldown]). It must be safe for
// concurrent use. By default errors are dropped.
func WithOnBackendError(f func(error)) Option {
	return func(t *Throttle) error {
		if f == nil {
			return errors.New("ratelimit: nil backend error function")
		}
		t.onErr = f
		return nil
	}
}

// WithFallback sets the local backend used when the main one fails. By
// default it is NewMemory().
func WithFallback(m *Memory) Option {
	return func(t *Throttle) error {
		if m == nil {
			return errors.New("ratelimit: nil fallback")
		}
		t.local = m
		return nil
	}
}

// WithBackendTimeout bounds each backend call; past it the Throttle falls
// back to its local backend. Default: 250ms; zero means no bound beyond the
// caller's context. With [Redis], set ContextTimeoutEnabled in the client's
// options so that the bound reaches the socket.
func WithBackendTimeout(d time.Duration) Option {
	return func(t *Throttle) error {
		if d < 0 {
			return fmt.Errorf("ratelimit: negative backend timeout %v", d)
		}
		t.timeout = d
		return nil
	}
}

// WithBackendCooldown sets how long, after a backend call failed, the
// Throttle uses only its local backend before it tries the main one again,
// so that an outage costs one timeout per cool-down rather than one per
// request. Default: 5s; zero tries the backend on every call.
func WithBackendCooldown(d time.Duration) Option {
	return func(t *Throttle) error {
		if d < 0 {
			return fmt.Errorf("ratelimit: negative backend cooldown %v", d)
		}
		t.cooldown = d
		return nil
	}
}

// New returns a Throttle that keeps its state in backend and enforces p,
// which must pass [Policy.Validate].
func New(backend Backend, p Policy, opts ...Option) (*Throttle, error) {
	if backend == nil {
		return nil, errors.New("ratelimit: nil backend")
	}
	// The email buckets came later: a policy written without them takes
	// their defaults.
	if p.EmailPerIP == (Bucket{}) {
		p.EmailPerIP = DefaultPolicy().EmailPerIP
	}
	if p.EmailPerAddress == (Bucket{}) {
		p.EmailPerAddress = DefaultPolicy().EmailPerAddress
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	t := &Throttle{backend: backend, p: p, onErr: func(error) {}, timeout: 250 * time.Millisecond, cooldown: 5 * time.Second,
		jitter: uniform}
	for _, o := range opts {
		if err := o(t); err != nil {
			return nil, err
		}
	}
	if t.local == nil {
		t.local = NewMemory()
	}
	return t, nil
}

// Login decides whether a password login for account from ip may go ahead.
// Call it before the password is hashed, and report the outcome with
// [Throttle.LoginFailed] or [Throttle.LoginSucceeded]. account is the email
// as sent (it is trimmed and lower-cased here); whether it exists plays no
// part. An allowed attempt has taken one token from the address's bucket
// and, unless the pair is a known device, one from the account's.
//
// The error is non-nil only when ctx is done; backend failures fall back to
// local limits.
func (t *Throttle) Login(ctx context.Context, account, ip string) (Decision, error) {
	return t.DeviceLogin(ctx, account, ip, "")
}

// DeviceLogin is [Throttle.Login] for a login that carries a device token.
// device is the id of a device token the caller has verified to be valid
// for account (docs/design.md "Returning devices"), or "" for none. Such a
// login takes a token from that device's own bucket
// ([Policy].LoginPerDevice) instead of the account's shared one, so that
// guesses from elsewhere cannot keep the account's owner out; the address's
// bucket and the (account, IP) lockout apply as to any login.
//
// A denial by the account's bucket announces a RetryAfter drawn at random
// from [E, 2E), E being the exact wait: it is a safe time to come back, but
// says nothing about when the next token arrives, so an attacker cannot
// time one guess per refill by it.
func (t *Throttle) DeviceLogin(ctx context.Context, account, ip, device string) (Decision, error) {
	acct, addr := canonAccount(account), canonIP(ip)
	if d, err := t.take(ctx, key(kindLoginIP, addr), t.p.LoginPerIP, ReasonIP); err != nil || !d.Allowed {
		return d, err
	}
	n, since, err := call2(t, ctx, func(ctx context.Context, b Backend) (int, time.Duration, error) {
		return b.Failures(ctx, key(kindLockout, acct, addr))
	})
	if err != nil {
		return Decision{}, err
	}
	if wait := t.p.lockoutDelay(n) - since; wait > 0 {
		return deny(wait, ReasonLockout), nil
	}
	if device != "" {
		// Keyed on the device alone: its id is random and bound to one
		// user by the token's MAC, so no spelling of the email splits it.
		return t.take(ctx, key(kindLoginDevice, device), t.p.LoginPerDevice, ReasonDevice)
	}
	if t.p.KnownDeviceTTL > 0 {
		known, _, err := call2(t, ctx, func(ctx context.Context, b Backend) (bool, struct{}, error) {
			ok, err := b.Marked(ctx, key(kindKnown, acct, addr))
			return ok, struct{}{}, err
		})
		if err != nil || known {
			return allow, err
		}
	}
	d, err := t.take(ctx, key(kindLoginAccount, acct), t.p.LoginPerAccount, ReasonAccount)
	if err == nil && !d.Allowed {
		d.RetryAfter += t.jitter(d.RetryAfter)
	}
	return d, err
}

// LoginFailed records a failed login (wrong password, unknown or disabled
// account alike) for account from ip: it counts towards the pair's soft
// lockout.
func (t *Throttle) LoginFailed(ctx context.Context, account, ip string) error {
	k := key(kindLockout, canonAccount(account), canonIP(ip))
	return t.do(ctx, func(ctx context.Context, b Backend) error {
		return b.AddFailure(ctx, k, t.p.LockoutIdle)
	})
}

// LoginSucceeded records a successful login for account from ip: it resets
// the pair's soft lockout and makes the pair a known device for
// [Policy].KnownDeviceTTL.
func (t *Throttle) LoginSucceeded(ctx context.Context, account, ip string) error {
	acct, addr := canonAccount(account), canonIP(ip)
	err := t.do(ctx, func(ctx context.Context, b Backend) error {
		return b.Delete(ctx, key(kindLockout, acct, addr))
	})
	if err != nil || t.p.KnownDeviceTTL == 0 {
		return err
	}
	return t.do(ctx, func(ctx context.Context, b Backend) error {
		return b.Mark(ctx, key(kindKnown, acct, addr), t.p.KnownDeviceTTL)
	})
}

// Signup decides whether a signup from ip may go ahead; an allowed one has
// taken a token from the address's signup bucket.
func (t *Throttle) Signup(ctx context.Context, ip string) (Decision, error) {
	return t.take(ctx, key(kindSignupIP, canonIP(ip)), t.p.SignupPerIP, ReasonIP)
}

// Refresh decides whether a refresh from ip may go ahead; an allowed one
// has taken a token from the address's refresh bucket, which is separate
// from (and looser than) the login buckets.
func (t *Throttle) Refresh(ctx context.Context, ip string) (Decision, error) {
	return t.take(ctx, key(kindRefreshIP, canonIP(ip)), t.p.RefreshPerIP, ReasonIP)
}

// Email decides whether a request that sends a message to address, or
// uses a link, from ip may go ahead. address is "" for requests that send
// nothing (using a link); otherwise it is keyed canonically, registered or
// not, so the answer says nothing about accounts.
func (t *Throttle) Email(ctx context.Context, address, ip string) (Decision, error) {
	if d, err := t.take(ctx, key(kindEmailIP, canonIP(ip)), t.p.EmailPerIP, ReasonIP); err != nil || !d.Allowed {
		return d, err
	}
	if address == "" {
		return allow, nil
	}
	return t.take(ctx, key(kindEmailAddr, canonAccount(address)), t.p.EmailPerAddress, ReasonAccount)
}

// uniform returns a random duration in [0, d), 0 for d <= 0. math/rand/v2's
// global source is seeded from the system's randomness and not observable
// from outside, which is all a timing blur needs.
func uniform(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

func (t *Throttle) take(ctx context.Context, k string, b Bucket, reason string) (Decision, error) {
	wait, _, err := call2(t, ctx, func(ctx context.Context, be Backend) (time.Duration, struct{}, error) {
		w, err := be.Take(ctx, k, b)
		return w, struct{}{}, err
	})
	if err != nil {
		return Decision{}, err
	}
	if wait > 0 {
		return deny(wait, reason), nil
	}
	return allow, nil
}

func (t *Throttle) do(ctx context.Context, f func(context.Context, Backend) error) error {
	_, _, err := call2(t, ctx, func(ctx context.Context, b Backend) (struct{}, struct{}, error) {
		return struct{}{}, struct{}{}, f(ctx, b)
	})
	return err
}

// call2 runs f on the backend and, if that fails while ctx is still live,
// reports the error, runs f on the local fallback instead, and keeps to the
// fallback for the cool-down.
func call2[A, B any](t *Throttle, ctx context.Context, f func(context.Context, Backend) (A, B, error)) (A, B, error) {
	if err := ctx.Err(); err != nil {
		var a A
		var b B
		return a, b, err
	}
	if until := t.downUntil.Load(); until != 0 {
		if time.Now().UnixNano() < until {
			return f(ctx, t.local)
		}
		t.downUntil.CompareAndSwap(until, 0)
	}
	bctx, cancel := ctx, context.CancelFunc(func() {})
	if _, local := t.backend.(*Memory); t.timeout > 0 && !local {
		bctx, cancel = context.WithTimeout(ctx, t.timeout)
	}
	a, b, err := f(bctx, t.backend)
	cancel()
	if err == nil {
		return a, b, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return a, b, cerr
	}
	if t.cooldown > 0 {
		t.downUntil.Store(time.Now().Add(t.cooldown).UnixNano())
	}
	t.onErr(fmt.Errorf("ratelimit: backend failed, using local limits: %w", err))
	return f(ctx, t.local)
}
