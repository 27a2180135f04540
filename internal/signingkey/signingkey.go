// Package signingkey holds the stored form of Latch's signing keys and
// server secrets: the records the stores read and write and the token
// package's issuer seals and opens. It is a leaf: it imports neither the
// JOSE library nor net/http, so the stores that use it link neither.
package signingkey

import (
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

// Sealed value kinds a store's Reseal passes to its function.
const (
	SealedSigningKey = "signing-key"
	SealedSecret     = "secret"
)
