// Package feed serves the revocation feed from one reader per node: a Hub
// reads new entries from storage at once when this node revoked something
// or storage says another node did (PostgreSQL LISTEN/NOTIFY), keeps the
// live ones in memory, and wakes every subscriber. It polls as a fallback:
// every short Interval while nothing tells it of other nodes' commits, and
// only every slow Fallback while something does (Listening). Storage is the source of
// truth, so every node that polls the same database serves the same feed,
// with the same cursors.
package feed

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/latchauth/latch/internal/session"
)

// Source is the storage the hub reads; the SQLite and PostgreSQL stores
// implement it.
type Source interface {
	// Revocations returns up to limit revocation-feed entries whose cursor
	// sorts after after, in cursor order, and only entries that no
	// transaction still running can sort before: every entry a later call
	// returns sorts after every entry this one returned, whatever order
	// transactions commit in. A reader resumes from the last cursor it saw
	// and never skips an entry (docs/design.md "Revocation feed").
	Revocations(ctx context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error)
}

// Config configures a Hub.
type Config struct {
	// Interval is how often storage is polled while other nodes' commits
	// are not heard (Listening false: SQLite, a transaction-mode pooler,
	// the LISTEN connection down); their revocations reach this node's
	// subscribers within it.
	Interval time.Duration
	// Fallback is how often storage is polled while they are heard
	// (default DefaultFallback); only a lost notification waits for it.
	Fallback time.Duration
	// Now is the time source (tests use a fake clock); default time.Now.
	Now func() time.Time
	// Log receives poll failures; default discards.
	Log *slog.Logger
}

// pageSize is how many entries one storage read returns.
const pageSize = 1000

// DefaultFallback is Config.Fallback's default: an idle node reads storage
// twice a minute.
const DefaultFallback = 30 * time.Second

// maxPending bounds how long the hub keeps reading for one transaction it
// was told of (Committed) before it gives up on it: far beyond any
// transaction Latch holds open, whose entries it waits behind.
const maxPending = time.Minute

// Hub holds the live revocation entries of the feed. It is safe for
// concurrent use; Run must be running for it to advance.
type Hub struct {
	src Source
	cfg Config

	wake  chan struct{}
	ready chan struct{}
	once  sync.Once

	mu      sync.RWMutex
	entries []session.FeedEntry // live entries, in cursor order
	last    session.FeedCursor  // the cursor of the last entry read
	changed chan struct{}       // closed and replaced when entries change
	err     error               // the last poll's failure, if any
	polled  time.Time           // the last successful poll (New, before the first)
	// listening: other nodes' commits are heard (Listening).
	listening bool
	// target is the highest transaction Committed named that has not been
	// read yet (0: none), since targetAt.
	target   int64
	targetAt time.Time
}

// New returns a Hub reading src.
func New(src Source, cfg Config) (*Hub, error) {
	if src == nil {
		return nil, errors.New("feed: New needs a source")
	}
	if cfg.Interval <= 0 {
		return nil, errors.New("feed: poll interval must be positive")
	}
	if cfg.Fallback <= 0 {
		cfg.Fallback = max(DefaultFallback, cfg.Interval)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Hub{src: src, cfg: cfg, wake: make(chan struct{}, 1), ready: make(chan struct{}), changed: make(chan struct{}), polled: cfg.Now()}, nil
}

// Notify asks the hub to poll now; it never blocks. The session service
// calls it after every revocation it commits.
func (h *Hub) Notify() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Committed tells the hub that transaction txn, which revoked sessions,
// has committed (the PostgreSQL listener, for every node's commits; txn is
// the Txn of its entries' cursors, 0 if unknown). The hub reads at once,
// and again and again while storage still holds txn's entries back behind
// an older open transaction, until it has read them. It never blocks.
func (h *Hub) Committed(txn int64) {
	if txn > 0 {
		h.mu.Lock()
		read := txn <= h.last.Txn
		if !read && txn > h.target {
			if h.target == 0 {
				h.targetAt = h.cfg.Now()
			}
			h.target = txn
		}
		h.mu.Unlock()
		if read {
			return // read already: this node's own revocation, say, after its Notify
		}
	}
	h.Notify()
}

// Listening says whether other nodes' commits are heard from now on
// (Committed): while they are, the hub polls only every Fallback; while
// not, every Interval. Either way it polls at once: after a (re)connect,
// whatever was notified while nobody listened is lost.
func (h *Hub) Listening(up bool) {
	h.mu.Lock()
	h.listening = up
	h.mu.Unlock()
	h.Notify()
}

// Run reads storage until ctx is done: at once on Notify and Committed,
// and every Interval (every Fallback while Listening). A read after a wake
// that finds nothing new is retried soon (1 ms, doubling, up to Interval):
// the revocation that caused it has committed, but storage holds it back
// while an older transaction is still open (see session.Store.Revocations),
// usually for a few milliseconds only. For a transaction named by
// Committed the retries go on, every Interval at most, until its entries
// are read (or maxPending passes), however long the older one stays open.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTimer(h.cfg.Interval)
	defer t.Stop()
	var backoff time.Duration
	woken := false
	for {
		moved, err := h.poll(ctx)
		if err != nil && ctx.Err() == nil {
			h.cfg.Log.Warn("revocation feed poll", "err", err)
		}
		pending, listening := h.pending()
		next := h.cfg.Interval
		if listening && err == nil {
			next = h.cfg.Fallback
		}
		retrying := false
		switch {
		case err != nil || (moved && !pending):
			backoff = 0
		case woken || pending:
			backoff = max(time.Millisecond, 2*backoff)
			switch {
			case backoff < h.cfg.Interval:
				next, retrying = min(next, backoff), true
			case pending:
				backoff = h.cfg.Interval
				next, retrying = min(next, h.cfg.Interval), true
			default:
				backoff = 0
			}
		}
		woken = false
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			woken = retrying
		case <-h.wake:
			woken, backoff = true, 0
		}
	}
}

// pending reports whether a transaction Committed named is still unread
// (giving up on it after maxPending), and whether the hub is Listening.
func (h *Hub) pending() (pending, listening bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.target > 0 && (h.target <= h.last.Txn || h.cfg.Now().Sub(h.targetAt) > maxPending) {
		if h.target > h.last.Txn {
			h.cfg.Log.Warn("revocation feed: a committed revocation was not found; polling on", "txn", h.target, "after", maxPending.String())
		}
		h.target = 0
	}
	return h.target > 0, h.listening
}

// Poll reads every entry added since the last poll, drops entries past
// their until, and wakes subscribers if anything changed.
func (h *Hub) Poll(ctx context.Context) error {
	_, err := h.poll(ctx)
	return err
}

// poll is Poll; moved reports whether the cursor moved.
func (h *Hub) poll(ctx context.Context) (moved bool, err error) {
	h.mu.RLock()
	after := h.last
	h.mu.RUnlock()
	var fresh []session.FeedEntry
	for {
		var page []session.FeedEntry
		page, err = h.src.Revocations(ctx, after, pageSize)
		if err != nil {
			// The page before was full, so its last transaction may go on
			// in the page that failed. Subscribers resume by transaction
			// (Since), so publishing part of one would lose its rest for
			// every subscriber given its cursor: keep it for the next poll.
			if n := len(fresh); n > 0 {
				txn := fresh[n-1].Txn
				for n > 0 && fresh[n-1].Txn == txn {
					n--
				}
				fresh = fresh[:n]
			}
			break
		}
		fresh = append(fresh, page...)
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].Cursor()
	}
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = err
	changed := false
	// Drop expired entries from the front and anywhere else.
	live := h.entries[:0]
	for _, e := range h.entries {
		if e.Until.After(now) {
			live = append(live, e)
		}
	}
	if len(live) != len(h.entries) {
		clear(h.entries[len(live):])
	}
	h.entries = live
	for _, e := range fresh {
		if !e.Cursor().After(h.last) {
			continue
		}
		h.last = e.Cursor()
		moved = true
		if e.Until.After(now) {
			h.entries = append(h.entries, e)
			changed = true
		}
	}
	if moved {
		changed = true // the cursor moved
	}
	if changed {
		close(h.changed)
		h.changed = make(chan struct{})
	}
	if err == nil {
		h.polled = now
		h.once.Do(func() { close(h.ready) })
	}
	return moved, err
}

// Lag returns how late other nodes' revocations may reach this node's
// subscribers. While the hub polls (not Listening, or the last read
// failed) it is how long ago it last read storage successfully (since New,
// before the first read), under Interval while storage answers. While it
// is Listening and reads succeed, it hears of every commit as it happens:
// 0, or, while a transaction it was told of is still unread, how long
// since it was told.
func (h *Hub) Lag() time.Duration {
	now := h.cfg.Now()
	h.mu.RLock()
	defer h.mu.RUnlock()
	select {
	case <-h.ready:
	default:
		return max(0, now.Sub(h.polled)) // never read yet
	}
	switch {
	case !h.listening || h.err != nil:
		return max(0, now.Sub(h.polled))
	case h.target > h.last.Txn:
		return max(0, now.Sub(h.targetAt))
	}
	return 0
}

// Len returns the number of live entries the hub holds.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.entries)
}

// Ready is closed once the hub has read storage successfully once.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Since returns the live entries with Txn greater than after (the cursor
// subscribers hold), the cursor to resume from, and a channel closed at the
// next change. Every transaction's entries are returned together, since
// the hub reads only transactions that have ended. A cursor beyond what
// the hub has read (another node that is ahead, or a cursor from before
// an upgrade changed the cursor's meaning) returns every live entry: a
// subscriber drops duplicates by sid, and nothing is skipped.
func (h *Hub) Since(after int64) (entries []session.FeedEntry, cursor int64, changed <-chan struct{}) {
	now := h.cfg.Now()
	h.mu.RLock()
	defer h.mu.RUnlock()
	if after > h.last.Txn {
		after = 0
	}
	i := sort.Search(len(h.entries), func(i int) bool { return h.entries[i].Txn > after })
	for _, e := range h.entries[i:] {
		if e.Until.After(now) {
			entries = append(entries, e)
		}
	}
	return entries, max(after, h.last.Txn), h.changed
}

// Err returns the last poll's failure, or nil.
func (h *Hub) Err() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.err
}
