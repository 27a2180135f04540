package bearer

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

type ctxKey struct{}

// NewContext returns a copy of ctx carrying c.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the claims [Verifier.Middleware] stored in ctx.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Claims)
	return c, ok
}

// TokenFromHeader returns the bearer token of r's Authorization header
// (RFC 6750 section 2.1). Tokens in the query string or the body are never
// read (RFC 9700 section 4.3.2).
func TokenFromHeader(r *http.Request) (string, error) {
	authz := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(authz, " ")
	if authz == "" || !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", ErrMissingToken
	}
	return tok, nil
}

// Middleware verifies the request's bearer token and calls next with the
// claims in the request context (read them with [FromContext]). Failures
// answer per RFC 6750 section 3: 401 with WWW-Authenticate "Bearer" (no
// error code) when no token was sent, 401 with error="invalid_token" for
// any rejected token, with no description of the cause; and, when the
// revocation feed is too stale and the verifier fails closed (or a
// [KeySource] fails), 503 with Retry-After, since the token itself may be
// fine.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	realm := `Bearer realm=` + strconv.Quote(v.cfg.Audience)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := TokenFromHeader(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", realm)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		c, err := v.Verify(r.Context(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) { // a stale feed, a key source that cannot tell
				w.Header().Set("Retry-After", "5")
				http.Error(w, "service unavailable", http.StatusServiceUnavailable)
				return
			}
			v.log.Debug("bearer: token rejected", "err", err)
			w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}

// RequireScope wraps next so that it runs only for tokens whose scope
// claim holds scope; others get 403 with error="insufficient_scope" (RFC
// 6750 section 3.1). Use it inside [Verifier.Middleware].
func RequireScope(scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := FromContext(r.Context())
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if !c.HasScope(scope) {
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope=`+strconv.Quote(scope))
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
