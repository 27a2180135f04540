package feed_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/feed"
	"github.com/latchauth/latch/internal/session"
)

// source is a hand-written fake of feed.Source.
type source struct {
	mu      sync.Mutex
	entries []session.FeedEntry
	err     error
	calls   int
}

func (s *source) Revocations(_ context.Context, after int64, limit int) ([]session.FeedEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	var out []session.FeedEntry
	for _, e := range s.entries {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b session.FeedEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	return out[:min(len(out), limit)], nil
}

func (s *source) add(seq int64, sid string, until time.Time) {
	s.mu.Lock()
	s.entries = append(s.entries, session.FeedEntry{Seq: seq, SessionID: sid, RevokedAt: until.Add(-time.Hour), Until: until})
	s.mu.Unlock()
}

func TestHub(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &source{}
	h, err := feed.New(src, feed.Config{Interval: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// More than one page, one entry already expired.
	for i := range 2500 {
		src.add(int64(i+1), "s", now.Add(time.Hour))
	}
	src.add(2501, "expired", now.Add(-time.Second))
	if err := h.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Ready():
	default:
		t.Fatal("not ready after a successful poll")
	}
	got, cursor, changed := h.Since(0)
	if len(got) != 2500 || cursor != 2501 {
		t.Fatalf("Since(0) = %d entries, cursor %d; want 2500, 2501", len(got), cursor)
	}
	if got, cursor, _ := h.Since(2400); len(got) != 100 || got[0].Seq != 2401 || cursor != 2501 {
		t.Fatalf("Since(2400) = %d entries from %d, cursor %d", len(got), got[0].Seq, cursor)
	}
	// Nothing new: subscribers are not woken.
	h.Poll(ctx)
	select {
	case <-changed:
		t.Fatal("woken without a change")
	default:
	}
	src.add(2502, "new", now.Add(2*time.Hour))
	h.Poll(ctx)
	select {
	case <-changed:
	default:
		t.Fatal("not woken by a new entry")
	}
	// Entries leave the feed at their until.
	now = now.Add(90 * time.Minute)
	if got, _, _ := h.Since(0); len(got) != 1 || got[0].SessionID != "new" {
		t.Fatalf("after until: %v", got)
	}
	h.Poll(ctx)
	// A storage failure keeps what the hub has and is reported.
	src.mu.Lock()
	src.err = errors.New("down")
	src.mu.Unlock()
	if err := h.Poll(ctx); err == nil || h.Err() == nil {
		t.Fatal("poll failure not reported")
	}
	if got, _, _ := h.Since(0); len(got) != 1 {
		t.Fatalf("entries lost on a failed poll: %v", got)
	}
}

// TestNotify: Notify wakes Run before its interval.
func TestNotify(t *testing.T) {
	src := &source{}
	h, _ := feed.New(src, feed.Config{Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-h.Ready()
	_, _, changed := h.Since(0)
	src.add(1, "s", time.Now().Add(time.Hour))
	h.Notify()
	h.Notify() // never blocks
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify did not wake the hub")
	}
}

// TestGap: an entry committed after a higher one (concurrent transactions)
// is not skipped; a Seq that never appears holds the rest back only for
// GapWait.
func TestGap(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &source{}
	h, _ := feed.New(src, feed.Config{Interval: time.Hour, GapWait: 2 * time.Second, Now: func() time.Time { return now }})
	until := now.Add(time.Hour)
	src.add(7, "a", until) // the first entry may have any Seq (older ones swept)
	h.Poll(ctx)
	src.add(9, "c", until) // 8 is still committing
	h.Poll(ctx)
	if got, cursor, _ := h.Since(0); len(got) != 1 || cursor != 7 {
		t.Fatalf("entry after a gap delivered: %v, cursor %d", got, cursor)
	}
	src.add(8, "b", until)
	h.Poll(ctx)
	got, cursor, _ := h.Since(7)
	if len(got) != 2 || got[0].SessionID != "b" || got[1].SessionID != "c" || cursor != 9 {
		t.Fatalf("after the gap filled: %v, cursor %d", got, cursor)
	}
	src.add(11, "e", until) // 10 was rolled back: it never appears
	h.Poll(ctx)
	if _, cursor, _ := h.Since(0); cursor != 9 {
		t.Fatalf("cursor %d moved past a fresh gap", cursor)
	}
	now = now.Add(3 * time.Second)
	h.Poll(ctx)
	if got, cursor, _ := h.Since(9); len(got) != 1 || got[0].SessionID != "e" || cursor != 11 {
		t.Fatalf("after GapWait: %v, cursor %d", got, cursor)
	}
}
