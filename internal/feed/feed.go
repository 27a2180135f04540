// Package feed serves the revocation feed from one poller per node: a Hub
// reads new entries from storage every short interval (or at once when this
// node revoked something, or storage says another node did), keeps the live
// ones in memory, and wakes every subscriber. Storage is the source of
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
	// Interval is how often storage is polled; other nodes' revocations
	// reach this node's subscribers within it.
	Interval time.Duration
	// Now is the time source (tests use a fake clock); default time.Now.
	Now func() time.Time
	// Log receives poll failures; default discards.
	Log *slog.Logger
}

// pageSize is how many entries one storage read returns.
const pageSize = 1000

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
}

// New returns a Hub reading src.
func New(src Source, cfg Config) (*Hub, error) {
	if src == nil {
		return nil, errors.New("feed: New needs a source")
	}
	if cfg.Interval <= 0 {
		return nil, errors.New("feed: poll interval must be positive")
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
// calls it after every revocation it commits, and the PostgreSQL listener
// when another node's commits.
func (h *Hub) Notify() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Run polls storage until ctx is done: every Interval, and at once on
// Notify. A read after a Notify that finds nothing new is retried soon
// (1 ms, doubling, up to Interval): the revocation that caused the Notify
// has committed, but storage holds it back while an older transaction is
// still open (see session.Store.Revocations), usually for a few
// milliseconds only.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	var retry <-chan time.Time
	var backoff time.Duration
	woken := false
	for {
		moved, err := h.poll(ctx)
		if err != nil && ctx.Err() == nil {
			h.cfg.Log.Warn("revocation feed poll", "err", err)
		}
		switch {
		case moved || err != nil:
			backoff, retry = 0, nil
		case woken:
			backoff = max(time.Millisecond, 2*backoff)
			if backoff < h.cfg.Interval {
				retry = time.After(backoff)
			} else {
				backoff, retry = 0, nil
			}
		}
		woken = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
			woken, backoff = true, 0
		case <-retry:
			woken = true
		}
	}
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

// Lag returns how long ago the hub last read storage successfully (since
// New, before the first read): other nodes' revocations reach this node's
// subscribers at most about this late. It stays under the poll interval
// while storage answers.
func (h *Hub) Lag() time.Duration {
	now := h.cfg.Now()
	h.mu.RLock()
	defer h.mu.RUnlock()
	return max(0, now.Sub(h.polled))
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
