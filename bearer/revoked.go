package bearer

import (
	"maps"
	"math"
)

// sidSize is the length of a Latch session id: 16 random bytes, written as
// 22 characters of unpadded base64url.
const sidSize = 16

// sidAlphabet is base64url (RFC 4648 section 5); sidValue maps each of
// its characters to its 6 bits and every other byte to 0xFF.
const sidAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

var sidValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := range len(sidAlphabet) {
		t[sidAlphabet[i]] = byte(i)
	}
	return t
}()

// revokedSet is the feed's set of revoked session ids, each with its until
// (Unix seconds). It grows with logouts, so an entry is kept small: a sid
// in Latch's form is stored as its 16 bytes with until as uint32 seconds
// (a 20-byte slot, about 22–44 bytes per entry with the map's spare room)
// instead of a string header, a separate string allocation and an int64
// (80 bytes per entry at a million; docs/performance.md "Growth"). Any other
// sid, which a token of another issuer's format could carry, is kept as a
// string. Not safe for concurrent use: the feed's lock guards it.
type revokedSet struct {
	compact map[[sidSize]byte]uint32
	other   map[string]int64
}

func newRevokedSet() revokedSet {
	return revokedSet{compact: map[[sidSize]byte]uint32{}, other: map[string]int64{}}
}

// key returns sid as the compact map's key, and whether it has Latch's
// form: 22 base64url characters in the one canonical spelling of 16 bytes
// (the last character's 4 unused bits zero), so two different sid strings
// never share an entry. It is on every verification's path, so it decodes
// by table rather than through encoding/base64 (a third of the time).
func key(sid string) (k [sidSize]byte, ok bool) {
	if len(sid) != 22 {
		return k, false
	}
	var bad byte // a value ≥ 64 (0xFF: not base64url) sets a high bit
	for g := range 5 {
		a, b, c, d := sidValue[sid[4*g]], sidValue[sid[4*g+1]], sidValue[sid[4*g+2]], sidValue[sid[4*g+3]]
		bad |= a | b | c | d
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		k[3*g], k[3*g+1], k[3*g+2] = byte(v>>16), byte(v>>8), byte(v)
	}
	a, b := sidValue[sid[20]], sidValue[sid[21]]
	bad |= a | b
	k[15] = a<<2 | b>>4
	return k, bad&0xC0 == 0 && b&0x0F == 0
}

// seconds clamps until to uint32: past 2106 it is "for ever", before 1970
// it is already expired.
func seconds(until int64) uint32 {
	return uint32(min(max(until, 0), math.MaxUint32))
}

// add records sid as revoked until until; a repeat keeps the later until.
func (s *revokedSet) add(sid string, until int64) {
	if k, ok := key(sid); ok {
		s.compact[k] = max(s.compact[k], seconds(until))
		return
	}
	if old, ok := s.other[sid]; !ok || until > old {
		s.other[sid] = until
	}
}

func (s *revokedSet) has(sid string) bool {
	if k, ok := key(sid); ok {
		_, found := s.compact[k]
		return found
	}
	_, found := s.other[sid]
	return found
}

func (s *revokedSet) len() int { return len(s.compact) + len(s.other) }

// prune drops the entries whose until is before now (Unix seconds). A Go
// map keeps its size after deletes, so when most entries went (the tail of
// a burst of logouts) the rest move to a new map and the memory is freed.
func (s *revokedSet) prune(now int64) {
	dropped := 0
	for k, until := range s.compact {
		if int64(until) < now {
			delete(s.compact, k)
			dropped++
		}
	}
	if dropped > len(s.compact) {
		s.compact = maps.Clone(s.compact)
	}
	for sid, until := range s.other {
		if until < now {
			delete(s.other, sid)
		}
	}
}
