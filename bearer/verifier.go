package bearer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Errors returned by [Verifier.Verify]. Every rejection wraps ErrInvalidToken
// (check it with errors.Is) and carries the detail for logs; never show the
// detail to the caller (RFC 6750 section 3.1).
var (
	// ErrMissingToken reports a request without a bearer token.
	ErrMissingToken = errors.New("bearer: no access token")
	// ErrInvalidToken reports a token that must be rejected.
	ErrInvalidToken = errors.New("bearer: invalid access token")
	// ErrExpired reports a token past exp (it also matches ErrInvalidToken).
	ErrExpired = errors.New("bearer: access token expired")
	// ErrRevoked reports a token whose session is in the revocation feed (it
	// also matches ErrInvalidToken).
	ErrRevoked = errors.New("bearer: session revoked")
	// ErrFeedStale reports that the revocation feed is staler than
	// FeedConfig.MaxStaleness and the verifier fails closed. It does not
	// match ErrInvalidToken: the token may be fine, the verifier cannot tell.
	ErrFeedStale = errors.New("bearer: revocation feed too stale")
)

// Limits and defaults.
const (
	// DefaultMaxTokenSize caps the length of a token before any parsing.
	DefaultMaxTokenSize = 8 << 10
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest leeway Config accepts.
	MaxLeeway = 5 * time.Minute
)

// asymmetric are the algorithms a Verifier may be configured with: no
// "none", no HMAC (a public key must never serve as a MAC key, RFC 8725
// section 2.1).
var asymmetric = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.ES256, jose.ES384, jose.ES512,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// Config configures a [Verifier]. Issuer, Audience and Algorithms are
// required: there is no default that accepts anything.
type Config struct {
	// Issuer is the exact "iss" of accepted tokens, e.g.
	// "https://auth.example.com" (compared byte for byte, RFC 9068 section 4).
	Issuer string
	// Audience is this resource server's identifier; a token's "aud" must
	// contain it.
	Audience string
	// Algorithms lists the accepted signature algorithms, e.g.
	// []string{"EdDSA"}. Only asymmetric JWS algorithms are allowed. A key
	// is used only with the one algorithm its JWKS entry names.
	Algorithms []string
	// JWKSURL is where the keys are; empty means discovery: the jwks_uri of
	// the RFC 8414 metadata at Issuer + "/.well-known/oauth-authorization-server".
	// It is not used when Keys is set.
	JWKSURL string
	// Keys, if set, supplies the keys instead of the issuer's JWKS (no
	// discovery, no key-set fetch); Latch itself uses it to verify its own
	// tokens with the keys it holds. Keys still have to name an allowed
	// algorithm and fit it.
	Keys KeySource
	// Leeway is the clock skew tolerated on exp, nbf and iat; 0 means
	// DefaultLeeway (30s); negative means none; at most MaxLeeway.
	Leeway time.Duration
	// MaxTokenSize caps the token length before parsing; default 8 KiB.
	MaxTokenSize int
	// HTTPClient fetches metadata, keys and the feed; default a client with
	// a 10s timeout that follows no redirect (the feed stream uses its
	// transport without timeout). A client given here should refuse
	// redirects too: a redirect is how a JWKS URL gets hijacked.
	HTTPClient *http.Client
	// MinRefreshInterval is the least time between two JWKS fetches caused
	// by an unknown kid, and the least cache lifetime; default 30s.
	MinRefreshInterval time.Duration
	// MaxCacheAge bounds the JWKS cache lifetime taken from Cache-Control;
	// default 1h.
	MaxCacheAge time.Duration
	// CacheSize bounds the cache of tokens already verified (keyed by the
	// SHA-256 of the token), which makes a repeat verification of the same
	// token skip parsing and the signature; exp, nbf and the revocation
	// feed are still checked on every hit. Default 10,000; negative turns
	// it off.
	CacheSize int
	// AcceptClientTokens accepts tokens a client obtained for itself with
	// the client-credentials grant (RFC 6749 section 4.4; [Claims.IsClient]):
	// no sid, sub equal to client_id. Off by default, so a resource server
	// that serves users never takes a machine's token for a user's. Such a
	// token has no session, so the revocation feed cannot end it: it lives
	// until its exp (keep those clients' access TTL short); deleting the
	// client stops it minting more.
	AcceptClientTokens bool
	// Revocations turns the revocation feed on; nil leaves it off.
	Revocations *FeedConfig
	// DPoP checks the proofs of DPoP-bound tokens (RFC 9449); nil builds
	// one with the defaults of [DPoPConfig] and this Config's Now. Pass
	// one to require server nonces or to share its replay cache.
	DPoP *DPoPChecker
	// ExternalURL is the scheme and authority (and path prefix, if any)
	// clients use to reach this server, e.g. "https://api.example.com";
	// a proof's htu must be it followed by the request's path. Empty takes
	// them from the request: https if it came over TLS, and its Host.
	// Behind a proxy that terminates TLS, set it.
	ExternalURL string
	// Now is the time source; default time.Now.
	Now func() time.Time
	// Logger receives key-refresh and feed events; default discards.
	Logger *slog.Logger
}

// Verifier verifies Latch access tokens (RFC 9068 JWTs) with the issuer's
// published keys. It is safe for concurrent use. Call Close to stop its
// background work.
type Verifier struct {
	cfg     Config
	algs    []jose.SignatureAlgorithm
	leeway  time.Duration
	maxSize int
	keys    keys
	jwks    *keyCache // the default keys; nil with Config.Keys
	feed    *feed
	cache   *tokenCache
	dpop    *DPoPChecker
	log     *slog.Logger
	stats   stats
}

// New returns a Verifier. Unless Keys is set, it fetches the issuer
// metadata (unless JWKSURL is set) and the key set, and, with Revocations
// set, loads the revocation feed's current entries; any failure is
// returned, so a misconfiguration is found at start-up. ctx bounds these
// first requests only.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("bearer: Config.Issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("bearer: Config.Audience is required")
	}
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("bearer: Config.Algorithms is required")
	}
	v := &Verifier{cfg: cfg, log: cfg.Logger}
	for _, a := range cfg.Algorithms {
		alg := jose.SignatureAlgorithm(a)
		if !slices.Contains(asymmetric, alg) {
			return nil, fmt.Errorf("bearer: algorithm %q is not allowed (only asymmetric JWS algorithms)", a)
		}
		v.algs = append(v.algs, alg)
	}
	switch {
	case cfg.Leeway == 0:
		v.leeway = DefaultLeeway
	case cfg.Leeway < 0:
		v.leeway = 0
	case cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("bearer: leeway %s exceeds %s", cfg.Leeway, MaxLeeway)
	default:
		v.leeway = cfg.Leeway
	}
	v.maxSize = cfg.MaxTokenSize
	if v.maxSize <= 0 {
		v.maxSize = DefaultMaxTokenSize
	}
	if v.cfg.HTTPClient == nil {
		// Keys come only from the URLs configured or discovered, never
		// from where a redirect points (docs/security.md OPS-14).
		v.cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("bearer: redirects are not followed")
		}}
	}
	if v.cfg.Now == nil {
		v.cfg.Now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.cfg.MinRefreshInterval <= 0 {
		v.cfg.MinRefreshInterval = 30 * time.Second
	}
	if v.cfg.MaxCacheAge <= 0 {
		v.cfg.MaxCacheAge = time.Hour
	}
	v.cfg.MaxCacheAge = max(v.cfg.MaxCacheAge, v.cfg.MinRefreshInterval)
	switch {
	case cfg.CacheSize == 0:
		v.cache = newTokenCache(10_000)
	case cfg.CacheSize > 0:
		v.cache = newTokenCache(cfg.CacheSize)
	}
	v.dpop = cfg.DPoP
	if v.dpop == nil {
		d, err := NewDPoPChecker(DPoPConfig{Now: v.cfg.Now})
		if err != nil {
			return nil, err
		}
		v.dpop = d
	}
	if cfg.Keys != nil {
		v.keys = &sourceKeys{src: cfg.Keys, algs: v.algs}
	} else if err := v.fetchJWKS(ctx); err != nil {
		return nil, err
	}
	if cfg.Revocations != nil {
		f, err := startFeed(ctx, v, *cfg.Revocations)
		if err != nil {
			return nil, err
		}
		v.feed = f
	}
	return v, nil
}

// fetchJWKS sets up the default keys: the issuer's JWKS, found by
// discovery unless JWKSURL is set, fetched once now.
func (v *Verifier) fetchJWKS(ctx context.Context) error {
	jwksURL := v.cfg.JWKSURL
	if jwksURL == "" {
		var err error
		if jwksURL, err = discover(ctx, v.cfg.HTTPClient, v.cfg.Issuer); err != nil {
			return err
		}
	}
	v.jwks = newKeyCache(jwksURL, v)
	v.keys = v.jwks
	if err := v.jwks.fetch(ctx); err != nil {
		return err
	}
	if len(v.jwks.set.Load().keys) == 0 {
		return fmt.Errorf("bearer: the JWKS at %s has no signing key for %s (a key must name its alg)", jwksURL, strings.Join(v.cfg.Algorithms, ", "))
	}
	return nil
}

// Close stops the revocation-feed subscription, if any. Verify keeps
// working afterwards, with the feed as of Close.
func (v *Verifier) Close() error {
	if v.feed != nil {
		v.feed.close()
	}
	return nil
}

// discover reads jwks_uri from the RFC 8414 metadata of issuer, and checks
// that the metadata names the same issuer (section 3.3).
func discover(ctx context.Context, c *http.Client, issuer string) (string, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/oauth-authorization-server"
	var m struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if _, err := getJSON(ctx, c, u, &m); err != nil {
		return "", fmt.Errorf("bearer: discovery: %w", err)
	}
	if m.Issuer != issuer {
		return "", fmt.Errorf("bearer: discovery: metadata issuer %q is not %q", m.Issuer, issuer)
	}
	p, err := url.Parse(m.JWKSURI)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return "", fmt.Errorf("bearer: discovery: bad jwks_uri %q", m.JWKSURI)
	}
	// An https issuer's keys come over https: no downgrade (OPS-14).
	if strings.HasPrefix(issuer, "https://") && p.Scheme != "https" {
		return "", fmt.Errorf("bearer: discovery: jwks_uri %q is not https like the issuer", m.JWKSURI)
	}
	return m.JWKSURI, nil
}

// getJSON fetches u into v (at most 1 MiB) and returns the response headers.
func getJSON(ctx context.Context, c *http.Client, u string, v any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return resp.Header, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// Verify checks an access token presented as a bearer token (RFC 6750) and
// returns its claims: [Verifier.Inspect], then a DPoP-bound token (one with
// cnf) is refused with an error matching ErrBoundToken (RFC 9449 section
// 7.1: a bound token is never accepted without its proof). Use
// [Verifier.VerifyRequest] to accept both schemes.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	c, err := v.Inspect(ctx, token)
	if err != nil {
		return nil, err
	}
	if c.Confirmation != nil {
		return nil, fmt.Errorf("%w: %w: presented as a bearer token", ErrInvalidToken, ErrBoundToken)
	}
	return c, nil
}

// VerifyDPoP checks an access token presented with "Authorization: DPoP"
// and its proof for a request with method and absolute URL htu (RFC 9449
// section 7.1): the token as [Verifier.Inspect] does, then that it is
// bound (cnf.jkt), then the proof ([DPoPChecker.Check], with ath), then
// that the proof's key is the one the token names.
func (v *Verifier) VerifyDPoP(ctx context.Context, token, proof, method, htu string) (*Claims, error) {
	c, err := v.Inspect(ctx, token)
	if err != nil {
		return nil, err
	}
	if c.Confirmation == nil || c.Confirmation.JKT == "" {
		return nil, invalid("a token without cnf.jkt presented with DPoP")
	}
	p, err := v.dpop.Check(proof, method, htu, token)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(p.JKT), []byte(c.Confirmation.JKT)) != 1 {
		return nil, fmt.Errorf("%w: %w: %w: the proof's key is not the token's", ErrInvalidToken, ErrInvalidProof, ErrBoundToken)
	}
	return c, nil
}

// Inspect checks an access token and returns its claims, whatever its
// binding: it is for an authorization server's introspection, which
// reports cnf, never to authorise a request. In order: a size
// cap and a compact-JWS shape (three canonical base64url parts; JWE and
// JSON serialization refused), the header (only alg, kid and typ; typ
// at+jwt, RFC 9068 section 2.1), the key named by kid with the one
// algorithm it is pinned to, the signature, then iss (exact), aud
// (contains ours), exp (required), nbf and iat with the leeway, sub, sid,
// and the revocation feed when it is on. It does no I/O except a rate-limited
// key-set fetch for an unknown kid. A token verified before is found in a
// cache and only its time claims and the feed are checked again. The
// returned Claims must not be modified.
func (v *Verifier) Inspect(ctx context.Context, token string) (_ *Claims, err error) {
	defer v.stats.done(&err)
	if len(token) > v.maxSize {
		return nil, invalid("token longer than %d bytes", v.maxSize)
	}
	var sum [sha256.Size]byte
	if v.cache != nil {
		sum = sha256.Sum256([]byte(token))
		// A hit counts only while its key is still published: a key
		// withdrawn from the JWKS (compromise, docs/security.md OPS-11)
		// ends its cached tokens at the next key-set refresh.
		if e := v.cache.get(sum); e != nil && v.keys.published(ctx, e.kid, e.key) {
			v.stats.hits.Add(1)
			return v.checkAgain(e.claims)
		}
	}
	c, kid, key, err := v.verify(ctx, token)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(sum, cached{claims: c, kid: kid, key: key})
	}
	return c, nil
}

// checkAgain re-checks a cached token: what can change with time.
func (v *Verifier) checkAgain(c *Claims) (*Claims, error) {
	if err := v.checkClaims(c); err != nil {
		return nil, err
	}
	if v.feed != nil {
		if err := v.feed.check(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// verify is RFC 7515 section 5.2 and RFC 9068 section 4, in this order: the
// compact shape and the header (jws.go), typ, alg in the allow-list, the
// key named by kid and the one algorithm it is pinned to, the signature
// over the signing input as received, and only then the claims (RFC 8725
// section 3.4; docs/security.md RS-32).
func (v *Verifier) verify(ctx context.Context, token string) (*Claims, string, *pinnedKey, error) {
	parts, err := splitJWS(token)
	if err != nil {
		return nil, "", nil, err
	}
	defer parts.release()
	hdr := parts.hdr
	if !isAccessTokenType(hdr.typ) {
		return nil, "", nil, invalid("header: typ must be at+jwt")
	}
	alg := jose.SignatureAlgorithm(hdr.alg)
	if !slices.Contains(v.algs, alg) {
		return nil, "", nil, invalid("alg %q not allowed", hdr.alg)
	}
	if hdr.kid == "" {
		return nil, "", nil, invalid("no kid")
	}
	k, err := v.keys.key(ctx, hdr.kid)
	if err != nil {
		return nil, "", nil, err
	}
	if string(alg) != k.alg {
		return nil, "", nil, invalid("alg %s for a key pinned to %s", alg, k.alg)
	}
	if err := verifySignature(alg, k.key, parts.input, parts.sig); err != nil {
		return nil, "", nil, invalid("signature: %v", err)
	}
	c, err := decodeClaims(parts.payload)
	if err != nil {
		return nil, "", nil, err
	}
	if err := v.checkClaims(c); err != nil {
		return nil, "", nil, err
	}
	if v.feed != nil {
		if err := v.feed.check(c); err != nil {
			return nil, "", nil, err
		}
	}
	return c, hdr.kid, k, nil
}

func (v *Verifier) checkClaims(c *Claims) error {
	now := v.cfg.Now()
	switch {
	case c.Issuer != v.cfg.Issuer:
		return invalid("iss %q", c.Issuer)
	case !slices.Contains([]string(c.Audience), v.cfg.Audience):
		return invalid("aud does not contain %q", v.cfg.Audience)
	case c.Expiry == nil:
		return invalid("no exp")
	case !now.Before(c.Expiry.Time().Add(v.leeway)):
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrExpired)
	case c.NotBefore != nil && now.Add(v.leeway).Before(c.NotBefore.Time()):
		return invalid("nbf in the future")
	case c.IssuedAt != nil && now.Add(v.leeway).Before(c.IssuedAt.Time()):
		return invalid("iat in the future")
	case c.Subject == "":
		return invalid("no sub")
	case c.SessionID == "" && !(v.cfg.AcceptClientTokens && c.IsClient()):
		// Every Latch access token of a user names its session; one
		// without cannot be ended by a logout (RFC 9068 leaves sid to the
		// profile). Only a client's own token has none, where accepted.
		return invalid("no sid")
	}
	return nil
}

// canonical reports whether s is unpadded base64url whose unused trailing
// bits are zero, so that one value has one encoding (RFC 7515 section 2).
func canonical(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	if len(s) == 0 {
		return true
	}
	last := strings.IndexByte(b64, s[len(s)-1])
	switch len(s) % 4 {
	case 1:
		return false
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// isAccessTokenType compares media types case-insensitively (RFC 9068
// section 4 accepts at+jwt and application/at+jwt).
func isAccessTokenType(typ string) bool {
	return strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")
}

// HasScope reports whether the space-separated scope claim holds s.
func (c *Claims) HasScope(s string) bool {
	for f := range strings.FieldsSeq(c.Scope) {
		if f == s {
			return true
		}
	}
	return false
}

// tokenCache maps the SHA-256 of verified tokens to their claims. When full
// it is emptied: simple, bounded, and a miss only costs a full verification.
type tokenCache struct {
	mu   sync.RWMutex
	max  int
	byID map[[sha256.Size]byte]cached
}

// cached is a verified token's claims and the kid and key that signed it.
type cached struct {
	claims *Claims
	kid    string
	key    *pinnedKey
}

func newTokenCache(n int) *tokenCache {
	return &tokenCache{max: n, byID: make(map[[sha256.Size]byte]cached)}
}

func (t *tokenCache) get(k [sha256.Size]byte) *cached {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e, ok := t.byID[k]; ok {
		return &e
	}
	return nil
}

func (t *tokenCache) put(k [sha256.Size]byte, c cached) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.byID) >= t.max {
		clear(t.byID)
	}
	t.byID[k] = c
}
