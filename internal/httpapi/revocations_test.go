package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestRevocationStream reads the SSE form of the feed: the backlog, the
// ready and heartbeat events, a live entry, resumption with Last-Event-ID, and the cap on
// concurrent streams.
func TestRevocationStream(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{RealClock: true, MaxFeedSubscribers: 1, FeedHeartbeat: 50 * time.Millisecond})
	// Bounds every stream, so a missing "event: ready" fails, not hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Sessions.EnsureClient(ctx, session.Client{ID: "rs", Name: "rs", Audiences: []string{"app"}, AccessTTL: time.Minute,
		SecretHash: session.HashClientSecret("secret")}); err != nil {
		t.Fatal(err)
	}
	open := func(lastID string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/revocations", nil)
		req.SetBasicAuth("rs", "secret")
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := env.Login(t, "a@example.com")
	if _, err := env.Sessions.Logout(ctx, "", first.SessionID, session.ScopeOne, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	// The entry is in the hub's backlog before the stream opens, so it
	// comes before "ready".
	if err := env.Feed.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	resp := open("")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string) string {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if strings.Contains(l, want) {
					return l
				}
			case <-deadline:
				t.Fatalf("no %q on the stream", want)
			}
		}
	}
	expect(first.SessionID)
	// "Caught up" and heartbeats are named events with data, so a browser's
	// EventSource dispatches them (it never shows comments).
	expect("event: ready")
	expectData := func() {
		t.Helper()
		var d struct{ Time int64 }
		l := expect("data: ")
		if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &d); err != nil || time.Since(time.Unix(d.Time, 0)).Abs() > time.Minute {
			t.Fatalf("signal data %q: want {\"time\": the server's Unix seconds}", l)
		}
	}
	expectData()
	expect("event: heartbeat")
	expectData()
	// A second stream is over the cap: 503 with Retry-After.
	if r2 := open(""); r2.StatusCode != http.StatusServiceUnavailable || r2.Header.Get("Retry-After") == "" {
		t.Fatalf("second stream with a cap of 1: %d, Retry-After %q", r2.StatusCode, r2.Header.Get("Retry-After"))
	} else {
		r2.Body.Close()
	}
	second := env.Login(t, "b@example.com")
	if err := env.Sessions.RevokeSession(ctx, "", second.SessionID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	id := expect("id: ")
	expect(second.SessionID)
	resp.Body.Close()
	// Resuming after the first entry yields only the second.
	testenv.Eventually(t, 5*time.Second, "the closed stream still holds its slot", func() bool { return env.API.FeedSubscribers() == 0 })
	r3 := open(strings.TrimPrefix(id, "id: "))
	defer r3.Body.Close()
	sc := bufio.NewScanner(r3.Body)
	var got []string
	for sc.Scan() && sc.Text() != "event: ready" {
		got = append(got, sc.Text())
	}
	all := strings.Join(got, "\n")
	if strings.Contains(all, first.SessionID) || strings.Contains(all, second.SessionID) {
		t.Fatalf("resume from %s repeated entries:\n%s", id, all)
	}
}

// TestFeedStreamsPerClient: one client cannot take every stream slot. Past
// its own cap it gets 429 with Retry-After while other clients still get
// streams; only the node-wide cap answers 503.
func TestFeedStreamsPerClient(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{RealClock: true, MaxFeedSubscribers: 4,
		API: func(c *httpapi.Config) { c.FeedStreamsPerClient = 2 }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"greedy", "other", "third"} {
		if err := env.Sessions.EnsureClient(ctx, session.Client{ID: id, Name: id, Audiences: []string{"app"}, AccessTTL: time.Minute,
			SecretHash: session.HashClientSecret(id + "-secret")}); err != nil {
			t.Fatal(err)
		}
	}
	open := func(client string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/revocations", nil)
		req.SetBasicAuth(client, client+"-secret")
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
		}
		return resp
	}
	var held []*http.Response
	defer func() {
		for _, r := range held {
			r.Body.Close()
		}
	}()
	steps := []struct {
		client     string
		want       int
		retryAfter bool
	}{
		{"greedy", http.StatusOK, false},
		{"greedy", http.StatusOK, false},
		{"greedy", http.StatusTooManyRequests, true}, // its own cap
		{"greedy", http.StatusTooManyRequests, true},
		{"other", http.StatusOK, false}, // the rest stay for others
		{"third", http.StatusOK, false},
		{"other", http.StatusServiceUnavailable, false}, // the node's cap
	}
	for i, st := range steps {
		resp := open(st.client)
		if resp.StatusCode != st.want {
			t.Fatalf("step %d: %s got %d, want %d", i, st.client, resp.StatusCode, st.want)
		}
		if got := resp.Header.Get("Retry-After"); st.retryAfter && got == "" {
			t.Fatalf("step %d: %d without Retry-After", i, resp.StatusCode)
		}
		if resp.StatusCode == http.StatusOK {
			held = append(held, resp)
		}
	}
	if got := env.API.FeedMaxClientStreams(); got != 2 {
		t.Fatalf("FeedMaxClientStreams = %d, want 2", got)
	}
	// A stream that ends gives its client the slot back.
	held[0].Body.Close()
	held = held[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := open("greedy")
		if resp.StatusCode == http.StatusOK {
			held = append(held, resp)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("greedy still refused (%d) after closing a stream", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFeedUnauthorized: every refused credential on the feed answers 401
// with a Basic challenge (RFC 7235 section 4.1), also when the request
// sent no credentials at all, so a client knows how to authenticate.
func TestFeedUnauthorized(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{})
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: "rs", Name: "rs", Audiences: []string{"app"}, AccessTTL: time.Minute,
		SecretHash: session.HashClientSecret("secret")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		id, secret string // id "" sends no Authorization
	}{
		{"no credentials", "", ""},
		{"wrong secret", "rs", "wrong"},
		{"unknown client", "nobody", "secret"},
		{"public client", "app", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, accept := range []string{"application/json", "text/event-stream"} {
				r, _ := http.NewRequest("GET", srv.URL+"/v1/revocations", nil)
				r.Header.Set("Accept", accept)
				if tt.id != "" {
					r.SetBasicAuth(tt.id, tt.secret)
				}
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || got != `Basic realm="latch"` {
					t.Errorf("%s: %d, WWW-Authenticate %q; want 401 with Basic realm=\"latch\"", accept, resp.StatusCode, got)
				}
			}
		})
	}
}
