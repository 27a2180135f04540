package ratelimit

import (
	"errors"
	"fmt"
	"time"
)

// Bucket is a token bucket: it holds at most Burst tokens and gains one
// every Every. In any window of length T it admits at most
// Burst + T/Every requests.
type Bucket struct {
	Every time.Duration
	Burst int
}

func (b Bucket) validate(name string) error {
	if b.Every <= 0 || b.Burst < 1 {
		return fmt.Errorf("ratelimit: %s: need Every > 0 and Burst >= 1, got %v and %d", name, b.Every, b.Burst)
	}
	return nil
}

// Policy holds every limit. Start from [DefaultPolicy] and change what you
// need; [New] rejects a policy with a zero or negative limit.
type Policy struct {
	// LoginPerIP is taken by every login attempt from one address (IPv6:
	// one /64). Default: 30 per minute, burst 30.
	LoginPerIP Bucket
	// LoginPerAccount is taken by every login attempt on one account from
	// an address that is not a known device. It is the guessing-rate cap.
	// Default: one per 40s, burst 10, so at most 100 per hour.
	LoginPerAccount Bucket
	// LoginPerDevice replaces LoginPerAccount for a login that carries a
	// valid device token for the account (docs/design.md "Returning
	// devices"): each device has a bucket of its own, which only a holder
	// of its token can drain. Default: as LoginPerAccount.
	LoginPerDevice Bucket
	// LockoutThreshold is how many failures an (account, IP) pair may
	// have before delays start. Default: 5.
	LockoutThreshold int
	// LockoutBase is the first delay; each further failure doubles it, up
	// to LockoutMax. Defaults: 1s and 15m.
	LockoutBase, LockoutMax time.Duration
	// LockoutIdle is how long after its last failure a pair's failure
	// count is forgotten. It must be at least LockoutMax. Default: 1h.
	LockoutIdle time.Duration
	// KnownDeviceTTL is how long after a successful login its (account, IP)
	// pair is exempt from LoginPerAccount. Zero disables the exemption.
	// Default: 30 days.
	KnownDeviceTTL time.Duration
	// SignupPerIP is taken by every signup from one address. Default: 10
	// per minute, burst 10.
	SignupPerIP Bucket
	// RefreshPerIP is taken by every refresh from one address. Clients
	// behind one NAT refresh often, so it is loose. Default: 600 per
	// minute (one per 100ms), burst 200.
	RefreshPerIP Bucket
	// EmailPerIP is taken by every request that sends a message or uses
	// a link (forgot password, reset, verify, email change) from one
	// address. Default: 10 per minute, burst 10.
	EmailPerIP Bucket
	// EmailPerAddress is taken by every request that would send a message
	// to one address, registered or not, so nobody can flood a mailbox
	// through Latch. Default: 5 per hour, burst 3.
	EmailPerAddress Bucket
}

// DefaultPolicy returns the default limits documented on [Policy].
func DefaultPolicy() Policy {
	return Policy{
		LoginPerIP:       Bucket{Every: 2 * time.Second, Burst: 30},
		LoginPerAccount:  Bucket{Every: 40 * time.Second, Burst: 10},
		LoginPerDevice:   Bucket{Every: 40 * time.Second, Burst: 10},
		LockoutThreshold: 5,
		LockoutBase:      time.Second,
		LockoutMax:       15 * time.Minute,
		LockoutIdle:      time.Hour,
		KnownDeviceTTL:   30 * 24 * time.Hour,
		SignupPerIP:      Bucket{Every: 6 * time.Second, Burst: 10},
		RefreshPerIP:     Bucket{Every: 100 * time.Millisecond, Burst: 200},
		EmailPerIP:       Bucket{Every: 6 * time.Second, Burst: 10},
		EmailPerAddress:  Bucket{Every: 12 * time.Minute, Burst: 3},
	}
}

// Validate reports the first limit that cannot work.
func (p *Policy) Validate() error {
	if err := errors.Join(
		p.LoginPerIP.validate("LoginPerIP"),
		p.LoginPerAccount.validate("LoginPerAccount"),
		p.LoginPerDevice.validate("LoginPerDevice"),
		p.SignupPerIP.validate("SignupPerIP"),
		p.RefreshPerIP.validate("RefreshPerIP"),
		p.EmailPerIP.validate("EmailPerIP"),
		p.EmailPerAddress.validate("EmailPerAddress"),
	); err != nil {
		return err
	}
	switch {
	case p.LockoutThreshold < 1:
		return fmt.Errorf("ratelimit: LockoutThreshold must be >= 1, got %d", p.LockoutThreshold)
	case p.LockoutBase <= 0 || p.LockoutMax < p.LockoutBase:
		return fmt.Errorf("ratelimit: need 0 < LockoutBase <= LockoutMax, got %v and %v", p.LockoutBase, p.LockoutMax)
	case p.LockoutIdle < p.LockoutMax:
		return fmt.Errorf("ratelimit: LockoutIdle (%v) must be at least LockoutMax (%v)", p.LockoutIdle, p.LockoutMax)
	case p.KnownDeviceTTL < 0:
		return fmt.Errorf("ratelimit: KnownDeviceTTL must not be negative, got %v", p.KnownDeviceTTL)
	}
	return nil
}

// lockoutDelay is how long after its last failure a pair with n failures
// must wait: 0 below the threshold, then LockoutBase·2^(n−threshold),
// capped at LockoutMax.
func (p *Policy) lockoutDelay(n int) time.Duration {
	if n < p.LockoutThreshold {
		return 0
	}
	shift := n - p.LockoutThreshold
	if shift >= 62 {
		return p.LockoutMax
	}
	d := p.LockoutBase << shift
	if d <= 0 || d > p.LockoutMax || d>>shift != p.LockoutBase {
		return p.LockoutMax
	}
	return d
}
