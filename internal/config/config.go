// Package config holds the server's configuration: flags, their
// environment twins (--access-ttl / LATCH_ACCESS_TTL), defaults that work
// with no flags at all, and validation with precise messages.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/token"
)

// Config is everything `latch serve` needs.
type Config struct {
	Addr                 string
	Database             string
	Issuer               string
	Audience             string
	AccountAudience      string
	AccessTTL            time.Duration
	RefreshGrace         time.Duration
	RefreshLostWindow    time.Duration
	SessionIdle          time.Duration
	SessionMax           time.Duration
	SigningAlg           string
	KEK                  string
	KEKFile              string
	JWKSMaxAge           time.Duration
	Retention            time.Duration
	AuditRetention       time.Duration
	RateLimit            bool
	Rates                Rates
	Redis                string
	TrustedProxies       string
	CORSOrigins          string
	CORSCredentials      bool
	DPoPNonce            bool
	WebhookURL           string
	WebhookSecret        string
	WebhookEvents        string
	SweepInterval        time.Duration
	FeedPollInterval     time.Duration
	DebugAddr            string
	FeedStreamsPerClient int
	MaxConnections       int
	MaxInFlight          int
	DBAcquireTimeout     time.Duration
	RequestTimeout       time.Duration
	ReadTimeout          time.Duration
	Metrics              bool
	LogLevel             string
	Argon2               password.Params
	// Argon2BudgetKiB bounds the memory of the hashes running at once
	// (--argon2-memory-budget); 0 means one hash per core. See HashSlots.
	Argon2BudgetKiB uint64
	// The account lifecycle (docs/account-lifecycle.md).
	SMTPURL               string
	EmailFrom             string
	AppURL                string
	EmailTemplates        string
	VerifyTTL             time.Duration
	ResetTTL              time.Duration
	RequireVerifiedEmail  bool
	SignupEnumerationSafe bool
	// EmailFromDefaulted: --email-from was not given and Validate derived
	// it from the issuer (serve warns).
	EmailFromDefaulted bool

	argon2 func() // copies the argon2 flags into Argon2 after parsing
}

// MaxFeedStreams is how many revocation-feed streams one node serves at
// once (httpapi's default cap).
const MaxFeedStreams = 1024

// Access-token lifetime bounds (DESIGN: 1 minute to 24 hours).
const (
	MinAccessTTL = session.MinAccessTTL
	MaxAccessTTL = session.MaxAccessTTL
)

// LongestAccessTTL bounds how long any access token can stay valid: the
// longest lifetime a client may have, plus the largest clock leeway a
// verifier should use. Retired signing keys stay published, and
// revocation-feed entries stay listed, this long. Using the bound rather
// than the longest lifetime configured today keeps both right when a
// longer-lived client is registered while servers run.
const LongestAccessTTL = MaxAccessTTL + 5*time.Minute

// Storage registers the flags every command that opens storage shares.
func Storage(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Database, "database", "sqlite:latch.db", "storage: sqlite:PATH (or a bare path) or postgres://USER@HOST:PORT/DB?sslmode=…")
	fs.StringVar(&c.KEK, "key-encryption-key", "", "32 random bytes, standard base64, sealing signing keys at rest")
	fs.StringVar(&c.KEKFile, "key-encryption-key-file", "", "file holding the key-encryption key (default for SQLite: the database path + .kek, created if missing; PostgreSQL needs one of the two)")
	fs.StringVar(&c.SigningAlg, "signing-alg", "EdDSA", "algorithm of new signing keys: EdDSA, ES256 or RS256")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.DBAcquireTimeout, "db-acquire-timeout", 250*time.Millisecond, "longest wait for a storage connection; past it the request is shed with 503 and Retry-After (1ms to 10s)")
	mem, it, par := fs.Uint("argon2-memory", uint(password.OWASP.MemoryKiB), "Argon2id memory in KiB"),
		fs.Uint("argon2-iterations", uint(password.OWASP.Iterations), "Argon2id iterations"),
		fs.Uint("argon2-parallelism", uint(password.OWASP.Parallelism), "Argon2id lanes")
	fs.Uint64Var(&c.Argon2BudgetKiB, "argon2-memory-budget", 0, "KiB of memory for the password hashes running at once: min(budget / --argon2-memory, GOMAXPROCS) run, more logins wait up to 3s, then 503 (0: --argon2-memory × GOMAXPROCS, one hash per core)")
	c.argon2 = func() {
		c.Argon2 = password.Params{MemoryKiB: uint32(*mem), Iterations: uint32(*it), Parallelism: uint8(*par)}
	}
	fs.DurationVar(&c.JWKSMaxAge, "jwks-max-age", 5*time.Minute, "JWKS Cache-Control max-age; a new key is published this long before it signs")
}

// Webhooks registers the webhook flags. latch serve and the admin commands
// share them, so that an operator's action sends the events a server's
// would: give both the same values (the LATCH_WEBHOOK_* twins suit that).
func Webhooks(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.WebhookURL, "webhook-url", "", "POST security events here, signed (https, or http to loopback); see docs/webhooks.md")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", "", "HMAC-SHA256 key for webhook signatures, at least 32 bytes (prefer LATCH_WEBHOOK_SECRET)")
	fs.StringVar(&c.WebhookEvents, "webhook-events", "", "comma-separated event types to send (default: reuse, lost response, password change, user disabled, session revoked, password reset, email changed, user deleted)")
}

// ValidateWebhooks reports webhook flags that do not go together.
func (c *Config) ValidateWebhooks() error {
	if (c.WebhookURL == "") != (c.WebhookSecret == "") {
		return errors.New("--webhook-url and --webhook-secret go together")
	}
	return nil
}

// Serve registers the flags of `latch serve`.
func Serve(fs *flag.FlagSet, c *Config) {
	Storage(fs, c)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.DurationVar(&c.AccessTTL, "access-ttl", 15*time.Minute, "access-token lifetime of the built-in client (1m to 24h)")
	fs.StringVar(&c.Issuer, "issuer", "", "public base URL, the tokens' iss (default http://<addr>)")
	fs.StringVar(&c.Audience, "audience", "app", "aud of the built-in client's access tokens")
	fs.StringVar(&c.AccountAudience, "account-audience", "", "the aud an access token needs for the account endpoints; the built-in client gets it too (default: the issuer URL)")
	fs.DurationVar(&c.RefreshGrace, "refresh-grace", 30*time.Second, "G: a repeat of the previous refresh token within G gets the identical current token (never later than L after its rotation, or G when L is 0)")
	fs.DurationVar(&c.RefreshLostWindow, "refresh-lost-window", 24*time.Hour, "L: a repeat of the previous refresh token within L of its rotation gets a fresh successor (0 disables)")
	fs.DurationVar(&c.SessionIdle, "session-idle", 30*24*time.Hour, "end sessions not refreshed for this long")
	fs.DurationVar(&c.SessionMax, "session-max", 0, "absolute session lifetime (0 = none)")
	fs.DurationVar(&c.Retention, "retention", 7*24*time.Hour, "keep revoked and expired sessions this long before the sweeper deletes them")
	fs.DurationVar(&c.AuditRetention, "audit-retention", 90*24*time.Hour, "keep audit events this long (0: forever)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", 10*time.Minute, "how often the sweeper runs")
	fs.BoolVar(&c.RateLimit, "rate-limit", true, "throttle logins, signups and refreshes per account and per IP (see docs/security.md)")
	rateFlags(fs, &c.Rates)
	fs.StringVar(&c.Redis, "redis", "", "redis://HOST:PORT/DB to share rate limits between nodes (default: per process)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For names the client IP")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "comma-separated exact origins (https://app.example.com) allowed to call the API from a browser")
	fs.BoolVar(&c.CORSCredentials, "cors-allow-credentials", false, "send Access-Control-Allow-Credentials to the --cors-origins too (web clients get it for their own origins; leave off unless you know why)")
	fs.BoolVar(&c.DPoPNonce, "dpop-nonce", false, "require a server nonce in every DPoP proof (RFC 9449 section 8): pre-made proofs then live at most 10 minutes")
	Webhooks(fs, c)
	fs.DurationVar(&c.FeedPollInterval, "feed-poll-interval", 250*time.Millisecond, "how often the revocation feed reads storage for other nodes' revocations while it cannot hear them (SQLite, a transaction-mode pooler, PostgreSQL LISTEN down; with LISTEN up it polls every 30s) (10ms to 1m)")
	fs.IntVar(&c.FeedStreamsPerClient, "feed-streams-per-client", 16, "most revocation-feed streams one client may hold open at once (more answer 429), so one credential cannot take every slot")
	fs.IntVar(&c.MaxConnections, "max-connections", 0, "most open client connections; at the cap an idle keep-alive connection makes room, else 503 (0: from the descriptor limit, see docs/operations.md)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 0, "most requests served at once; more answer 503 with Retry-After at once (0: from GOMAXPROCS and the storage pool size)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 10*time.Second, "bound on each request's work, storage calls included; past it 503 (1s to 1m)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 10*time.Second, "time a client has to send a request's headers and body; a slower body is answered 408 (1s to 5m)")
	fs.StringVar(&c.SMTPURL, "smtp-url", "", "send account email through smtp://[user:pass@]host[:port] (STARTTLS required; plain only to loopback) or smtps://… (implicit TLS); default: write messages to the log (prefer LATCH_SMTP_URL, it may hold a password)")
	fs.StringVar(&c.EmailFrom, "email-from", "", "sender address of account email, such as 'Example <no-reply@example.com>' (default: no-reply at the issuer's host; set it for production)")
	fs.StringVar(&c.AppURL, "app-url", "", "template of the links in account email, with {token} and optionally {action} (reset or verify): https://app.example.com/{action}?token={token} or myapp://{action}?token={token} (default: Latch's own /reset and /verify pages)")
	fs.StringVar(&c.EmailTemplates, "email-templates", "", "directory whose verify.txt, verify.html, reset.txt, … replace the embedded message templates")
	fs.DurationVar(&c.VerifyTTL, "email-verify-ttl", 24*time.Hour, "lifetime of verification and email-change links")
	fs.DurationVar(&c.ResetTTL, "password-reset-ttl", 30*time.Minute, "lifetime of password-reset links")
	fs.BoolVar(&c.RequireVerifiedEmail, "require-verified-email", false, "refuse logins (403 email_not_verified) until the address is verified")
	fs.BoolVar(&c.SignupEnumerationSafe, "signup-enumeration-safe", false, "signup answers 202 for every address: a new one gets an account and a verification link, a registered one a notice; implies --require-verified-email")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "serve Go's profiler (net/http/pprof) on this loopback address, such as 127.0.0.1:6060, for docs/performance.md's profiles (default: off)")
	fs.BoolVar(&c.Metrics, "metrics", true, "serve Prometheus metrics at GET /metrics, without authentication: keep that path off the public network")
}

// Parse parses args, flags and positional arguments in any order, then
// fills every flag not given on the command line from its environment twin:
// LATCH_ and the flag name in upper snake case. It returns the positional
// arguments.
func Parse(fs *flag.FlagSet, args []string, c *Config) ([]string, error) {
	explainValues(fs)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	if c.argon2 != nil {
		c.argon2()
	}
	return positional, errors.Join(errs...)
}

// EnvName is the environment twin of a flag.
func EnvName(flagName string) string {
	return "LATCH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// BuiltinAudiences are the audiences of the built-in client: --audience
// and the account audience (once, if they are the same).
func (c *Config) BuiltinAudiences() []string {
	if c.Audience == c.AccountAudience {
		return []string{c.Audience}
	}
	return []string{c.Audience, c.AccountAudience}
}

// SQLitePath returns the file path of a sqlite: database URL, or "" when
// the database is not SQLite.
func (c *Config) SQLitePath() string {
	switch {
	case strings.HasPrefix(c.Database, "sqlite:"):
		return strings.TrimPrefix(strings.TrimPrefix(c.Database, "sqlite:"), "//")
	case strings.Contains(c.Database, "://"):
		return ""
	}
	return c.Database
}

// ParsedTrustedProxies parses --trusted-proxies (CIDRs or single addresses).
func (c *Config) ParsedTrustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(c.TrustedProxies) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("--trusted-proxies: %q is neither a CIDR nor an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// CORSOriginList is --cors-origins split.
func (c *Config) CORSOriginList() []string { return splitList(c.CORSOrigins) }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// RedactedDatabase is the database URL safe to log: any password replaced.
func (c *Config) RedactedDatabase() string {
	if !c.IsPostgres() {
		return c.Database
	}
	u, err := url.Parse(c.Database)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// IsPostgres reports whether the database is a PostgreSQL URL.
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://")
}

// HashSlots returns how many password hashes run at once: as many as
// --argon2-memory-budget holds at --argon2-memory each, at most one per
// core (GOMAXPROCS), where the CPU-bound hash stops gaining throughput.
func (c *Config) HashSlots() (int, error) {
	n, err := password.Slots(c.Argon2, c.Argon2BudgetKiB, runtime.GOMAXPROCS(0))
	if err != nil {
		return 0, fmt.Errorf("--argon2-memory-budget %d KiB is less than one hash's --argon2-memory %d KiB: raise the budget or lower the memory", c.Argon2BudgetKiB, c.Argon2.MemoryKiB)
	}
	return n, nil
}

// ValidateStorage checks the flags shared by every command that opens storage.
func (c *Config) ValidateStorage() error {
	var errs []error
	if c.SQLitePath() == "" && !c.IsPostgres() {
		// Not quoted back: a URL may carry a password.
		errs = append(errs, errors.New("--database: must be sqlite:PATH or postgres://…"))
	}
	if p := c.SQLitePath(); strings.ContainsAny(p, "?#") {
		// The SQLite driver would read what follows as connection
		// parameters (mode=memory, _pragma=…); Latch sets its own. The
		// store escapes them too, but a path holding them is most likely
		// meant as parameters, so say so rather than create "x.db?mode=ro".
		errs = append(errs, fmt.Errorf("--database: the sqlite: path %q contains '?' or '#': Latch passes no parameters to SQLite (it sets WAL, foreign keys and a busy timeout itself); name a file without them", p))
	}
	if c.KEK != "" && c.KEKFile != "" {
		errs = append(errs, errors.New("--key-encryption-key and --key-encryption-key-file are exclusive"))
	}
	if err := (token.Config{Issuer: "x", Alg: c.SigningAlg, JWKSMaxAge: 1, LongestAccessTTL: 1, ReloadInterval: 1}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--signing-alg: %w", err))
	}
	if err := c.Argon2.Validate(); err != nil {
		errs = append(errs, err)
	} else if _, err := c.HashSlots(); err != nil {
		errs = append(errs, err)
	}
	if c.DBAcquireTimeout != 0 && (c.DBAcquireTimeout < time.Millisecond || c.DBAcquireTimeout > 10*time.Second) {
		errs = append(errs, fmt.Errorf("--db-acquire-timeout %s: must be between 1ms and 10s", c.DBAcquireTimeout))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: must be debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// Validate checks a `latch serve` configuration and fills derived defaults
// (the issuer). Every problem is reported, not just the first.
func (c *Config) Validate() error {
	errs := []error{c.ValidateStorage()}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("--addr %q: %w", c.Addr, err))
	}
	if c.VerifyTTL < time.Minute || c.ResetTTL < time.Minute || c.VerifyTTL > 30*24*time.Hour || c.ResetTTL > 24*time.Hour {
		errs = append(errs, errors.New("--email-verify-ttl must be 1m to 720h and --password-reset-ttl 1m to 24h"))
	}
	if c.SignupEnumerationSafe {
		// Otherwise whoever signs up first with someone else's address
		// could use the account before its owner ever sees it.
		c.RequireVerifiedEmail = true
	}
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Addr
	}
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		// RFC 8414 section 2: an https URL with no query or fragment; http
		// is allowed for local use.
		errs = append(errs, fmt.Errorf("--issuer %q: must be an http(s) URL without query or fragment", c.Issuer))
	}
	c.Issuer = strings.TrimSuffix(c.Issuer, "/")
	if c.SMTPURL != "" && c.EmailFrom == "" {
		c.EmailFrom, c.EmailFromDefaulted = DefaultEmailFrom(c.Issuer), true
	}
	if c.Audience == "" || strings.ContainsAny(c.Audience, " \t\r\n") {
		errs = append(errs, fmt.Errorf("--audience %q: must be one audience, without spaces", c.Audience))
	}
	if c.AccountAudience == "" {
		c.AccountAudience = c.Issuer
	}
	if strings.ContainsAny(c.AccountAudience, " \t\r\n") {
		errs = append(errs, fmt.Errorf("--account-audience %q: must be one audience, without spaces", c.AccountAudience))
	}
	if c.RefreshGrace < 0 {
		errs = append(errs, errors.New("--refresh-grace must not be negative"))
	}
	if c.RefreshLostWindow < 0 || (c.RefreshLostWindow != 0 && c.RefreshLostWindow <= c.RefreshGrace) {
		errs = append(errs, fmt.Errorf("--refresh-lost-window %s: must exceed --refresh-grace (%s), or be 0", c.RefreshLostWindow, c.RefreshGrace))
	}
	if c.SessionIdle <= 0 {
		errs = append(errs, errors.New("--session-idle must be positive"))
	}
	if c.SessionMax < 0 {
		errs = append(errs, errors.New("--session-max must not be negative"))
	}
	if c.JWKSMaxAge < time.Second || c.JWKSMaxAge > 24*time.Hour {
		errs = append(errs, errors.New("--jwks-max-age must be between 1s and 24h"))
	}
	if _, err := c.ParsedTrustedProxies(); err != nil {
		errs = append(errs, err)
	}
	for _, o := range c.CORSOriginList() {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || o == "*" {
			errs = append(errs, fmt.Errorf("--cors-origins: %q is not an exact origin like https://app.example.com", o))
		}
	}
	if c.Redis != "" && !c.RateLimit {
		errs = append(errs, errors.New("--redis shares rate limits, but --rate-limit is off"))
	}
	if set := c.Rates.changed(); len(set) > 0 && !c.RateLimit {
		errs = append(errs, fmt.Errorf("%s set a rate limit, but --rate-limit is off", strings.Join(set, ", ")))
	}
	if err := c.ValidateWebhooks(); err != nil {
		errs = append(errs, err)
	}
	if c.AuditRetention < 0 {
		errs = append(errs, errors.New("--audit-retention must not be negative"))
	}
	if c.Retention < 0 || c.SweepInterval <= 0 {
		errs = append(errs, errors.New("--retention must not be negative and --sweep-interval must be positive"))
	}
	if c.DebugAddr != "" {
		// The profiler shows memory and goroutine stacks: never on a
		// public interface.
		host, port, err := net.SplitHostPort(c.DebugAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			errs = append(errs, fmt.Errorf("--debug-addr %q: must be a loopback host:port, such as 127.0.0.1:6060", c.DebugAddr))
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			// Checked here, not first at listen, so that a typo fails the
			// start with the other flags' errors.
			errs = append(errs, fmt.Errorf("--debug-addr %q: the port must be a number from 0 to 65535", c.DebugAddr))
		}
	}
	if c.FeedPollInterval < 10*time.Millisecond || c.FeedPollInterval > time.Minute {
		errs = append(errs, fmt.Errorf("--feed-poll-interval %s: must be between 10ms and 1m", c.FeedPollInterval))
	}
	if c.FeedStreamsPerClient < 1 || c.FeedStreamsPerClient > MaxFeedStreams {
		errs = append(errs, fmt.Errorf("--feed-streams-per-client %d: must be between 1 and %d", c.FeedStreamsPerClient, MaxFeedStreams))
	}
	if c.AccessTTL < MinAccessTTL || c.AccessTTL > MaxAccessTTL {
		errs = append(errs, fmt.Errorf("--access-ttl %s: must be between %s and %s", c.AccessTTL, MinAccessTTL, MaxAccessTTL))
	}
	if c.MaxConnections < 0 || c.MaxInFlight < 0 {
		errs = append(errs, errors.New("--max-connections and --max-in-flight must not be negative (0 derives them from the machine)"))
	}
	if c.RequestTimeout != 0 && (c.RequestTimeout < time.Second || c.RequestTimeout > time.Minute) {
		errs = append(errs, fmt.Errorf("--request-timeout %s: must be between 1s and 1m", c.RequestTimeout))
	}
	if c.ReadTimeout != 0 && (c.ReadTimeout < time.Second || c.ReadTimeout > 5*time.Minute) {
		errs = append(errs, fmt.Errorf("--read-timeout %s: must be between 1s and 5m", c.ReadTimeout))
	}
	return errors.Join(errs...)
}

// explainValues makes every flag's parse error say what it expects: the
// flag package's own is "parse error" for a duration, number or boolean,
// which names neither the form nor an example.
func explainValues(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if _, done := f.Value.(explained); done {
			return
		}
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		var want string
		switch g.Get().(type) {
		case time.Duration:
			want = "a duration in Go syntax, such as 90s, 15m or 720h"
		case bool:
			want = "true or false"
		case int, int64, uint, uint64:
			want = "a whole number"
		case float64:
			want = "a number"
		default:
			return
		}
		e := explained{Getter: g, want: want}
		if _, isBool := g.Get().(bool); isBool {
			f.Value = explainedBool{e}
		} else {
			f.Value = e
		}
	})
}

// explained wraps a flag value so that a value that does not parse is
// reported with what was expected.
type explained struct {
	flag.Getter
	want string
}

func (e explained) Set(s string) error {
	if err := e.Getter.Set(s); err != nil {
		return fmt.Errorf("want %s", e.want)
	}
	return nil
}

// explainedBool keeps a boolean flag usable without a value (--metrics).
type explainedBool struct{ explained }

func (explainedBool) IsBoolFlag() bool { return true }

// DefaultEmailFrom is the sender when --email-from is not given:
// no-reply at the issuer's host (localhost for an IP address, which is no
// mail domain). Mail servers may refuse a sender domain that does not
// exist, so production sets --email-from.
func DefaultEmailFrom(issuer string) string {
	host := "localhost"
	if u, err := url.Parse(issuer); err == nil && u.Hostname() != "" && net.ParseIP(u.Hostname()) == nil {
		host = u.Hostname()
	}
	return "Latch <no-reply@" + host + ">"
}
