// Package webhook posts security events to an operator-configured HTTPS
// endpoint, signed with HMAC-SHA256 and retried with backoff, so that an
// application can warn its user (a stolen refresh token, a password change).
//
// Delivery is at-least-once while the process lives. The queue is in memory:
// events queued when the process dies are lost, and the audit table remains
// the record. Receivers dedupe on the event id. docs/webhooks.md describes the
// wire format for receivers.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultQueueSize    = 1024
	DefaultMaxAttempts  = 8
	DefaultTimeout      = 5 * time.Second
	DefaultBackoffBase  = time.Second
	DefaultBackoffMax   = 5 * time.Minute
	DefaultFlushTimeout = 5 * time.Second
	// MinSecretLen is the shortest accepted signing secret, in bytes.
	MinSecretLen = 32
	// workers is the number of delivery goroutines Run starts.
	workers = 2
	// maxResponseBody bounds how much of a response is read (then discarded).
	maxResponseBody = 64 << 10
	// dropWarnEvery rate-limits the "queue full" warning.
	dropWarnEvery = 10 * time.Second
)

// DefaultTypes returns the audit event types sent when [Config.Types] is
// empty: the events after which an application would warn its user. Routine
// events (logins, logouts, signups, token revocation by a client) are left
// out, and so is [audit.LoginFailed]: anyone can cause it in bulk, and a
// flood of it would fill the queue and push out the theft events that matter.
// [audit.RefreshSuspiciousGrace] is out for the same reason: every user holds
// their own refresh token and can replay its parent within the grace window
// with a new user agent each time, one event per request for up to L.
func DefaultTypes() []string {
	return []string{
		audit.RefreshReuse,
		audit.RefreshLost,
		audit.PasswordChanged,
		audit.UserDisabled,
		audit.SessionRevoked,
		// The account lifecycle: only the account's holder (a link, a
		// password) can cause these, so they cannot be flooded.
		audit.PasswordReset,
		audit.EmailChanged,
		audit.UserDeleted,
	}
}

// knownTypes are the audit event types a Config may name; a typo in the
// operator's list must not silently turn a notification off.
var knownTypes = map[string]bool{
	audit.LoginSucceeded:  true,
	audit.LoginFailed:     true,
	audit.Signup:          true,
	audit.RefreshLost:     true,
	audit.RefreshReuse:    true,
	audit.Logout:          true,
	audit.SessionRevoked:  true,
	audit.PasswordChanged: true,
	audit.UserDisabled:    true,
	audit.TokenRevoked:    true,

	audit.RefreshSuspiciousGrace: true,
	audit.PasswordChangeFailed:   true,

	// Operators' actions, sent by the admin command that made them.
	audit.UserEnabled:         true,
	audit.ClientDeleted:       true,
	audit.ClientSecretRotated: true,
	audit.KeysRotated:         true,
	audit.KeysRewrapped:       true,

	audit.UserUpdated:            true,
	audit.EmailVerifyRequested:   true,
	audit.EmailVerified:          true,
	audit.EmailChangeRequested:   true,
	audit.EmailChanged:           true,
	audit.PasswordResetRequested: true,
	audit.PasswordReset:          true,
	audit.UserDeleted:            true,
	audit.AccountDeleteFailed:    true,
	audit.EmailChangeFailed:      true,

	// Admin changes (docs/design.md "Admin API and claims").
	audit.UserCreated:   true,
	audit.ClientCreated: true,
	audit.ClientUpdated: true,
}

// Config configures a [Sender]. Zero durations and sizes take the Default
// values above.
type Config struct {
	// URL receives the POSTs. It must be https, except that plain http is
	// allowed to a loopback host (localhost, 127.0.0.0/8, ::1) for a local
	// relay or tests. Only its host is ever logged: paths of webhook URLs
	// often carry credentials.
	URL string
	// Secret keys the HMAC-SHA256 signature; at least MinSecretLen bytes.
	Secret []byte
	// Types lists the audit event types to send; empty means DefaultTypes().
	Types []string
	// QueueSize bounds the events waiting for delivery; beyond it Send drops.
	QueueSize int
	// MaxAttempts bounds the delivery attempts per event, the first included.
	MaxAttempts int
	// Timeout bounds one attempt: connect, send, and response headers.
	Timeout time.Duration
	// BackoffBase and BackoffMax shape the wait before retry n (n = 1, 2,
	// ...): uniform in [0, min(BackoffMax, BackoffBase·2^(n-1))) ("full
	// jitter"). BackoffMax also caps a server's Retry-After.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// FlushTimeout bounds the best-effort flush when Run's context ends.
	FlushTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = DefaultFlushTimeout
	}
	if len(c.Types) == 0 {
		c.Types = DefaultTypes()
	}
	return c
}

// validate checks a Config that has had its defaults applied.
func (c Config) validate() (*url.URL, error) {
	u, err := checkURL(c.URL)
	if err != nil {
		return nil, err
	}
	switch {
	case len(c.Secret) < MinSecretLen:
		return nil, fmt.Errorf("webhook: secret must be at least %d bytes, got %d", MinSecretLen, len(c.Secret))
	case c.QueueSize < 0:
		return nil, errors.New("webhook: queue size must not be negative")
	case c.MaxAttempts < 0:
		return nil, errors.New("webhook: max attempts must not be negative")
	case c.Timeout < 0:
		return nil, errors.New("webhook: timeout must not be negative")
	case c.BackoffBase < 0 || c.BackoffMax < 0:
		return nil, errors.New("webhook: backoff must not be negative")
	case c.BackoffMax < c.BackoffBase:
		return nil, fmt.Errorf("webhook: backoff max (%s) must not be below backoff base (%s)", c.BackoffMax, c.BackoffBase)
	case c.FlushTimeout < 0:
		return nil, errors.New("webhook: flush timeout must not be negative")
	}
	for _, t := range c.Types {
		if !knownTypes[t] {
			return nil, fmt.Errorf("webhook: unknown event type %q", t)
		}
	}
	return u, nil
}

func checkURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("webhook: URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("webhook: URL does not parse")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("webhook: URL needs a host")
	}
	if u.User != nil {
		return nil, errors.New("webhook: URL must not carry user info; the signature authenticates Latch")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("webhook: URL must use https (plain http is allowed only to a loopback host, not %q)", u.Hostname())
		}
	default:
		return nil, fmt.Errorf("webhook: URL scheme must be https, not %q", u.Scheme)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Option configures a [Sender].
type Option func(*Sender)

// WithHTTPClient sets the client used for deliveries (for a proxy or custom
// TLS roots). The Sender uses a copy whose redirect policy refuses every
// redirect, and bounds each attempt with [Config.Timeout] on its own.
func WithHTTPClient(c *http.Client) Option { return func(s *Sender) { s.client = c } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Sender) { s.log = l } }

// WithClock sets the time source for signature timestamps.
func WithClock(now func() time.Time) Option { return func(s *Sender) { s.clock = now } }

// WithSleep sets how the Sender waits between attempts. sleep must return
// early with a non-nil error when ctx is done. Tests use it to skip waits.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(s *Sender) { s.sleep = sleep }
}

// Sender queues audit events and delivers them to the webhook URL. Send is
// safe for concurrent use; Run delivers until its context ends.
type Sender struct {
	cfg    Config
	url    string
	host   string
	types  map[string]bool
	client *http.Client
	log    *slog.Logger
	clock  func() time.Time
	sleep  func(context.Context, time.Duration) error

	queue chan job

	mu      sync.RWMutex // guards stopped against Send's enqueue
	stopped bool
	running atomic.Bool

	delivered atomic.Uint64
	failed    atomic.Uint64
	dropped   atomic.Uint64
	lastWarn  atomic.Int64 // unix nanoseconds of the last "dropped" warning
}

// job is one event ready to go: its id and body are fixed across attempts.
type job struct {
	id   string
	typ  string
	body []byte
}

// payload is the JSON body of a delivery.
type payload struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	At        string `json:"at"`
	UserID    string `json:"user_id"`
	SessionID string `json:"session_id"`
	ClientID  string `json:"client_id"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Detail    string `json:"detail"`
	// Actor is the admin client behind a change made through the admin
	// API (absent otherwise).
	Actor string `json:"actor,omitempty"`
}

// New returns a Sender for cfg. It fails on an invalid configuration: a
// missing or short secret, a non-https URL to a non-loopback host, an
// unknown event type, or a negative size or duration.
func New(cfg Config, opts ...Option) (*Sender, error) {
	cfg = cfg.withDefaults()
	u, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	s := &Sender{
		cfg:   cfg,
		url:   u.String(),
		host:  u.Host,
		types: make(map[string]bool, len(cfg.Types)),
		log:   slog.New(slog.DiscardHandler),
		clock: time.Now,
		sleep: sleepCtx,
		queue: make(chan job, cfg.QueueSize),
	}
	for _, t := range cfg.Types {
		s.types[t] = true
	}
	for _, o := range opts {
		o(s)
	}
	c := http.Client{}
	if s.client != nil {
		c = *s.client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Timeout = 0 // each attempt carries its own deadline
	s.client = &c
	return s, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Send queues e for delivery if its type is configured. It never blocks:
// when the queue is full, or after Run has returned, the event is dropped,
// counted in [Sender.Dropped] and logged (at most one warning per 10 s).
// Call it after the transaction that recorded e has committed. Events sent
// before Run starts wait in the queue.
func (s *Sender) Send(e audit.Event) {
	if !s.types[e.Type] {
		return
	}
	j, err := newJob(e)
	if err != nil {
		s.log.Error("webhook: encode event", "type", e.Type, "err", err)
		s.failed.Add(1)
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.stopped {
		select {
		case s.queue <- j:
			return
		default:
		}
	}
	n := s.dropped.Add(1)
	s.warnDropped(j, n)
}

func (s *Sender) warnDropped(j job, total uint64) {
	now := s.clock().UnixNano()
	last := s.lastWarn.Load()
	if last != 0 && now-last < int64(dropWarnEvery) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("webhook: queue full or stopped, event dropped", "id", j.id, "type", j.typ, "dropped_total", total)
}

func newJob(e audit.Event) (job, error) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	id := hex.EncodeToString(b[:])
	body, err := json.Marshal(payload{
		ID:        id,
		Type:      e.Type,
		At:        e.At.UTC().Format(time.RFC3339Nano),
		UserID:    e.UserID,
		SessionID: e.SessionID,
		ClientID:  e.ClientID,
		IP:        e.IP,
		UserAgent: e.UserAgent,
		Detail:    e.Detail,
		Actor:     e.Actor,
	})
	return job{id: id, typ: e.Type, body: body}, err
}

// Delivered returns the number of events a receiver accepted (2xx).
func (s *Sender) Delivered() uint64 { return s.delivered.Load() }

// Failed returns the number of events given up on: refused by the receiver
// (a 4xx other than 408 and 429, or a redirect) or still failing after
// MaxAttempts.
func (s *Sender) Failed() uint64 { return s.failed.Load() }

// Dropped returns the number of events discarded without a final answer:
// the queue was full, or the process was shutting down.
func (s *Sender) Dropped() uint64 { return s.dropped.Load() }

// ErrRunning is returned by [Sender.Run] when the Sender is already running
// or has run.
var ErrRunning = errors.New("webhook: Run called twice")

// Run delivers queued events with two workers until ctx is done, then
// flushes: each event still queued, or waiting for a retry, gets one more
// attempt, for at most FlushTimeout in all (an attempt in flight when ctx
// ends may finish within that time too). Events left after that are counted
// as dropped. Run returns nil once the workers have stopped; afterwards
// Send drops. Run may be called once.
func (s *Sender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	// Attempts use dctx: it outlives ctx by FlushTimeout, so a delivery in
	// progress at shutdown can finish.
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.cfg.FlushTimeout, cancel)
		context.AfterFunc(dctx, func() { t.Stop() })
	})
	defer stop()

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { s.work(ctx, dctx) })
	}
	wg.Wait()

	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	var left int
	for {
		select {
		case <-s.queue:
			left++
			continue
		default:
		}
		break
	}
	if left > 0 {
		s.dropped.Add(uint64(left))
		s.log.Warn("webhook: events not delivered at shutdown", "count", left)
	}
	return nil
}

func (s *Sender) work(ctx, dctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			s.flush(dctx)
			return
		case j := <-s.queue:
			if ctx.Err() != nil { // both were ready: shutdown rules apply
				s.lastChance(dctx, j, 0)
				continue
			}
			s.deliver(ctx, dctx, j)
		}
	}
}

// flush gives each queued event one attempt until the queue is empty or dctx
// ends.
func (s *Sender) flush(dctx context.Context) {
	for dctx.Err() == nil {
		select {
		case j := <-s.queue:
			s.lastChance(dctx, j, 0)
		default:
			return
		}
	}
}
