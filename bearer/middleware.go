package bearer

import (
	"context"
	"errors"
	"fmt"
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
	scheme, tok := credentials(r)
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrMissingToken
	}
	return tok, nil
}

// credentials splits the Authorization header into scheme and token; ""
// for none or a malformed one.
func credentials(r *http.Request) (scheme, tok string) {
	authz := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(authz, " ")
	if authz == "" || !ok || tok == "" {
		return "", ""
	}
	return scheme, tok
}

// errDPoPScheme marks a failure of a request that used the DPoP scheme,
// so that the challenge names DPoP.
var errDPoPScheme = errors.New("bearer: presented with DPoP")

// VerifyRequest checks the access token of r's Authorization header, in
// either scheme: "Bearer" ([Verifier.Verify]: a DPoP-bound token is
// refused) or "DPoP" with exactly one DPoP header ([Verifier.VerifyDPoP],
// RFC 9449 section 7.1), its htu being [Config.ExternalURL] (or the
// request's own scheme and host) followed by the request path. No token is
// ErrMissingToken. Answer a failure with [Verifier.SetChallenge].
func (v *Verifier) VerifyRequest(r *http.Request) (*Claims, error) {
	scheme, tok := credentials(r)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return v.Verify(r.Context(), tok)
	case strings.EqualFold(scheme, "DPoP"):
		proofs := r.Header.Values("DPoP")
		if len(proofs) != 1 {
			// Section 4.3 step 1: exactly one DPoP header field.
			return nil, fmt.Errorf("%w%w: %d DPoP header fields", errDPoPScheme, badProof("not one proof"), len(proofs))
		}
		c, err := v.VerifyDPoP(r.Context(), tok, proofs[0], r.Method, v.RequestURL(r))
		if err != nil {
			return nil, fmt.Errorf("%w%w", errDPoPScheme, err)
		}
		return c, nil
	}
	return nil, ErrMissingToken
}

// RequestURL returns the URL a client sent r to, for comparing with a
// proof's htu: [Config.ExternalURL] and the path, or, without it, the
// scheme of r's connection, its Host and the path. The query is left out
// (RFC 9449 section 4.2).
func (v *Verifier) RequestURL(r *http.Request) string {
	if v.cfg.ExternalURL != "" {
		return strings.TrimSuffix(v.cfg.ExternalURL, "/") + r.URL.EscapedPath()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// DPoP returns the verifier's proof checker.
func (v *Verifier) DPoP() *DPoPChecker { return v.dpop }

// SetChallenge sets the response headers for a request that
// [Verifier.VerifyRequest] refused with err, and returns the error code
// they name ("" for a missing token): RFC 6750 section 3 and RFC 9449
// section 7.1. No credentials: a Bearer and a DPoP challenge, neither with
// an error. A bearer token refused: the Bearer challenge with
// error="invalid_token", and the DPoP one; a DPoP-bound token sent as
// Bearer, or any failure with the DPoP scheme: a DPoP challenge with
// error "invalid_token", "invalid_dpop_proof" or "use_dpop_nonce" (the
// last with a fresh DPoP-Nonce header, section 9). Every DPoP challenge
// lists the accepted algorithms.
func (v *Verifier) SetChallenge(h http.Header, err error) string {
	realm := `Bearer realm=` + strconv.Quote(v.cfg.Audience)
	dpop := `DPoP algs=` + strconv.Quote(v.dpop.names)
	code := ""
	switch {
	case errors.Is(err, ErrMissingToken):
		h.Add("WWW-Authenticate", realm)
		h.Add("WWW-Authenticate", dpop)
		return ""
	case errors.Is(err, ErrUseNonce):
		code = "use_dpop_nonce"
		if n := v.dpop.Nonce(); n != "" {
			h.Set("DPoP-Nonce", n)
		}
	case errors.Is(err, ErrInvalidProof):
		code = "invalid_dpop_proof"
	case errors.Is(err, ErrBoundToken) || errors.Is(err, errDPoPScheme):
		code = "invalid_token"
	default:
		h.Add("WWW-Authenticate", realm+`, error="invalid_token"`)
		h.Add("WWW-Authenticate", dpop)
		return "invalid_token"
	}
	h.Add("WWW-Authenticate", `DPoP error="`+code+`", `+dpop[len("DPoP "):])
	return code
}

// Middleware verifies the request's access token ([Verifier.VerifyRequest]:
// Bearer, or DPoP with its proof) and calls next with the claims in the
// request context (read them with [FromContext]). Failures answer 401 with
// the challenges of [Verifier.SetChallenge], with no description of the
// cause; and, when the revocation feed is too stale and the verifier fails
// closed (or a [KeySource] fails, or the DPoP replay cache is full), 503
// with Retry-After, since the token itself may be fine.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.VerifyRequest(r)
		if err != nil {
			if !errors.Is(err, ErrMissingToken) && !errors.Is(err, ErrInvalidToken) { // a stale feed, a key source that cannot tell
				w.Header().Set("Retry-After", "5")
				http.Error(w, "service unavailable", http.StatusServiceUnavailable)
				return
			}
			v.log.Debug("bearer: token rejected", "err", err)
			v.SetChallenge(w.Header(), err)
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
