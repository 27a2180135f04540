package config

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is one rate-limit bucket as an operator writes it: N/PERIOD admits
// N requests per PERIOD on average, and up to Burst at once after a quiet
// spell (default Burst: N). "30/1m" is 30 a minute, burst 30;
// "600/1m,burst=200" is 600 a minute, at most 200 at once.
type Rate struct {
	N     int
	Per   time.Duration
	Burst int
}

// Every is the refill interval of the token bucket: one token per Every.
func (r Rate) Every() time.Duration { return r.Per / time.Duration(r.N) }

func (r Rate) String() string {
	if r.N == 0 {
		return ""
	}
	s := strconv.Itoa(r.N) + "/" + shortDuration(r.Per)
	if r.Burst != r.N {
		s += ",burst=" + strconv.Itoa(r.Burst)
	}
	return s
}

// shortDuration writes 1m for a minute and 1h for an hour, where
// time.Duration.String writes 1m0s and 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// rateForm is what every rate flag's error message says it expects.
const rateForm = "want N/PERIOD[,burst=B], such as 30/1m or 600/1m,burst=200 (N and B whole numbers >= 1, PERIOD a Go duration)"

// ParseRate parses N/PERIOD[,burst=B].
func ParseRate(s string) (Rate, error) {
	main, burst, hasBurst := strings.Cut(strings.TrimSpace(s), ",")
	ns, per, ok := strings.Cut(main, "/")
	if !ok {
		return Rate{}, errors.New(rateForm)
	}
	n, err := strconv.Atoi(strings.TrimSpace(ns))
	if err != nil || n < 1 {
		return Rate{}, errors.New(rateForm)
	}
	d, err := time.ParseDuration(strings.TrimSpace(per))
	if err != nil || d <= 0 {
		return Rate{}, errors.New(rateForm)
	}
	r := Rate{N: n, Per: d, Burst: n}
	if hasBurst {
		b, ok := strings.CutPrefix(strings.TrimSpace(burst), "burst=")
		if r.Burst, err = strconv.Atoi(b); !ok || err != nil || r.Burst < 1 {
			return Rate{}, errors.New(rateForm)
		}
	}
	if r.Every() <= 0 {
		return Rate{}, fmt.Errorf("%d per %s is more than one a nanosecond: %s", n, d, rateForm)
	}
	return r, nil
}

// rateValue is a Rate as a flag.Value.
type rateValue struct{ r *Rate }

func (v rateValue) String() string {
	if v.r == nil {
		return ""
	}
	return v.r.String()
}

func (v rateValue) Set(s string) error {
	r, err := ParseRate(s)
	if err != nil {
		return err
	}
	*v.r = r
	return nil
}

// Rates are the rate-limit buckets of `latch serve`. The defaults are
// ratelimit.DefaultPolicy's (docs/security.md LOGIN-03, LOGIN-05).
type Rates struct {
	LoginIP, LoginAccount, LoginDevice, SignupIP, RefreshIP Rate
	EmailIP, EmailAddress                                   Rate
}

type rateFlag struct {
	name  string
	r     *Rate
	def   string
	usage string
}

func (r *Rates) flags() []rateFlag {
	return []rateFlag{
		{"rate-login-ip", &r.LoginIP, "30/1m", "login attempts per client IP (IPv6: per /64); raise it for many users behind one carrier-grade NAT"},
		{"rate-login-account", &r.LoginAccount, "90/1h,burst=10", "login attempts per account from addresses that are not a known device: the password-guessing cap"},
		{"rate-login-device", &r.LoginDevice, "90/1h,burst=10", "login attempts per device token (a returning device's own bucket)"},
		{"rate-signup-ip", &r.SignupIP, "10/1m", "signups per client IP"},
		{"rate-refresh-ip", &r.RefreshIP, "600/1m,burst=200", "refreshes per client IP"},
		{"rate-email-ip", &r.EmailIP, "10/1m", "account email requests (forgot password, reset, verify, email change) per client IP"},
		{"rate-email-address", &r.EmailAddress, "5/1h,burst=3", "messages requested to one email address, registered or not"},
	}
}

func rateFlags(fs *flag.FlagSet, r *Rates) {
	for _, f := range r.flags() {
		*f.r, _ = ParseRate(f.def)
		fs.Var(rateValue{f.r}, f.name, f.usage+" (N/PERIOD[,burst=B])")
	}
}

// changed names the rate flags whose value is not the default.
func (r *Rates) changed() []string {
	var out []string
	for _, f := range r.flags() {
		if def, _ := ParseRate(f.def); *f.r != def {
			out = append(out, "--"+f.name)
		}
	}
	return out
}
