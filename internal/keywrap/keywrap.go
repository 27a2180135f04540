// Package keywrap seals server secrets (signing keys, the refresh-token MAC
// key) with a key-encryption key (KEK) before they reach storage, so a
// database dump alone does not yield them.
package keywrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of a key-encryption key in bytes.
const KeySize = 32

// ErrOpen reports a sealed value that does not open under this KEK: a wrong
// key or tampered data.
var ErrOpen = errors.New("keywrap: cannot open sealed value (wrong key-encryption key?)")

// KEK seals and opens values with AES-256-GCM. It is safe for concurrent use.
type KEK struct {
	aead cipher.AEAD
}

// New returns a KEK for a 32-byte key.
func New(key []byte) (*KEK, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("keywrap: key-encryption key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keywrap: %w", err)
	}
	return &KEK{aead: aead}, nil
}

// Parse decodes a standard base64 KEK, as given on the command line.
func Parse(s string) (*KEK, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("keywrap: key-encryption key is not standard base64: %w", err)
	}
	return New(key)
}

// LoadFile reads a base64 KEK from path, which must exist.
func LoadFile(path string) (*KEK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keywrap: read %s: %w", path, err)
	}
	k, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateFile reads a base64 KEK from path, creating the file with a new
// random key (mode 0600) when it does not exist. created reports the latter.
func LoadOrCreateFile(path string) (k *KEK, created bool, err error) {
	_, err = os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, KeySize)
		rand.Read(key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("keywrap: create %s: %w", path, err)
		}
		// The key must be on disk before anything is sealed under it: a
		// crash after the database commits but before the page cache is
		// written back would leave data sealed under a key nobody has. So
		// sync the file, and the directory that now names it.
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
		if werr == nil {
			werr = f.Sync()
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = syncDir(filepath.Dir(path))
		}
		if werr != nil {
			return nil, false, fmt.Errorf("keywrap: write %s: %w", path, werr)
		}
		k, err := New(key)
		return k, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("keywrap: read %s: %w", path, err)
	}
	k, err = LoadFile(path)
	return k, false, err
}

// Seal encrypts plaintext bound to context (such as "signing-key:<kid>"), so
// a sealed value cannot be moved to another row and opened there.
func (k *KEK) Seal(plaintext []byte, context string) []byte {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	rand.Read(nonce)
	return k.aead.Seal(nonce, nonce, plaintext, []byte(context))
}

// Open decrypts a value made by Seal with the same context.
func (k *KEK) Open(sealed []byte, context string) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, ErrOpen
	}
	pt, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(context))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// syncDir makes a new directory entry durable (fsync(2) on the directory).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
