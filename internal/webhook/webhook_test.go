package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// fakeTime is the Sender's clock and sleep: sleeping records the wait and
// advances the clock at once.
type fakeTime struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeTime() *fakeTime { return &fakeTime{now: time.Unix(1_760_000_000, 0)} }

func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeTime) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

// delivery is one request a receiver saw.
type delivery struct {
	path   string
	header http.Header
	body   []byte
	verify error // Verify at the fake time of receipt
}

// receiver is an httptest endpoint answering with respond(n) for its n-th
// request (from 0) and recording every request.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	seen []delivery
}

func newReceiver(t *testing.T, ft *fakeTime, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.seen)
		rc.seen = append(rc.seen, delivery{path: r.URL.Path, header: r.Header.Clone(), body: body,
			verify: Verify(testSecret, r.Header, body, ft.Now(), 0)})
		rc.mu.Unlock()
		respond(n, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) Seen() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.seen...)
}

func newSender(t *testing.T, url string, ft *fakeTime, cfg Config, opts ...Option) *Sender {
	t.Helper()
	cfg.URL = url
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	s, err := New(cfg, append([]Option{WithClock(ft.Now), WithSleep(ft.Sleep)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// run starts s.Run and returns a function that stops it and waits.
func run(t *testing.T, s *Sender) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitSettled waits until n events are delivered or failed.
func waitSettled(t *testing.T, s *Sender, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Delivered()+s.Failed() < n {
		if time.Now().After(deadline) {
			t.Fatalf("settled %d+%d events, want %d", s.Delivered(), s.Failed(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

var reuse = audit.Event{
	At:        time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.FixedZone("CET", 3600)),
	Type:      audit.RefreshReuse,
	UserID:    "u-1",
	SessionID: "s-1",
	ClientID:  "web",
	IP:        "203.0.113.9",
	UserAgent: "Firefox/140",
	Detail:    "generation 3 of 5 presented, 2h old",
}

func TestDeliverySignedPayload(t *testing.T) {
	ft := newFakeTime()
	rc := newReceiver(t, ft, func(int, http.ResponseWriter, *http.Request) {})
	s := newSender(t, rc.URL+"/hook", ft, Config{})
	run(t, s)
	s.Send(reuse)
	waitSettled(t, s, 1)

	seen := rc.Seen()
	if len(seen) != 1 {
		t.Fatalf("requests = %d, want 1", len(seen))
	}
	d := seen[0]
	if d.verify != nil {
		t.Fatalf("Verify = %v, want nil", d.verify)
	}
	if got := d.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got, want := d.header.Get(HeaderTimestamp), "1760000000"; got != want {
		t.Errorf("timestamp = %q, want %q", got, want)
	}
	var p map[string]string
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatalf("body %s: %v", d.body, err)
	}
	want := map[string]string{
		"id":         d.header.Get(HeaderID),
		"type":       "refresh.reuse",
		"at":         "2026-03-01T11:30:45.123456Z",
		"user_id":    "u-1",
		"session_id": "s-1",
		"client_id":  "web",
		"ip":         "203.0.113.9",
		"user_agent": "Firefox/140",
		"detail":     "generation 3 of 5 presented, 2h old",
	}
	if len(p) != len(want) {
		t.Errorf("payload has %d fields, want %d: %s", len(p), len(want), d.body)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("payload[%q] = %q, want %q", k, p[k], v)
		}
	}
	if len(p["id"]) != 32 {
		t.Errorf("id %q: want 32 hex digits", p["id"])
	}
	if got := s.Delivered(); got != 1 {
		t.Errorf("Delivered = %d, want 1", got)
	}
}

func TestRetryPolicy(t *testing.T) {
	type answer struct {
		status     int
		retryAfter string
		location   string
	}
	raDate := newFakeTime().Now().Add(130 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name        string
		cfg         Config
		answers     []answer // the last one repeats
		wantReqs    int
		wantOK      bool
		wantSleeps  []time.Duration // nil: only bounds are checked
		wantNoSleep bool
	}{
		{name: "500 twice then 200", answers: []answer{{status: 500}, {status: 502}, {status: 200}}, wantReqs: 3, wantOK: true},
		{name: "204 is delivered", answers: []answer{{status: 204}}, wantReqs: 1, wantOK: true, wantNoSleep: true},
		{name: "429 honours Retry-After seconds", answers: []answer{{status: 429, retryAfter: "7"}, {status: 200}},
			wantReqs: 2, wantOK: true, wantSleeps: []time.Duration{7 * time.Second}},
		{name: "429 Retry-After capped at backoff max", cfg: Config{BackoffMax: time.Minute},
			answers:  []answer{{status: 429, retryAfter: "86400"}, {status: 200}},
			wantReqs: 2, wantOK: true, wantSleeps: []time.Duration{time.Minute}},
		{name: "503 honours Retry-After date", answers: []answer{{status: 503, retryAfter: raDate}, {status: 200}},
			wantReqs: 2, wantOK: true, wantSleeps: []time.Duration{130 * time.Second}},
		{name: "429 without Retry-After backs off", answers: []answer{{status: 429}, {status: 200}}, wantReqs: 2, wantOK: true},
		{name: "408 retried", answers: []answer{{status: 408}, {status: 200}}, wantReqs: 2, wantOK: true},
		{name: "400 not retried", answers: []answer{{status: 400}}, wantReqs: 1, wantNoSleep: true},
		{name: "401 not retried", answers: []answer{{status: 401}}, wantReqs: 1, wantNoSleep: true},
		{name: "410 not retried", answers: []answer{{status: 410}}, wantReqs: 1, wantNoSleep: true},
		{name: "redirect not followed", answers: []answer{{status: 302, location: "/elsewhere"}}, wantReqs: 1, wantNoSleep: true},
		{name: "307 not followed", answers: []answer{{status: 307, location: "/elsewhere"}}, wantReqs: 1, wantNoSleep: true},
		{name: "attempts exhausted", cfg: Config{MaxAttempts: 4}, answers: []answer{{status: 500}}, wantReqs: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := newFakeTime()
			rc := newReceiver(t, ft, func(n int, w http.ResponseWriter, r *http.Request) {
				a := tt.answers[min(n, len(tt.answers)-1)]
				if a.retryAfter != "" {
					w.Header().Set("Retry-After", a.retryAfter)
				}
				if a.location != "" {
					w.Header().Set("Location", a.location)
				}
				w.WriteHeader(a.status)
				_, _ = io.WriteString(w, strings.Repeat("ignored ", 20000))
			})
			s := newSender(t, rc.URL+"/hook", ft, tt.cfg)
			run(t, s)
			s.Send(reuse)
			waitSettled(t, s, 1)

			seen := rc.Seen()
			if len(seen) != tt.wantReqs {
				t.Fatalf("requests = %d, want %d", len(seen), tt.wantReqs)
			}
			for i, d := range seen {
				if d.path != "/hook" {
					t.Errorf("request %d to %q, want /hook (redirect followed?)", i, d.path)
				}
				if d.verify != nil {
					t.Errorf("request %d: Verify = %v, want nil", i, d.verify)
				}
				if got, want := d.header.Get(HeaderID), seen[0].header.Get(HeaderID); got != want {
					t.Errorf("request %d id = %q, want %q (same across attempts)", i, got, want)
				}
				if !bytes.Equal(d.body, seen[0].body) {
					t.Errorf("request %d body changed across attempts", i)
				}
			}
			wantDelivered, wantFailed := uint64(0), uint64(1)
			if tt.wantOK {
				wantDelivered, wantFailed = 1, 0
			}
			if got := s.Delivered(); got != wantDelivered {
				t.Errorf("Delivered = %d, want %d", got, wantDelivered)
			}
			if got := s.Failed(); got != wantFailed {
				t.Errorf("Failed = %d, want %d", got, wantFailed)
			}
			sleeps := ft.Sleeps()
			if len(sleeps) != tt.wantReqs-1 {
				t.Fatalf("sleeps = %v, want %d", sleeps, tt.wantReqs-1)
			}
			if tt.wantSleeps != nil {
				for i := range sleeps {
					if sleeps[i] != tt.wantSleeps[i] {
						t.Errorf("sleep %d = %s, want %s", i, sleeps[i], tt.wantSleeps[i])
					}
				}
				return
			}
			for i, d := range sleeps {
				if ceil := DefaultBackoffBase << i; d < 0 || d >= ceil {
					t.Errorf("sleep %d = %s, want in [0, %s)", i, d, ceil)
				}
			}
		})
	}
}

func TestNetworkErrorsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/hook"
	ln.Close() // connection refused from now on
	ft := newFakeTime()
	s := newSender(t, url, ft, Config{MaxAttempts: 3})
	run(t, s)
	s.Send(reuse)
	waitSettled(t, s, 1)
	if got := s.Failed(); got != 1 {
		t.Errorf("Failed = %d, want 1", got)
	}
	if got := len(ft.Sleeps()); got != 2 {
		t.Errorf("sleeps = %d, want 2 (3 attempts)", got)
	}
}

func TestAttemptTimeout(t *testing.T) {
	ft := newFakeTime()
	release := make(chan struct{})
	rc := newReceiver(t, ft, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	})
	defer close(release)
	s := newSender(t, rc.URL, ft, Config{Timeout: 50 * time.Millisecond})
	run(t, s)
	s.Send(reuse)
	waitSettled(t, s, 1)
	if got := s.Delivered(); got != 1 {
		t.Errorf("Delivered = %d, want 1 (after a timed-out attempt)", got)
	}
	if got := len(rc.Seen()); got != 2 {
		t.Errorf("requests = %d, want 2", got)
	}
}

func TestTypeFilter(t *testing.T) {
	all := []string{audit.LoginSucceeded, audit.LoginFailed, audit.Signup, audit.RefreshLost, audit.RefreshReuse,
		audit.Logout, audit.SessionRevoked, audit.PasswordChanged, audit.UserDisabled, audit.TokenRevoked}
	tests := []struct {
		name  string
		types []string
		want  []string
	}{
		{name: "default", want: []string{audit.RefreshLost, audit.RefreshReuse, audit.SessionRevoked, audit.PasswordChanged, audit.UserDisabled}},
		{name: "configured", types: []string{audit.LoginFailed, audit.Logout}, want: []string{audit.LoginFailed, audit.Logout}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := newFakeTime()
			rc := newReceiver(t, ft, func(int, http.ResponseWriter, *http.Request) {})
			s := newSender(t, rc.URL, ft, Config{Types: tt.types})
			for _, typ := range append(all, "unknown.type") {
				s.Send(audit.Event{Type: typ})
			}
			run(t, s)
			waitSettled(t, s, uint64(len(tt.want)))
			got := map[string]bool{}
			for _, d := range rc.Seen() {
				var p struct{ Type string }
				if err := json.Unmarshal(d.body, &p); err != nil {
					t.Fatal(err)
				}
				got[p.Type] = true
			}
			if len(got) != len(tt.want) {
				t.Errorf("sent %v, want %v", got, tt.want)
			}
			for _, w := range tt.want {
				if !got[w] {
					t.Errorf("%s not sent; sent %v", w, got)
				}
			}
		})
	}
}

func TestQueueFullDropsWithoutBlocking(t *testing.T) {
	ft := newFakeTime()
	rc := newReceiver(t, ft, func(int, http.ResponseWriter, *http.Request) {})
	var logs lockedBuffer
	s := newSender(t, rc.URL, ft, Config{QueueSize: 2}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	start := time.Now()
	for range 100 {
		s.Send(reuse) // nothing drains: Run has not started
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 Sends took %s; Send must not block", d)
	}
	if got := s.Dropped(); got != 98 {
		t.Errorf("Dropped = %d, want 98", got)
	}
	if got := strings.Count(logs.String(), "event dropped"); got != 1 {
		t.Errorf("%d drop warnings, want 1 (rate-limited):\n%s", got, logs.String())
	}
	run(t, s)
	waitSettled(t, s, 2)
	if got := s.Delivered(); got != 2 {
		t.Errorf("Delivered = %d, want 2 (the queued events)", got)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means success
	}{
		{name: "https", cfg: Config{URL: "https://hooks.example.com/latch"}},
		{name: "http loopback v4", cfg: Config{URL: "http://127.0.0.1:8080/hook"}},
		{name: "http loopback 127/8", cfg: Config{URL: "http://127.1.2.3/hook"}},
		{name: "http loopback v6", cfg: Config{URL: "http://[::1]:9000/"}},
		{name: "http localhost", cfg: Config{URL: "http://LocalHost:9000/"}},
		{name: "http remote host refused", cfg: Config{URL: "http://hooks.example.com/latch"}, wantErr: "must use https"},
		{name: "http remote IP refused", cfg: Config{URL: "http://10.0.0.1/latch"}, wantErr: "must use https"},
		{name: "http localhost lookalike refused", cfg: Config{URL: "http://localhost.example.com/"}, wantErr: "must use https"},
		{name: "other scheme", cfg: Config{URL: "ftp://example.com/"}, wantErr: "scheme must be https"},
		{name: "no URL", cfg: Config{}, wantErr: "URL is required"},
		{name: "no host", cfg: Config{URL: "https:///path"}, wantErr: "needs a host"},
		{name: "user info", cfg: Config{URL: "https://u:p@example.com/"}, wantErr: "user info"},
		{name: "short secret", cfg: Config{URL: "https://example.com/", Secret: make([]byte, 31)}, wantErr: "at least 32 bytes"},
		{name: "unknown type", cfg: Config{URL: "https://example.com/", Types: []string{"refresh.resue"}}, wantErr: `unknown event type "refresh.resue"`},
		{name: "negative queue", cfg: Config{URL: "https://example.com/", QueueSize: -1}, wantErr: "queue size"},
		{name: "backoff inverted", cfg: Config{URL: "https://example.com/", BackoffBase: time.Hour}, wantErr: "backoff max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Secret == nil {
				tt.cfg.Secret = testSecret
			}
			_, err := New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ft := newFakeTime()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	rc := newReceiver(t, ft, func(_ int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select { // hang until the sender gives up or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	s := newSender(t, rc.URL, ft, Config{FlushTimeout: 100 * time.Millisecond})
	stop := run(t, s)
	s.Send(reuse)
	<-arrived
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %s to return, want about the flush timeout", d)
	}
	if got := s.Dropped(); got != 1 {
		t.Errorf("Dropped = %d, want 1 (in flight at shutdown)", got)
	}
	if err := s.Run(t.Context()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	s.Send(reuse)
	if got := s.Dropped(); got != 2 {
		t.Errorf("Dropped = %d, want 2 (Send after Run returned)", got)
	}
}

func TestShutdownFlush(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		wantDelivered uint64
		wantDropped   uint64
	}{
		{name: "receiver up", status: 200, wantDelivered: 3},
		{name: "receiver failing: one attempt each", status: 500, wantDropped: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := newFakeTime()
			rc := newReceiver(t, ft, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tt.status) })
			s := newSender(t, rc.URL, ft, Config{})
			for range 3 {
				s.Send(reuse)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := s.Run(ctx); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if got := len(rc.Seen()); got != 3 {
				t.Errorf("requests = %d, want 3", got)
			}
			if got := s.Delivered(); got != tt.wantDelivered {
				t.Errorf("Delivered = %d, want %d", got, tt.wantDelivered)
			}
			if got := s.Dropped(); got != tt.wantDropped {
				t.Errorf("Dropped = %d, want %d", got, tt.wantDropped)
			}
			if len(ft.Sleeps()) != 0 {
				t.Errorf("slept %v during flush, want no waits", ft.Sleeps())
			}
		})
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	ft := newFakeTime()
	rc := newReceiver(t, ft, func(n int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	var logs lockedBuffer
	s := newSender(t, rc.URL+"/T0KEN-in-path?key=QUERYKEY", ft, Config{MaxAttempts: 2},
		WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	run(t, s)
	s.Send(reuse)
	waitSettled(t, s, 1)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s2 := newSender(t, "http://"+addr+"/T0KEN-in-path", ft, Config{MaxAttempts: 1},
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	run(t, s2)
	s2.Send(reuse)
	waitSettled(t, s2, 1)

	out := logs.String()
	sig := rc.Seen()[0].header.Get(HeaderSignature)
	for _, secret := range []string{string(testSecret), sig, strings.TrimPrefix(sig, "v1="), "T0KEN", "QUERYKEY"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"id=" + rc.Seen()[0].header.Get(HeaderID), "type=refresh.reuse", "attempt=2", "status=500", "connection refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
}

func TestWithHTTPClientNeverRedirects(t *testing.T) {
	ft := newFakeTime()
	rc := newReceiver(t, ft, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	follows := &http.Client{} // default policy follows redirects
	s := newSender(t, rc.URL+"/hook", ft, Config{}, WithHTTPClient(follows))
	run(t, s)
	s.Send(reuse)
	waitSettled(t, s, 1)
	if got := len(rc.Seen()); got != 1 {
		t.Errorf("requests = %d, want 1", got)
	}
	if follows.CheckRedirect != nil {
		t.Error("the caller's client was modified")
	}
}

func TestBackoff(t *testing.T) {
	base, hi := time.Second, 5*time.Minute
	for n := 1; n <= 70; n++ {
		ceil := hi
		if n <= 9 {
			ceil = base << (n - 1) // 256 s at n = 9; 512 s exceeds the max
		}
		for range 200 {
			if d := backoff(n, base, hi); d < 0 || d >= ceil {
				t.Fatalf("backoff(%d) = %s, want in [0, %s)", n, d, ceil)
			}
		}
	}
	if d := backoff(3, 0, 0); d != 0 {
		t.Errorf("backoff with zero base = %s, want 0", d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Unix(1_760_000_000, 0)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{"-5", 0, false},
		{"soon", 0, false},
		{"99999999999999999", time.Duration(1<<63 - 1), true},
		{now.Add(time.Minute).UTC().Format(http.TimeFormat), time.Minute, true},
		{now.Add(-time.Minute).UTC().Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// lockedBuffer is a log sink shared by goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
