package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a [Backend] in Redis, so that many Latch nodes share limits. It
// is safe for concurrent use.
//
// Buckets use GCRA (the generic cell rate algorithm, equivalent to a token
// bucket): one key per bucket holds its theoretical arrival time. Failure
// counters are hashes, marks plain keys. Each operation is one Lua script
// or command on one key, so it is atomic and works on Redis Cluster; the
// scripts take the time from the Redis server (TIME), so nodes whose clocks
// disagree still agree on every limit. Every key has a TTL no longer than
// its state matters, so nothing grows without bound.
//
// Use a client with short timeouts (and ContextTimeoutEnabled): while
// Redis does not answer, each call costs up to the client's timeout before
// the [Throttle] falls back to local limits.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis returns a Redis backend that uses client and puts prefix (for
// example "latch:rl:") in front of every key.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: client, prefix: prefix}
}

var _ Backend = (*Redis)(nil)

// Times in the scripts are microseconds since the epoch (below 2^53, so
// exact in Lua's doubles); they are written with %.0f because Lua's
// default number format would round them.
const luaNow = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
`

// takeScript: KEYS[1] bucket; ARGV[1] Every in µs, ARGV[2] Burst.
// Returns 0 if a token was taken, else the wait in µs.
var takeScript = redis.NewScript(luaNow + `
local every = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new = tat + every
local wait = new - burst * every - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
return 0
`)

// failuresScript: KEYS[1] counter. Returns {n, µs since the last failure}.
var failuresScript = redis.NewScript(luaNow + `
local v = redis.call('HMGET', KEYS[1], 'n', 'last')
if not v[1] then return {0, 0} end
return {tonumber(v[1]), math.max(0, now - tonumber(v[2]))}
`)

// addFailureScript: KEYS[1] counter; ARGV[1] TTL in ms.
var addFailureScript = redis.NewScript(luaNow + `
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'last', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
`)

func us(d time.Duration) int64 { return int64((d + time.Microsecond - 1) / time.Microsecond) }

func ms(d time.Duration) int64 { return max(int64((d+time.Millisecond-1)/time.Millisecond), 1) }

func redisErr(op string, err error) error { return fmt.Errorf("ratelimit: redis %s: %w", op, err) }

// Take implements [Backend].
func (r *Redis) Take(ctx context.Context, k string, b Bucket) (time.Duration, error) {
	wait, err := takeScript.Run(ctx, r.c, []string{r.prefix + k}, us(b.Every), b.Burst).Int64()
	if err != nil {
		return 0, redisErr("take", err)
	}
	return time.Duration(wait) * time.Microsecond, nil
}

// Failures implements [Backend].
func (r *Redis) Failures(ctx context.Context, k string) (int, time.Duration, error) {
	v, err := failuresScript.Run(ctx, r.c, []string{r.prefix + k}).Int64Slice()
	if err != nil {
		return 0, 0, redisErr("failures", err)
	}
	if len(v) != 2 {
		return 0, 0, redisErr("failures", errors.New("unexpected reply"))
	}
	return int(v[0]), time.Duration(v[1]) * time.Microsecond, nil
}

// AddFailure implements [Backend].
func (r *Redis) AddFailure(ctx context.Context, k string, ttl time.Duration) error {
	if err := addFailureScript.Run(ctx, r.c, []string{r.prefix + k}, ms(ttl)).Err(); err != nil {
		return redisErr("add failure", err)
	}
	return nil
}

// Mark implements [Backend].
func (r *Redis) Mark(ctx context.Context, k string, ttl time.Duration) error {
	if err := r.c.Set(ctx, r.prefix+k, "1", time.Duration(ms(ttl))*time.Millisecond).Err(); err != nil {
		return redisErr("mark", err)
	}
	return nil
}

// Marked implements [Backend].
func (r *Redis) Marked(ctx context.Context, k string) (bool, error) {
	n, err := r.c.Exists(ctx, r.prefix+k).Result()
	if err != nil {
		return false, redisErr("marked", err)
	}
	return n == 1, nil
}

// Delete implements [Backend].
func (r *Redis) Delete(ctx context.Context, k string) error {
	if err := r.c.Del(ctx, r.prefix+k).Err(); err != nil {
		return redisErr("delete", err)
	}
	return nil
}
