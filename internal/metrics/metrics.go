// Package metrics defines Latch's Prometheus metrics and serves them. Every
// metric is named latch_* and registered on a private registry (with the Go
// runtime and process collectors), never on the global default one.
//
// The domain packages know nothing of Prometheus: Metrics implements the
// small observer interfaces they declare (session.Observer for logins,
// refreshes and revocations; httpapi.Observer for requests), a pgx tracer
// times PostgreSQL statements, and gauges read pool, feed and webhook state
// at scrape time.
//
// The metrics and their label values:
//
//	latch_logins_total{outcome}                success | bad_credentials | throttled | error | client_gone
//	latch_password_changes_total{outcome}      success | bad_credentials | weak_password | throttled | error
//	latch_refreshes_total{outcome}             rotated | grace_duplicate | lost_response | reuse |
//	                                           expired | revoked | stale | invalid | unavailable | client_gone | shed
//	latch_refresh_reuse_total{cause}           ancestor | abandoned_successor | late_parent | unknown_generation
//	latch_revocations_total{reason}            sessions revoked: logout | remote_logout | password_change |
//	                                           user_disabled | refresh_token_reuse | token_revoked | admin
//	latch_http_request_duration_seconds{route,method,code}   histogram; route is the mux pattern;
//	                                           code is the status, or client_gone (no answer sent)
//	latch_http_shed_total{reason}              in_flight | connections
//	latch_storage_query_duration_seconds{op}   histogram; see Tracer and ObserveStorage
//	latch_storage_pool_*{pool}                 connection-pool state, read at scrape time
//	latch_feed_subscribers                     open revocation-feed SSE streams
//	latch_feed_lag_seconds                     time since the feed hub's last successful poll
//	latch_feed_entries                         live revocation-feed entries held by the hub
//	latch_webhook_events_total{result}         delivered | failed | dropped
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchauth/latch/internal/session"
)

// Label values used by the HTTP API; the session package's outcome,
// cause and reason constants are the others.
const (
	// LoginThrottled is the logins_total outcome of a login refused by
	// the rate limiter before the password was checked.
	LoginThrottled = "throttled"
	// PasswordChangeThrottled is the password_changes_total outcome of a
	// password change refused by the rate limiter.
	PasswordChangeThrottled = "throttled"
)

// Values the counters are created with, so that every series exists (at
// 0) from the first scrape and rate() works from the first event.
var (
	loginOutcomes   = append(session.LoginOutcomes(), LoginThrottled)
	pwOutcomes      = append(session.PasswordChangeOutcomes(), PasswordChangeThrottled)
	refreshOutcomes = session.RefreshOutcomes()
	reuseCauses     = session.ReuseCauses()
	revokeReasons   = session.Reasons()
)

// Metrics holds Latch's collectors. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	logins      *prometheus.CounterVec
	pwChanges   *prometheus.CounterVec
	refreshes   *prometheus.CounterVec
	reuse       *prometheus.CounterVec
	revocations *prometheus.CounterVec
	requests    *prometheus.HistogramVec
	shed        *prometheus.CounterVec
	storage     *prometheus.HistogramVec
	pools       *poolCollector

	// Pre-resolved children for the hot path: a map read, no hashing of
	// label values. The maps are written only in New.
	loginC   map[string]prometheus.Counter
	pwC      map[string]prometheus.Counter
	refreshC map[string]prometheus.Counter
	reuseC   map[string]prometheus.Counter
}

// New returns Metrics with every collector registered on a fresh registry,
// with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_logins_total",
			Help: "Password logins by outcome: success, bad_credentials (unknown email, wrong password or disabled account), throttled (refused by the rate limiter), error (storage, hashing capacity), client_gone (the client closed the connection first).",
		}, []string{"outcome"}),
		pwChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_password_changes_total",
			Help: "Password changes (POST /v1/password) by outcome: success, bad_credentials (wrong current password), weak_password (new password refused by policy; the current one was not checked), throttled (refused by the rate limiter), error (storage, hashing capacity).",
		}, []string{"outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_refreshes_total",
			Help: "Refresh-token grants by outcome: rotated, grace_duplicate (the parent within the grace window), lost_response (a fresh successor within the lost-response window), reuse (the session was revoked), expired, revoked, stale (abandoned by its client or sent more than the grace window earlier, and refused rather than abandon a token or revoke; nothing changed), invalid (malformed, forged, unknown, another client's, or a wider scope), unavailable (storage failure), client_gone (the client closed the connection first: not a storage failure), shed (no storage connection free within --db-acquire-timeout: the node at capacity; nothing changed).",
		}, []string{"outcome"}),
		reuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_refresh_reuse_total",
			Help: "Refresh-token reuse by cause: ancestor (older than the parent), abandoned_successor (replaced by a lost-response successor), late_parent (the parent after both windows), unknown_generation (never handed out).",
		}, []string{"cause"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_revocations_total",
			Help: "Sessions revoked, by reason.",
		}, []string{"reason"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "latch_http_request_duration_seconds",
			Help: "HTTP request latency by route (the mux pattern, e.g. \"POST /oauth/token\"; \"/\" for unknown paths, \"none\" for CORS preflights), method and status code. Revocation-feed streams are observed when they end.",
			// From a cached verification to an Argon2id login.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_http_shed_total",
			Help: "Requests refused for overload before any work, by reason: in_flight (the cap on requests in flight, --max-in-flight), connections (the cap on open connections, --max-connections). Requests refused because no storage connection came free within --db-acquire-timeout are 503s of latch_http_request_duration_seconds, logged as \"request shed\".",
		}, []string{"reason"}),
		storage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latch_storage_query_duration_seconds",
			Help:    "Storage latency by operation. PostgreSQL: each statement by its first keyword (select, insert, update, delete, begin, commit, rollback, with, other) and each pipelined batch (batch). SQLite: each transaction (tx, including the wait for the single writer), each read outside a transaction (read), each sweeper delete (write).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"op"}),
		pools:    &poolCollector{},
		loginC:   map[string]prometheus.Counter{},
		pwC:      map[string]prometheus.Counter{},
		refreshC: map[string]prometheus.Counter{},
		reuseC:   map[string]prometheus.Counter{},
	}
	for _, o := range loginOutcomes {
		m.loginC[o] = m.logins.WithLabelValues(o)
	}
	for _, o := range pwOutcomes {
		m.pwC[o] = m.pwChanges.WithLabelValues(o)
	}
	for _, o := range refreshOutcomes {
		m.refreshC[o] = m.refreshes.WithLabelValues(o)
	}
	for _, c := range reuseCauses {
		m.reuseC[c] = m.reuse.WithLabelValues(c)
	}
	for _, r := range revokeReasons {
		m.revocations.WithLabelValues(r)
	}
	for _, r := range []string{"in_flight", "connections"} {
		m.shed.WithLabelValues(r)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.logins, m.pwChanges, m.refreshes, m.reuse, m.revocations, m.requests, m.shed, m.storage, m.pools,
	)
	return m
}

// Registry returns the registry, for registering more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: 4})
}

// count increments the pre-resolved child for v, or the vector's child for
// an unexpected value (which still works, it is just slower).
func count(children map[string]prometheus.Counter, vec *prometheus.CounterVec, v string, n float64) {
	if c, ok := children[v]; ok {
		c.Add(n)
		return
	}
	vec.WithLabelValues(v).Add(n)
}

// LoggedIn implements session.Observer.
func (m *Metrics) LoggedIn(outcome string) { count(m.loginC, m.logins, outcome, 1) }

// LoginThrottled implements httpapi.Observer: a login refused by the rate
// limiter, which never reaches the session service.
func (m *Metrics) LoginThrottled() { m.loginC[LoginThrottled].Inc() }

// PasswordChanged implements session.Observer.
func (m *Metrics) PasswordChanged(outcome string) { count(m.pwC, m.pwChanges, outcome, 1) }

// PasswordChangeThrottled implements httpapi.Observer: a password change
// refused by the rate limiter, which never reaches the session service.
func (m *Metrics) PasswordChangeThrottled() { m.pwC[PasswordChangeThrottled].Inc() }

// Refreshed implements session.Observer.
func (m *Metrics) Refreshed(outcome, cause string) {
	count(m.refreshC, m.refreshes, outcome, 1)
	if cause != "" {
		count(m.reuseC, m.reuse, cause, 1)
	}
}

// Revoked implements session.Observer.
func (m *Metrics) Revoked(reason string, n int) {
	m.revocations.WithLabelValues(reason).Add(float64(n))
}

// Shed implements httpapi.Observer.
func (m *Metrics) Shed(reason string) { m.shed.WithLabelValues(reason).Inc() }

// Request implements httpapi.Observer. route must be a mux pattern (or
// another value from a small fixed set), never the request path, so the
// number of series stays bounded; method is reduced to the standard ones.
func (m *Metrics) Request(route, method string, code int, d time.Duration) {
	c := strconv.Itoa(code)
	if code == statusClientGone {
		c = CodeClientGone
	}
	m.requests.WithLabelValues(route, knownMethod(method), c).Observe(d.Seconds())
}

// statusClientGone is httpapi.StatusClientClosedRequest: the status the API
// records (and never sends) for a request whose client left first.
const statusClientGone = 499

// CodeClientGone is the code label of requests whose client closed the
// connection before the answer: counted apart, so an alert on 5xx (or on
// "unavailable") does not fire for clients that gave up.
const CodeClientGone = "client_gone"

func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodOptions, http.MethodHead,
		http.MethodPut, http.MethodPatch:
		return m
	}
	return "other"
}

// ObserveStorage records one storage operation of d (SQLite: see the
// latch_storage_query_duration_seconds help for the ops).
func (m *Metrics) ObserveStorage(op string, d time.Duration) {
	m.storage.WithLabelValues(op).Observe(d.Seconds())
}
