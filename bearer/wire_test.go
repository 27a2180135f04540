package bearer_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
)

// goldenFeed serves the revocation feed as the Latch server writes it: the
// JSON page of testdata/wire/feed_page.golden, and the stream of
// feed_events.golden (internal/httpapi's TestGoldenFeedEvents checks the
// server writes both), held open as the server does between events.
func goldenFeed(t cleaner, pageFile, streamFile string) *httptest.Server {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile("../testdata/wire/" + name)
		if err != nil {
			panic(err) // the repository's own file
		}
		return b
	}
	page, body := read(pageFile), read(streamFile)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "notes-api" || secret != "feed-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Header.Get("Accept") != "text/event-stream" { // the page first
			w.Header().Set("Content-Type", "application/json")
			w.Write(page)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(body)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestGoldenFeedEvents: bearer reads the feed's page and its stream as the
// server writes them: both revoked sessions of the golden files are
// refused, another is not, and the ready event counts as the feed speaking
// (FailClosed accepts). Each form is read alone: once the entries come in
// the page (the stream, resumed after them, only says ready), once in the
// stream (after the empty page of a feed with nothing in it yet).
func TestGoldenFeedEvents(t *testing.T) {
	for _, tt := range []struct{ name, page, stream string }{
		{"page", "feed_page.golden", "feed_events_caught_up.golden"},
		{"stream", "empty_feed_page.golden", "feed_events.golden"},
	} {
		t.Run(tt.name, func(t *testing.T) { testGoldenFeed(t, tt.page, tt.stream) })
	}
}

func testGoldenFeed(t *testing.T, pageFile, streamFile string) {
	f := newFakeIssuer(t)
	feed := goldenFeed(t, pageFile, streamFile)
	// The golden entries were revoked at 2026-01-01T00:00:00Z and are kept
	// for 15 minutes.
	at := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)
	v, err := bearer.New(context.Background(), bearer.Config{Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"},
		Now:         func() time.Time { return at },
		Revocations: &bearer.FeedConfig{URL: feed.URL, ClientID: "notes-api", ClientSecret: "feed-secret", FailClosed: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	token := func(sid string) string {
		c := f.claims()
		c["sid"], c["iat"], c["nbf"], c["exp"] = sid, at.Add(-6*time.Minute).Unix(), at.Add(-6*time.Minute).Unix(), at.Add(5*time.Minute).Unix()
		return f.token(goodHeader, c)
	}
	eventually(t, "the golden feed's two revocations", func() bool { return v.Revoked() == 2 })
	for _, sid := range []string{"Z29sZGVuLXNlc3Npb24tMQ", "Z29sZGVuLXNlc3Npb24tMg"} {
		if _, err := v.Verify(context.Background(), token(sid)); !errors.Is(err, bearer.ErrRevoked) {
			t.Errorf("a token of revoked session %s: %v, want ErrRevoked", sid, err)
		}
	}
	if _, err := v.Verify(context.Background(), token("b3RoZXItc2Vzc2lvbi0wMQ")); err != nil {
		t.Errorf("a token of a session the feed does not name: %v", err)
	}
}
