package ratelimit

import (
	"container/list"
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Memory is a [Backend] that keeps state in the process: a
// golang.org/x/time/rate limiter per bucket key, a counter per failure key
// and an expiry per mark. It is safe for concurrent use.
//
// Memory is bounded. Each entry knows when dropping it loses nothing (a
// bucket once it is full again, a counter or mark once it has expired);
// such entries are dropped as new keys come in. When MaxKeys live entries
// exist, the least recently used one is dropped anyway, which forgets its
// limit: fail open rather than run out of memory. [Memory.Evicted] counts
// those.
type Memory struct {
	now     func() time.Time
	maxKeys int

	mu      sync.Mutex
	keys    map[string]*list.Element // of *entry
	lru     list.List                // front: most recently used
	evicted uint64
}

type entry struct {
	key     string
	expires time.Time     // dropping the entry from here on loses nothing
	lim     *rate.Limiter // buckets
	n       int           // failure counters
	last    time.Time     // failure counters: time of the last failure
}

// MemoryOption configures a [Memory].
type MemoryOption func(*Memory)

// MaxKeys bounds how many keys a Memory holds (default 100000, a few tens
// of megabytes). Values below 1 are taken as 1.
func MaxKeys(n int) MemoryOption {
	return func(m *Memory) { m.maxKeys = max(n, 1) }
}

// MemoryClock sets the clock (default time.Now); for tests.
func MemoryClock(now func() time.Time) MemoryOption {
	return func(m *Memory) { m.now = now }
}

// NewMemory returns an empty Memory.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{now: time.Now, maxKeys: 100_000, keys: make(map[string]*list.Element)}
	for _, o := range opts {
		o(m)
	}
	return m
}

var _ Backend = (*Memory)(nil)

// Len returns the number of keys held, expired ones included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

// Evicted returns how many live entries were dropped to stay within
// MaxKeys.
func (m *Memory) Evicted() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.evicted
}

// lookup returns the live entry at k, or nil. m.mu is held.
func (m *Memory) lookup(k string, now time.Time) *entry {
	el, ok := m.keys[k]
	if !ok {
		return nil
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		m.remove(el)
		return nil
	}
	m.lru.MoveToFront(el)
	return e
}

// entry returns the live entry at k, making an empty one if there is none.
// m.mu is held.
func (m *Memory) entry(k string, now time.Time) *entry {
	if e := m.lookup(k, now); e != nil {
		return e
	}
	// Drop a few expired entries from the cold end, then, if still full,
	// the coldest live one.
	for i := 0; i < 4 && m.lru.Len() > 0; i++ {
		el := m.lru.Back()
		if now.Before(el.Value.(*entry).expires) {
			break
		}
		m.remove(el)
	}
	for len(m.keys) >= m.maxKeys {
		m.remove(m.lru.Back())
		m.evicted++
	}
	e := &entry{key: k}
	m.keys[k] = m.lru.PushFront(e)
	return e
}

func (m *Memory) remove(el *list.Element) {
	m.lru.Remove(el)
	delete(m.keys, el.Value.(*entry).key)
}

// Take implements [Backend].
func (m *Memory) Take(_ context.Context, k string, b Bucket) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e := m.entry(k, now)
	if e.lim == nil {
		e.lim = rate.NewLimiter(rate.Every(b.Every), b.Burst)
	}
	ok := e.lim.AllowN(now, 1)
	tokens := e.lim.TokensAt(now)
	e.expires = now.Add(scale(float64(b.Burst)-tokens, b.Every))
	if ok {
		return 0, nil
	}
	return max(scale(1-tokens, b.Every), time.Nanosecond), nil
}

// scale returns n·d rounded up.
func scale(n float64, d time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(n * float64(d)))
}

// Failures implements [Backend].
func (m *Memory) Failures(_ context.Context, k string) (int, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e := m.lookup(k, now)
	if e == nil {
		return 0, 0, nil
	}
	return e.n, now.Sub(e.last), nil
}

// AddFailure implements [Backend].
func (m *Memory) AddFailure(_ context.Context, k string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e := m.entry(k, now)
	e.n++
	e.last = now
	e.expires = now.Add(ttl)
	return nil
}

// Mark implements [Backend].
func (m *Memory) Mark(_ context.Context, k string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.entry(k, now).expires = now.Add(ttl)
	return nil
}

// Marked implements [Backend].
func (m *Memory) Marked(_ context.Context, k string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lookup(k, m.now()) != nil, nil
}

// Delete implements [Backend].
func (m *Memory) Delete(_ context.Context, k string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.keys[k]; ok {
		m.remove(el)
	}
	return nil
}
