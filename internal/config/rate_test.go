package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  Rate
		every time.Duration
	}{
		{"30/1m", Rate{30, time.Minute, 30}, 2 * time.Second},
		{"600/1m,burst=200", Rate{600, time.Minute, 200}, 100 * time.Millisecond},
		{"90/1h,burst=10", Rate{90, time.Hour, 10}, 40 * time.Second},
		{" 5 / 10s , burst=1 ", Rate{5, 10 * time.Second, 1}, 2 * time.Second},
	} {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want || got.Every() != tc.every {
			t.Errorf("ParseRate(%q) = %+v (every %v), %v; want %+v (every %v)", tc.in, got, got.Every(), err, tc.want, tc.every)
		}
	}
	for _, bad := range []string{"", "30", "0/1m", "-1/1m", "30/0s", "30/-1m", "30/banana", "x/1m", "30/1m,burst=0", "30/1m,burst=x", "30/1m,50", "2/1ns"} {
		if r, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", bad, r)
		}
	}
}

func TestRateFlags(t *testing.T) {
	c, _, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	// The defaults are the documented ones (README "Configuration").
	for name, r := range map[string]Rate{"login-ip": c.Rates.LoginIP, "login-account": c.Rates.LoginAccount,
		"login-device": c.Rates.LoginDevice, "signup-ip": c.Rates.SignupIP, "refresh-ip": c.Rates.RefreshIP} {
		want := map[string]string{"login-ip": "30/1m", "login-account": "90/1h,burst=10", "login-device": "90/1h,burst=10",
			"signup-ip": "10/1m", "refresh-ip": "600/1m,burst=200"}[name]
		if r.String() != want {
			t.Errorf("--rate-%s default %q, want %q", name, r, want)
		}
	}
	t.Setenv("LATCH_RATE_REFRESH_IP", "6000/1m,burst=2000")
	c, _, err = parseServe(t, "--rate-login-ip", "300/1m")
	if err != nil {
		t.Fatal(err)
	}
	if c.Rates.LoginIP != (Rate{300, time.Minute, 300}) || c.Rates.RefreshIP != (Rate{6000, time.Minute, 2000}) {
		t.Fatalf("rates %+v", c.Rates)
	}
	// A bad value names the flag (or its twin) and the form.
	for _, args := range [][]string{{"--rate-login-ip", "30"}, {"--rate-signup-ip", "10/1m,burst=0"}} {
		_, _, err := parseServe(t, args...)
		if err == nil || !strings.Contains(err.Error(), args[0][2:]) || !strings.Contains(err.Error(), "N/PERIOD[,burst=B]") {
			t.Errorf("%q: error %v, want one naming the flag and the form", args, err)
		}
	}
	// A limit given with the limiter off is a mistake, said so.
	c, _, _ = parseServe(t, "--rate-limit=false", "--rate-signup-ip", "1/1m")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--rate-signup-ip") || !strings.Contains(err.Error(), "--rate-limit is off") {
		t.Errorf("Validate = %v, want an error naming --rate-signup-ip and --rate-limit", err)
	}
	t.Setenv("LATCH_RATE_REFRESH_IP", "lots")
	if _, _, err := parseServe(t); err == nil || !strings.Contains(err.Error(), "LATCH_RATE_REFRESH_IP") || !strings.Contains(err.Error(), "600/1m,burst=200") {
		t.Errorf("env error %v, want one naming LATCH_RATE_REFRESH_IP and an example", err)
	}
}
