// Package token signs Latch access tokens (RFC 9068 JWTs), keeps the signing
// keys through their next/current/retired life cycle, and publishes the JWKS.
package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/session"
)

// Algorithms Latch signs with. EdDSA is the default; ES256 and RS256 serve
// verifiers that lack Ed25519 (RS256 is RFC 9068's mandatory-to-implement).
var Algorithms = []string{string(jose.EdDSA), string(jose.ES256), string(jose.RS256)}

// TypeAccessToken is the JWT "typ" header of access tokens (RFC 9068
// section 2.1).
const TypeAccessToken = "at+jwt"

var (
	// ErrTooSoon reports a rotation that would start signing with a key
	// verifiers may not have fetched yet.
	ErrTooSoon = errors.New("token: next key not yet published for a full JWKS cache lifetime")
	// ErrNoKey reports that no current signing key is loaded.
	ErrNoKey = errors.New("token: no current signing key")
)

// Config configures an Issuer.
type Config struct {
	// Issuer is the "iss" claim and the RFC 8414 issuer identifier.
	Issuer string
	// Alg is the algorithm of newly created keys.
	Alg string
	// JWKSMaxAge is the Cache-Control max-age of the JWKS; a next key is
	// published at least this long before it signs.
	JWKSMaxAge time.Duration
	// LongestAccessTTL keeps retired keys published while tokens they
	// signed can still be valid.
	LongestAccessTTL time.Duration
	// Leeway is the clock skew tolerated on exp, nbf and iat when Latch
	// verifies its own tokens (VerifierConfig), and the time a retired key
	// stays published beyond the longest access TTL.
	Leeway time.Duration
	// ReloadInterval is how often Run re-reads the key set, so a rotation
	// made by another node or the CLI is picked up without a restart.
	ReloadInterval time.Duration
}

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	switch {
	case c.Issuer == "":
		return errors.New("token: issuer is required")
	case !slices.Contains(Algorithms, c.Alg):
		return fmt.Errorf("token: signing algorithm %q is not one of %s", c.Alg, strings.Join(Algorithms, ", "))
	case c.JWKSMaxAge <= 0 || c.LongestAccessTTL <= 0 || c.ReloadInterval <= 0:
		return errors.New("token: JWKS max-age, longest access TTL and reload interval must be positive")
	case c.Leeway < 0 || c.Leeway > 5*time.Minute:
		return errors.New("token: leeway must be between 0 and 5m")
	}
	return nil
}

type key struct {
	StoredKey
	pub    jose.JSONWebKey
	signer *signer // current key only
}

// Issuer signs access tokens with the current key and serves the JWKS. It is
// safe for concurrent use.
type Issuer struct {
	store Store
	kek   *keywrap.KEK
	cfg   Config
	clock func() time.Time
	log   *slog.Logger

	wake chan struct{} // Notify: reload now

	mu        sync.RWMutex
	published map[string]*key
	current   *key
	jwks      []byte
}

// Option configures an Issuer.
type Option func(*Issuer)

// WithClock sets the time source.
func WithClock(now func() time.Time) Option { return func(i *Issuer) { i.clock = now } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(i *Issuer) { i.log = l } }

// New returns an Issuer over store; call Init before use.
func New(store Store, kek *keywrap.KEK, cfg Config, opts ...Option) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || kek == nil {
		return nil, errors.New("token: New needs a store and a key-encryption key")
	}
	i := &Issuer{store: store, kek: kek, cfg: cfg, clock: time.Now, log: slog.New(slog.DiscardHandler), wake: make(chan struct{}, 1)}
	for _, o := range opts {
		o(i)
	}
	return i, nil
}

func (i *Issuer) now() time.Time { return i.clock().UTC().Truncate(time.Microsecond) }

// Issuer returns the "iss" value.
func (i *Issuer) Issuer() string { return i.cfg.Issuer }

// Init creates the first current and next keys if storage has none, then
// loads the key set. Several nodes may race here; one wins.
func (i *Issuer) Init(ctx context.Context) error {
	keys, err := i.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("token: load keys: %w", err)
	}
	if !slices.ContainsFunc(keys, func(k StoredKey) bool { return k.State == StateCurrent }) {
		now := i.now()
		cur, err := i.newKey(StateCurrent, now)
		if err != nil {
			return err
		}
		cur.ActivatedAt = now
		next, err := i.newKey(StateNext, now)
		if err != nil {
			return err
		}
		switch err := i.store.InsertSigningKeys(ctx, cur, next); {
		case errors.Is(err, ErrConflict):
			// Another node starting at the same time won; its keys are
			// the ones loaded below, and it is the one that says so.
			i.log.Debug("signing keys were created by another node")
		case err != nil:
			return fmt.Errorf("token: create first keys: %w", err)
		default:
			i.log.Info("created signing keys", "current", cur.KID, "next", next.KID, "alg", i.cfg.Alg)
		}
	}
	return i.Reload(ctx)
}

// Reload re-reads the key set from storage.
func (i *Issuer) Reload(ctx context.Context) error {
	stored, err := i.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("token: load keys: %w", err)
	}
	now := i.now()
	published := map[string]*key{}
	var current *key
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, sk := range stored {
		if sk.State == StateRetired && !sk.RetiredAt.Add(i.retention()).After(now) {
			continue
		}
		k := &key{StoredKey: sk}
		if err := json.Unmarshal(sk.PublicJWK, &k.pub); err != nil {
			return fmt.Errorf("token: key %s: bad public JWK: %w", sk.KID, err)
		}
		if sk.State == StateCurrent {
			if i.current != nil && i.current.KID == sk.KID {
				k.signer = i.current.signer
			} else if k.signer, err = i.openSigner(sk); err != nil {
				return err
			}
			current = k
		}
		published[sk.KID] = k
		set.Keys = append(set.Keys, k.pub)
	}
	if current == nil {
		return ErrNoKey
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("token: encode JWKS: %w", err)
	}
	i.mu.Lock()
	if i.current != nil && i.current.KID != current.KID {
		i.log.Info("signing key changed", "kid", current.KID)
	}
	i.published, i.current, i.jwks = published, current, jwks
	i.mu.Unlock()
	return nil
}

// retention is how long a retired key stays published: every token it
// signed has expired by then, with the verifiers' leeway.
func (i *Issuer) retention() time.Duration { return i.cfg.LongestAccessTTL + i.cfg.Leeway }

// Notify asks Run to reload the key set now; it never blocks. serve calls
// it when storage says the keys changed (PostgreSQL NOTIFY latch_keys: a
// rotation on another node or by the CLI) and after the listener
// reconnects.
func (i *Issuer) Notify() {
	select {
	case i.wake <- struct{}{}:
	default:
	}
}

// Run reloads the key set at once on Notify, and every ReloadInterval (the
// fallback for a change nobody was told of) until ctx is done.
func (i *Issuer) Run(ctx context.Context) {
	t := time.NewTicker(i.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-i.wake:
		}
		if err := i.Reload(ctx); err != nil && ctx.Err() == nil {
			// Keep signing with the keys we have; storage may be down.
			i.log.Warn("reload signing keys", "err", err)
		}
	}
}

// JWKS returns the published key set (RFC 7517 section 5) and its
// Cache-Control max-age.
func (i *Issuer) JWKS() ([]byte, time.Duration) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.jwks, i.cfg.JWKSMaxAge
}

// Issue signs c with the current key. The header carries kid and typ
// at+jwt; no other header is set (RFC 8725 section 3.10: no jku, x5u, jwk).
// The claims are encoded as bearer.Claims, the type the verifier decodes,
// so the two cannot drift apart.
func (i *Issuer) Issue(c session.AccessClaims) (string, error) {
	i.mu.RLock()
	cur := i.current
	i.mu.RUnlock()
	if cur == nil {
		return "", ErrNoKey
	}
	var extra map[string]json.RawMessage
	if len(c.Extra) > 0 {
		// A custom claim named like a registered one is dropped, never
		// merged over it.
		extra = make(map[string]json.RawMessage, len(c.Extra))
		for k, v := range c.Extra {
			if !session.ReservedClaim(k) {
				extra[k] = v
			}
		}
	}
	jc := JWTClaims(c)
	return cur.signer.jws(&jc, extra)
}

// JWTClaims is c as the JWT claims set of RFC 9068 section 2.2. NumericDate
// has whole seconds (RFC 7519 section 2); a zero time is left out.
func JWTClaims(c session.AccessClaims) bearer.Claims {
	var cnf *bearer.Confirmation
	if c.DPoPJKT != "" {
		cnf = &bearer.Confirmation{JKT: c.DPoPJKT} // RFC 9449 section 6.1
	}
	return bearer.Claims{
		Confirmation: cnf,
		Issuer:       c.Issuer,
		Subject:      c.Subject,
		Audience:     jwt.Audience(slices.Clone(c.Audience)),
		Expiry:       jwt.NewNumericDate(c.Expiry),
		IssuedAt:     jwt.NewNumericDate(c.IssuedAt),
		NotBefore:    jwt.NewNumericDate(c.NotBefore),
		ID:           c.ID,
		ClientID:     c.ClientID,
		SessionID:    c.SessionID,
		Scope:        c.Scope,
	}
}

var _ bearer.KeySource = (*Issuer)(nil)

// Key returns the public key published under kid, retired keys included
// while they are published: the keys of the JWKS, from memory. It makes the
// Issuer the [bearer.KeySource] Latch verifies its own tokens with, so its
// endpoints and resource servers run one verifier (docs/design.md
// "Audiences").
func (i *Issuer) Key(_ context.Context, kid string) (bearer.PublicKey, error) {
	i.mu.RLock()
	k := i.published[kid]
	i.mu.RUnlock()
	if k == nil {
		return bearer.PublicKey{}, bearer.ErrUnknownKey
	}
	return bearer.PublicKey{Key: k.pub.Key, Algorithm: k.Alg}, nil
}

// VerifierConfig is the [bearer.Config] of a verifier of this issuer's
// tokens for audience aud, with the keys from memory, the issuer's clock
// and its leeway.
func (i *Issuer) VerifierConfig(aud string) bearer.Config {
	leeway := i.cfg.Leeway
	if leeway == 0 {
		leeway = -1 // bearer reads 0 as its default; Latch's 0 means none
	}
	return bearer.Config{Issuer: i.cfg.Issuer, Audience: aud, Algorithms: Algorithms, Keys: i, Leeway: leeway, Now: i.clock}
}

// KeyInfo describes a signing key for operators.
type KeyInfo struct {
	KID         string
	Alg         string
	State       string
	Published   bool
	CreatedAt   time.Time
	ActivatedAt time.Time
	RetiredAt   time.Time
}

// Keys lists every stored key.
func (i *Issuer) Keys(ctx context.Context) ([]KeyInfo, error) {
	stored, err := i.store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("token: load keys: %w", err)
	}
	now := i.now()
	out := make([]KeyInfo, 0, len(stored))
	for _, k := range stored {
		out = append(out, KeyInfo{KID: k.KID, Alg: k.Alg, State: k.State,
			Published: k.State != StateRetired || k.RetiredAt.Add(i.retention()).After(now),
			CreatedAt: k.CreatedAt, ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt})
	}
	return out, nil
}

// Rotate retires the current key, makes the next key current and creates a
// new next key. Unless force is set it refuses while the next key has been
// published for less than JWKSMaxAge, since a verifier holding a cached JWKS
// would not know it yet.
func (i *Issuer) Rotate(ctx context.Context, force bool) (Rotation, error) {
	stored, err := i.store.SigningKeys(ctx)
	if err != nil {
		return Rotation{}, fmt.Errorf("token: load keys: %w", err)
	}
	var cur, next *StoredKey
	for j := range stored {
		switch stored[j].State {
		case StateCurrent:
			cur = &stored[j]
		case StateNext:
			next = &stored[j]
		}
	}
	if cur == nil || next == nil {
		return Rotation{}, fmt.Errorf("token: rotate: %w (run latch serve once to create keys)", ErrNoKey)
	}
	now := i.now()
	// Servers start publishing a new key within one reload interval of its
	// creation; verifiers then keep their cached JWKS for up to max-age.
	if ready := next.CreatedAt.Add(i.cfg.ReloadInterval + i.cfg.JWKSMaxAge); now.Before(ready) && !force {
		return Rotation{}, fmt.Errorf("%w: key %s can sign from %s", ErrTooSoon, next.KID, ready.Format(time.RFC3339))
	}
	nk, err := i.newKey(StateNext, now)
	if err != nil {
		return Rotation{}, err
	}
	r := Rotation{RetireKID: cur.KID, PromoteKID: next.KID, Next: nk, At: now}
	if err := i.store.RotateSigningKeys(ctx, r); err != nil {
		return Rotation{}, fmt.Errorf("token: rotate: %w", err)
	}
	return r, i.Reload(ctx)
}

// PruneRetired deletes retired keys that are no longer published.
func (i *Issuer) PruneRetired(ctx context.Context) (int64, error) {
	return i.store.DeleteRetiredKeys(ctx, i.now().Add(-i.retention()))
}

func (i *Issuer) newKey(state string, now time.Time) (StoredKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch i.cfg.Alg {
	case string(jose.EdDSA):
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case string(jose.ES256):
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case string(jose.RS256):
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return StoredKey{}, fmt.Errorf("token: generate %s key: %w", i.cfg.Alg, err)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: i.cfg.Alg, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return StoredKey{}, fmt.Errorf("token: thumbprint: %w", err)
	}
	// RFC 7638 thumbprint as kid: stable, and safe in any header or URL.
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		return StoredKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return StoredKey{}, fmt.Errorf("token: encode key: %w", err)
	}
	return StoredKey{KID: pub.KeyID, Alg: i.cfg.Alg, State: state,
		Sealed: i.kek.Seal(der, sealContext(pub.KeyID)), PublicJWK: pubJSON, CreatedAt: now}, nil
}

func sealContext(kid string) string { return "latch signing key " + kid }

func (i *Issuer) openSigner(sk StoredKey) (*signer, error) {
	der, err := i.kek.Open(sk.Sealed, sealContext(sk.KID))
	if err != nil {
		return nil, fmt.Errorf("token: key %s: %w", sk.KID, err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("token: key %s: %w", sk.KID, err)
	}
	s, err := newSigner(sk.Alg, sk.KID, priv)
	if err != nil {
		return nil, fmt.Errorf("token: key %s: %w", sk.KID, err)
	}
	return s, nil
}

// refreshKeyName is the server secret holding the refresh-token MAC key.
const refreshKeyName = "refresh-token-mac-key"

// RefreshKey returns the refresh-token MAC key, creating it on first use.
// It is stored sealed with the key-encryption key, so every node shares it
// and a database dump alone does not reveal it.
func RefreshKey(ctx context.Context, store Store, kek *keywrap.KEK, now time.Time) ([]byte, error) {
	const name = refreshKeyName
	sealed, err := store.Secret(ctx, name)
	if errors.Is(err, ErrNotFound) {
		k := make([]byte, 32)
		rand.Read(k)
		sealed, err = store.PutSecretIfAbsent(ctx, name, kek.Seal(k, name), now)
	}
	if err != nil {
		return nil, fmt.Errorf("token: refresh key: %w", err)
	}
	k, err := kek.Open(sealed, name)
	if err != nil {
		return nil, fmt.Errorf("token: refresh key: %w", err)
	}
	return k, nil
}
