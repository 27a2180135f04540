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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// Access-Control-Allow-Credentials (off by default: Latch uses no
	// cookies).
	CORSOrigins     []string
	CORSCredentials bool
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
	// Optional are dependencies the node can serve without, degraded (the
	// Redis of shared rate limits: each node limits on its own while it is
	// down). GET /readyz names each one's state, and a failing one makes
	// the status "degraded" but not 503: taking every node out of the load
	// balancer because a dependency it can do without is down would turn
	// a degraded service into an outage.
	Optional []Dependency
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
}

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
}

// Server serves the API. Build it with New; it is safe for concurrent use.
type Server struct {
	cfg      Config
	sessions *session.Service
	issuer   *token.Issuer
	ready    func(context.Context) error
	log      *slog.Logger
	mux      *http.ServeMux

	https  bool
	origin string // the issuer's own origin (scheme://host[:port])

	cookies    cookieMode // web clients' refresh cookie (cookie.go)
	webOrigins webOrigins

	// verifiers holds one *bearer.Verifier per audience: the account
	// audience and those of clients calling introspection.
	verifiers sync.Map

	feedSubs     atomic.Int64
	feedMu       sync.Mutex
	feedByClient map[string]int // open streams per client id
	done         chan struct{}
	closed       atomic.Bool
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
	s := &Server{cfg: cfg, sessions: sessions, issuer: issuer, ready: ready, log: log, mux: http.NewServeMux(), done: make(chan struct{}), feedByClient: map[string]int{},
		https: strings.HasPrefix(cfg.Issuer, "https://"), cookies: newCookieMode(cfg.Issuer, cmp.Or(cfg.RefreshCookieMaxAge, sessions.Config().Idle))}
	if u, err := url.Parse(cfg.Issuer); err == nil {
		s.origin = u.Scheme + "://" + u.Host
	}
	if !s.cookies.secure {
		log.Info("cookie mode on an http:// loopback issuer (development): web clients' refresh cookies are sent without Secure and the __Host- prefix, which browsers refuse over http; use an https issuer anywhere else")
	}
	s.routes()
	return s
}

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

func (s *Server) routes() {
	h := s.handle
	s.mux.Handle("POST /v1/signup", h(s.signup))
	s.mux.Handle("POST /v1/login", h(s.login))
	s.mux.Handle("POST /oauth/token", h(s.token))
	s.mux.Handle("POST /oauth/revoke", h(s.revoke))
	s.mux.Handle("POST /oauth/introspect", h(s.introspect))
	s.mux.Handle("GET /v1/revocations", h(s.revocations))
	s.mux.Handle("POST /v1/logout", h(s.authed(s.logout)))
	s.mux.Handle("GET /v1/sessions", h(s.authed(s.listSessions)))
	s.mux.Handle("DELETE /v1/sessions/{id}", h(s.authed(s.deleteSession)))
	s.mux.Handle("POST /v1/password", h(s.authed(s.changePassword)))
	s.mux.Handle("GET /.well-known/jwks.json", h(s.jwks))
	s.mux.Handle("GET /.well-known/oauth-authorization-server", h(s.metadata))
	s.mux.Handle("GET /healthz", h(s.healthz))
	s.mux.Handle("GET /readyz", h(s.readyz))
	if s.cfg.Metrics != nil {
		s.mux.Handle(metricsRoute, s.cfg.Metrics)
	}
	s.mux.Handle("/", h(s.notFound))
}

// notFound answers paths no route matches, and known paths asked with
// another method (405 with Allow, RFC 9110 section 15.5.6), in the one
// JSON error shape.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
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

// handle adapts an error-returning handler: it sets the headers every
// response shares and writes the one error shape.
func (s *Server) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		err := fn(w, r)
		if err == nil {
			return
		}
		e := toError(err)
		id := requestIDFrom(r.Context())
		if e.Status >= 500 {
			s.log.Error("request failed", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", err)
		} else {
			s.log.Debug("request rejected", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.Status, "code", e.Code)
		}
		switch {
		case e.RetryAfter > 0:
			w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
		case e.Status == http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, e)
	})
}

func writeError(w http.ResponseWriter, e *Error) {
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
	ua := r.UserAgent()
	if len(ua) > 512 {
		ua = ua[:512]
	}
	return session.Meta{IP: ip, UserAgent: ua}
}

// tokenResponse is the RFC 6749 section 5.1 response plus session_id.
type tokenResponse struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    int64   `json:"expires_in"`
	RefreshToken string  `json:"refresh_token,omitempty"`
	SessionID    string  `json:"session_id"`
	Scope        *string `json:"scope,omitempty"`
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
	resp := tokenResponse{
		AccessToken: t.AccessToken, TokenType: "Bearer", ExpiresIn: t.ExpiresIn,
		RefreshToken: t.RefreshToken, SessionID: t.SessionID, DeviceToken: t.DeviceToken,
	}
	if t.Scope != "" || requested != "" {
		resp.Scope = &t.Scope
	}
	return writeJSON(w, status, resp)
}

// clientByID loads a client named in a JSON request (first-party endpoints).
func (s *Server) clientByID(ctx context.Context, id string) (session.Client, error) {
	if id == "" {
		id = s.cfg.DefaultClientID
	}
	c, err := s.sessions.Client(ctx, id)
	if errors.Is(err, session.ErrNotFound) {
		return c, apiError(http.StatusUnauthorized, CodeInvalidClient, "unknown client")
	}
	if err == nil && c.Confidential() {
		// Confidential clients authenticate at /oauth/token.
		return c, apiError(http.StatusUnauthorized, CodeInvalidClient, "confidential clients must use /oauth/token with client authentication")
	}
	return c, err
}

// ---- authenticated account endpoints ----

type caller struct {
	claims  bearer.Claims
	session session.Session
}

// verifier returns the verifier of Latch's access tokens for audience aud:
// bearer's, the one resource servers run, with the keys from the issuer's
// memory, so Latch and its resource servers apply one set of rules
// (docs/design.md "Audiences"). One is built per audience and kept.
func (s *Server) verifier(aud string) (*bearer.Verifier, error) {
	if v, ok := s.verifiers.Load(aud); ok {
		return v.(*bearer.Verifier), nil
	}
	// No I/O: with keys in memory and no feed, New only checks the config.
	v, err := bearer.New(context.Background(), s.issuer.VerifierConfig(aud))
	if err != nil {
		return nil, fmt.Errorf("httpapi: verifier for %q: %w", aud, err)
	}
	got, _ := s.verifiers.LoadOrStore(aud, v)
	return got.(*bearer.Verifier), nil
}

// verify checks an access token for audience aud. A refused token wraps
// bearer.ErrInvalidToken; any other error is the server's.
func (s *Server) verify(ctx context.Context, aud, tok string) (*bearer.Claims, error) {
	v, err := s.verifier(aud)
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, tok)
}

// authed checks the bearer access token (RFC 6750 section 2.1, header
// only): bearer's checks for the account audience, then that its session is
// still active; Latch has the database at hand, so its own endpoints refuse
// a revoked session's token at once.
func (s *Server) authed(fn func(http.ResponseWriter, *http.Request, *caller) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok, err := bearer.TokenFromHeader(r)
		if err != nil {
			// RFC 6750 section 3.1: no error code when credentials are absent.
			w.Header().Set("WWW-Authenticate", `Bearer realm="latch"`)
			return apiError(http.StatusUnauthorized, CodeInvalidToken, "an access token is required")
		}
		claims, err := s.verify(r.Context(), s.cfg.AccountAudience, tok)
		var ses session.Session
		if err == nil {
			ses, err = s.sessions.ActiveSession(r.Context(), claims.Subject, claims.SessionID)
		}
		if err != nil {
			if !errors.Is(err, bearer.ErrInvalidToken) && !errors.Is(err, session.ErrNotFound) &&
				!errors.Is(err, session.ErrRevoked) && !errors.Is(err, session.ErrExpired) {
				return err // storage trouble: 503, not a verdict on the token
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="latch", error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
			return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Message: "the access token is invalid, expired or revoked", Err: err}
		}
		return fn(w, r, &caller{claims: *claims, session: ses})
	}
}
