package webhook

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

var testSecret = bytes.Repeat([]byte("s3cret-"), 5) // 35 bytes

func signedHeader(secret []byte, id string, at time.Time, body []byte) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, "v1="+sign(secret, id, ts, body))
	return h
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_760_000_000, 0)
	body := []byte(`{"id":"abc","type":"refresh.reuse"}`)
	good := func() http.Header { return signedHeader(testSecret, "abc", now, body) }
	tests := []struct {
		name      string
		secret    []byte
		header    func() http.Header
		body      []byte
		now       time.Time
		tolerance time.Duration
		want      error
	}{
		{name: "valid", header: good},
		{name: "valid within tolerance", header: good, now: now.Add(4 * time.Minute)},
		{name: "valid, custom tolerance", header: good, now: now.Add(time.Hour), tolerance: 2 * time.Hour},
		{name: "tampered body", header: good, body: []byte(`{"id":"abc","type":"user.disabled"}`), want: ErrSignature},
		{name: "wrong secret", header: good, secret: bytes.Repeat([]byte("x"), 32), want: ErrSignature},
		{name: "old timestamp", header: good, now: now.Add(6 * time.Minute), want: ErrTimestamp},
		{name: "future timestamp", header: good, now: now.Add(-6 * time.Minute), want: ErrTimestamp},
		{name: "timestamp changed", header: func() http.Header {
			h := good()
			h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}, want: ErrSignature},
		{name: "id changed", header: func() http.Header {
			h := good()
			h.Set(HeaderID, "abd")
			return h
		}, want: ErrSignature},
		{name: "second of several signatures matches", header: func() http.Header {
			h := good()
			h.Set(HeaderSignature, "v0=zz, v1=00ff,"+h.Get(HeaderSignature))
			return h
		}},
		{name: "no v1 prefix", header: func() http.Header {
			h := good()
			h.Set(HeaderSignature, h.Get(HeaderSignature)[3:])
			return h
		}, want: ErrSignature},
		{name: "missing signature", header: func() http.Header {
			h := good()
			h.Del(HeaderSignature)
			return h
		}, want: ErrMissingHeader},
		{name: "missing id", header: func() http.Header {
			h := good()
			h.Del(HeaderID)
			return h
		}, want: ErrMissingHeader},
		{name: "malformed timestamp", header: func() http.Header {
			h := good()
			h.Set(HeaderTimestamp, "yesterday")
			return h
		}, want: ErrMissingHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, b, at := tt.secret, tt.body, tt.now
			if secret == nil {
				secret = testSecret
			}
			if b == nil {
				b = body
			}
			if at.IsZero() {
				at = now
			}
			err := Verify(secret, tt.header(), b, at, tt.tolerance)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("abc", "1760000000", "v1=00", []byte("{}"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		_ = Verify(testSecret, h, body, time.Unix(1_760_000_000, 0), 0)
	})
}
