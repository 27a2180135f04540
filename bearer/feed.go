package bearer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FeedConfig turns on the revocation feed (GET /v1/revocations on Latch):
// the verifier keeps the set of revoked session ids in memory, fed by a
// Server-Sent Events stream, and rejects tokens whose sid is in it. The
// check costs a map lookup under a read lock; there is no I/O on the request
// path.
type FeedConfig struct {
	// URL of the feed; default Issuer + "/v1/revocations".
	URL string
	// ClientID and ClientSecret are the credentials of a confidential client
	// (latch clients create ID --confidential), sent with HTTP Basic.
	ClientID, ClientSecret string
	// MaxStaleness is how long the verifier may go without hearing from the
	// feed (an entry or a heartbeat, sent every 15s) before FailClosed
	// applies; default 45s.
	MaxStaleness time.Duration
	// FailClosed decides what happens past MaxStaleness: true rejects every
	// token with ErrFeedStale (a logout is never missed, but an outage of
	// Latch stops this API); false accepts tokens that pass every other
	// check and logs a warning (the API stays up, a logout during the
	// outage takes effect only when the feed is back or the token expires).
	FailClosed bool
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// with each failure, with jitter; defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

// feed is the verifier's copy of the revocation feed.
type feed struct {
	v    *Verifier
	cfg  FeedConfig
	auth string

	mu      sync.RWMutex
	revoked revokedSet

	cursor   atomic.Int64
	lastSeen atomic.Int64 // Unix nanoseconds of the last event or heartbeat
	warned   atomic.Int64 // Unix nanoseconds of the last fail-open warning
	pruned   time.Time    // last prune; used by the stream goroutine only

	cancel context.CancelFunc
	done   chan struct{}
}

type feedEntry struct {
	SID       string `json:"sid"`
	RevokedAt int64  `json:"revoked_at"`
	Until     int64  `json:"until"`
}

// startFeed loads the feed's current entries with one poll (so a bad
// credential fails New) and starts the stream.
func startFeed(ctx context.Context, v *Verifier, cfg FeedConfig) (*feed, error) {
	if cfg.URL == "" {
		cfg.URL = strings.TrimSuffix(v.cfg.Issuer, "/") + "/v1/revocations"
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("bearer: FeedConfig needs ClientID and ClientSecret")
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = 45 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, 30*time.Second)
	}
	f := &feed{v: v, cfg: cfg, revoked: newRevokedSet(), done: make(chan struct{})}
	// RFC 6749 section 2.3.1: form-urlencode, then Basic.
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	f.auth = req.Header.Get("Authorization")
	if err := f.poll(ctx); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.run(bg)
	return f, nil
}

func (f *feed) close() {
	f.cancel()
	<-f.done
}

// poll reads every live entry after the cursor with the JSON form of the
// feed.
func (f *feed) poll(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.cfg.URL+"?since="+strconv.FormatInt(f.cursor.Load(), 10), nil)
	if err != nil {
		return fmt.Errorf("bearer: feed: %w", err)
	}
	req.Header.Set("Authorization", f.auth)
	req.Header.Set("Accept", "application/json")
	resp, err := f.v.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("bearer: feed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bearer: feed: GET %s: %s", f.cfg.URL, resp.Status)
	}
	var page struct {
		Entries []feedEntry `json:"entries"`
		Cursor  string      `json:"cursor"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 256<<20)).Decode(&page); err != nil {
		return fmt.Errorf("bearer: feed: %w", err)
	}
	cur, err := strconv.ParseInt(page.Cursor, 10, 64)
	if err != nil {
		return fmt.Errorf("bearer: feed: bad cursor %q", page.Cursor)
	}
	f.mu.Lock()
	for _, e := range page.Entries {
		f.revoked.add(e.SID, e.Until)
	}
	f.mu.Unlock()
	f.cursor.Store(cur)
	f.seen()
	return nil
}

// seen records that the feed spoke (an entry or a heartbeat), and prunes
// expired entries at most once a minute.
func (f *feed) seen() {
	now := f.v.cfg.Now()
	f.lastSeen.Store(now.UnixNano())
	if now.Sub(f.pruned) > time.Minute {
		f.pruned = now
		f.prune()
	}
}

// run holds the stream open, reconnecting with exponential backoff and
// jitter, and resuming from the cursor (Last-Event-ID), until ctx is done.
func (f *feed) run(ctx context.Context) {
	defer close(f.done)
	backoff := f.cfg.MinBackoff
	for ctx.Err() == nil {
		got, err := f.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if got {
			backoff = f.cfg.MinBackoff
		}
		f.v.log.Warn("bearer: revocation feed disconnected; reconnecting", "err", err, "in", backoff.String())
		// Full jitter in [backoff/2, backoff].
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff = min(2*backoff, f.cfg.MaxBackoff)
	}
}

// stream reads one SSE connection until it ends; got reports whether the
// connection was established.
func (f *feed) stream(ctx context.Context) (got bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.cfg.URL, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", f.auth)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatInt(f.cursor.Load(), 10))
	// The client's Timeout would cut the stream: use its transport only.
	c := &http.Client{Transport: f.v.cfg.HTTPClient.Transport}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", f.cfg.URL, resp.Status)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return false, fmt.Errorf("GET %s: not an event stream", f.cfg.URL)
	}
	// Watchdog: a connection silent for longer than MaxStaleness is dead
	// (heartbeats come every 15s); close it to reconnect.
	watch := time.AfterFunc(f.cfg.MaxStaleness, func() { resp.Body.Close() })
	defer watch.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var id, event, data string
	for sc.Scan() {
		watch.Reset(f.cfg.MaxStaleness)
		line := sc.Text()
		switch {
		case line == "":
			if err := f.dispatch(id, event, data); err != nil {
				return true, err
			}
			id, event, data = "", "", ""
		case strings.HasPrefix(line, ":"):
			// A comment: how Latch sent heartbeats and "ok" before they
			// were named events; still a sign that the stream is live.
			f.seen()
		default:
			name, val, _ := strings.Cut(line, ":")
			val = strings.TrimPrefix(val, " ")
			switch name {
			case "id":
				id = val
			case "event":
				event = val
			case "data":
				data += val
			}
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	return true, errors.New("stream ended")
}

func (f *feed) dispatch(id, event, data string) error {
	if event == "heartbeat" || event == "ready" {
		// Named and id-less (docs/revocation-feed.md): the stream is live,
		// and after "ready" the backlog is in.
		f.seen()
		return nil
	}
	if id == "" {
		return nil // retry: or other id-less fields
	}
	seq, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return fmt.Errorf("bad event id %q", id)
	}
	if event == "revoke" {
		var e feedEntry
		if err := json.Unmarshal([]byte(data), &e); err != nil || e.SID == "" {
			return fmt.Errorf("bad revoke event %q", data)
		}
		f.mu.Lock()
		f.revoked.add(e.SID, e.Until)
		f.mu.Unlock()
	}
	if seq > f.cursor.Load() {
		f.cursor.Store(seq)
	}
	f.seen()
	return nil
}

// prune drops entries past their until: no token of the session can still
// be valid.
func (f *feed) prune() {
	now := f.v.cfg.Now().Add(-f.v.leeway).Unix()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked.prune(now)
}

// check rejects a token whose session is revoked, and applies the
// staleness policy. No I/O.
func (f *feed) check(c *Claims) error {
	if c.SessionID == "" {
		if f.v.cfg.AcceptClientTokens && c.IsClient() {
			// A client's own token has no session to revoke: it ends at
			// exp (Config.AcceptClientTokens). The staleness policy still
			// applies below: a fail-closed verifier refuses every token.
			return f.checkStale()
		}
		return invalid("no sid: the token cannot be checked against the revocation feed")
	}
	f.mu.RLock()
	revoked := f.revoked.has(c.SessionID)
	f.mu.RUnlock()
	if revoked {
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrRevoked)
	}
	return f.checkStale()
}

// checkStale applies the staleness policy.
func (f *feed) checkStale() error {
	if stale := f.staleness(); stale > f.cfg.MaxStaleness {
		if f.cfg.FailClosed {
			return fmt.Errorf("%w: last heard %s ago", ErrFeedStale, stale.Round(time.Millisecond))
		}
		now := f.v.cfg.Now().UnixNano()
		if last := f.warned.Load(); now-last > int64(10*time.Second) && f.warned.CompareAndSwap(last, now) {
			f.v.log.Warn("bearer: revocation feed stale; accepting tokens (fail open)", "staleness", stale.String())
		}
	}
	return nil
}

func (f *feed) staleness() time.Duration {
	return time.Duration(f.v.cfg.Now().UnixNano() - f.lastSeen.Load())
}

// Staleness reports how long ago the verifier last heard from the
// revocation feed (an entry or a heartbeat); 0 when the feed is off.
func (v *Verifier) Staleness() time.Duration {
	if v.feed == nil {
		return 0
	}
	return v.feed.staleness()
}

// Revoked reports how many revoked sessions the verifier holds.
func (v *Verifier) Revoked() int {
	if v.feed == nil {
		return 0
	}
	v.feed.mu.RLock()
	defer v.feed.mu.RUnlock()
	return v.feed.revoked.len()
}
