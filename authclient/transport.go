package authclient

import (
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Transport returns an http.RoundTripper that sends requests through base
// (http.DefaultTransport when nil) with the session's access token in the
// Authorization header (RFC 6750 section 2.1). Use it for the resource
// servers the token is meant for, never for third parties.
//
// The token is refreshed before it is due, so a request never carries an
// expiring token. If a resource server still answers 401 with
// error="invalid_token" (RFC 6750 section 3.1; a revoked key, or a verifier
// whose clock is ahead), the transport refreshes once, unless a newer token
// has been obtained since the request was sent, and retries once if the
// body can be sent again (no body, or req.GetBody set, as http.NewRequest
// does for in-memory bodies). Otherwise the 401 is returned as is: never a
// loop. Token errors ([SessionEndedError], [UnavailableError]) are returned
// as the round trip's error, wrapped in *url.Error by http.Client.
//
// The token goes only to the origin (scheme, host and port, RFC 6454
// section 4) of the request the caller made: a request that http.Client
// creates to follow a redirect to another origin is sent without any
// Authorization header, so a resource server that redirects (or is made
// to redirect) elsewhere cannot hand the token to a third party.
func (s *Session) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{s: s, base: base}
}

// HTTPClient returns an http.Client using [Session.Transport] over the
// transport of the Client's HTTPClient.
func (s *Session) HTTPClient() *http.Client {
	return &http.Client{Transport: s.Transport(s.c.cfg.HTTPClient.Transport), Timeout: s.c.cfg.HTTPClient.Timeout}
}

type transport struct {
	s    *Session
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if !sameOrigin(firstRequest(req).URL, req.URL) {
		r := req.Clone(ctx)
		r.Header.Del("Authorization")
		r.Header.Del("DPoP")
		return t.base.RoundTrip(r)
	}
	tok, err := t.s.token(ctx, "")
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.send(req, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !replayable {
		return resp, nil
	}
	if tok.key != nil && dpopChallenge(resp.Header) == "use_dpop_nonce" {
		// RFC 9449 section 9: the resource server wants its nonce (now
		// remembered from the answer) in the proof; once.
		next, err := t.again(req, resp, tok)
		if err != nil || next.StatusCode != http.StatusUnauthorized {
			return next, err
		}
		resp = next
	}
	if !invalidToken(resp.Header) {
		return resp, nil
	}
	fresh, err := t.s.token(ctx, tok.access)
	if err != nil || fresh.access == tok.access {
		return resp, nil // no better token: the caller gets the 401
	}
	return t.again(req, resp, fresh)
}

// send sends a clone of req (RoundTrippers must not modify the caller's
// request) with the token: "Bearer", or "DPoP" and a fresh proof for this
// method and URL, bound to the token by ath (RFC 9449 section 7.1), with
// the origin's last nonce.
func (t *transport) send(req *http.Request, tok handout) (*http.Response, error) {
	r := req.Clone(req.Context())
	if tok.key == nil {
		r.Header.Set("Authorization", "Bearer "+tok.access)
		r.Header.Del("DPoP")
	} else {
		p, err := tok.key.proof(r.Method, r.URL, tok.access, t.s.c.nonces.get(r.URL), t.s.c.serverNow())
		if err != nil {
			closeBody(req)
			return nil, err
		}
		r.Header.Set("Authorization", "DPoP "+tok.access)
		r.Header.Set("DPoP", p)
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		t.s.c.nonces.observe(r.URL, resp.Header)
	}
	return resp, err
}

// again discards resp and sends req once more with tok, if its body can
// be sent again.
func (t *transport) again(req *http.Request, resp *http.Response, tok handout) (*http.Response, error) {
	r := req
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		r = req.Clone(req.Context())
		r.Body = body
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return t.send(r, tok)
}

// firstRequest returns the request the caller made: http.Client sets
// Response (the redirect answer, whose Request is the previous hop) on
// each request it creates to follow a redirect.
func firstRequest(r *http.Request) *http.Request {
	for r.Response != nil && r.Response.Request != nil {
		r = r.Response.Request
	}
	return r
}

// sameOrigin reports whether a and b have the same origin: scheme, host
// and port, the port defaulted by scheme (RFC 6454 section 4). Any doubt
// (an unparsable or unknown scheme) answers false.
func sameOrigin(a, b *url.URL) bool {
	if a == nil || b == nil {
		return false
	}
	pa, oka := port(a)
	pb, okb := port(b)
	return oka && okb && pa == pb &&
		strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(strings.TrimSuffix(a.Hostname(), "."), strings.TrimSuffix(b.Hostname(), "."))
}

func port(u *url.URL) (string, bool) {
	if p := u.Port(); p != "" {
		return p, true
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443", true
	case "http":
		return "80", true
	}
	return "", false
}

// noRedirects returns a copy of hc that does not follow redirects: calls
// to the Latch server carry passwords, refresh tokens and access tokens,
// and a 307 or 308 would make http.Client send the body again to wherever
// the answer points. Latch never redirects an API call, so a redirect is
// returned as the answer (an *Error with its 3xx status).
func noRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// invalidToken reports a Bearer challenge with error="invalid_token", or
// a DPoP one (RFC 9449 section 7.1).
func invalidToken(h http.Header) bool {
	if dpopChallenge(h) == "invalid_token" {
		return true
	}
	for _, v := range h.Values("WWW-Authenticate") {
		if len(v) >= 6 && strings.EqualFold(v[:6], "bearer") &&
			(strings.Contains(v, `error="invalid_token"`) || strings.Contains(v, "error=invalid_token")) {
			return true
		}
	}
	return false
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
