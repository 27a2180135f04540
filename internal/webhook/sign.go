package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Request headers of a delivery.
const (
	// HeaderID carries the event id, the same across retries.
	HeaderID = "Latch-Webhook-Id"
	// HeaderTimestamp carries the attempt's time in Unix seconds.
	HeaderTimestamp = "Latch-Webhook-Timestamp"
	// HeaderSignature carries "v1=" and the lower-case hex HMAC-SHA256 of
	// id + "." + timestamp + "." + body. Receivers accept a
	// comma-separated list and any matching v1 entry.
	HeaderSignature = "Latch-Signature"
)

// DefaultTolerance is the timestamp tolerance [Verify] uses when given 0.
const DefaultTolerance = 5 * time.Minute

// Errors returned by [Verify].
var (
	ErrMissingHeader = errors.New("webhook: missing or malformed signature headers")
	ErrTimestamp     = errors.New("webhook: timestamp outside tolerance")
	ErrSignature     = errors.New("webhook: signature mismatch")
)

// sign returns the hex HMAC-SHA256 of id.timestamp.body under secret.
func sign(secret []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery for a receiver: header holds the request headers
// and body the raw request body, read before any JSON decoding. It fails
// with [ErrMissingHeader], [ErrTimestamp] when the timestamp is further than
// tolerance from now in either direction (0 or less means
// [DefaultTolerance]), or
// [ErrSignature]. The comparison is constant-time. Verify does not dedupe:
// a receiver remembers ids it has handled, at least for the tolerance.
func Verify(secret []byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id := header.Get(HeaderID)
	tsRaw := header.Get(HeaderTimestamp)
	sigs := header.Get(HeaderSignature)
	if id == "" || tsRaw == "" || sigs == "" {
		return ErrMissingHeader
	}
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrMissingHeader, tsRaw)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if skew := now.Sub(time.Unix(ts, 0)).Abs(); skew > tolerance {
		return fmt.Errorf("%w: %s off", ErrTimestamp, skew.Round(time.Second))
	}
	want, _ := hex.DecodeString(sign(secret, id, tsRaw, body))
	for s := range strings.SplitSeq(sigs, ",") {
		v, ok := strings.CutPrefix(strings.TrimSpace(s), "v1=")
		if !ok {
			continue
		}
		got, err := hex.DecodeString(v)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}
