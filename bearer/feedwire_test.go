package bearer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
)

// TestFeedSignals: the verifier hears "the stream is live" from the named
// events Latch sends (event: ready, event: heartbeat, with data and no id)
// and from the comments older servers sent (": ok", ": heartbeat"). Each
// resets Staleness; an unknown id-less event does not.
func TestFeedSignals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, signal string
		live         bool
	}{
		{"named ready", "event: ready\ndata: {\"time\":1795797165}\n\n", true},
		{"named heartbeat", "event: heartbeat\ndata: {\"time\":1795797165}\n\n", true},
		{"comment ok", ": ok\n\n", true},
		{"comment heartbeat", ": heartbeat\n\n", true},
		{"unknown event", "event: other\ndata: {}\n\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeIssuer(t)
			send := make(chan struct{})
			feed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Accept") != "text/event-stream" {
					w.Write([]byte(`{"entries":[],"cursor":"0"}`))
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				w.Write([]byte("retry: 1000\n\n"))
				w.(http.Flusher).Flush()
				select {
				case <-send:
				case <-r.Context().Done():
					return
				}
				w.Write([]byte(tt.signal))
				w.Write([]byte("event: other\ndata: {}\n\n")) // the line after: the signal was read
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}))
			t.Cleanup(feed.Close)
			var skew atomic.Int64
			clock := func() time.Time { return now.Add(time.Duration(skew.Load())) }
			v, err := bearer.New(context.Background(), bearer.Config{
				Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"}, Now: clock,
				Revocations: &bearer.FeedConfig{URL: feed.URL, ClientID: "rs", ClientSecret: "x", MaxStaleness: time.Hour},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			// A minute of silence, as the verifier sees it; then the signal.
			skew.Store(int64(time.Minute))
			if got := v.Staleness(); got < time.Minute {
				t.Fatalf("Staleness before the signal = %s, want a minute", got)
			}
			close(send)
			deadline := time.Now().Add(2 * time.Second)
			for v.Staleness() >= time.Minute && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if live := v.Staleness() < time.Minute; live != tt.live {
				t.Fatalf("after %q: Staleness = %s; want it reset: %v", tt.signal, v.Staleness(), tt.live)
			}
		})
	}
}
