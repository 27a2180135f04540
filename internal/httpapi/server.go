// Package httpapi is Latch's HTTP API: routing, request decoding, response
// shapes and the mapping of domain errors to statuses. Business rules live
// in the session and token packages.
package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/feed"
	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/token"
)

// Config configures the API.
type Config struct {
	// Issuer is the public base URL; metadata and endpoints derive from it,
	// never from the request's Host header.
	Issuer string
	// DefaultClientID is used when a request names no client.
	DefaultClientID string
	// AccountAudience is the aud an access token must hold to call the
	// account endpoints (docs/design.md "Audiences"); default the token
	// issuer's iss (the issuer URL).
	AccountAudience string
	// Feed serves GET /v1/revocations; nil answers 404 there.
	Feed *feed.Hub
	// FeedHeartbeat is the interval of SSE heartbeat comments (default 15s),
	// by which subscribers measure how stale their copy is.
	FeedHeartbeat time.Duration
	// MaxFeedSubscribers caps concurrent SSE streams (default 1024).
	MaxFeedSubscribers int
	// FeedStreamsPerClient caps one client's concurrent SSE streams
	// (default 16), so one credential cannot take every slot and keep
	// other resource servers from hearing of logouts.
	FeedStreamsPerClient int
	// Throttle limits logins (password changes count as logins), signups
	// and refreshes; nil limits nothing.
	Throttle Throttle
	// CORSOrigins are the exact browser origins allowed to call the API;
	// empty sends no CORS headers. CORSCredentials adds
	// Access-Control-Allow-Credentials for them (off by default); the
	// origins of web clients always get it (cookie.go).
	CORSOrigins     []string
	CORSCredentials bool
	// AccountClientID, when set, serves the account page at /account as
	// that built-in web client (its one origin: the issuer's).
	AccountClientID string
	// RefreshCookieMaxAge is the Max-Age of a web client's refresh cookie
	// (default: the sessions' idle lifetime).
	RefreshCookieMaxAge time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// taking the client IP for rate limits and audit.
	TrustedProxies []netip.Prefix
	// Observer, if set, is told every request's route, status and latency
	// and every throttled login and password change (internal/metrics
	// implements it).
	Observer Observer
	// Metrics, if set, is served at GET /metrics without authentication;
	// operators keep that path off the public network.
	Metrics http.Handler
	// MaxInFlight caps the requests served at once (revocation-feed
	// streams, /healthz and /metrics aside, which have their own bounds or
	// cost nothing); one more is answered 503 with Retry-After at once, so
	// overload is shed rather than queued. 0: no cap.
	MaxInFlight int
	// RequestTimeout bounds each request's work, every storage call it
	// makes included: a frozen database answers 503 after it rather than
	// holding the request forever (default 10s; feed streams aside).
	RequestTimeout time.Duration
	// DPoPNonceKey, when set, makes every DPoP proof carry a server nonce
	// (RFC 9449 section 8), made and checked with this key; nodes that
	// share it accept each other's nonces. Nil: no nonce is asked for.
	DPoPNonceKey []byte
	// Optional are dependencies the node can serve without, degraded (the
	// Redis of shared rate limits: each node limits on its own while it is
	// down). GET /readyz names each one's state, and a failing one makes
	// the status "degraded" but not 503: taking every node out of the load
	// balancer because a dependency it can do without is down would turn
	// a degraded service into an outage.
	Optional []Dependency
	// SignupEnumerationSafe makes POST /v1/signup answer 202 for every
	// address: a new one gets an account and a verification link, an
	// existing one a notice (--signup-enumeration-safe).
	SignupEnumerationSafe bool
}

// Dependency is a named check of an optional dependency for GET /readyz.
type Dependency struct {
	Name  string
	Check func(context.Context) error
}

// Observer receives measurements of the API. Its methods are called on the
// request's goroutine: they must be cheap and safe for concurrent use.
type Observer interface {
	// Request reports one request once its handler returned: route is the
	// matched mux pattern ("POST /oauth/token"; "/" for unknown paths;
	// "none" when no route ran, as for CORS preflights), never the path.
	Request(route, method string, status int, d time.Duration)
	// LoginThrottled reports a password login refused by the throttle.
	LoginThrottled()
	// PasswordChangeThrottled reports a password change refused by the
	// throttle.
	PasswordChangeThrottled()
	// Shed reports a request refused for overload before any work: reason
	// is ShedInFlight (MaxInFlight reached) or ShedConnections (the
	// connection cap, reported by the server's listener).
	Shed(reason string)
}

// Reasons reported to Observer.Shed.
const (
	ShedInFlight    = "in_flight"
	ShedConnections = "connections"
)

// Throttle is the rate limiting the API needs (internal/ratelimit provides
// it). Decisions are keyed on what the client sent, never on whether an
// account exists.
type Throttle interface {
	Login(ctx context.Context, account, ip string) (ratelimit.Decision, error)
	// DeviceLogin is Login for a login whose device token the session
	// service found valid for account; device is its id, "" for none.
	DeviceLogin(ctx context.Context, account, ip, device string) (ratelimit.Decision, error)
	LoginFailed(ctx context.Context, account, ip string) error
	LoginSucceeded(ctx context.Context, account, ip string) error
	Signup(ctx context.Context, ip string) (ratelimit.Decision, error)
	Refresh(ctx context.Context, ip string) (ratelimit.Decision, error)
	// Email limits requests that send a message to address ("" for none)
	// or use a link.
	Email(ctx context.Context, address, ip string) (ratelimit.Decision, error)
}

// Server serves the API. Build it with New; it is safe for concurrent use.
type Server struct {
	cfg      Config
	sessions *session.Service
	issuer   *token.Issuer
	ready    func(context.Context) error
	log      *slog.Logger
	mux      *http.ServeMux
	patterns []string // every route, for Routes

	https  bool
	origin string // the issuer's own origin (scheme://host[:port])

	cookies    cookieMode // web clients' refresh cookie (cookie.go)
	webOrigins webOrigins

	// verifiers holds one *bearer.Verifier per audience: the account
	// audience and those of clients calling introspection.
	verifiers sync.Map
	// dpop checks DPoP proofs, at the token endpoints and, shared with
	// the verifiers (one jti replay cache per process), at the account
	// endpoints.
	dpop *bearer.DPoPChecker

	// inflight holds one token per request being served (MaxInFlight).
	inflight chan struct{}

	feedSubs     atomic.Int64
	feedMu       sync.Mutex
	feedByClient map[string]int // open streams per client id
	done         chan struct{}
	closed       atomic.Bool
	// bg counts the work detached from requests (detach), which Close
	// waits for.
	bg sync.WaitGroup
}

// New returns a Server. ready reports whether storage is reachable.
func New(cfg Config, sessions *session.Service, issuer *token.Issuer, ready func(context.Context) error, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultClientID == "" {
		cfg.DefaultClientID = "app"
	}
	if cfg.AccountAudience == "" {
		// The issuer URL, as the tokens' iss spells it.
		cfg.AccountAudience = issuer.Issuer()
	}
	if cfg.FeedHeartbeat <= 0 {
		cfg.FeedHeartbeat = defaultFeedHeartbeat
	}
	if cfg.MaxFeedSubscribers <= 0 {
		cfg.MaxFeedSubscribers = defaultMaxFeedSubscribers
	}
	if cfg.FeedStreamsPerClient <= 0 {
		cfg.FeedStreamsPerClient = DefaultFeedStreamsPerClient
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	s := &Server{cfg: cfg, sessions: sessions, issuer: issuer, ready: ready, log: log, mux: http.NewServeMux(), done: make(chan struct{}), feedByClient: map[string]int{},
		https: strings.HasPrefix(cfg.Issuer, "https://"), cookies: newCookieMode(cfg.Issuer, cmp.Or(cfg.RefreshCookieMaxAge, sessions.Config().Idle))}
	if cfg.MaxInFlight > 0 {
		s.inflight = make(chan struct{}, cfg.MaxInFlight)
	}
	if u, err := url.Parse(cfg.Issuer); err == nil {
		s.origin = u.Scheme + "://" + u.Host
	}
	if !s.cookies.secure {
		log.Info("cookie mode on an http:// loopback issuer (development): web clients' refresh cookies are sent without Secure and the __Host- prefix, which browsers refuse over http; use an https issuer anywhere else")
	}
	dc := bearer.DPoPConfig{Now: issuer.VerifierConfig(cfg.AccountAudience).Now}
	if cfg.DPoPNonceKey != nil {
		dc.Nonce = &nonces{key: cfg.DPoPNonceKey, period: noncePeriod, now: time.Now}
	}
	d, err := bearer.NewDPoPChecker(dc)
	if err != nil {
		panic(err) // the default algorithms are valid
	}
	s.dpop = d
	s.routes()
	return s
}

// DefaultRequestTimeout is Config.RequestTimeout's default: above the
// storage's own bounds (PostgreSQL's statement timeout, 5s), so they
// answer first, and below the server's write timeout.
const DefaultRequestTimeout = 10 * time.Second

// InFlight returns the number of requests being served under MaxInFlight.
func (s *Server) InFlight() int { return len(s.inflight) }

// FeedSubscribers returns the number of open revocation-feed streams.
func (s *Server) FeedSubscribers() int64 { return s.feedSubs.Load() }

// FeedMaxClientStreams returns the most open revocation-feed streams any
// one client holds: near FeedStreamsPerClient, that client is about to be
// refused.
func (s *Server) FeedMaxClientStreams() int {
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	n := 0
	for _, c := range s.feedByClient {
		n = max(n, c)
	}
	return n
}

// Close ends the open revocation-feed streams (http.Server.Shutdown does
// not wait for them otherwise).
func (s *Server) Close() {
	if s.closed.CompareAndSwap(false, true) {
		close(s.done)
	}
}

// WaitDetached waits for the work requests detached (the lookups and
// writes of forgot-password and enumeration-safe signup). Call it once no
// request is served any more (after http.Server.Shutdown): each piece is
// bounded by its own 30 s timeout.
func (s *Server) WaitDetached() { s.bg.Wait() }

func (s *Server) routes() {
	h := s.handle
	s.route("POST /v1/signup", h(s.signup))
	s.route("POST /v1/login", h(s.login))
	s.route("POST /oauth/token", h(s.token))
	s.route("POST /oauth/revoke", h(s.revoke))
	s.route("POST /oauth/introspect", h(s.introspect))
	s.route("GET /v1/revocations", s.stream(s.revocations))
	s.route("POST /v1/logout", h(s.authed(s.logout)))
	s.route("GET /v1/sessions", h(s.authed(s.listSessions)))
	s.route("DELETE /v1/sessions/{id}", h(s.authed(s.deleteSession)))
	s.route("POST /v1/password", h(s.authed(s.changePassword)))
	s.route("GET /v1/me", h(s.authed(s.getMe)))
	s.route("PATCH /v1/me", h(s.authed(s.patchMe)))
	s.route("DELETE /v1/me", h(s.authed(s.deleteMe)))
	s.route("POST /v1/email/verify/request", h(s.authed(s.requestVerification)))
	s.route("POST /v1/email/verify", h(s.verifyEmail))
	s.route("POST /v1/email/change", h(s.authed(s.changeEmail)))
	s.route("POST /v1/password/forgot", h(s.forgotPassword))
	s.route("POST /v1/password/reset", h(s.resetPassword))
	s.pageRoutes()
	s.route("GET /.well-known/jwks.json", h(s.jwks))
	s.route("GET /.well-known/oauth-authorization-server", h(s.metadata))
	s.route("GET /openapi.json", h(s.openAPI))
	s.route("GET /healthz", s.stream(s.healthz)) // not shed: liveness must answer under load
	s.route("GET /readyz", h(s.readyz))
	s.adminRoutes()
	if s.cfg.Metrics != nil {
		s.route(metricsRoute, s.cfg.Metrics)
	}
	s.accountRoutes()
	s.mux.Handle("/", h(s.notFound)) // not a route: the answer to everything else
}

// route registers pattern and records it for Routes.
func (s *Server) route(pattern string, h http.Handler) {
	s.patterns = append(s.patterns, pattern)
	s.mux.Handle(pattern, h)
}

// Routes returns the "METHOD /path" patterns the API serves (the OpenAPI
// document must describe exactly these).
func (s *Server) Routes() []string { return slices.Clone(s.patterns) }

// notFound answers paths no route matches, and known paths asked with
// another method (405 with Allow, RFC 9110 section 15.5.6), in the one
// JSON error shape.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return apiError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed; use "+strings.Join(allow, " or "))
	}
	return apiError(http.StatusNotFound, CodeNotFound, "no such endpoint")
}

// handle adapts an error-returning handler: it admits the request under
// MaxInFlight (or sheds it), bounds it by RequestTimeout, and answers its
// error in the one shape (serve). Every route but the feed's streams and
// liveness goes through it.
func (s *Server) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.inflight != nil {
			select {
			case s.inflight <- struct{}{}:
				defer func() { <-s.inflight }()
			default:
				s.shed(w, r)
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		s.serve(w, r.WithContext(ctx), fn)
	})
}

// stream adapts a handler that is neither capped by MaxInFlight nor bound
// by RequestTimeout: the revocation feed's long-lived streams (capped
// apart) and liveness.
func (s *Server) stream(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, fn) })
}

// overloaded is the answer to a request over MaxInFlight.
var overloaded = &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable,
	Message: "server overloaded; retry shortly", RetryAfter: time.Second, Err: errors.New("httpapi: requests in flight at the cap")}

// shed refuses a request over MaxInFlight before reading it: no storage,
// no hashing, one counter. It is not logged per request beyond the access
// log: under overload that would add work where there is none to spare.
func (s *Server) shed(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Shed(ShedInFlight)
	}
	// The body is not read; net/http discards it (Latch's are small) and
	// keeps the connection, so a shed client does not pay for a new one.
	w.Header().Set("Cache-Control", "no-store")
	writeError(w, overloaded)
}

// serve runs fn and answers its error in the one shape. A client that left
// is logged below ERROR and recorded as StatusClientClosedRequest, so a
// client hanging up never counts as a server failure.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, fn func(http.ResponseWriter, *http.Request) error) {
	w.Header().Set("Cache-Control", "no-store")
	err := fn(w, r)
	if err == nil {
		return
	}
	// A body cut short or too slow is that fault, even though net/http
	// has cancelled the context of a connection that ended or timed out.
	if requestCanceled(r) && !errors.Is(err, errClientGone) && !errors.Is(err, errTruncatedBody) && !errors.Is(err, errBodyTimeout) {
		err = fmt.Errorf("%w: %w", errClientGone, err)
	}
	e := toError(r.Pattern, err)
	id := requestIDFrom(r.Context())
	switch {
	case e.Status == StatusClientClosedRequest:
		s.log.Info("client gone", "request_id", id, "method", r.Method, "path", r.URL.Path, "err", err)
		if sw, ok := w.(*statusWriter); ok {
			sw.status = StatusClientClosedRequest // what the log and metrics record
		}
		// Most likely nobody reads this; a client that only half-closed
		// its connection learns it was its fault (else net/http would send
		// an empty 200).
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: e.Message})
		return
	case errors.Is(err, session.ErrBusy):
		// Shed for overload: a node at capacity, not a failure.
		s.log.Warn("request shed", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", err)
	case errors.Is(err, session.ErrStale):
		// A client that left or sent its refresh too long ago, not a server
		// fault; the session service logs it at Info.
		s.log.Debug("request stale", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.Status)
	case e.Status >= 500:
		s.log.Error("request failed", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", err)
	case e.Status == http.StatusRequestTimeout || errors.Is(err, errTruncatedBody):
		s.log.Info("request body not received", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", err)
	default:
		s.log.Debug("request rejected", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.Status, "code", e.Code)
	}
	writeError(w, e)
}

// requestCanceled reports whether r's client closed its connection: net/http
// cancels the request's context then (and at server shutdown, when the
// answer no longer matters either).
func requestCanceled(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

func writeError(w http.ResponseWriter, e *Error) {
	switch {
	case e.RetryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	case e.Status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	if e.Challenge != "" {
		w.Header().Set("WWW-Authenticate", e.Challenge)
	}
	// RFC 6749 section 5.2 error object; used by every endpoint so clients
	// parse one shape.
	writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (s *Server) meta(r *http.Request) session.Meta {
	info, ok := r.Context().Value(requestKey).(requestInfo)
	ip := info.ip
	if !ok { // a handler reached without ServeHTTP (not in production)
		ip = s.clientIP(r)
	}
	// Stored as text: PostgreSQL refuses invalid UTF-8, so a header
	// carrying it, or a cut through a character, would fail the refresh
	// (and, in a batch, send its neighbours again one by one).
	ua := strings.ToValidUTF8(r.UserAgent(), "\uFFFD")
	if len(ua) > 512 {
		ua = ua[:512]
		for !utf8.ValidString(ua) {
			ua = ua[:len(ua)-1]
		}
	}
	return session.Meta{IP: ip, UserAgent: ua}
}

// tokenResponse is the RFC 6749 section 5.1 response plus session_id.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// SessionID is absent from a client-credentials response: no session.
	SessionID string  `json:"session_id,omitempty"`
	Scope     *string `json:"scope,omitempty"`
	// DeviceToken marks this client as a returning device at its next
	// login (docs/design.md "Returning devices").
	DeviceToken string `json:"device_token,omitempty"`
}

// writeTokens writes a token response. The scope is named when the token
// has one or when the client asked for one (RFC 6749 section 5.1: required
// if it differs from the request).
func writeTokens(w http.ResponseWriter, status int, t session.Tokens, requested string) error {
	// RFC 6749 section 5.1: responses carrying tokens are not cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	typ := "Bearer"
	if t.DPoPJKT != "" {
		typ = "DPoP" // RFC 9449 section 5
	}
	resp := tokenResponse{
		AccessToken: t.AccessToken, TokenType: typ, ExpiresIn: t.ExpiresIn,
		RefreshToken: t.RefreshToken, SessionID: t.SessionID, DeviceToken: t.DeviceToken,
	}
	if t.Scope != "" || requested != "" {
		resp.Scope = &t.Scope
	}
	return writeJSON(w, status, resp)
}
