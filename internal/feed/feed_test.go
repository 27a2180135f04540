package feed_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
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

func (s *source) Revocations(_ context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	var out []session.FeedEntry
	for _, e := range s.entries {
		if e.Cursor().After(after) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b session.FeedEntry) int {
		return cmp.Or(cmp.Compare(a.Txn, b.Txn), cmp.Compare(a.Seq, b.Seq))
	})
	return out[:min(len(out), limit)], nil
}

// add appends an entry written by a transaction of its own (Txn = Seq, as
// on SQLite).
func (s *source) add(seq int64, sid string, until time.Time) {
	s.addTx(seq, seq, sid, until)
}

// addTx appends an entry written by transaction txn.
func (s *source) addTx(txn, seq int64, sid string, until time.Time) {
	s.mu.Lock()
	s.entries = append(s.entries, session.FeedEntry{Txn: txn, Seq: seq, SessionID: sid, RevokedAt: until.Add(-time.Hour), Until: until})
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

// TestCommitOrder: the hub follows storage's (Txn, Seq) order, not Seq: an
// entry with a lower Seq whose transaction ended later (a slow commit on
// PostgreSQL) is delivered, not skipped, and subscribers' cursors are Txn.
func TestCommitOrder(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &source{}
	h, _ := feed.New(src, feed.Config{Interval: time.Hour, Now: func() time.Time { return now }})
	until := now.Add(time.Hour)
	src.addTx(100, 9, "fast", until)
	h.Poll(ctx)
	_, cursor, _ := h.Since(0)
	if cursor != 100 {
		t.Fatalf("cursor %d, want 100 (the transaction id)", cursor)
	}
	// Seq 8 was handed out first, but its transaction ended after 100's.
	src.addTx(101, 8, "slow", until)
	// One transaction that revoked two sessions.
	src.addTx(102, 10, "all-1", until)
	src.addTx(102, 11, "all-2", until)
	h.Poll(ctx)
	got, cursor, _ := h.Since(100)
	var sids []string
	for _, e := range got {
		sids = append(sids, e.SessionID)
	}
	if !slices.Equal(sids, []string{"slow", "all-1", "all-2"}) || cursor != 102 {
		t.Fatalf("Since(100) = %v, cursor %d; want [slow all-1 all-2], 102", sids, cursor)
	}
	if got, _, _ := h.Since(101); len(got) != 2 {
		t.Fatalf("Since(101) = %v; want the two entries of transaction 102", got)
	}
}

// TestCursorAhead: a cursor beyond what the hub has read (a node that is
// ahead, or a cursor from before an upgrade) gets every live entry again,
// never a silent skip.
func TestCursorAhead(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &source{}
	h, _ := feed.New(src, feed.Config{Interval: time.Hour, Now: func() time.Time { return now }})
	src.addTx(50, 1, "a", now.Add(time.Hour))
	src.addTx(60, 2, "b", now.Add(time.Hour))
	h.Poll(ctx)
	tests := []struct {
		after      int64
		want       int
		wantCursor int64
	}{
		{0, 2, 60},
		{50, 1, 60},
		{60, 0, 60},
		{61, 2, 60},
		{1 << 40, 2, 60},
	}
	for _, tt := range tests {
		got, cursor, _ := h.Since(tt.after)
		if len(got) != tt.want || cursor != tt.wantCursor {
			t.Errorf("Since(%d) = %d entries, cursor %d; want %d, %d", tt.after, len(got), cursor, tt.want, tt.wantCursor)
		}
	}
}

// flaky fails every call after the first ok calls of one poll.
type flaky struct {
	*source
	ok, calls int
}

func (f *flaky) Revocations(ctx context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error) {
	f.calls++
	if f.calls > f.ok {
		return nil, errors.New("connection reset")
	}
	return f.source.Revocations(ctx, after, limit)
}

// TestHubPartialTransaction: a poll whose second page fails must not
// publish the first part of a transaction larger than a page, since
// subscribers resume by transaction: one given that transaction's cursor
// would never be sent the rest of it.
func TestHubPartialTransaction(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &source{}
	for i := range 1500 {
		src.addTx(7, int64(i+1), "s"+strconv.Itoa(i), now.Add(time.Hour))
	}
	f := &flaky{source: src, ok: 1}
	h, err := feed.New(f, feed.Config{Interval: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Poll(ctx); err == nil {
		t.Fatal("Poll with a failing second page: no error")
	}
	seen := map[string]bool{}
	got, cursor, _ := h.Since(0)
	for _, e := range got {
		seen[e.SessionID] = true
	}
	f.ok = 1 << 30 // storage is back
	if err := h.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, _ = h.Since(cursor)
	for _, e := range got {
		seen[e.SessionID] = true
	}
	if len(seen) != 1500 {
		t.Fatalf("a subscriber resuming from cursor %d saw %d of the transaction's 1500 revocations", cursor, len(seen))
	}
}

// run starts h.Run until the test ends.
func run(t *testing.T, h *feed.Hub) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-h.Ready()
}

// readsOver counts s's reads over d.
func (s *source) readsOver(d time.Duration) int {
	s.mu.Lock()
	before := s.calls
	s.mu.Unlock()
	time.Sleep(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls - before
}

// TestListeningPollsSlowly: while other nodes' commits are heard the hub
// reads storage only every Fallback, and every Interval again once they
// are not; Lag is 0 while heard, since nothing is waiting to be read.
func TestListeningPollsSlowly(t *testing.T) {
	src := &source{}
	h, _ := feed.New(src, feed.Config{Interval: 10 * time.Millisecond, Fallback: time.Hour})
	run(t, h)
	tests := []struct {
		name      string
		listening bool
		min, max  int // reads in 300 ms
	}{
		{"not listening", false, 10, 40},
		// The switch reads once, and retries a few times (1, 2, 4, 8 ms)
		// as after any wake that found nothing.
		{"listening", true, 0, 8},
		{"not listening again", false, 10, 40},
	}
	for _, tt := range tests {
		h.Listening(tt.listening)
		time.Sleep(50 * time.Millisecond) // past the switch's own reads
		if n := src.readsOver(300 * time.Millisecond); n < tt.min || n > tt.max {
			t.Errorf("%s: %d reads in 300ms; want %d to %d", tt.name, n, tt.min, tt.max)
		}
		if lag := h.Lag(); tt.listening && lag != 0 {
			t.Errorf("%s: Lag %s; want 0", tt.name, lag)
		}
	}
}

// TestCommittedWaitsForTheTransaction: told that transaction 5 committed
// while storage still holds its entry back (an older transaction is
// open), a listening hub keeps reading, well past the short retries after
// a plain wake, until the entry is there; told of a transaction it has
// read already, it does not read at all.
func TestCommittedWaitsForTheTransaction(t *testing.T) {
	src := &source{}
	until := time.Now().Add(time.Hour)
	h, _ := feed.New(src, feed.Config{Interval: 20 * time.Millisecond, Fallback: time.Hour})
	run(t, h)
	h.Listening(true)
	_, _, changed := h.Since(0)
	h.Committed(5)
	time.Sleep(time.Second) // the older transaction stays open a while
	if lag := h.Lag(); lag < 900*time.Millisecond {
		t.Errorf("Lag %s while transaction 5 is unread; want about 1s", lag)
	}
	src.addTx(5, 1, "held", until)
	select {
	case <-changed:
	case <-time.After(2 * time.Second):
		t.Fatal("the held-back entry was never read")
	}
	if lag := h.Lag(); lag != 0 {
		t.Errorf("Lag %s once read; want 0", lag)
	}
	time.Sleep(50 * time.Millisecond)
	h.Committed(5) // this node's own revocation, heard after its Notify
	if n := src.readsOver(100 * time.Millisecond); n != 0 {
		t.Errorf("%d reads for a transaction already read; want 0", n)
	}
}
