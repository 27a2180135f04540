package ratelimit

import (
	"context"
	"time"
)

// Backend stores the throttle's state: token buckets, failure counters and
// marks, each under a key the [Throttle] builds. Every method is atomic on
// its key and safe for concurrent use. Times are measured with the
// backend's own clock, so that several nodes sharing a backend agree.
// [Memory] and [Redis] implement it.
type Backend interface {
	// Take takes one token from the bucket key, which refills per b. It
	// returns 0 if a token was taken, else how long until one will be there.
	Take(ctx context.Context, key string, b Bucket) (wait time.Duration, err error)
	// Failures returns the failure count at key and the time since the last
	// failure; n is 0 if there is none or it has expired.
	Failures(ctx context.Context, key string) (n int, since time.Duration, err error)
	// AddFailure adds one to the failure count at key, records now as its
	// last failure, and forgets the count ttl from now.
	AddFailure(ctx context.Context, key string, ttl time.Duration) error
	// Mark sets a mark at key that lasts ttl.
	Mark(ctx context.Context, key string, ttl time.Duration) error
	// Marked reports whether a live mark is set at key.
	Marked(ctx context.Context, key string) (bool, error)
	// Delete removes whatever is at key.
	Delete(ctx context.Context, key string) error
}
