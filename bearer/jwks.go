package bearer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// pinnedKey is a public key and the one algorithm it may verify.
type pinnedKey struct {
	key any
	alg string
}

// keySet is one fetched JWKS.
type keySet struct {
	keys    map[string]*pinnedKey // one pointer per key as long as it is published unchanged
	expires time.Time             // refetch in the background after this
}

// keyCache holds the issuer's key set. Reads are lock-free; fetches are
// serialised. The last good set is kept whenever a fetch fails, so an
// unreachable issuer does not stop verification.
type keyCache struct {
	url string
	v   *Verifier

	set atomic.Pointer[keySet]

	mu        sync.Mutex // serialises fetches
	lastFetch time.Time  // last attempt, successful or not
	bg        atomic.Bool
	fetches   atomic.Int64
}

func newKeyCache(url string, v *Verifier) *keyCache { return &keyCache{url: url, v: v} }

// key returns the key for kid. An expired set is refreshed in the
// background (the current one still answers); an unknown kid causes one
// synchronous refetch, at most once per MinRefreshInterval.
func (c *keyCache) key(ctx context.Context, kid string) (*pinnedKey, error) {
	set := c.current()
	if k, ok := set.keys[kid]; ok {
		return k, nil
	}
	if len(kid) > 256 {
		return nil, invalid("kid too long")
	}
	// The fetch does not end with the request: a client that hangs up
	// would otherwise spend the rate-limited refetch on a failure and, once
	// per MinRefreshInterval, keep a new key from ever being learnt.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	c.refresh(ctx, true)
	if k, ok := c.set.Load().keys[kid]; ok {
		return k, nil
	}
	return nil, invalid("unknown kid")
}

// current returns the key set, starting a background refresh when it has
// expired.
func (c *keyCache) current() *keySet {
	set := c.set.Load()
	if c.v.cfg.Now().After(set.expires) && c.bg.CompareAndSwap(false, true) {
		go func() {
			defer c.bg.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c.refresh(ctx, false)
		}()
	}
	return set
}

// published reports whether k is still the key the current key set
// publishes as kid (no I/O): a key withdrawn, or replaced by another under
// the same kid, is not.
func (c *keyCache) published(_ context.Context, kid string, k *pinnedKey) bool {
	return c.current().keys[kid] == k
}

// refresh refetches the key set unless another fetch happened within
// MinRefreshInterval (always, for rate-limited unknown-kid refetches).
func (c *keyCache) refresh(ctx context.Context, unknownKID bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v.cfg.Now().Sub(c.lastFetch) < c.v.cfg.MinRefreshInterval {
		return
	}
	if err := c.fetchLocked(ctx); err != nil {
		c.v.stats.jwksFailures.Add(1)
		c.v.log.Warn("bearer: JWKS refresh failed; keeping the last good key set", "url", c.url, "unknown_kid", unknownKID, "err", err)
	}
}

// fetch loads the key set for the first time.
func (c *keyCache) fetch(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetchLocked(ctx)
}

func (c *keyCache) fetchLocked(ctx context.Context) error {
	now := c.v.cfg.Now()
	c.lastFetch = now
	c.fetches.Add(1)
	var raw jose.JSONWebKeySet
	hdr, err := getJSON(ctx, c.v.cfg.HTTPClient, c.url, &raw)
	if err != nil {
		if old := c.set.Load(); old != nil {
			// Try again after the minimum interval, not at every request.
			c.set.Store(&keySet{keys: old.keys, expires: now.Add(c.v.cfg.MinRefreshInterval)})
		}
		return fmt.Errorf("bearer: fetch JWKS: %w", err)
	}
	old := c.set.Load()
	keys := map[string]*pinnedKey{}
	for _, k := range raw.Keys {
		// Only signature keys that name an allowed algorithm: the key is
		// pinned to it (RFC 8725 section 3.1). Keys without alg are skipped.
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !slices.Contains(c.v.algs, jose.SignatureAlgorithm(k.Algorithm)) {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		if !k.Valid() || !fits(k.Key, k.Algorithm) {
			c.v.log.Warn("bearer: JWKS key skipped: invalid, too weak, or of another type than its alg", "kid", k.KeyID, "alg", k.Algorithm)
			continue
		}
		// A key published unchanged keeps its identity, and so the tokens
		// it verified stay in the token cache across refreshes.
		if p, ok := old.lookup(k.KeyID); ok && p.alg == k.Algorithm && sameKey(p.key, k.Key) {
			keys[k.KeyID] = p
		} else {
			keys[k.KeyID] = &pinnedKey{key: k.Key, alg: k.Algorithm}
		}
	}
	if old != nil && len(keys) == 0 {
		// An empty or wholly unusable set is a broken JWKS, not a
		// revocation of every key: keep the last good set
		// (docs/security.md OPS-13).
		c.set.Store(&keySet{keys: old.keys, expires: now.Add(c.v.cfg.MinRefreshInterval)})
		return errors.New("bearer: fetched JWKS has no usable key")
	}
	c.set.Store(&keySet{keys: keys, expires: now.Add(c.cacheAge(hdr.Get("Cache-Control")))})
	return nil
}

// cacheAge is the Cache-Control max-age, bounded to
// [MinRefreshInterval, MaxCacheAge]; no-store, no-cache or none gives the
// minimum.
func (c *keyCache) cacheAge(cc string) time.Duration {
	age := time.Duration(0)
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 && n < 1<<31 {
				age = time.Duration(n) * time.Second
			}
		}
		if d == "no-store" || d == "no-cache" {
			age = 0
			break
		}
	}
	return min(max(age, c.v.cfg.MinRefreshInterval), c.v.cfg.MaxCacheAge)
}

// lookup returns the key for kid in s, which may be nil.
func (s *keySet) lookup(kid string) (*pinnedKey, bool) {
	if s == nil {
		return nil, false
	}
	k, ok := s.keys[kid]
	return k, ok
}

// sameKey reports whether two public keys from go-jose's JWK parsing are
// equal.
func sameKey(a, b any) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// JWKSFetches returns how many times the key set has been fetched; tests and
// metrics use it. It is 0 for a verifier with a [Config.Keys] source.
func (v *Verifier) JWKSFetches() int64 {
	if v.jwks == nil {
		return 0
	}
	return v.jwks.fetches.Load()
}

// fits reports whether key is of the type its alg needs, and strong enough
// (docs/security.md OPS-13, AT-09): a JWK whose kty does not match its
// alg, or an RSA key under 2048 bits (RFC 7518 section 3.3), never
// verifies anything.
func fits(key any, alg string) bool {
	switch k := key.(type) {
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA) && len(k) == ed25519.PublicKeySize
	case *ecdsa.PublicKey:
		switch alg {
		case string(jose.ES256):
			return k.Curve == elliptic.P256()
		case string(jose.ES384):
			return k.Curve == elliptic.P384()
		case string(jose.ES512):
			return k.Curve == elliptic.P521()
		}
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= 2048
	}
	return false
}
