package cli_test

import (
	"testing"
)

// TestServeRateFlags: --rate-login-ip sets the per-IP login bucket: with
// 2/1m the third attempt from one address is throttled, where the default
// (30/1m) would let it through.
func TestServeRateFlags(t *testing.T) {
	s := startServer(t, "--rate-login-ip", "2/1m")
	for i, want := range []int{400, 400, 429} {
		if code, body := passwordLogin(t, s, "nobody@example.com", "not the password"); code != want {
			t.Fatalf("attempt %d: %d %v, want %d", i+1, code, body, want)
		}
	}
}
