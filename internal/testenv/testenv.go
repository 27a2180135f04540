// Package testenv builds a complete Latch stack (SQLite store in a temp
// dir, signing keys, session service, HTTP API) for tests, with a fake
// clock. It is imported only by tests.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/feed"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/mail"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/rtoken"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/token"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d (which may be negative: a clock step).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Store is the storage a stack runs on: SQLite by default, or what
// Options.Store returns (the conformance suite passes PostgreSQL).
type Store interface {
	session.Store
	feed.Source
	token.Store
	Ping(ctx context.Context) error
	Close() error
}

// Options adjust the stack; zero values take the defaults in New.
type Options struct {
	Grace, LostWindow, Idle, MaxLifetime, AccessTTL time.Duration
	// NoLostWindow sets L to 0 (LostWindow 0 means the default otherwise).
	NoLostWindow bool
	// WrapStore lets a test put a fault-injecting store in front of SQLite,
	// between it and the session service (the feed reads the store itself).
	WrapStore func(session.Store) session.Store
	// RealClock uses time.Now instead of the fake clock (for tests through
	// HTTP clients that check expiry against the wall clock).
	RealClock bool
	Dir       string
	// Store, when set, returns the empty, migrated store to run on instead
	// of a SQLite file in Dir.
	Store func(testing.TB) Store
	// OnCommit, if set, is installed as a session.OnCommit hook.
	OnCommit func(session.Committed)
	// Observer, if set, is installed with session.WithObserver.
	Observer session.Observer
	// AuditRetention is session.Config.AuditRetention (0: keep forever).
	AuditRetention time.Duration
	// Argon2 overrides FastArgon2 (benchmarks use password.OWASP).
	Argon2 password.Params
	// HashSlots is the hasher's concurrency (default 4; latch serve runs
	// password.Slots, one per core by default).
	HashSlots int
	// API adjusts the HTTP API's configuration (throttle, CORS, proxies).
	API func(*httpapi.Config)
	// Log receives the API's and the session service's logs.
	Log *slog.Logger
	// FeedInterval is the revocation feed's poll interval (default 250ms).
	FeedInterval time.Duration
	// FeedHeartbeat is the SSE heartbeat interval (default 15s).
	FeedHeartbeat time.Duration
	// MaxFeedSubscribers caps SSE streams (default 1024).
	MaxFeedSubscribers int
	// AcquireWait is the SQLite store's wait for its writer (default 10s,
	// not the server's 250ms: tests must not be shed by a busy machine).
	AcquireWait time.Duration
	// Mail configures the account email flows (link lifetimes, verified
	// addresses required), which are on unless NoMail; messages stay in
	// the outbox for Env.Mail to read.
	Mail   session.MailConfig
	NoMail bool
	// KEK is the key-encryption key (default random): two Envs on one
	// store (two nodes) need the same one to open each other's keys.
	KEK []byte
}

// Env is a running stack.
type Env struct {
	Store    Store
	Issuer   *token.Issuer
	Sessions *session.Service
	Codec    *rtoken.Codec
	Clock    *Clock
	// Client is the built-in public client "app" (password and refresh).
	Client  session.Client
	Handler http.Handler
	// API is Handler as the concrete server.
	API *httpapi.Server
	// Feed is the revocation-feed hub; it runs until the test ends.
	Feed   *feed.Hub
	Config session.Config
	Dir    string
	now    func() time.Time
}

// FastArgon2 keeps tests quick; production uses password.OWASP.
var FastArgon2 = password.Params{MemoryKiB: 8 * 1024, Iterations: 1, Parallelism: 1}

// Issuer is the iss of test tokens.
const Issuer = "http://latch.test"

// New builds a stack whose clock starts at 2026-01-01T00:00:00Z.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Grace, 30*time.Second)
	def(&o.LostWindow, 24*time.Hour)
	def(&o.Idle, 30*24*time.Hour)
	def(&o.AccessTTL, 15*time.Minute)
	if o.NoLostWindow {
		o.LostWindow = 0
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	var st Store
	if o.Store != nil {
		st = o.Store(t)
	} else {
		// The acquire wait sheds load by design; a test's burst on a
		// machine busy with other tests must not be shed (TestShedding
		// sets AcquireWait to test the shedding).
		wait := o.AcquireWait
		if wait == 0 {
			wait = 10 * time.Second
		}
		db, err := sqlite.Open(ctx, filepath.Join(o.Dir, "latch.db"), sqlite.WithLimits(sqlite.Limits{AcquireWait: wait}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		st = db
	}
	clock := NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := clock.Now
	if o.RealClock {
		now = time.Now
	}
	kekBytes := o.KEK
	if kekBytes == nil {
		kekBytes = make([]byte, keywrap.KeySize)
		rand.Read(kekBytes)
	}
	kek, _ := keywrap.New(kekBytes)
	iss, err := token.New(st, kek, token.Config{Issuer: Issuer, Alg: "EdDSA", JWKSMaxAge: 5 * time.Minute,
		LongestAccessTTL: o.AccessTTL, Leeway: 30 * time.Second, ReloadInterval: time.Second}, token.WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Init(ctx); err != nil {
		t.Fatal(err)
	}
	rk, err := token.RefreshKey(ctx, st, kek, now())
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := rtoken.New(rk)
	if o.Argon2 == (password.Params{}) {
		o.Argon2 = FastArgon2
	}
	if o.HashSlots == 0 {
		o.HashSlots = 4
	}
	hasher, err := password.NewHasher(o.Argon2, o.HashSlots)
	if err != nil {
		t.Fatal(err)
	}
	var store session.Store = st
	if o.WrapStore != nil {
		store = o.WrapStore(st)
	}
	cfg := session.Config{Grace: o.Grace, LostWindow: o.LostWindow, Idle: o.Idle, MaxLifetime: o.MaxLifetime, LongestAccessTTL: o.AccessTTL,
		AuditRetention: o.AuditRetention}
	def(&o.FeedInterval, 250*time.Millisecond)
	hub, err := feed.New(st, feed.Config{Interval: o.FeedInterval, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	opts := []session.Option{session.WithClock(now), session.OnCommit(func(c session.Committed) {
		if len(c.Revoked) > 0 {
			hub.Notify()
		}
	})}
	if o.OnCommit != nil {
		opts = append(opts, session.OnCommit(o.OnCommit))
	}
	if o.Log != nil {
		opts = append(opts, session.WithLogger(o.Log))
	}
	if o.Observer != nil {
		opts = append(opts, session.WithObserver(o.Observer))
	}
	if !o.NoMail {
		composer, err := mail.NewComposer(mail.DefaultLinks(Issuer), "")
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, session.WithMail(composer, o.Mail))
	}
	svc, err := session.New(store, iss, codec, hasher, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// The built-in client's own audience and the account audience (the
	// issuer), as latch serve registers it.
	client := session.Client{ID: "app", Name: "app", Audiences: []string{"app", Issuer}, AccessTTL: o.AccessTTL,
		Grants: []string{session.GrantPassword, session.GrantRefresh}}
	if err := svc.EnsureClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	client, _ = st.Client(ctx, "app")
	apiCfg := httpapi.Config{Issuer: Issuer, DefaultClientID: "app", Feed: hub, FeedHeartbeat: o.FeedHeartbeat, MaxFeedSubscribers: o.MaxFeedSubscribers}
	if o.API != nil {
		o.API(&apiCfg)
	}
	h := httpapi.New(apiCfg, svc, iss, st.Ping, o.Log)
	fctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(fctx) }()
	t.Cleanup(func() { h.Close(); h.WaitDetached(); stop(); <-done })
	return &Env{Store: st, Issuer: iss, Sessions: svc, Codec: codec, Clock: clock, Client: client, Handler: h, API: h, Feed: hub, Config: cfg, Dir: o.Dir, now: now}
}

// Mail takes every message due in the outbox, as a sender would, and
// returns them opened, oldest first.
func (e *Env) Mail(t testing.TB) []session.Content {
	t.Helper()
	o, ok := e.Store.(mail.Outbox)
	if !ok {
		t.Fatal("testenv: the store has no outbox")
	}
	var out []session.Content
	for {
		batch, err := o.ClaimMessages(context.Background(), e.now(), time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			c, err := e.Sessions.OpenMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.MessageSent(context.Background(), m.ID); err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		if len(batch) < 100 {
			return out
		}
	}
}

// LinkToken returns the token of the link in a message's text ("" if
// none).
func LinkToken(c session.Content) string {
	m := linkToken.FindStringSubmatch(c.Text)
	if m == nil {
		return ""
	}
	return m[1]
}

var linkToken = regexp.MustCompile(`[?&]token=(latch_(?:ev|pr)_[A-Za-z0-9_-]+)`)

// Login signs up email with a fixed password and returns a fresh
// session's tokens.
func (e *Env) Login(t testing.TB, email string) session.Tokens {
	t.Helper()
	_, tok, err := e.Sessions.Signup(context.Background(), session.SignupRequest{
		Email: email, Password: Password, Login: true, Client: e.Client})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Login2 starts another session of an existing user (signed up by
// Login).
func (e *Env) Login2(t testing.TB, email string) session.Tokens {
	t.Helper()
	tok, _, err := e.Sessions.Login(context.Background(), session.LoginRequest{Email: email, Password: Password, Client: e.Client})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Verify checks an access token as Latch's introspection does: bearer's
// verifier for the account audience (Issuer), keys from memory, the
// stack's clock, whatever the token's DPoP binding (the claims say it).
func (e *Env) Verify(tok string) (*bearer.Claims, error) {
	v, err := bearer.New(context.Background(), e.Issuer.VerifierConfig(Issuer))
	if err != nil {
		return nil, err
	}
	return v.Inspect(context.Background(), tok)
}

// Password is the password Login uses.
const Password = "correct horse battery staple"

// LogBuffer collects log output written from many goroutines (a server's
// handlers, a child process's reader) for a test to read.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// servingLine is what `latch serve` logs once it listens.
var servingLine = regexp.MustCompile(`"msg":"latch serving","addr":"([^"]+)"`)

// WaitServing waits up to 10 s for an in-process `latch serve`, whose log
// goes to logs and whose exit is reported on done, to listen, and returns
// its base URL. The test fails if the server exits or never listens.
func WaitServing(t testing.TB, logs *LogBuffer, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := servingLine.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("server did not start:\n%s", logs)
	return ""
}

// Eventually polls cond until it holds, failing the test after d. It waits
// on a condition a test can observe, not a guessed duration: use it where
// there is no event to wait for (a slot released when a handler returns).
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
