package bearer

import (
	"errors"
	"strings"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a [Verifier]'s counters, for the resource
// server's metrics; see [Verifier.Stats]. Counters only grow.
type Stats struct {
	// Verified counts the tokens Verify accepted.
	Verified uint64
	// CacheHits counts the Verify calls answered from the cache of tokens
	// verified before (accepted or, on the time or feed checks, rejected).
	CacheHits uint64
	// Rejected counts the tokens Verify refused, by cause.
	Rejected Rejections
	// JWKSFetches counts key-set fetches (the first, background refreshes
	// and unknown-kid refetches); JWKSFailures those that failed and kept
	// the last good set.
	JWKSFetches, JWKSFailures uint64
	// FeedStaleness is how long ago the revocation feed was last heard
	// from, and Revoked the number of revoked sessions held; both 0 when
	// the feed is off.
	FeedStaleness time.Duration
	Revoked       int
}

// Rejections counts refused tokens by cause.
type Rejections struct {
	// Malformed: too long, not a compact JWS, bad base64url or JSON, a
	// header parameter other than alg, kid and typ, no kid.
	Malformed uint64
	// Signature: an unknown kid, an algorithm other than the key's, or a
	// signature that does not verify.
	Signature uint64
	// Claims: wrong iss or aud, no exp, sub or sid, nbf or iat in the
	// future.
	Claims uint64
	// Expired: past exp plus the leeway ([ErrExpired]).
	Expired uint64
	// Revoked: the session is in the revocation feed ([ErrRevoked]).
	Revoked uint64
	// FeedStale: the feed is staler than MaxStaleness and the verifier
	// fails closed ([ErrFeedStale]).
	FeedStale uint64
}

// Total returns the number of tokens refused.
func (r Rejections) Total() uint64 {
	return r.Malformed + r.Signature + r.Claims + r.Expired + r.Revoked + r.FeedStale
}

// Stats returns the verifier's counters. It is safe for concurrent use and
// cheap (atomic loads, and a read lock to size the revoked set); counting
// costs Verify one atomic add.
func (v *Verifier) Stats() Stats {
	s := &v.stats
	st := Stats{
		Verified:  s.verified.Load(),
		CacheHits: s.hits.Load(),
		Rejected: Rejections{
			Malformed: s.rejected[rejectMalformed].Load(),
			Signature: s.rejected[rejectSignature].Load(),
			Claims:    s.rejected[rejectClaims].Load(),
			Expired:   s.rejected[rejectExpired].Load(),
			Revoked:   s.rejected[rejectRevoked].Load(),
			FeedStale: s.rejected[rejectFeedStale].Load(),
		},
		JWKSFailures:  s.jwksFailures.Load(),
		FeedStaleness: v.Staleness(),
		Revoked:       v.Revoked(),
	}
	if v.jwks != nil {
		st.JWKSFetches = uint64(v.jwks.fetches.Load())
	}
	return st
}

// Rejection causes, indexes into stats.rejected.
const (
	rejectMalformed = iota
	rejectSignature
	rejectClaims
	rejectExpired
	rejectRevoked
	rejectFeedStale
	rejectCauses
)

// stats are a Verifier's counters.
type stats struct {
	verified     atomic.Uint64
	hits         atomic.Uint64
	rejected     [rejectCauses]atomic.Uint64
	jwksFailures atomic.Uint64
}

// done counts one Verify call by its result; Verify defers it.
func (s *stats) done(err *error) {
	if *err == nil {
		s.verified.Add(1)
		return
	}
	s.rejected[rejectCause(*err)].Add(1)
}

// Detail prefixes (after "bearer: invalid access token: ") of the
// rejections that are not malformed tokens.
var (
	signatureDetails = []string{"unknown kid", "alg ", "signature: "}
	claimsDetails    = []string{"iss ", "aud ", "no exp", "nbf ", "iat ", "no sub", "no sid"}
)

// rejectCause classifies a Verify error. Only rejections pay for it.
func rejectCause(err error) int {
	switch {
	case errors.Is(err, ErrFeedStale):
		return rejectFeedStale
	case errors.Is(err, ErrRevoked):
		return rejectRevoked
	case errors.Is(err, ErrExpired):
		return rejectExpired
	}
	detail, ok := strings.CutPrefix(err.Error(), ErrInvalidToken.Error()+": ")
	if !ok {
		return rejectMalformed
	}
	for _, p := range signatureDetails {
		if strings.HasPrefix(detail, p) {
			return rejectSignature
		}
	}
	for _, p := range claimsDetails {
		if strings.HasPrefix(detail, p) {
			return rejectClaims
		}
	}
	return rejectMalformed
}
