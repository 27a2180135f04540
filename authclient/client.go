// Package authclient is the Go client of a Latch server: it logs users in,
// keeps a fresh access token for any number of goroutines, persists every
// rotated refresh token, and adds the token to outgoing requests.
//
// A [Session] refreshes ahead of expiry (when less than a quarter to a
// third of the token's lifetime is left, with jitter), once for all
// concurrent callers; it makes every expiry decision in the server's time,
// estimated from the Date header; it keeps the session through network
// errors, 429 and 5xx answers, and ends it only when the server answers
// invalid_grant ([SessionEndedError]). It keeps the client contract of
// Latch's refresh-token rotation (docs/refresh-tokens.md), so lost
// responses and retries never log the user out. docs/client.md describes
// the behaviour in full, for clients in other languages to copy.
//
// When the server offers DPoP (RFC 9449), a session is bound to a key made
// at sign-in and kept with it ([Config.DPoP]); [Session.Transport] then
// signs a proof for every request, so a copy of the tokens is useless
// without the key.
//
// The package imports only the standard library and golang.org/x/oauth2.
package authclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config configures a [Client]. Only Issuer is required.
type Config struct {
	// Issuer is the Latch server's issuer URL (its RFC 8414 "issuer"), e.g.
	// https://auth.example.com. The token and revocation endpoints are read
	// from its metadata at /.well-known/oauth-authorization-server.
	Issuer string
	// ClientID is the OAuth client; default "app", Latch's built-in
	// first-party client.
	ClientID string
	// Store persists the session; default a [MemoryStore].
	Store Store
	// HTTPClient talks to the Latch server; default a client with a 30 s
	// timeout. Refresh attempts get their own, shorter deadline (see Grace).
	// Its CheckRedirect is not used: calls to the Latch server never
	// follow a redirect (a 3xx answer is an *Error).
	HTTPClient *http.Client
	// Now is the local clock; default time.Now. Tests inject a fake one.
	Now func() time.Time
	// Grace is the server's refresh grace window G (--refresh-grace,
	// default 30 s). A refresh attempt that cannot finish within 2/3 of G
	// is abandoned, never replayed later, and the session does not refresh
	// again within G of receiving a token unless the server asked for it.
	Grace time.Duration
	// UserAgent is sent with every request to the Latch server (the server
	// shows it in the session list); default "latch-authclient".
	UserAgent string
	// DPoP says when sessions are bound to a DPoP key (RFC 9449): by
	// default when the server offers it. A bound session's key is made at
	// login, saved with the session, and signs a proof for every token
	// request and every request through [Session.Transport].
	DPoP DPoPMode
	// DPoPAlgorithm is the key's algorithm, "ES256" (the default) or
	// "EdDSA".
	DPoPAlgorithm string
}

// Client talks to one Latch server. It is safe for concurrent use.
type Client struct {
	cfg  Config
	hc   *http.Client // cfg.HTTPClient, following no redirects
	base string       // issuer without a trailing slash
	skew skew

	mu     sync.Mutex
	meta   *metadata
	nonces nonces // DPoP-Nonce per origin
}

type metadata struct {
	Issuer             string `json:"issuer"`
	TokenEndpoint      string `json:"token_endpoint"`
	RevocationEndpoint string `json:"revocation_endpoint"`
	// DPoPAlgs is dpop_signing_alg_values_supported (RFC 9449 section 5.1).
	DPoPAlgs []string `json:"dpop_signing_alg_values_supported"`
}

// New returns a client for the Latch server cfg.Issuer. It makes no request.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("authclient: issuer %q must be an http(s) URL without query or fragment", cfg.Issuer)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "app"
	}
	if cfg.Store == nil {
		cfg.Store = &MemoryStore{}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "latch-authclient"
	}
	if cfg.DPoPAlgorithm == "" {
		cfg.DPoPAlgorithm = "ES256"
	}
	if cfg.DPoPAlgorithm != "ES256" && cfg.DPoPAlgorithm != "EdDSA" {
		return nil, fmt.Errorf("authclient: DPoPAlgorithm %q: want ES256 or EdDSA", cfg.DPoPAlgorithm)
	}
	return &Client{cfg: cfg, hc: noRedirects(cfg.HTTPClient), base: strings.TrimSuffix(cfg.Issuer, "/")}, nil
}

// Issuer returns the issuer URL the client talks to.
func (c *Client) Issuer() string { return c.base }

// serverNow is the estimated server time.
func (c *Client) serverNow() time.Time { return c.cfg.Now().Add(c.skew.get()) }

// discover reads the RFC 8414 metadata once (retried after a failure).
func (c *Client) discover(ctx context.Context) (*metadata, error) {
	c.mu.Lock()
	m := c.meta
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		return nil, err
	}
	m = new(metadata)
	if err := c.do(req, m); err != nil {
		return nil, fmt.Errorf("authclient: discovery: %w", err)
	}
	// RFC 8414 section 3.3: the issuer in the metadata must be the one asked.
	if strings.TrimSuffix(m.Issuer, "/") != c.base {
		return nil, fmt.Errorf("authclient: discovery: metadata names issuer %q, want %q", m.Issuer, c.base)
	}
	if m.TokenEndpoint == "" {
		return nil, errors.New("authclient: discovery: metadata lacks token_endpoint")
	}
	c.mu.Lock()
	c.meta = m
	c.mu.Unlock()
	return m, nil
}

// do sends a request to the Latch server, learns the clock offset from the
// answer, and decodes a 2xx JSON body into out (if not nil). Other answers
// become a *statusError: the *Error and the answer's Retry-After.
func (c *Client) do(req *http.Request, out any) error {
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	sent := c.cfg.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	c.skew.observe(resp.Header, sent, c.cfg.Now())
	c.nonces.observe(req.URL, resp.Header)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode)}
		var obj struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &obj) == nil && obj.Error != "" {
			e.Code, e.Description = obj.Error, obj.Description
		}
		if resp.StatusCode/100 == 3 && e.Description == "" {
			e.Description = "redirect not followed: calls to the Latch server never follow redirects"
		}
		return &statusError{e: e, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.cfg.Now())}
	}
	if out != nil && len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("authclient: malformed response from %s: %w", req.URL.Path, err)
		}
	}
	return nil
}

// statusError carries the Retry-After of an answer alongside the *Error.
type statusError struct {
	e          *Error
	retryAfter time.Duration
}

func (e *statusError) Error() string { return e.e.Error() }
func (e *statusError) Unwrap() error { return e.e }

// maxRetryAfter caps a server's Retry-After, so a bogus value cannot park
// a session for days.
const maxRetryAfter = time.Hour

// parseRetryAfter reads delay-seconds or an HTTP-date (RFC 9110 section
// 10.2.3), capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n >= 0 {
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// tokenResponse is Latch's token response (RFC 6749 section 5.1 plus session_id).
type tokenResponse struct {
	AccessToken  string  `json:"access_token"`
	TokenType    string  `json:"token_type"`
	ExpiresIn    int64   `json:"expires_in"`
	RefreshToken string  `json:"refresh_token"`
	SessionID    string  `json:"session_id"`
	Scope        *string `json:"scope"`
	DeviceToken  string  `json:"device_token"`
}

// exchange posts a token request (made by build, once per attempt) and
// turns the answer into a Saved based on prev. With key, the request
// carries a DPoP proof (RFC 9449 section 5), and an answer use_dpop_nonce
// is retried once with the server's new nonce (section 8: the server did
// nothing else with the request). Expiry is anchored to the server time at
// which the request was sent, with the clock offset learnt from this very
// answer: the token cannot have been issued earlier, so Expiry is never
// later than the real exp (one second is taken off for exp's whole-second
// resolution).
func (c *Client) exchange(build func() (*http.Request, error), key *dpopKey, prev Saved) (Saved, error) {
	var (
		sent time.Time
		tr   tokenResponse
	)
	for attempt := 0; ; attempt++ {
		req, err := build()
		if err != nil {
			return Saved{}, err
		}
		if key != nil {
			p, err := key.proof(req.Method, req.URL, "", c.nonces.get(req.URL), c.serverNow())
			if err != nil {
				return Saved{}, err
			}
			req.Header.Set("DPoP", p)
		}
		sent = c.cfg.Now()
		err = c.do(req, &tr)
		var se *statusError
		if key != nil && attempt == 0 && errors.As(err, &se) && se.e.Code == "use_dpop_nonce" {
			continue
		}
		if err != nil {
			return Saved{}, err
		}
		break
	}
	bound := strings.EqualFold(tr.TokenType, "DPoP")
	if tr.AccessToken == "" || tr.RefreshToken == "" || !(bound || strings.EqualFold(tr.TokenType, "Bearer")) || tr.ExpiresIn <= 0 || bound && key == nil {
		return Saved{}, errors.New("authclient: malformed token response")
	}
	off := c.skew.get()
	s := prev
	s.Issuer, s.ClientID = c.base, c.cfg.ClientID
	s.AccessToken, s.RefreshToken = tr.AccessToken, tr.RefreshToken
	if tr.SessionID != "" {
		s.SessionID = tr.SessionID
	}
	if tr.Scope != nil {
		s.Scope = *tr.Scope
	}
	if tr.DeviceToken != "" {
		s.DeviceToken = tr.DeviceToken
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	s.Lifetime = Duration(life)
	s.Expiry = sent.Add(off).Add(life - time.Second)
	s.ReceivedAt = c.cfg.Now().Add(off)
	s.ClockOffset = Duration(off)
	s.DPoPKey, s.DPoPAlg = "", ""
	if bound {
		s.DPoPKey, s.DPoPAlg = key.marshal(), key.alg
	}
	return s, nil
}

// Login logs in with an email and password (POST /v1/login), saves the
// session to the store and returns it. Wrong credentials are an *Error
// with Code "invalid_credentials". It sends the device token the store
// keeps for this issuer, if any (see [Saved]), and saves the one the
// server returns.
func (c *Client) Login(ctx context.Context, email, password string) (*Session, error) {
	body := credentials(email, password, c.cfg.ClientID)
	dt := c.deviceToken(ctx)
	if dt != "" {
		body["device_token"] = dt
	}
	return c.start(ctx, "/v1/login", Saved{Email: email, DeviceToken: dt}, body)
}

// deviceToken returns the device token saved for this issuer and client,
// or "". A token is never sent to another issuer than the one that issued
// it.
func (c *Client) deviceToken(ctx context.Context) string {
	saved, err := c.cfg.Store.Load(ctx)
	if err != nil && !errors.Is(err, ErrNoSession) {
		return ""
	}
	if strings.TrimSuffix(saved.Issuer, "/") != c.base || saved.ClientID != c.cfg.ClientID {
		return ""
	}
	return saved.DeviceToken
}

// Signup creates an account and logs it in (POST /v1/signup), saves the
// session to the store and returns it. A taken email is an *Error with Code
// "email_taken"; a weak password one with "weak_password".
func (c *Client) Signup(ctx context.Context, email, password string) (*Session, error) {
	return c.start(ctx, "/v1/signup", Saved{Email: email}, credentials(email, password, c.cfg.ClientID))
}

func credentials(email, password, clientID string) map[string]any {
	return map[string]any{"email": email, "password": password, "client_id": clientID}
}

// start posts a login or signup and saves the session it starts; prev
// holds what the answer does not replace (the email, a device token the
// server did not renew).
func (c *Client) start(ctx context.Context, path string, prev Saved, body map[string]any) (*Session, error) {
	// Discover now, while the user waits for the login anyway: a wrong
	// issuer fails here, and the first refresh costs one round trip, not two.
	m, err := c.discover(ctx)
	if err != nil {
		return nil, unwrapStatus(err)
	}
	// A new key for every session (RFC 9449 section 5): it never leaves
	// this process but in the store.
	var key *dpopKey
	if use, err := c.useDPoP(m); err != nil {
		return nil, err
	} else if use {
		if key, err = newDPoPKey(c.cfg.DPoPAlgorithm); err != nil {
			return nil, err
		}
	}
	b, _ := json.Marshal(body)
	saved, err := c.exchange(func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	}, key, prev)
	if err != nil {
		return nil, unwrapStatus(err)
	}
	if c.cfg.DPoP == DPoPRequire && saved.DPoPKey == "" {
		s := newSession(c, saved)
		s.revoke(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("authclient: DPoP is required but %s answered with a bearer token", c.base)
	}
	if err := c.cfg.Store.Save(ctx, saved); err != nil {
		// The session exists on the server but could not be kept: end it
		// rather than leave it dangling.
		s := newSession(c, saved)
		s.revoke(context.WithoutCancel(ctx))
		return nil, &PersistError{Err: err}
	}
	return newSession(c, saved), nil
}

// Resume returns the session saved in the store, or ErrNoSession. It makes
// no request: the access token is refreshed when it is first needed.
func (c *Client) Resume(ctx context.Context) (*Session, error) {
	saved, err := c.cfg.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if saved.RefreshToken == "" {
		return nil, ErrNoSession // a device token alone (see Saved)
	}
	if strings.TrimSuffix(saved.Issuer, "/") != c.base || saved.ClientID != c.cfg.ClientID {
		return nil, fmt.Errorf("authclient: the saved session belongs to %s (client %s), not %s (client %s)", saved.Issuer, saved.ClientID, c.base, c.cfg.ClientID)
	}
	if _, err := sessionKey(saved); err != nil {
		return nil, err
	}
	c.skew.set(time.Duration(saved.ClockOffset))
	return newSession(c, saved), nil
}

// unwrapStatus turns the internal statusError into the public *Error.
func unwrapStatus(err error) error {
	var se *statusError
	if errors.As(err, &se) {
		return se.e
	}
	return err
}
