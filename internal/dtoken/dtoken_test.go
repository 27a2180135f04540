package dtoken

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"
)

func newCodec(t testing.TB) *Codec {
	t.Helper()
	key := make([]byte, KeySize)
	rand.Read(key)
	c, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newDevice() Device {
	d := Device{Epoch: t0.UnixMicro(), Expires: t0.Add(90 * 24 * time.Hour)}
	rand.Read(d.User[:])
	rand.Read(d.Device[:])
	return d
}

func TestRoundTrip(t *testing.T) {
	c := newCodec(t)
	d := newDevice()
	tok := c.Encode(d)
	if !strings.HasPrefix(tok, Prefix) || len(tok) != textSize {
		t.Fatalf("token %q: want prefix %q and %d characters", tok, Prefix, textSize)
	}
	got, err := c.Decode(tok, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got != d {
		t.Fatalf("Decode = %+v, want %+v", got, d)
	}
}

// reseal rewrites one byte of tok's payload and fixes the checksum, as an
// attacker who knows the format but not the key would.
func reseal(t *testing.T, tok string, i int, b byte) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok[len(Prefix):])
	if err != nil {
		t.Fatal(err)
	}
	raw[i] = b
	binary.BigEndian.PutUint32(raw[rawSize-4:], crc32.ChecksumIEEE(raw[:rawSize-4]))
	return Prefix + base64.RawURLEncoding.EncodeToString(raw)
}

func TestDecodeRejects(t *testing.T) {
	c := newCodec(t)
	d := newDevice()
	tok := c.Encode(d)
	flip := func(i int) string {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	expired := d
	expired.Expires = t0
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"refresh token prefix", "latch_rt_" + tok[len(Prefix):], ErrMalformed},
		{"truncated", tok[:len(tok)-1], ErrMalformed},
		{"extended", tok + "A", ErrMalformed},
		{"flipped character", flip(len(Prefix) + 5), ErrMalformed},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(tok), ErrMalformed},
		{"other user, checksum fixed", reseal(t, tok, 1, d.User[0]^1), ErrBadMAC},
		{"other device, checksum fixed", reseal(t, tok, 1+IDSize, d.Device[0]^1), ErrBadMAC},
		{"older epoch, checksum fixed", reseal(t, tok, 1+2*IDSize+7, byte(d.Epoch)^1), ErrBadMAC},
		{"later expiry, checksum fixed", reseal(t, c.Encode(expired), 1+2*IDSize+8+4, 0xff), ErrBadMAC},
		{"mac byte, checksum fixed", reseal(t, tok, bodySize, 0), ErrBadMAC},
		{"other key", newCodec(t).Encode(d), ErrBadMAC},
		{"expired", c.Encode(expired), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tok == tok {
				t.Skip("the change left the token as it was")
			}
			if _, err := c.Decode(tt.tok, t0); !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%q) = %v, want %v", tt.tok, err, tt.want)
			}
		})
	}
}

// TestExpiry: a token counts until the second before its expiry.
func TestExpiry(t *testing.T) {
	c := newCodec(t)
	d := newDevice()
	tok := c.Encode(d)
	if _, err := c.Decode(tok, d.Expires.Add(-time.Second)); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	if _, err := c.Decode(tok, d.Expires); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v, want ErrExpired", err)
	}
}

func TestNewRejectsShortKey(t *testing.T) {
	if _, err := New(make([]byte, KeySize-1)); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
}
