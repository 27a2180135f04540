package bearer

// DPoP proofs (RFC 9449, "OAuth 2.0 Demonstrating Proof of Possession").
// A proof is a JWT the client signs, per request, with a private key that
// never leaves it; the public key is in the proof's header, and an access
// token bound to it names the key's RFC 7638 thumbprint in cnf.jkt. A copy
// of the token alone is then useless: each request needs a fresh proof for
// its own method and URL, signed by the key.
//
// The JWS of a proof is parsed and verified by go-jose (the key comes from
// the proof itself, so none of the pinning of jws.go applies); this file
// does the checks of RFC 9449 section 4.3 around it.

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Errors of DPoP proofs. Both match [ErrInvalidToken] too, so callers that
// only tell "refused" from "cannot tell" keep working.
var (
	// ErrInvalidProof reports a DPoP proof that must be refused
	// (RFC 9449 error code invalid_dpop_proof).
	ErrInvalidProof = errors.New("bearer: invalid DPoP proof")
	// ErrUseNonce reports a proof without the server nonce it must carry,
	// or with a stale one (RFC 9449 section 8, error code use_dpop_nonce):
	// the client retries with the nonce of the DPoP-Nonce header.
	ErrUseNonce = errors.New("bearer: DPoP proof needs a fresh server nonce")
	// ErrBoundToken reports a DPoP-bound access token presented as a bearer
	// token (RFC 9449 section 7.1), or with a proof by another key.
	ErrBoundToken = errors.New("bearer: access token is bound to a DPoP key")
	// ErrReplayCacheFull reports that the jti replay cache holds its
	// maximum: no proof is accepted until entries age out, since a replay
	// could no longer be told. It does not match ErrInvalidToken (answer
	// 503: the proof may be fine).
	ErrReplayCacheFull = errors.New("bearer: DPoP replay cache full")
)

// DPoP defaults.
const (
	// DefaultDPoPWindow is how far a proof's iat may be from now, either
	// way (RFC 9449 section 11.1: a short window limits pre-generated
	// proofs).
	DefaultDPoPWindow = 60 * time.Second
	// DefaultReplayCacheSize bounds the jti replay cache.
	DefaultReplayCacheSize = 1 << 20
	// maxProofSize caps a proof before parsing: an RSA-4096 key in the
	// header and the claims fit in well under this.
	maxProofSize = 4 << 10
)

// DefaultDPoPAlgorithms are the proof algorithms accepted unless
// [DPoPConfig.Algorithms] says otherwise: asymmetric only (RFC 9449
// section 4.3 step 5: no "none", no MAC).
var DefaultDPoPAlgorithms = []string{"ES256", "EdDSA", "ES384", "ES512", "PS256", "RS256"}

// NonceSource issues and checks server-provided DPoP nonces (RFC 9449
// section 8). Implementations must be safe for concurrent use.
type NonceSource interface {
	// Nonce returns the nonce a client should put in its next proof.
	Nonce() string
	// Valid reports whether a proof's nonce is (still) acceptable.
	Valid(nonce string) bool
}

// DPoPConfig configures a [DPoPChecker].
type DPoPConfig struct {
	// Algorithms are the accepted proof algorithms; default
	// DefaultDPoPAlgorithms. Only asymmetric JWS algorithms are allowed.
	Algorithms []string
	// Window is how far iat may be from now, either way; default
	// DefaultDPoPWindow.
	Window time.Duration
	// ReplayCacheSize bounds the jti replay cache; default
	// DefaultReplayCacheSize. Each entry is kept about 2*Window.
	ReplayCacheSize int
	// Nonce, if set, makes every proof carry a nonce it accepts.
	Nonce NonceSource
	// Now is the time source; default time.Now.
	Now func() time.Time
}

// DPoPChecker verifies DPoP proofs and remembers their jti for as long as
// they could be accepted, so a proof is accepted once per process. It is
// safe for concurrent use; share one between the uses that should share
// a replay cache.
type DPoPChecker struct {
	algs    []jose.SignatureAlgorithm
	names   string // the algorithms, space-separated, for challenges
	window  time.Duration
	nonce   NonceSource
	now     func() time.Time
	replays replayCache
}

// NewDPoPChecker returns a DPoPChecker for cfg.
func NewDPoPChecker(cfg DPoPConfig) (*DPoPChecker, error) {
	if cfg.Algorithms == nil {
		cfg.Algorithms = DefaultDPoPAlgorithms
	}
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("bearer: DPoPConfig.Algorithms is empty")
	}
	d := &DPoPChecker{window: cfg.Window, nonce: cfg.Nonce, now: cfg.Now}
	for _, a := range cfg.Algorithms {
		alg := jose.SignatureAlgorithm(a)
		if !slices.Contains(asymmetric, alg) {
			return nil, fmt.Errorf("bearer: DPoP algorithm %q is not allowed (only asymmetric JWS algorithms)", a)
		}
		d.algs = append(d.algs, alg)
	}
	d.names = strings.Join(cfg.Algorithms, " ")
	if d.window <= 0 {
		d.window = DefaultDPoPWindow
	}
	if d.now == nil {
		d.now = time.Now
	}
	size := cfg.ReplayCacheSize
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	// An entry must outlive its proof: iat may be up to Window ahead of
	// now and is accepted until Window after it.
	d.replays = replayCache{max: size, period: 2 * d.window}
	return d, nil
}

// Algorithms returns the accepted proof algorithms, for discovery's
// dpop_signing_alg_values_supported and for challenges.
func (d *DPoPChecker) Algorithms() []string { return strings.Fields(d.names) }

// Nonce returns the nonce to send in a DPoP-Nonce header, "" when the
// checker requires none.
func (d *DPoPChecker) Nonce() string {
	if d.nonce == nil {
		return ""
	}
	return d.nonce.Nonce()
}

// ReplayCacheLen returns how many proofs the replay cache holds.
func (d *DPoPChecker) ReplayCacheLen() int { return d.replays.len() }

// Proof is a verified DPoP proof.
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof's key,
	// base64url: what a bound token's cnf.jkt names (RFC 9449 section 6.1).
	JKT       string
	ID        string // jti
	IssuedAt  time.Time
	Algorithm string
}

func badProof(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrInvalidToken, ErrInvalidProof, fmt.Sprintf(format, args...))
}

// proofClaims are the claims of a proof (RFC 9449 section 4.2).
type proofClaims struct {
	jti, htm, htu, ath, nonce string
	iat                       *jwt.NumericDate
}

// Check verifies proof for a request with method and URL htu (the absolute
// URL the client sent the request to; its query and fragment are
// ignored), following RFC 9449 section 4.3: one well-formed compact JWS
// with typ dpop+jwt, an allowed asymmetric alg, a public jwk in the header
// that verifies the signature (and no private part), jti, htm equal to
// method, htu equal to the URL after normalisation, iat within the window,
// the server nonce when one is required, ath equal to the SHA-256 of
// accessToken when one is presented (empty at the token endpoint), and
// then a jti never seen with this key during the window. Whether the key is
// the one a token or session is bound to is the caller's to check, with
// Proof.JKT.
func (d *DPoPChecker) Check(proof, method, htu, accessToken string) (*Proof, error) {
	if proof == "" {
		return nil, badProof("no DPoP proof")
	}
	if len(proof) > maxProofSize {
		return nil, badProof("proof longer than %d bytes", maxProofSize)
	}
	// Step 2: a compact JWS (go-jose refuses the JSON serializations here).
	jws, err := jose.ParseSignedCompact(proof, d.algs)
	if err != nil {
		return nil, badProof("not a JWS with an allowed algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, badProof("one signature expected")
	}
	h := jws.Signatures[0].Protected
	// Step 4: typ (compared exactly: RFC 9449 registers "dpop+jwt").
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return nil, badProof("typ must be dpop+jwt")
	}
	// Steps 5 and 6: alg (ParseSignedCompact checked the list), a public
	// jwk that fits it. go-jose already refuses an embedded private or
	// symmetric key; this says so again, where it matters.
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return nil, badProof("the header must carry a public jwk")
	}
	if !fits(jwk.Key, h.Algorithm) {
		return nil, badProof("jwk does not fit alg %s, or is too weak", h.Algorithm)
	}
	if jku, x5u := h.ExtraHeaders["jku"], h.ExtraHeaders["x5u"]; jku != nil || x5u != nil {
		return nil, badProof("no key references beside jwk")
	}
	// Step 7: the signature, by the header's key.
	payload, err := jws.Verify(jwk.Key)
	if err != nil {
		return nil, badProof("signature: %v", err)
	}
	c, err := decodeProofClaims(payload)
	if err != nil {
		return nil, err
	}
	now := d.now()
	switch {
	case c.jti == "" || len(c.jti) > 256:
		return nil, badProof("jti missing or too long")
	case c.htm != method: // Step 8: method names are case-sensitive (RFC 9110 section 9.1).
		return nil, badProof("htm %q for a %s request", c.htm, method)
	case c.iat == nil:
		return nil, badProof("no iat")
	}
	// Step 9: htu, both sides normalised, without query and fragment.
	want, err := NormalizeHTU(htu)
	if err != nil {
		return nil, fmt.Errorf("bearer: request URL %q: %w", htu, err)
	}
	if got, err := NormalizeHTU(c.htu); err != nil || got != want {
		return nil, badProof("htu %q is not %q", c.htu, want)
	}
	// Step 11: iat within the window either way.
	iat := c.iat.Time()
	if iat.Before(now.Add(-d.window)) || iat.After(now.Add(d.window)) {
		return nil, badProof("iat %s is outside the window of %s around now", iat.UTC().Format(time.RFC3339), d.window)
	}
	// Step 10: the server nonce (section 8). Checked after the signature,
	// so that a client learns of a nonce only with an otherwise good proof.
	if d.nonce != nil && (c.nonce == "" || !d.nonce.Valid(c.nonce)) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, ErrUseNonce)
	}
	// Step 12 (resource servers): ath binds the proof to the token.
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		ath := base64.RawURLEncoding.EncodeToString(sum[:])
		if subtle.ConstantTimeCompare([]byte(c.ath), []byte(ath)) != 1 {
			return nil, badProof("ath does not match the access token")
		}
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, badProof("thumbprint: %v", err)
	}
	p := &Proof{JKT: base64.RawURLEncoding.EncodeToString(tp), ID: c.jti, IssuedAt: iat, Algorithm: h.Algorithm}
	// Section 11.1: the jti last, so that only otherwise valid proofs take
	// room in the cache. Keyed with the key's thumbprint: two clients may
	// pick the same jti.
	if err := d.replays.add(p.JKT, c.jti, now); err != nil {
		return nil, err
	}
	return p, nil
}

// decodeProofClaims reads the claims of a proof with the rules of
// decodeClaims: valid UTF-8 JSON, case-sensitive names, no duplicate.
func decodeProofClaims(payload []byte) (*proofClaims, error) {
	if !validJSON(payload) {
		return nil, badProof("claims: not valid UTF-8 JSON")
	}
	c := new(proofClaims)
	var d jwt.NumericDate
	var seen []string
	err := jsonObject(string(payload), func(name, val string) error {
		if slices.Contains(seen, name) {
			return errors.New("duplicate claim")
		}
		seen = append(seen, name)
		switch name {
		case "jti":
			return jsonString(val, &c.jti)
		case "htm":
			return jsonString(val, &c.htm)
		case "htu":
			return jsonString(val, &c.htu)
		case "ath":
			return jsonString(val, &c.ath)
		case "nonce":
			return jsonString(val, &c.nonce)
		case "iat":
			return jsonDate(val, &c.iat, &d)
		}
		return nil
	})
	if err != nil {
		return nil, badProof("claims: %v", err)
	}
	return c, nil
}

// NormalizeHTU returns the form of an http(s) URL that DPoP compares
// (RFC 9449 section 4.3 step 9): the query and fragment dropped, then the
// syntax-based and scheme-based normalisations of RFC 3986 sections 6.2.2
// and 6.2.3: scheme and host in lower case, the scheme's default port
// removed, an empty path as "/", percent-encodings of unreserved characters
// decoded and the others in upper case, and dot segments removed. A URL
// that is not absolute http or https, or that holds user information, is
// an error.
func NormalizeHTU(raw string) (string, error) {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", errors.New("not an absolute http(s) URL without user information")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "80" && scheme == "http" || port == "443" && scheme == "https" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	p, err := normalizeEscapes(u.EscapedPath())
	if err != nil {
		return "", err
	}
	p = removeDotSegments(p)
	if p == "" {
		p = "/"
	}
	return scheme + "://" + host + p, nil
}

// normalizeEscapes decodes percent-encoded unreserved characters and puts
// the hex digits of the others in upper case (RFC 3986 sections 6.2.2.1
// and 6.2.2.2).
func normalizeEscapes(p string) (string, error) {
	if !strings.Contains(p, "%") {
		return p, nil
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errors.New("bad percent-encoding")
		}
		c := unhex(p[i+1])<<4 | unhex(p[i+2])
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String(), nil
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// removeDotSegments is RFC 3986 section 5.2.4. Unlike path.Clean it keeps
// empty segments and a trailing slash, which are part of the path.
func removeDotSegments(in string) string {
	var out []string
	segs := strings.Split(in, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}

// replayCache remembers (jkt, jti) pairs in two generations of period P:
// an entry lives between P and 2P, so one of a proof accepted at t is
// known until at least t+P, past the end of that proof's window. Memory
// is bounded by max entries; when they are all taken, proofs are refused
// until the older generation is dropped.
type replayCache struct {
	mu        sync.Mutex
	max       int
	period    time.Duration
	start     time.Time
	cur, prev map[[16]byte]struct{}
}

func (r *replayCache) add(jkt, jti string, now time.Time) error {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var k [16]byte
	copy(k[:], h.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	switch age := now.Sub(r.start); {
	case r.cur == nil || age >= 2*r.period || age < 0:
		// A clock stepping back starts over too: entries then stay
		// longer, never shorter.
		r.cur, r.prev, r.start = map[[16]byte]struct{}{}, nil, now
	case age >= r.period:
		r.prev, r.cur, r.start = r.cur, map[[16]byte]struct{}{}, now
	}
	if _, ok := r.cur[k]; ok {
		return badProof("jti replayed")
	}
	if _, ok := r.prev[k]; ok {
		return badProof("jti replayed")
	}
	if len(r.cur)+len(r.prev) >= r.max {
		return ErrReplayCacheFull
	}
	r.cur[k] = struct{}{}
	return nil
}

func (r *replayCache) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cur) + len(r.prev)
}
