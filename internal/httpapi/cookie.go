package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/latchauth/latch/internal/session"
)

// Cookie mode for web clients (docs/design.md "Browser clients: cookie
// mode"). A web client's refresh token is never put in a response body: it
// is set as an HttpOnly, SameSite=Strict cookie that page scripts cannot
// read, and the client refreshes without a refresh_token parameter. Every
// request that the cookie authenticates must carry an Origin among the
// client's origins: SameSite=Strict keeps other sites out, the Origin
// check keeps out other origins of the same site (another port, a sibling
// subdomain) and replays without one.

// CodeOriginForbidden answers a web client's request from an origin that
// is not one of its own, or without an Origin header.
const CodeOriginForbidden = "origin_forbidden"

// cookieMode holds the attributes of the refresh cookie for this issuer.
type cookieMode struct {
	// secure: Secure and the __Host- prefix (RFC 6265bis section 4.1.3.2:
	// Secure, Path=/, no Domain, so no sibling subdomain can set or shadow
	// it). Off only for an http:// issuer on a loopback host, where
	// browsers other than Chromium and Firefox refuse Secure cookies.
	secure bool
	maxAge time.Duration
}

// newCookieMode decides the refresh cookie's attributes from the issuer.
func newCookieMode(issuer string, maxAge time.Duration) cookieMode {
	return cookieMode{secure: !loopbackHTTP(issuer), maxAge: maxAge}
}

// loopbackHTTP reports whether issuer is http:// on localhost or a loopback
// address: development, where the cookie goes without Secure.
func loopbackHTTP(issuer string) bool {
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	ip, err := netip.ParseAddr(h)
	return h == "localhost" || (err == nil && ip.IsLoopback())
}

// cookieName is the refresh cookie of client id: one per web client, so
// two apps on one Latch do not overwrite each other's session. Ids that
// are not plain cookie-name characters are hashed.
func (m cookieMode) cookieName(kind, clientID string) string {
	name := "latch_" + kind + "_" + cookieSafe(clientID)
	if m.secure {
		return "__Host-" + name
	}
	return name
}

func cookieSafe(id string) string {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			sum := sha256.Sum256([]byte(id))
			return hex.EncodeToString(sum[:8])
		}
	}
	return id
}

// cookie builds a cookie of kind; maxAge < 0 deletes it (net/http sends
// Max-Age=0).
func (m cookieMode) cookie(kind, clientID, value string, maxAge time.Duration) *http.Cookie {
	age := -1
	if maxAge > 0 {
		age = int(maxAge / time.Second)
	}
	return &http.Cookie{
		Name: m.cookieName(kind, clientID), Value: value, Path: "/",
		MaxAge: age, HttpOnly: true, Secure: m.secure, SameSite: http.SameSiteStrictMode,
	}
}

const (
	refreshCookie = "rt"
	deviceCookie  = "dt"
	// deviceCookieAge is the device token's own lifetime (internal/dtoken).
	deviceCookieAge = 90 * 24 * time.Hour
)

// setSessionCookies moves the refresh and device tokens of t into cookies
// and out of the body.
func (s *Server) setSessionCookies(w http.ResponseWriter, c session.Client, t *session.Tokens) {
	if t.RefreshToken != "" {
		http.SetCookie(w, s.cookies.cookie(refreshCookie, c.ID, t.RefreshToken, s.cookies.maxAge))
		t.RefreshToken = ""
	}
	if t.DeviceToken != "" {
		http.SetCookie(w, s.cookies.cookie(deviceCookie, c.ID, t.DeviceToken, deviceCookieAge))
		t.DeviceToken = ""
	}
}

// clearRefreshCookie ends the refresh cookie in the browser (Max-Age=0 is
// sent as "Max-Age=0" by net/http for a negative MaxAge). The device
// cookie stays: it outlives sessions, as in authclient.
func (s *Server) clearRefreshCookie(w http.ResponseWriter, clientID string) {
	http.SetCookie(w, s.cookies.cookie(refreshCookie, clientID, "", -1))
}

// readCookie returns the value of the client's cookie of kind, or "".
func (s *Server) readCookie(r *http.Request, kind, clientID string) string {
	ck, err := r.Cookie(s.cookies.cookieName(kind, clientID))
	if err != nil {
		return ""
	}
	return ck.Value
}

// checkOrigin enforces the Origin rule for a web client's request: the
// header must be present and one of the client's origins (exact match). A
// request from a page sends it on every POST (Fetch "append a request
// Origin header"), so its absence means a script-less replay or a
// non-browser caller holding a stolen cookie.
func checkOrigin(r *http.Request, c session.Client) error {
	if !c.Web {
		return nil
	}
	if o := r.Header.Get("Origin"); !c.AllowsOrigin(o) {
		return apiError(http.StatusForbidden, CodeOriginForbidden, "requests of this web client must come from one of its registered origins")
	}
	return nil
}

// webOrigins caches the origins of every web client for CORS, which runs
// before routing and so before the client of a request is known. Clients
// are registered by `latch clients create` on the database, so the cache
// is reloaded when older than webOriginsTTL (or on a miss, at most that
// often), not told of changes.
type webOrigins struct {
	mu      sync.Mutex
	origins []string
	loaded  time.Time
}

const webOriginsTTL = 2 * time.Second

// allowsCredentials reports whether origin belongs to a web client: CORS
// then allows credentials (the refresh cookie) for it.
func (s *Server) webOrigin(ctx context.Context, origin string) bool {
	o := &s.webOrigins
	o.mu.Lock()
	defer o.mu.Unlock()
	fresh := time.Since(o.loaded) < webOriginsTTL
	if fresh && slices.Contains(o.origins, origin) {
		return true
	}
	if fresh && time.Since(o.loaded) < webOriginsTTL/4 {
		return false // a miss right after a load: do not reload per request
	}
	clients, err := s.sessions.Clients(ctx)
	if err != nil {
		// Storage trouble: keep what we knew, and try again no sooner than
		// a fresh load would, so a flood of unknown origins does not send
		// every request to a failing database (one at a time, under mu).
		o.loaded = time.Now()
		return slices.Contains(o.origins, origin)
	}
	var all []string
	for _, c := range clients {
		if c.Web {
			all = append(all, c.Origins...)
		}
	}
	o.origins, o.loaded = all, time.Now()
	return slices.Contains(all, origin)
}

// clearWebCookie clears the refresh cookie when clientID is a web client:
// a logout of the calling session (bearer-authenticated) ends it.
func (s *Server) clearWebCookie(ctx context.Context, w http.ResponseWriter, clientID string) {
	if c, err := s.sessions.Client(ctx, clientID); err == nil && c.Web {
		s.clearRefreshCookie(w, clientID)
	}
}
