package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/latchauth/latch/internal/dtoken"
)

// DeviceTTL is how long a device token counts after the login that issued
// it; every login with it issues a fresh one.
const DeviceTTL = 90 * 24 * time.Hour

// deviceKeyLabel names the device-token key derived from the refresh-token
// secret, so that no new secret needs storing and rotating that secret ends
// device tokens with refresh tokens.
const deviceKeyLabel = "device-token"

func newDeviceCodec(s *Service) error {
	c, err := dtoken.New(s.codec.Subkey(deviceKeyLabel))
	if err != nil {
		return fmt.Errorf("session: device token key: %w", err)
	}
	s.devices, s.epochKey = c, s.codec.Subkey(deviceKeyLabel+"-epoch")
	return nil
}

// passwordEpoch is the epoch device tokens of u carry: 64 bits of
// HMAC-SHA256 over u's password hash. Every password set (change, reset,
// the rehash that follows raised Argon2 parameters) draws a new salt and
// so a new epoch, which ends the device tokens issued before, with no
// column to keep and no dependence on the clock; being a MAC, it tells the
// token's holder nothing about the hash.
func (s *Service) passwordEpoch(u *User) int64 {
	h := hmac.New(sha256.New, s.epochKey)
	h.Write([]byte(u.PasswordHash))
	return int64(binary.BigEndian.Uint64(h.Sum(nil)))
}

// Device returns the device id of tok when it is a device token this
// server issued for the account that holds email now, still valid:
// unexpired, issued since the password last changed (a new password ends
// every device token) and not for a disabled account (docs/design.md
// "Returning devices"). Otherwise it returns "" and no error: a client with
// a stale token logs in as a new device. The error is for storage trouble
// only. The token's MAC and expiry are checked before any lookup, so a
// forged token costs no database work.
func (s *Service) Device(ctx context.Context, email, tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	d, err := s.devices.Decode(tok, s.now())
	if err != nil {
		return "", nil
	}
	norm, err := NormalizeEmail(email)
	if err != nil {
		return "", nil
	}
	u, err := s.store.UserByEmail(ctx, norm)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("session: check device token: %w", err)
	}
	if !s.deviceOf(&u, d) || !u.DisabledAt.IsZero() {
		return "", nil
	}
	return idString(d.Device), nil
}

// deviceOf reports whether d names user u at u's current password.
func (s *Service) deviceOf(u *User, d dtoken.Device) bool {
	raw, ok := rawID(u.ID)
	return ok && raw == d.User && d.Epoch == s.passwordEpoch(u)
}

// returningDevice returns the device id of presented when that is a valid
// device token of u at now, and the zero id otherwise.
func (s *Service) returningDevice(u *User, presented string, now time.Time) [dtoken.IDSize]byte {
	if presented == "" {
		return [dtoken.IDSize]byte{}
	}
	d, err := s.devices.Decode(presented, now)
	if err != nil || !s.deviceOf(u, d) {
		return [dtoken.IDSize]byte{}
	}
	return d.Device
}

// deviceToken returns the device token to hand out after a successful login
// of u: device is the id a returning device keeps (and with it its throttle
// bucket), given a new expiry; the zero id makes a new device. A user id
// that is not a Latch id gets none.
func (s *Service) deviceToken(u *User, device [dtoken.IDSize]byte, now time.Time) string {
	raw, ok := rawID(u.ID)
	if !ok {
		return ""
	}
	if device == ([dtoken.IDSize]byte{}) {
		rand.Read(device[:])
	}
	return s.devices.Encode(dtoken.Device{User: raw, Device: device, Epoch: s.passwordEpoch(u), Expires: now.Add(DeviceTTL)})
}
