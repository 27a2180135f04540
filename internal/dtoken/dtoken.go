// Package dtoken encodes and checks Latch device tokens (docs/design.md
// "Returning devices").
//
// A device token tells the login throttle that a login comes from a device
// that has logged in to that account before, so that it is checked against
// a bucket of its own rather than the account's shared one. It names the
// user, a random device id, the user's password epoch and an expiry, and
// carries an HMAC-SHA256 over all of them, keyed with a 256-bit server
// secret:
//
//	latch_dt_ base64url( version | user id (16) | device id (16) | epoch (8) | expiry (8) | mac (32) | crc32 (4) )
//
// As for refresh tokens (package rtoken), the prefix lets secret scanners
// find leaked values, the CRC-32 rejects mistyped ones offline and the MAC
// makes tokens unforgeable; it is checked, with the expiry, before any
// database work. The epoch is an opaque value the caller derives from the
// user's password (package session: a MAC of the password hash), so that a
// new password voids every device token issued before. Nothing about device
// tokens is stored.
package dtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"time"
)

// Prefix starts every device token.
const Prefix = "latch_dt_"

// KeySize is the size of the MAC key in bytes.
const KeySize = 32

// IDSize is the size of a raw user or device id in bytes.
const IDSize = 16

const (
	version  = 1
	macSize  = 32
	bodySize = 1 + IDSize + IDSize + 8 + 8
	rawSize  = bodySize + macSize + 4
	textSize = len(Prefix) + (rawSize*8+5)/6
)

var (
	// ErrMalformed reports a value that is not a device token at all
	// (wrong prefix, length, encoding or checksum).
	ErrMalformed = errors.New("dtoken: malformed device token")
	// ErrBadMAC reports a well-formed token that this server did not issue.
	ErrBadMAC = errors.New("dtoken: device token signature mismatch")
	// ErrExpired reports a token this server issued whose expiry has passed.
	ErrExpired = errors.New("dtoken: device token expired")
)

// Device is what a device token says.
type Device struct {
	User   [IDSize]byte
	Device [IDSize]byte
	// Epoch is the user's password epoch when the token was issued, as the
	// caller defines it; the caller compares it with the current one.
	Epoch int64
	// Expires is when the token stops counting, to the second.
	Expires time.Time
}

// Codec mints and checks tokens under one key. It is safe for concurrent use.
type Codec struct {
	key []byte
}

// New returns a Codec for a KeySize-byte key.
func New(key []byte) (*Codec, error) {
	if len(key) != KeySize {
		return nil, errors.New("dtoken: key must be 32 bytes")
	}
	return &Codec{key: append([]byte(nil), key...)}, nil
}

// Encode returns the device token for d.
func (c *Codec) Encode(d Device) string {
	var raw [rawSize]byte
	raw[0] = version
	copy(raw[1:], d.User[:])
	copy(raw[1+IDSize:], d.Device[:])
	binary.BigEndian.PutUint64(raw[1+2*IDSize:], uint64(d.Epoch))
	binary.BigEndian.PutUint64(raw[1+2*IDSize+8:], uint64(d.Expires.Unix()))
	c.mac(raw[bodySize:bodySize], raw[:bodySize])
	binary.BigEndian.PutUint32(raw[rawSize-4:], crc32.ChecksumIEEE(raw[:rawSize-4]))
	return Prefix + base64.RawURLEncoding.EncodeToString(raw[:])
}

// Decode checks a token's form, MAC and expiry at now and returns what it
// says. It does no I/O; the caller still checks the user and the epoch.
func (c *Codec) Decode(tok string, now time.Time) (Device, error) {
	var d Device
	if len(tok) != textSize || !strings.HasPrefix(tok, Prefix) {
		return d, ErrMalformed
	}
	var raw [rawSize]byte
	// Strict decoding rejects non-canonical trailing bits, so each token has
	// exactly one spelling.
	n, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(tok[len(Prefix):]))
	if err != nil || n != rawSize {
		return d, ErrMalformed
	}
	if binary.BigEndian.Uint32(raw[rawSize-4:]) != crc32.ChecksumIEEE(raw[:rawSize-4]) || raw[0] != version {
		return d, ErrMalformed
	}
	var want [macSize]byte
	c.mac(want[:0], raw[:bodySize])
	if !hmac.Equal(want[:], raw[bodySize:bodySize+macSize]) {
		return d, ErrBadMAC
	}
	copy(d.User[:], raw[1:])
	copy(d.Device[:], raw[1+IDSize:])
	d.Epoch = int64(binary.BigEndian.Uint64(raw[1+2*IDSize:]))
	d.Expires = time.Unix(int64(binary.BigEndian.Uint64(raw[1+2*IDSize+8:])), 0).UTC()
	if !now.Before(d.Expires) {
		return d, ErrExpired
	}
	return d, nil
}

// mac appends HMAC-SHA256(key, "latch-dt" | msg) to dst.
func (c *Codec) mac(dst, msg []byte) {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte("latch-dt"))
	h.Write(msg)
	h.Sum(dst)
}
