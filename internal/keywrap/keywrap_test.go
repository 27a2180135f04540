package keywrap

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func newKEK(t *testing.T) *KEK {
	t.Helper()
	b := make([]byte, KeySize)
	rand.Read(b)
	k, err := New(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := newKEK(t)
	secret := []byte("signing key bytes")
	sealed := k.Seal(secret, "ctx-a")
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := k.Open(sealed, "ctx-a")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name   string
		kek    *KEK
		sealed []byte
		ctx    string
	}{
		{"other context", k, sealed, "ctx-b"},
		{"other key", newKEK(t), sealed, "ctx-a"},
		{"tampered", k, tampered, "ctx-a"},
		{"truncated", k, sealed[:10], "ctx-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.kek.Open(tt.sealed, tt.ctx); !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %v, want ErrOpen", err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(make([]byte, 32))
	if _, err := Parse(good + "\n"); err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 16))} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted it", bad)
		}
	}
}

func TestLoadOrCreateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.kek")
	k1, created, err := LoadOrCreateFile(path)
	if err != nil || !created {
		t.Fatalf("first call: created %v, %v", created, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateFile(path)
	if err != nil || created {
		t.Fatalf("second call: created %v, %v", created, err)
	}
	if _, err := k2.Open(k1.Seal([]byte("x"), "c"), "c"); err != nil {
		t.Fatal("value sealed before reload does not open")
	}
}
