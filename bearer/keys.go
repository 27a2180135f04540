package bearer

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// KeySource supplies the public keys a [Verifier] checks signatures with.
// The default, when [Config.Keys] is nil, is a cache of the issuer's JWKS;
// an issuer that verifies its own tokens passes the keys it holds in
// memory instead, so that it and its resource servers share one verifier.
// Implementations must be safe for concurrent use and cheap: Key is called
// for every token not in the verifier's token cache, and again on each
// cache hit to see that the key is still published.
type KeySource interface {
	// Key returns the key published under kid, or an error wrapping
	// ErrUnknownKey when there is none. Any other error is taken as the
	// source being unable to tell: Verify returns it without
	// ErrInvalidToken.
	Key(ctx context.Context, kid string) (PublicKey, error)
}

// PublicKey is a verification key and the one JWS algorithm it may verify
// (RFC 8725 section 3.1: a key is pinned to its algorithm).
type PublicKey struct {
	// Key is an ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey.
	Key crypto.PublicKey
	// Algorithm is the JWS "alg" the key verifies, e.g. "EdDSA".
	Algorithm string
}

// ErrUnknownKey reports that a [KeySource] has no key under the kid asked
// for.
var ErrUnknownKey = errors.New("bearer: unknown key")

// keys is what a Verifier needs of its key store: keyCache (the JWKS) and
// sourceKeys (a KeySource) implement it.
type keys interface {
	// key returns the key for kid; an error matches ErrInvalidToken unless
	// the store cannot tell.
	key(ctx context.Context, kid string) (*pinnedKey, error)
	// published reports whether k is still the key published as kid, so
	// that a cached token of a withdrawn or replaced key ends (OPS-11).
	published(ctx context.Context, kid string, k *pinnedKey) bool
}

// sourceKeys adapts a KeySource: its keys get the checks a JWKS key gets
// (an allowed algorithm, a key that fits it).
type sourceKeys struct {
	src  KeySource
	algs []jose.SignatureAlgorithm
}

func (s *sourceKeys) key(ctx context.Context, kid string) (*pinnedKey, error) {
	if len(kid) > 256 {
		return nil, invalid("kid too long")
	}
	pk, err := s.src.Key(ctx, kid)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return nil, invalid("unknown kid")
	case err != nil:
		return nil, fmt.Errorf("bearer: key source: %w", err)
	case !slices.Contains(s.algs, jose.SignatureAlgorithm(pk.Algorithm)):
		return nil, invalid("alg %s of key %q is not allowed", pk.Algorithm, kid)
	case !fits(pk.Key, pk.Algorithm):
		return nil, invalid("alg %s: key of another type, or too weak", pk.Algorithm)
	}
	return &pinnedKey{key: pk.Key, alg: pk.Algorithm}, nil
}

func (s *sourceKeys) published(ctx context.Context, kid string, k *pinnedKey) bool {
	pk, err := s.src.Key(ctx, kid)
	return err == nil && pk.Algorithm == k.alg && sameKey(pk.Key, k.key)
}
