package token

import (
	"context"
	"errors"
	"fmt"

	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/signingkey"
)

// Sealed value kinds passed to a Resealer's function.
const (
	SealedSigningKey = signingkey.SealedSigningKey
	SealedSecret     = signingkey.SealedSecret
)

// Resealer is storage that can replace every sealed value in one
// transaction: fn gets each value's kind, name (kid or secret name) and
// sealed bytes and returns the replacement; any error rolls everything back.
type Resealer interface {
	Reseal(ctx context.Context, fn func(kind, name string, sealed []byte) ([]byte, error)) (int, error)
}

// Rewrap re-encrypts every signing key and server secret from the old
// key-encryption key to the new one, atomically, and returns how many values
// it changed. A value that does not open with old aborts it: nothing is
// half-rewrapped.
func Rewrap(ctx context.Context, store Resealer, old, new *keywrap.KEK) (int, error) {
	n, err := store.Reseal(ctx, func(kind, name string, sealed []byte) ([]byte, error) {
		var aad string
		switch kind {
		case SealedSigningKey:
			aad = sealContext(name)
		case SealedSecret:
			aad = name
		default:
			return nil, fmt.Errorf("unknown sealed kind %q", kind)
		}
		plain, err := old.Open(sealed, aad)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, name, err)
		}
		return new.Seal(plain, aad), nil
	})
	if err != nil {
		return 0, fmt.Errorf("token: rewrap: %w", err)
	}
	return n, nil
}

// HasSealed reports whether store holds a signing key or a server secret,
// all of which are sealed under the key-encryption key: when it does, only
// that key opens the database, and a new one must not be made up.
func HasSealed(ctx context.Context, store Store) (bool, error) {
	keys, err := store.SigningKeys(ctx)
	if err != nil {
		return false, fmt.Errorf("token: signing keys: %w", err)
	}
	if len(keys) > 0 {
		return true, nil
	}
	switch _, err := store.Secret(ctx, refreshKeyName); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("token: refresh key: %w", err)
	}
}
