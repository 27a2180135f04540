package token

import (
	"context"
	"errors"
	"time"
)

// Key states, in life-cycle order.
const (
	StateNext    = "next"
	StateCurrent = "current"
	StateRetired = "retired"
)

var (
	// ErrNotFound reports a missing key or secret.
	ErrNotFound = errors.New("token: not found")
	// ErrConflict reports that the key set changed underneath a rotation
	// (another node or command rotated first).
	ErrConflict = errors.New("token: signing keys changed concurrently")
)

// StoredKey is a signing key as storage holds it: the private key sealed
// with the key-encryption key.
type StoredKey struct {
	KID         string
	Alg         string
	State       string
	Sealed      []byte
	PublicJWK   []byte
	CreatedAt   time.Time
	ActivatedAt time.Time
	RetiredAt   time.Time
}

// Rotation retires the current key, promotes the next one and adds a new
// next key, atomically.
type Rotation struct {
	RetireKID  string
	PromoteKID string
	Next       StoredKey
	At         time.Time
}

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
