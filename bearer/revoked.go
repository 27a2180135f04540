package bearer

import (
	"encoding/base64"
	"maps"
	"math"
)

// sidSize is the length of a Latch session id: 16 random bytes, written as
// 22 characters of unpadded base64url.
const sidSize = 16

// sidEncoding decodes a Latch sid. Strict, so that only the one canonical
// spelling of 16 bytes maps to them: two different sid strings never share
// an entry.
var sidEncoding = base64.RawURLEncoding.Strict()

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

// key returns sid as the compact map's key, and whether it has Latch's form.
func key(sid string) (k [sidSize]byte, ok bool) {
	if len(sid) != sidEncoding.EncodedLen(sidSize) {
		return k, false
	}
	n, err := sidEncoding.Decode(k[:], []byte(sid))
	return k, err == nil && n == sidSize
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
