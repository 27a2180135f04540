package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestMetaUserAgent: the User-Agent stored with a session is valid UTF-8
// (PostgreSQL refuses anything else) and at most 512 bytes, cut between
// characters.
func TestMetaUserAgent(t *testing.T) {
	s := &Server{}
	for _, tt := range []struct {
		name, ua, want string
	}{
		{"plain", "app/1.0", "app/1.0"},
		{"invalid byte", "app\xff/1.0", "app\uFFFD/1.0"},
		{"cut inside a character", strings.Repeat("a", 511) + "é", strings.Repeat("a", 511)},
		{"long", strings.Repeat("b", 600), strings.Repeat("b", 512)},
	} {
		r := httptest.NewRequest("POST", "/oauth/token", nil)
		r.Header.Set("User-Agent", tt.ua)
		got := s.meta(r).UserAgent
		if got != tt.want || !utf8.ValidString(got) || len(got) > 512 {
			t.Errorf("%s: stored %q (%d bytes), want %q", tt.name, got, len(got), tt.want)
		}
	}
}
