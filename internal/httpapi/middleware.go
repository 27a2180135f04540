package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

type ctxKey int

const requestKey ctxKey = iota

// requestInfo is what ServeHTTP works out once per request for the
// handlers, the throttle and the access log.
type requestInfo struct {
	id string // request id
	ip string // client IP, after trusted proxies
}

// requestIDFrom returns the request id the middleware gave r's context.
func requestIDFrom(ctx context.Context) string {
	info, _ := ctx.Value(requestKey).(requestInfo)
	return info.id
}

// validRequestID accepts a caller's X-Request-Id only if it is short and
// plain, so it cannot smuggle anything into logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// statusWriter records the status and size of a response for the access
// log. Unwrap lets http.ResponseController reach the connection (SSE).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP implements http.Handler: a request id, security headers, CORS,
// then the routes, then one access-log line. The log names the path only:
// never the query, a header or a body, so no token or password reaches it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-Id", id)
	ip := s.clientIP(r)
	r = r.WithContext(context.WithValue(r.Context(), requestKey, requestInfo{id: id, ip: ip}))
	securityHeaders(w.Header(), s.https)
	sw := &statusWriter{ResponseWriter: w}
	if s.cors(sw, r) {
		s.mux.ServeHTTP(sw, r) // sets r.Pattern
	}
	if sw.status == 0 {
		sw.status = http.StatusOK // nothing written: net/http sends 200
	}
	if s.cfg.Observer != nil {
		route := r.Pattern
		if route == "" {
			route = "none"
		}
		s.cfg.Observer.Request(route, r.Method, sw.status, time.Since(start))
	}
	level := slog.LevelInfo
	if r.Pattern == metricsRoute {
		level = slog.LevelDebug // scrapes every few seconds would drown the log
	}
	s.log.LogAttrs(r.Context(), level, "request",
		slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", sw.status), slog.Int64("bytes", sw.bytes),
		slog.Float64("ms", float64(time.Since(start).Microseconds())/1000), slog.String("ip", ip))
}

// metricsRoute serves Config.Metrics.
const metricsRoute = "GET /metrics"

// securityHeaders are sent on every response. The API serves JSON only:
// nothing may frame, embed or run it, and no Referer leaves.
func securityHeaders(h http.Header, https bool) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if https {
		// RFC 6797; only meaningful, and only sent, behind an https issuer.
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	}
}

// cors applies the CORS policy (exact origins only) and answers preflight
// requests; it returns false when the request has been answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == s.origin {
		return true // not a cross-origin request: CORS does not apply
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	// A web client's origins get CORS with credentials, so that its page
	// can send and receive the refresh cookie (cookie.go); the handlers
	// check that a cookie-mode request comes from that client's own
	// origins. Other listed origins get CORS without credentials unless
	// --cors-allow-credentials.
	web := s.webOrigin(r.Context(), origin)
	allowed := web || slices.Contains(s.cfg.CORSOrigins, origin)
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !allowed {
		if preflight {
			writeError(w, apiError(http.StatusForbidden, CodeCORSForbidden, "origin not allowed"))
			return false
		}
		return true // no CORS headers: the browser withholds the response
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if web || s.cfg.CORSCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if preflight {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
		// DPoP (RFC 9449 section 4.1): a browser client sending a proof
		// header must be allowed to, or its preflight fails.
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP, X-Request-Id")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	// Date is not CORS-safelisted (Fetch, "CORS-safelisted response-header
	// name"); clients estimate the server's clock from it (token expiry
	// under clock skew), so it is exposed.
	// DPoP-Nonce carries server nonces (RFC 9449 section 8) that a browser
	// client must read to retry.
	h.Set("Access-Control-Expose-Headers", "Date, DPoP-Nonce, Retry-After, WWW-Authenticate, X-Request-Id")
	return true
}

// clientIP is the address the request came from: the peer, or, when the
// peer is a trusted proxy, the nearest address in X-Forwarded-For that is
// not one (a client cannot spoof past a proxy that appends, RFC 7239
// section 5.2 for the same rule with Forwarded).
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.cfg.TrustedProxies) == 0 || !s.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if _, err := netip.ParseAddr(hop); err != nil {
			break // malformed: stop at the last address we can trust
		}
		if !s.trusted(hop) {
			return hop
		}
		host = hop
	}
	return host
}

func (s *Server) trusted(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
