// Package rtoken encodes and checks Latch refresh tokens.
//
// A refresh token names its session and generation and carries an
// HMAC-SHA256 over both, keyed with a 256-bit server secret that is not kept
// in the database in the clear:
//
//	latch_rt_ base64url( version | session id (16) | generation (8) | mac (32) | crc32 (4) )
//
// The prefix lets secret scanners find leaked tokens; the CRC-32 lets them
// (and us) reject mistyped or truncated values offline; the MAC makes tokens
// unforgeable and is checked before any database work. Because the token is
// derived rather than random, the server can hand out the identical current
// token again (the grace-window answer) while storing nothing but the
// generation number: a database dump yields no usable token (RFC 6749 section
// 10.4, RFC 6819 section 5.1.4.1.3). The MAC is 256 bits of output of a PRF
// under a random 256-bit key, which meets RFC 6749 section 10.10's bound on
// guessing (2^-160).
package rtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc32"
	"strings"
	"sync"
)

// Prefix starts every refresh token.
const Prefix = "latch_rt_"

// KeySize is the size of the MAC key in bytes.
const KeySize = 32

// IDSize is the size of a raw session id in bytes.
const IDSize = 16

const (
	version  = 1
	macSize  = 32
	rawSize  = 1 + IDSize + 8 + macSize + 4
	textSize = len(Prefix) + (rawSize*8+5)/6
)

var (
	// ErrMalformed reports a value that is not a refresh token at all (wrong
	// prefix, length, encoding or checksum).
	ErrMalformed = errors.New("rtoken: malformed refresh token")
	// ErrBadMAC reports a well-formed token that this server did not issue.
	ErrBadMAC = errors.New("rtoken: refresh token signature mismatch")
)

// Codec mints and checks tokens under one key. It is safe for concurrent use.
type Codec struct {
	key []byte
	// macs holds *macState for reuse: hmac.New cost 8 allocations and
	// hashed both pads again for every MAC, two a refresh (Decode, then
	// Encode), where Reset restores the keyed state.
	macs sync.Pool
}

// New returns a Codec for a KeySize-byte key.
func New(key []byte) (*Codec, error) {
	if len(key) != KeySize {
		return nil, errors.New("rtoken: key must be 32 bytes")
	}
	return &Codec{key: append([]byte(nil), key...)}, nil
}

// Encode returns the refresh token for generation gen of the session whose
// raw id is sid.
func (c *Codec) Encode(sid [IDSize]byte, gen uint64) string {
	var raw [rawSize]byte
	raw[0] = version
	copy(raw[1:], sid[:])
	binary.BigEndian.PutUint64(raw[1+IDSize:], gen)
	c.mac((*[macSize]byte)(raw[macInput:]), raw[:macInput])
	binary.BigEndian.PutUint32(raw[rawSize-4:], crc32.ChecksumIEEE(raw[:rawSize-4]))
	var text [textSize]byte // one allocation, the string, not two
	copy(text[:], Prefix)
	base64.RawURLEncoding.Encode(text[len(Prefix):], raw[:])
	return string(text[:])
}

// Decode checks a token and returns its session id and generation. It does no
// I/O, so callers reject forged tokens before touching storage.
func (c *Codec) Decode(tok string) (sid [IDSize]byte, gen uint64, err error) {
	if len(tok) != textSize || !strings.HasPrefix(tok, Prefix) {
		return sid, 0, ErrMalformed
	}
	var raw [rawSize]byte
	// Strict decoding rejects non-canonical trailing bits, so each token has
	// exactly one spelling.
	n, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(tok[len(Prefix):]))
	if err != nil || n != rawSize {
		return sid, 0, ErrMalformed
	}
	if binary.BigEndian.Uint32(raw[rawSize-4:]) != crc32.ChecksumIEEE(raw[:rawSize-4]) || raw[0] != version {
		return sid, 0, ErrMalformed
	}
	var want [macSize]byte
	c.mac(&want, raw[:macInput])
	if !hmac.Equal(want[:], raw[1+IDSize+8:1+IDSize+8+macSize]) {
		return sid, 0, ErrBadMAC
	}
	copy(sid[:], raw[1:1+IDSize])
	return sid, binary.BigEndian.Uint64(raw[1+IDSize:]), nil
}

// mac sets out to HMAC-SHA256(key, "latch-rt" | msg), msg being a token's
// version, session id and generation (macInput bytes).
func (c *Codec) mac(out *[macSize]byte, msg []byte) {
	m, ok := c.macs.Get().(*macState)
	if !ok {
		m = &macState{h: hmac.New(sha256.New, c.key)}
	}
	n := copy(m.in[:], macLabel)
	n += copy(m.in[n:], msg[:macInput])
	m.h.Write(m.in[:n])
	copy(out[:], m.h.Sum(m.out[:0]))
	m.h.Reset()
	c.macs.Put(m)
}

const (
	macLabel = "latch-rt"
	macInput = 1 + IDSize + 8
)

// macState is an HMAC-SHA256 state under a Codec's key with room for its
// input and output. The MAC is written and read through these arrays
// because whatever is handed to a hash.Hash escapes: the label's []byte
// and Decode's want would each be one more allocation.
type macState struct {
	h   hash.Hash
	in  [len(macLabel) + macInput]byte
	out [macSize]byte
}

// Subkey derives a KeySize-byte key for another purpose named by label
// (device tokens), so that one stored secret serves several MACs and no MAC
// of one kind is ever a MAC of another: HMAC-SHA256(key, "latch-subkey" |
// label), a PRF output under the secret key.
func (c *Codec) Subkey(label string) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte("latch-subkey"))
	h.Write([]byte(label))
	return h.Sum(nil)
}
