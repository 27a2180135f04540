package cli

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/admission"
	"github.com/latchauth/latch/internal/config"
	"github.com/latchauth/latch/internal/feed"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/logbuf"
	"github.com/latchauth/latch/internal/mail"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/token"
)

// changeListener is a store that hears every node's (and the CLI's)
// commits as they happen (PostgreSQL LISTEN/NOTIFY): revocations for the
// feed, client changes for the service's client cache, signing-key
// changes for the issuer. While it is connected those need no fast poll.
type changeListener interface {
	Listen(ctx context.Context, c postgres.Changes, log *slog.Logger)
}

// senderInterval is how often the mail sender reads the outbox unwoken:
// this node's commits wake it, its own retries are timed, so a poll only
// finds what another node dropped (it died holding a claim or a retry).
const senderInterval = 30 * time.Second

// BuiltinClientID is the first-party public client served out of the box.
const BuiltinClientID = "app"

// AccountClientID is the built-in web client of the account page
// (/account), on the issuer's own origin.
const AccountClientID = "account"

func runServe(ctx context.Context, args []string, s io3) error {
	var c config.Config
	fs := newFlags("serve", s)
	config.Serve(fs, &c)
	rest, err := parse(fs, args, &c)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: serve takes no arguments, got %q", ErrUsage, rest)
	}
	if err := c.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	if f, ok := s.stderr.(*os.File); ok {
		// One access line per request: batched, not one write each
		// (internal/logbuf). Tests hand in a buffer and read it unbatched.
		b := logbuf.New(f)
		defer b.Close()
		s.stderr = b
	}
	// The limit and GOGC are the process's: given back when serve
	// returns, for the tests that run it inside theirs.
	defer setGC(&c)()
	return serve(ctx, &c, ln, s)
}

// serveGCPercent is the GOGC serve runs with while a memory limit bounds
// the heap. A node's live heap is small (3 to 7 MB under refresh load), so
// at GOGC=100 the heap goal was 5 to 6 MB and the collector ran 118 times
// in 10,000 refreshes: 36 to 43 µs of the 400 to 500 µs of CPU a refresh
// costs (BenchmarkRefreshFloor's gc-cpu-µs/op, refresh row, PostgreSQL, 2
// cores, GOMEMLIMIT=108MiB, serve's limit there). At 400 it ran 32 times
// with a 16 MB goal, 7 to 9 µs a refresh; 800 saved 2 µs more for twice
// the heap. Logins are bounded by the limit
// either way (BenchmarkLoginHTTP gc=memory-limit: the same 104 MiB peak,
// 1.7% GC CPU against 3.0%, 43 page faults a hash against 291).
const serveGCPercent = 400

// setGC sets the runtime's soft memory limit (unless GOMEMLIMIT does) and,
// while some limit is in effect and GOGC is unset, serveGCPercent. It
// returns the function that restores both.
func setGC(c *config.Config) (restore func()) {
	limit, percent := int64(-1), -2 // -1 reads the limit; -2: GOGC untouched
	if !envMemoryLimit() {
		limit = debug.SetMemoryLimit(memoryLimit(c))
	}
	if !envGCPercent() && memoryLimitMiB() > 0 {
		percent = debug.SetGCPercent(serveGCPercent)
	}
	return func() {
		if percent != -2 {
			debug.SetGCPercent(percent)
		}
		debug.SetMemoryLimit(limit)
	}
}

// envGCPercent reports whether GOGC sets the collector's target, which
// then wins over serveGCPercent. As with GOMEMLIMIT, the runtime reads an
// empty GOGC as unset.
func envGCPercent() bool { return os.Getenv("GOGC") != "" }

// envMemoryLimit reports whether GOMEMLIMIT sets the runtime's limit. The
// runtime reads an empty GOMEMLIMIT as unset, so serve's own limit applies
// then too (GOMEMLIMIT=off is the way to run without one).
func envMemoryLimit() bool { return os.Getenv("GOMEMLIMIT") != "" }

// memoryLimitMiB is the runtime's soft memory limit in MiB, 0 for none.
func memoryLimitMiB() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l >> 20
	}
	return 0
}

// gcPercent is the collector's GOGC, -1 for off. It is read from
// runtime/metrics: debug.SetGCPercent would have to set it to read it, and
// for that moment the collector would run at another value.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0 // not reported by this runtime: unknown
	}
	// The runtime stores GOGC=off as -1 and reports it converted to
	// uint64; the conversion back gives -1 again.
	return int(int64(s[0].Value.Uint64()))
}

// memoryLimit is the node's soft memory limit: see password.MemoryLimit.
func memoryLimit(c *config.Config) int64 {
	slots, _ := c.HashSlots() // validated already
	return password.MemoryLimit(c.Argon2, slots)
}

// ConnMemory is the memory serve's limit allows each open connection: an
// idle keep-alive one measured 14.5 KiB (8 KiB of goroutine stack and 6.5
// KiB of heap: 4,000 of them added 58 MB to stack_inuse plus heap_inuse,
// plain HTTP, 2026-12-02). Requests in flight are within HeapBase.
const ConnMemory = 16 << 10

// connStep is how many connections open or close before the limit moves:
// 4 MiB at a time, not a runtime call per accept.
const connStep = 256

// connMemoryLimit is the memory limit with open connections: base, plus
// ConnMemory for each connection of the band of connStep that open is in,
// and of the band above, so the limit is ahead of the count, never behind.
func connMemoryLimit(base int64, open int) int64 {
	return base + int64((open/connStep+1)*connStep)*ConnMemory
}

// poolSizer is a store that knows its connection count (both do).
type poolSizer interface{ MaxConns() int }

// admissionLimits are the flags' caps, or where a flag is 0 the defaults
// derived from the machine and the store's pool.
func admissionLimits(c *config.Config, st any) admission.Limits {
	pool := 8
	if p, ok := st.(poolSizer); ok {
		pool = p.MaxConns()
	}
	l := admission.Defaults(pool)
	if c.MaxConnections > 0 {
		l.MaxConnections = c.MaxConnections
	}
	if c.MaxInFlight > 0 {
		l.MaxInFlight = c.MaxInFlight
	}
	return l
}

// serve runs the server on ln until ctx is done, then shuts down
// gracefully.
func serve(ctx context.Context, c *config.Config, ln net.Listener, s io3) error {
	sm := newServeMetrics(c)
	d, err := open(ctx, c, s, kekCreate, sm.storeOptions()...)
	if err != nil {
		return err
	}
	defer d.Close()
	limits := admissionLimits(c, d.store) // before instrument wraps the store
	sm.instrument(d)
	hub, err := feed.New(d.store, feed.Config{Interval: c.FeedPollInterval, Log: d.log})
	if err != nil {
		return err
	}
	// The feed wakes at once for this node's revocations; other nodes'
	// arrive by LISTEN/NOTIFY on PostgreSQL (changeListener below), or at
	// its next poll.
	opts, hooks, err := commitHooks(c, d.log, hub.Notify)
	if err != nil {
		return err
	}
	opts = append(opts, sm.sessionOptions()...)
	composer, transport, err := mailSetup(c, d.log)
	if err != nil {
		return err
	}
	// The sender exists before the service so that commits can wake it;
	// it learns its opener (the service) below.
	var sender *mail.Sender
	opts = append(opts, session.WithMail(composer, session.MailConfig{VerifyTTL: c.VerifyTTL, ResetTTL: c.ResetTTL, RequireVerified: c.RequireVerifiedEmail}),
		session.OnCommit(func(session.Committed) {
			if sender != nil {
				sender.Wake()
			}
		}))
	sessions, err := d.services(ctx, c.Issuer, c.RefreshGrace, c.RefreshLostWindow, c.SessionIdle, c.SessionMax, opts...)
	if err != nil {
		return err
	}
	sender = mail.NewSender(d.store, sessions, transport, d.log, mail.SenderConfig{Interval: senderInterval})
	if err := sessions.EnsureClient(ctx, session.Client{
		// First-party: the account audience beside its own, so its tokens
		// can manage the account (docs/design.md "Audiences").
		ID: BuiltinClientID, Name: "built-in first-party client", Audiences: c.BuiltinAudiences(), AccessTTL: c.AccessTTL,
		Grants: []string{session.GrantPassword, session.GrantRefresh},
	}); err != nil {
		return fmt.Errorf("register built-in client: %w", err)
	}
	if u, err := url.Parse(c.Issuer); err == nil {
		// The account page: cookie mode, requests from the issuer's own
		// origin only, tokens for the account audience only.
		if err := sessions.EnsureClient(ctx, session.Client{
			ID: AccountClientID, Name: "account page", Audiences: []string{c.AccountAudience}, AccessTTL: c.AccessTTL,
			Grants: []string{session.GrantPassword, session.GrantRefresh}, Web: true, Origins: []string{u.Scheme + "://" + u.Host},
		}); err != nil {
			return fmt.Errorf("register the account page's client: %w", err)
		}
	}

	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	go d.issuer.Run(bg)
	go sweep(bg, d, sessions, c)
	go hub.Run(bg)
	senderDone := make(chan struct{})
	go func() { defer close(senderDone); sender.Run(bg) }()
	// The sender hands back what it claimed but did not try, so a
	// restart sends it at once.
	defer func() { stopBG(); <-senderDone }()
	if l, ok := d.store.(changeListener); ok {
		go l.Listen(bg, postgres.Changes{
			Connected: func(up bool) {
				sessions.ClientChangesHeard(up)
				hub.Listening(up)
				if up {
					d.issuer.Notify() // a rotation while nobody listened
				}
			},
			Revoked: hub.Committed,
			Client:  sessions.ForgetClient,
			Keys:    d.issuer.Notify,
		}, d.log)
	}
	hooksDone := make(chan struct{})
	if hooks != nil {
		// Run returns after a bounded flush once bg ends.
		go func() { defer close(hooksDone); hooks.Run(bg) }()
	} else {
		close(hooksDone)
	}
	defer func() { stopBG(); <-hooksDone }()

	throttle, optional, closeThrottle, err := newThrottle(c, d.log)
	if err != nil {
		return err
	}
	defer closeThrottle()
	proxies, _ := c.ParsedTrustedProxies() // validated already
	apiCfg := httpapi.Config{MaxInFlight: limits.MaxInFlight, RequestTimeout: c.RequestTimeout, Throttle: throttle, CORSOrigins: c.CORSOriginList(), CORSCredentials: c.CORSCredentials, TrustedProxies: proxies, Issuer: c.Issuer, AccountAudience: c.AccountAudience, DefaultClientID: BuiltinClientID, AccountClientID: AccountClientID, Feed: hub,
		MaxFeedSubscribers: config.MaxFeedStreams, FeedStreamsPerClient: c.FeedStreamsPerClient, Optional: optional,
		SignupEnumerationSafe: c.SignupEnumerationSafe}
	if c.DPoPNonce {
		// Every node derives the same nonce key from the shared refresh
		// key, so a nonce from one is good at another.
		rk, err := token.RefreshKey(ctx, d.store, d.kek, time.Now())
		if err != nil {
			return err
		}
		m := hmac.New(sha256.New, rk)
		m.Write([]byte("latch dpop nonce key"))
		apiCfg.DPoPNonceKey = m.Sum(nil)
	}
	sm.api(&apiCfg)
	api := httpapi.New(apiCfg, sessions, d.issuer, d.store.Ping, d.log)
	if err := sm.running(api, hub, hooks); err != nil {
		return err
	}
	if c.DebugAddr != "" {
		stop, _, err := serveDebug(c.DebugAddr, d.log)
		if err != nil {
			return err
		}
		defer stop()
	}
	capped := admission.NewListener(ln, limits.MaxConnections, sm.shedConnection())
	if !envMemoryLimit() {
		// serve's memory limit (setGC) grows with the connections open:
		// each idle keep-alive one holds memory that no collection frees,
		// and a limit below what is live makes the collector run back to
		// back. Stopped before runServe restores the limit.
		base := memoryLimit(c)
		capped.OnStep(connStep, func(open int) { debug.SetMemoryLimit(connMemoryLimit(base, open)) })
		defer capped.OnStep(1, nil)
	}
	srv := newHTTPServer(api, c, capped)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(capped) }()
	d.log.Info("latch serving", "addr", ln.Addr().String(), "issuer", c.Issuer, "database", c.RedactedDatabase(),
		"access_ttl", c.AccessTTL.String(), "refresh_grace", c.RefreshGrace.String(), "refresh_lost_window", c.RefreshLostWindow.String(),
		"max_connections", limits.MaxConnections, "max_in_flight", limits.MaxInFlight, "db_acquire_timeout", c.DBAcquireTimeout.String(),
		"argon2_slots", sessions.HashSlots(), "memory_limit_mib", memoryLimitMiB(), "gc_percent", gcPercent())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	d.log.Info("shutting down")
	api.Close() // end the revocation-feed streams, which Shutdown would wait for
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Detached work (forgot-password, enumeration-safe signup) finishes
	// before storage closes, once no request can add more.
	defer api.WaitDetached()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveDebug serves Go's profiler on addr (loopback, checked by
// config.Validate), apart from the API so that it is never exposed with it.
// It returns the address it listens on.
func serveDebug(addr string, log *slog.Logger) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("--debug-addr: %w", err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		// A name such as localhost is checked where it resolved.
		ln.Close()
		return nil, "", fmt.Errorf("--debug-addr %s: listening on %s, not a loopback address", addr, ln.Addr())
	}
	mux := http.NewServeMux()
	// Not pprof.Cmdline: the command line may hold --key-encryption-key,
	// --webhook-secret or a database password. (pprof.Index answers 404
	// for it.)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: loopbackHost(mux), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("profiler serving (--debug-addr)", "addr", ln.Addr().String())
	return func() { srv.Close() }, ln.Addr().String(), nil
}

// loopbackHost refuses requests whose Host is not a loopback address or
// localhost: a page whose name is rebound to 127.0.0.1 (DNS rebinding)
// would otherwise read the profiler from a browser on the same machine.
func loopbackHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if ip := net.ParseIP(strings.Trim(host, "[]")); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// newHTTPServer is the server of the API, with the timeouts that make a
// slow client the client's problem: the headers within 5 s (or the read
// timeout, if shorter) and the whole request within --read-timeout (a
// body still arriving then is answered 408), the answer within the
// request timeout plus a margin, and idle keep-alive connections closed
// after 2 minutes (or sooner, by the listener, when it needs room).
func newHTTPServer(h http.Handler, c *config.Config, ln *admission.Listener) *http.Server {
	read := c.ReadTimeout
	if read <= 0 {
		read = 10 * time.Second
	}
	req := c.RequestTimeout
	if req <= 0 {
		req = httpapi.DefaultRequestTimeout
	}
	return &http.Server{
		Handler:           h,
		ConnContext:       httpapi.ConnContext, // a refresh checks whether its client left
		ReadHeaderTimeout: min(5*time.Second, read),
		ReadTimeout:       read,
		WriteTimeout:      read + req + 5*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnState:         ln.ConnState,
		ErrorLog:          nil,
	}
}

// mailSetup builds the message composer (templates, --app-url links) and
// the transport: SMTP with --smtp-url, else the log, with a warning, so
// that `latch serve` with no flags still walks through every flow.
func mailSetup(c *config.Config, log *slog.Logger) (*mail.Composer, mail.Transport, error) {
	links := mail.DefaultLinks(c.Issuer)
	if c.AppURL != "" {
		var err error
		if links, err = mail.ParseLinks(c.AppURL); err != nil {
			return nil, nil, err
		}
	}
	composer, err := mail.NewComposer(links, c.EmailTemplates)
	if err != nil {
		return nil, nil, fmt.Errorf("--email-templates: %w", err)
	}
	if c.SMTPURL == "" {
		log.Warn("no SMTP server configured (--smtp-url): account email (verification, password reset) is written to this log, links included; fine for development, never for production")
		return composer, mail.Log{Logger: log}, nil
	}
	smtp, err := mail.NewSMTP(mail.SMTPConfig{URL: c.SMTPURL, From: c.EmailFrom})
	if err != nil {
		return nil, nil, err
	}
	if c.EmailFromDefaulted {
		log.Warn("--email-from not given: sending as " + c.EmailFrom + "; mail servers may refuse a sender domain that does not exist, set --email-from for production")
	}
	addr, security := smtp.Describe()
	log.Info("account email goes through SMTP", "server", addr, "tls", security)
	return composer, smtp, nil
}

// sweep deletes stale sessions, feed entries and retired keys every
// SweepInterval until ctx is done.
func sweep(ctx context.Context, d *deps, sessions *session.Service, c *config.Config) {
	t := time.NewTicker(c.SweepInterval)
	defer t.Stop()
	for {
		n, err := sessions.Sweep(ctx, c.Retention)
		if err == nil {
			_, err = d.issuer.PruneRetired(ctx)
		}
		if err != nil && ctx.Err() == nil {
			d.log.Warn("sweep", "err", err)
		} else if n > 0 {
			d.log.Info("swept sessions", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newThrottle builds the rate limiter: per process, or shared through Redis
// with a per-process fallback while Redis is unreachable. With Redis it
// also returns Redis's readiness check.
func newThrottle(c *config.Config, log *slog.Logger) (httpapi.Throttle, []httpapi.Dependency, func(), error) {
	if !c.RateLimit {
		log.Warn("rate limiting is off (--rate-limit=false): logins are limited only by password-hash capacity")
		return nil, nil, func() {}, nil
	}
	report := ratelimit.WithOnBackendError(func(err error) {
		log.Warn("rate-limit store unreachable; limiting per process until it answers", "err", err)
	})
	policy := ratePolicy(c.Rates)
	if c.Redis == "" {
		t, err := ratelimit.New(ratelimit.NewMemory(), policy)
		return t, nil, func() {}, err
	}
	opt, err := redis.ParseURL(c.Redis)
	if err != nil {
		return nil, nil, nil, errors.New("--redis: not a redis:// URL")
	}
	// go-redis logs through a process-wide logger, by default as plain
	// text on stderr; send it through slog so that stderr stays JSON.
	redis.SetLogger(redisLogger{log})
	// Short timeouts: a slow Redis must not slow logins; the throttle
	// falls back to per-process limits instead.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 250*time.Millisecond, 250*time.Millisecond, 250*time.Millisecond
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = 0
	client := redis.NewClient(opt)
	t, err := ratelimit.New(ratelimit.NewRedis(client, "latch:rl:"), policy, report)
	if err != nil {
		client.Close()
		return nil, nil, nil, err
	}
	ready := httpapi.Dependency{Name: "redis", Check: func(ctx context.Context) error { return client.Ping(ctx).Err() }}
	return t, []httpapi.Dependency{ready}, func() { client.Close() }, nil
}

// redisLogger is go-redis's logger on slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

// ratePolicy is the default policy with the buckets of the --rate-* flags.
func ratePolicy(r config.Rates) ratelimit.Policy {
	p := ratelimit.DefaultPolicy()
	for _, b := range []struct {
		dst *ratelimit.Bucket
		src config.Rate
	}{
		{&p.LoginPerIP, r.LoginIP}, {&p.LoginPerAccount, r.LoginAccount}, {&p.LoginPerDevice, r.LoginDevice},
		{&p.SignupPerIP, r.SignupIP}, {&p.RefreshPerIP, r.RefreshIP},
		{&p.EmailPerIP, r.EmailIP}, {&p.EmailPerAddress, r.EmailAddress},
	} {
		*b.dst = ratelimit.Bucket{Every: b.src.Every(), Burst: b.src.Burst}
	}
	return p
}
