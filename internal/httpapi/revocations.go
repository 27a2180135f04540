package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/session"
)

// Revocation-feed defaults (Config leaves them zero).
const (
	defaultFeedHeartbeat      = 15 * time.Second
	defaultMaxFeedSubscribers = 1024
	// DefaultFeedStreamsPerClient is the default of
	// Config.FeedStreamsPerClient: a resource server needs one stream per
	// process, and a few more while old ones are replaced.
	DefaultFeedStreamsPerClient = 16
	// feedRetryAfter is what a client over its stream cap is told to wait:
	// a slot frees only when one of its own streams ends.
	feedRetryAfter = 10 * time.Second
)

// feedEntryJSON is one entry on the wire: times are Unix seconds.
type feedEntryJSON struct {
	SID       string `json:"sid"`
	RevokedAt int64  `json:"revoked_at"`
	Until     int64  `json:"until"`
}

func toFeedJSON(e session.FeedEntry) feedEntryJSON {
	return feedEntryJSON{SID: e.SessionID, RevokedAt: e.RevokedAt.Unix(), Until: e.Until.Unix()}
}

// GET /v1/revocations: the revocation feed, for confidential clients. With
// Accept: text/event-stream (or ?stream=1) it is a Server-Sent Events
// stream resuming after Last-Event-ID (or ?since=); otherwise a JSON page
// of every live entry after ?since= and the cursor to poll with next.
func (s *Server) revocations(w http.ResponseWriter, r *http.Request) error {
	client, err := s.confidentialClient(r.Context(), r, url.Values{})
	if err != nil {
		return err
	}
	if s.cfg.Feed == nil {
		return apiError(http.StatusNotFound, CodeNotFound, "the revocation feed is not enabled")
	}
	stream := r.URL.Query().Get("stream") == "1" || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	cursor := r.URL.Query().Get("since")
	if id := r.Header.Get("Last-Event-ID"); stream && id != "" {
		cursor = id
	}
	var after int64
	if cursor != "" {
		var err error
		if after, err = strconv.ParseInt(cursor, 10, 64); err != nil || after < 0 {
			return badRequest("since (or Last-Event-ID) must be a cursor from this feed")
		}
	}
	// Before the first storage read the hub knows nothing; wait briefly.
	select {
	case <-s.cfg.Feed.Ready():
	case <-r.Context().Done():
		return r.Context().Err()
	case <-time.After(5 * time.Second):
		return fmt.Errorf("httpapi: revocation feed not ready: %w", session.ErrUnavailable)
	}
	if !stream {
		entries, next, _ := s.cfg.Feed.Since(after)
		out := make([]feedEntryJSON, 0, len(entries))
		for _, e := range entries {
			out = append(out, toFeedJSON(e))
		}
		return writeJSON(w, http.StatusOK, map[string]any{"entries": out, "cursor": strconv.FormatInt(next, 10)})
	}
	release, err := s.feedSlot(client.ID)
	if err != nil {
		return err
	}
	defer release()
	return s.streamRevocations(w, r, after)
}

// feedSlot takes one of the node's stream slots for client, or refuses:
// 429 when the client holds FeedStreamsPerClient streams already (its own
// streams are the ones to close; the other clients' slots stay free), 503
// when the node holds MaxFeedSubscribers.
func (s *Server) feedSlot(client string) (release func(), err error) {
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	if s.feedByClient[client] >= s.cfg.FeedStreamsPerClient {
		return nil, &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyRequests, RetryAfter: feedRetryAfter,
			Message: fmt.Sprintf("this client has %d revocation-feed streams open, the most allowed; close one", s.cfg.FeedStreamsPerClient),
			Err:     errors.New("httpapi: per-client feed stream cap reached")}
	}
	if s.feedSubs.Load() >= int64(s.cfg.MaxFeedSubscribers) {
		// A node-wide slot frees only when some stream ends: as for the
		// per-client cap, ask for a pause that lets one end (RFC 9110
		// section 10.2.3).
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable, RetryAfter: feedRetryAfter,
			Message: "too many feed subscribers", Err: errors.New("httpapi: feed subscriber cap reached")}
	}
	s.feedByClient[client]++
	s.feedSubs.Add(1)
	return func() {
		s.feedMu.Lock()
		defer s.feedMu.Unlock()
		if s.feedByClient[client]--; s.feedByClient[client] == 0 {
			delete(s.feedByClient, client)
		}
		s.feedSubs.Add(-1)
	}, nil
}

func (s *Server) streamRevocations(w http.ResponseWriter, r *http.Request, after int64) error {
	rc := http.NewResponseController(w)
	heartbeat := s.cfg.FeedHeartbeat
	// The server's WriteTimeout would end the stream; each write gets its own
	// deadline instead.
	extend := func() error { return rc.SetWriteDeadline(time.Now().Add(heartbeat + 10*time.Second)) }
	if err := extend(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	// The read deadline would cut the connection too.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: the reconnect delay browsers' EventSource uses.
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return nil
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	first := true
	for {
		entries, next, changed := s.cfg.Feed.Since(after)
		var b strings.Builder
		// The cursor is per transaction: every entry but a transaction's
		// last carries the cursor before that transaction, so a subscriber
		// cut off in the middle resumes with the whole transaction again
		// (a duplicate, dropped by sid) rather than past its rest.
		id := after
		if after > next {
			id = 0 // the hub had not read this far: it sent everything
		}
		for i, e := range entries {
			if i == len(entries)-1 || entries[i+1].Txn != e.Txn {
				id = e.Txn
			}
			j := toFeedJSON(e)
			fmt.Fprintf(&b, "id: %d\nevent: revoke\ndata: {\"sid\":%q,\"revoked_at\":%d,\"until\":%d}\n\n", id, j.SID, j.RevokedAt, j.Until)
		}
		if next > after && len(entries) == 0 {
			// The cursor moved past entries already expired: say so, so the
			// subscriber resumes from here.
			fmt.Fprintf(&b, "id: %d\nevent: cursor\ndata: {}\n\n", next)
		}
		after = next
		if first {
			// The backlog is written: the subscriber is now up to date. A
			// named event, not a comment, so EventSource shows it.
			b.WriteString(feedSignal("ready"))
			first = false
		}
		if b.Len() > 0 {
			if err := write(w, rc, extend, b.String()); err != nil {
				return nil
			}
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-s.done:
			return nil
		case <-changed:
		case <-tick.C:
			if err := write(w, rc, extend, feedSignal("heartbeat")); err != nil {
				return nil
			}
		}
	}
}

// feedSignal is a "ready" or "heartbeat" event: named, so a browser's
// EventSource dispatches it (comments never reach a listener) and any
// subscriber can measure staleness from it; data is required for the event
// to be dispatched at all (WHATWG HTML, "dispatch the event": an empty data
// buffer dispatches nothing), so it carries the server's time in Unix
// seconds. No id: line, so the subscriber's Last-Event-ID stays the
// cursor of the last entry.
func feedSignal(name string) string {
	return fmt.Sprintf("event: %s\ndata: {\"time\":%d}\n\n", name, time.Now().Unix())
}

func write(w http.ResponseWriter, rc *http.ResponseController, extend func() error, s string) error {
	if err := extend(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := w.Write([]byte(s)); err != nil {
		return err
	}
	return rc.Flush()
}
