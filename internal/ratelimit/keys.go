package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"

	"github.com/latchauth/latch/internal/email"
)

// Key kinds; each is part of the key so that buckets never collide.
const (
	kindLoginIP      = "login-ip"
	kindLoginAccount = "login-acct"
	kindLoginDevice  = "login-device"
	kindLockout      = "lockout"
	kindKnown        = "known"
	kindSignupIP     = "signup-ip"
	kindRefreshIP    = "refresh-ip"
	kindEmailIP      = "email-ip"
	kindEmailAddr    = "email-addr"
)

// canonAccount returns the account's canonical email (email.Normalize, as
// session.NormalizeEmail stores and looks it up), so callers may pass the
// raw or the normalised email, in any Unicode form, and get the same key.
// A string that is no valid address is trimmed, lower-cased and throttled
// like any other: it can never name an account, since login refuses it.
func canonAccount(account string) string {
	if e, err := email.Normalize(account); err == nil {
		return e
	}
	return strings.ToLower(strings.TrimSpace(account))
}

// canonIP returns the address to key on: an IPv4 address (IPv4-mapped
// IPv6 unmapped), or the /64 prefix of an IPv6 address, so an attacker who
// holds a /64 cannot rotate through it. A string that does not parse is
// used as given; the HTTP layer decides which address to pass.
func canonIP(ip string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// key builds a backend key from a kind and parts. The parts are hashed
// (SHA-256, first 128 bits, hex) so neither emails nor addresses are stored
// in clear; a 0 byte separates them so ("a", "bc") and ("ab", "c") differ.
func key(kind string, parts ...string) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	var sum [sha256.Size]byte
	return kind + ":" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}
