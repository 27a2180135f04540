package session_test

import (
	"testing"

	"github.com/latchauth/latch/internal/session"
)

// TestCheckOrigin: a web client's origins are exact serialized origins
// (RFC 6454 section 6.2), because the browser's Origin header is compared
// with them byte for byte; http only on a loopback host.
func TestCheckOrigin(t *testing.T) {
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true},
		{"https://app.example.com:8443", true},
		{"http://localhost:5173", true},
		{"http://127.0.0.1:3000", true},
		{"http://[::1]:3000", true},
		{"https://app.example.com/", false},
		{"https://app.example.com/path", false},
		{"https://app.example.com:443", false},
		{"http://localhost:80", false},
		{"https://App.example.com", false},
		{"HTTPS://app.example.com", false},
		{"http://app.example.com", false},
		{"https://user@app.example.com", false},
		{"https://app.example.com?x", false},
		{"https://app.example.com#x", false},
		{"https://app.example.com:", false},
		{"*", false},
		{"null", false},
		{"", false},
		{"ftp://app.example.com", false},
		{"app.example.com", false},
	} {
		if err := session.CheckOrigin(tc.origin); (err == nil) != tc.ok {
			t.Errorf("CheckOrigin(%q) = %v, want ok=%v", tc.origin, err, tc.ok)
		}
	}
	web := session.Client{Web: true, Origins: []string{"https://app.example.com"}}
	for origin, want := range map[string]bool{"https://app.example.com": true, "https://app.example.com.evil": false, "": false, "null": false} {
		if got := web.AllowsOrigin(origin); got != want {
			t.Errorf("AllowsOrigin(%q) = %v, want %v", origin, got, want)
		}
	}
	notWeb := session.Client{Origins: []string{"https://app.example.com"}}
	if notWeb.AllowsOrigin("https://app.example.com") {
		t.Error("a client that is not a web client allows an origin")
	}
}
