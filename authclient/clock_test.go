package authclient

import (
	"net/http"
	"testing"
	"time"
)

func TestSkewObserve(t *testing.T) {
	local := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) http.Header {
		return http.Header{"Date": {local.Add(d).Format(http.TimeFormat)}}
	}
	var s skew
	// First sample: server 5 minutes ahead, a 200 ms round trip.
	s.observe(date(5*time.Minute), local.Add(-100*time.Millisecond), local.Add(100*time.Millisecond))
	if got, want := s.get(), 5*time.Minute+500*time.Millisecond; got != want {
		t.Fatalf("first sample: offset %s, want %s", got, want)
	}
	// Whole-second Date noise only nudges the estimate.
	for i := range 50 {
		sent := local.Add(time.Duration(i) * 730 * time.Millisecond)
		srv := sent.Add(5 * time.Minute)
		s.observe(http.Header{"Date": {srv.Format(http.TimeFormat)}}, sent, sent)
		if d := s.get() - 5*time.Minute; d < -time.Second || d > time.Second {
			t.Fatalf("sample %d: offset %s drifted by %s", i, s.get(), d)
		}
	}
	// A clock step replaces it.
	s.observe(date(-3*time.Minute), local, local)
	if d := s.get() + 3*time.Minute; d < 0 || d > time.Second {
		t.Fatalf("after a step: offset %s, want about -3m", s.get())
	}
	// No or bad Date: ignored.
	before := s.get()
	s.observe(http.Header{}, local, local)
	s.observe(http.Header{"Date": {"yesterday"}}, local, local)
	if s.get() != before {
		t.Fatal("a missing or malformed Date changed the offset")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Duration
	}{
		{"empty", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"spaces", " 3 ", 3 * time.Second},
		{"negative", "-1", 0},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"past date", now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
		{"huge", "99999999999999", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Fatalf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestInvalidTokenChallenge(t *testing.T) {
	tests := []struct {
		name string
		h    []string
		want bool
	}{
		{"latch", []string{`Bearer realm="latch", error="invalid_token", error_description="x"`}, true},
		{"token68 style", []string{`Bearer error=invalid_token`}, true},
		{"no error", []string{`Bearer realm="latch"`}, false},
		{"insufficient scope", []string{`Bearer error="insufficient_scope"`}, false},
		{"basic", []string{`Basic realm="x"`}, false},
		{"second challenge", []string{`Basic realm="x"`, `bearer error="invalid_token"`}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := invalidToken(http.Header{"Www-Authenticate": tt.h}); got != tt.want {
				t.Fatalf("invalidToken(%q) = %v, want %v", tt.h, got, tt.want)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %s, out of range", v, d)
		}
	})
}
