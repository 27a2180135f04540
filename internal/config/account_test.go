package config

import (
	"testing"
	"time"
)

// The account lifecycle's flags: off by default, environment twins, and
// the checks Validate makes.
func TestAccountFlags(t *testing.T) {
	c, _, err := parseServe(t)
	if err != nil || c.Validate() != nil {
		t.Fatal(err)
	}
	if c.SMTPURL != "" || c.AppURL != "" || c.RequireVerifiedEmail || c.SignupEnumerationSafe || c.VerifyTTL != 24*time.Hour || c.ResetTTL != 30*time.Minute {
		t.Fatalf("defaults %+v", c)
	}
	t.Setenv("LATCH_SMTP_URL", "smtps://u:p@mail.example.com")
	c, _, _ = parseServe(t, "--issuer", "https://auth.example.com")
	if err := c.Validate(); err != nil || c.EmailFrom != "Latch <no-reply@auth.example.com>" || !c.EmailFromDefaulted {
		t.Fatalf("--smtp-url without --email-from: %v, from %q", err, c.EmailFrom)
	}
	c, _, _ = parseServe(t)
	if c.Validate(); c.EmailFrom != "Latch <no-reply@localhost>" {
		t.Fatalf("the default sender of an IP issuer: %q", c.EmailFrom)
	}
	c, _, _ = parseServe(t, "--email-from", "no-reply@example.com", "--signup-enumeration-safe")
	if err := c.Validate(); err != nil || !c.RequireVerifiedEmail || c.SMTPURL != "smtps://u:p@mail.example.com" {
		t.Fatalf("enumeration-safe signup: %v, require verified %v", err, c.RequireVerifiedEmail)
	}
	for _, bad := range [][]string{{"--password-reset-ttl", "10s"}, {"--email-verify-ttl", "2000h"}} {
		c, _, _ = parseServe(t, append([]string{"--email-from", "a@example.com"}, bad...)...)
		if err := c.Validate(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
