package token

import (
	"context"
	"time"

	"github.com/latchauth/latch/internal/signingkey"
)

// The stored forms live in package signingkey, which the stores import
// without linking go-jose or net/http; these names keep the token API.
const (
	StateNext    = signingkey.StateNext
	StateCurrent = signingkey.StateCurrent
	StateRetired = signingkey.StateRetired
)

var (
	// ErrNotFound reports a missing key or secret.
	ErrNotFound = signingkey.ErrNotFound
	// ErrConflict reports that the key set changed underneath a rotation.
	ErrConflict = signingkey.ErrConflict
)

type (
	// StoredKey is a signing key as storage holds it.
	StoredKey = signingkey.StoredKey
	// Rotation retires, promotes and adds a key atomically.
	Rotation = signingkey.Rotation
)

// Store is the storage the issuer needs.
type Store interface {
	SigningKeys(ctx context.Context) ([]StoredKey, error)
	// InsertSigningKeys adds keys in one transaction; ErrConflict if a key
	// with the same state already exists (another node created it first).
	InsertSigningKeys(ctx context.Context, keys ...StoredKey) error
	// RotateSigningKeys applies r only if RetireKID is still current and
	// PromoteKID still next; otherwise ErrConflict.
	RotateSigningKeys(ctx context.Context, r Rotation) error
	// DeleteRetiredKeys removes keys retired before cutoff.
	DeleteRetiredKeys(ctx context.Context, cutoff time.Time) (int64, error)
	// Secret returns a sealed server secret, or ErrNotFound.
	Secret(ctx context.Context, name string) ([]byte, error)
	// PutSecretIfAbsent stores value under name unless one exists, and
	// returns the stored value either way (first writer wins across nodes).
	PutSecretIfAbsent(ctx context.Context, name string, value []byte, at time.Time) ([]byte, error)
}
