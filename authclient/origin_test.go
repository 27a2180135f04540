package authclient

import (
	"net/url"
	"testing"
)

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"https://api.example/a", "https://api.example/b?x=1", true},
		{"https://api.example/", "https://API.example:443/", true},
		{"http://api.example/", "http://api.example:80/", true},
		{"https://api.example/", "http://api.example/", false}, // downgrade
		{"https://api.example/", "https://api.example:8443/", false},
		{"https://api.example/", "https://evil.api.example/", false},
		{"https://api.example/", "https://api.example.evil/", false},
		{"https://api.example/", "https://user@evil.example/", false},
		{"ftp://api.example/", "ftp://api.example/", false}, // unknown scheme: no default port
	} {
		a, _ := url.Parse(tc.a)
		b, _ := url.Parse(tc.b)
		if got := sameOrigin(a, b); got != tc.want {
			t.Errorf("sameOrigin(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
