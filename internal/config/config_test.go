package config

import (
	"flag"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseServe(t *testing.T, args ...string) (*Config, []string, error) {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Serve(fs, &c)
	rest, err := Parse(fs, args, &c)
	return &c, rest, err
}

func TestDefaultsAreValid(t *testing.T) {
	c, _, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.Addr != "127.0.0.1:8080" || c.SQLitePath() != "latch.db" || c.Issuer != "http://127.0.0.1:8080" ||
		c.AccessTTL != 15*time.Minute || c.RefreshGrace != 30*time.Second || c.RefreshLostWindow != 24*time.Hour ||
		c.SessionIdle != 30*24*time.Hour || c.SessionMax != 0 || c.SigningAlg != "EdDSA" || c.Argon2.MemoryKiB != 19456 {
		t.Fatalf("defaults differ from DESIGN: %+v", c)
	}
	// The account audience is the issuer URL; the built-in client gets it
	// beside its own.
	if c.AccountAudience != c.Issuer || !slices.Equal(c.BuiltinAudiences(), []string{"app", c.Issuer}) {
		t.Fatalf("account audience %q, built-in audiences %q; want the issuer %q", c.AccountAudience, c.BuiltinAudiences(), c.Issuer)
	}
}

func TestAccountAudience(t *testing.T) {
	t.Setenv("LATCH_ACCOUNT_AUDIENCE", "https://accounts.example")
	c, _, err := parseServe(t, "--issuer", "https://auth.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AccountAudience != "https://accounts.example" || !slices.Equal(c.BuiltinAudiences(), []string{"app", "https://accounts.example"}) {
		t.Fatalf("account audience %q, built-in audiences %q", c.AccountAudience, c.BuiltinAudiences())
	}
	// The same audience twice is one.
	t.Setenv("LATCH_ACCOUNT_AUDIENCE", "")
	c, _, _ = parseServe(t, "--audience", "https://auth.example", "--issuer", "https://auth.example")
	if err := c.Validate(); err != nil || !slices.Equal(c.BuiltinAudiences(), []string{"https://auth.example"}) {
		t.Fatalf("built-in audiences %q, %v", c.BuiltinAudiences(), err)
	}
	c, _, _ = parseServe(t, "--account-audience", "a b")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--account-audience") {
		t.Fatalf("an account audience with a space: %v", err)
	}
}

func TestEnvTwins(t *testing.T) {
	t.Setenv("LATCH_ACCESS_TTL", "5m")
	t.Setenv("LATCH_REFRESH_GRACE", "2s")
	t.Setenv("LATCH_ADDR", "127.0.0.1:9999")
	c, _, err := parseServe(t, "--addr", "127.0.0.1:7777")
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessTTL != 5*time.Minute || c.RefreshGrace != 2*time.Second {
		t.Fatalf("environment not applied: ttl %s grace %s", c.AccessTTL, c.RefreshGrace)
	}
	if c.Addr != "127.0.0.1:7777" {
		t.Fatalf("addr = %s: the command line must win over the environment", c.Addr)
	}
}

func TestEveryFlagHasATwin(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	Serve(fs, &c)
	fs.VisitAll(func(f *flag.Flag) {
		if got := EnvName(f.Name); !strings.HasPrefix(got, "LATCH_") || strings.Contains(got, "-") || got != strings.ToUpper(got) {
			t.Errorf("flag %s: env twin %q", f.Name, got)
		}
	})
	if EnvName("refresh-lost-window") != "LATCH_REFRESH_LOST_WINDOW" {
		t.Fatal(EnvName("refresh-lost-window"))
	}
}

func TestPositionalAndFlagsInAnyOrder(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("users", flag.ContinueOnError)
	Storage(fs, &c)
	force := fs.Bool("force", false, "")
	rest, err := Parse(fs, []string{"create", "ada@example.com", "--force", "--database", "sqlite:x.db"}, &c)
	if err != nil || !*force || c.Database != "sqlite:x.db" || !slices.Equal(rest, []string{"create", "ada@example.com"}) {
		t.Fatalf("Parse = %v, %v; force %v db %q", rest, err, *force, c.Database)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c, _, _ := parseServe(t, "--access-ttl", "30s", "--refresh-grace", "1m", "--refresh-lost-window", "1m",
		"--signing-alg", "HS256", "--issuer", "ftp://x", "--database", "mysql://x")
	err := c.Validate()
	for _, want := range []string{"--access-ttl", "--refresh-lost-window", "--signing-alg", "--issuer", "--database"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
}

func TestSQLitePath(t *testing.T) {
	tests := map[string]string{"sqlite:a.db": "a.db", "sqlite:///tmp/a.db": "/tmp/a.db", "b.db": "b.db", "postgres://h/db": ""}
	for in, want := range tests {
		if got := (&Config{Database: in}).SQLitePath(); got != want {
			t.Errorf("SQLitePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSQLitePathWithParameters: a sqlite: path carrying '?' or '#' is
// refused by name, not handed to the driver as parameters.
func TestSQLitePathWithParameters(t *testing.T) {
	for _, tc := range []struct {
		db string
		ok bool
	}{
		{db: "sqlite:x.db?mode=memory"},
		{db: "sqlite:x.db?_pragma=journal_mode(DELETE)"},
		{db: "sqlite:///tmp/x#y.db"},
		{db: "x.db?mode=ro"},
		{db: "sqlite:///tmp/ok.db", ok: true},
	} {
		t.Run(tc.db, func(t *testing.T) {
			c, _, err := parseServe(t, "--database", tc.db)
			if err != nil {
				t.Fatal(err)
			}
			err = c.ValidateStorage()
			if tc.ok != (err == nil) || (err != nil && (!strings.Contains(err.Error(), "--database") || !strings.Contains(err.Error(), "'?' or '#'"))) {
				t.Fatalf("ValidateStorage() = %v, want ok=%v or a --database error about '?' and '#'", err, tc.ok)
			}
		})
	}
}

func TestRedactedDatabase(t *testing.T) {
	tests := map[string]string{
		"sqlite:a.db":                       "sqlite:a.db",
		"postgres://u:s3cret@h:5432/db?x=1": "postgres://u:xxxxx@h:5432/db?x=1",
		"postgresql://u@h/db":               "postgresql://u@h/db",
		"postgres://u:s3cret@[::1/db":       "postgres://(unparsable URL)",
	}
	for in, want := range tests {
		c := Config{Database: in}
		if got := c.RedactedDatabase(); got != want {
			t.Errorf("RedactedDatabase(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestBadValuesSayWhatIsExpected: a value that does not parse names the
// flag or variable, the value and the form expected (the flag package
// alone says "parse error").
func TestBadValuesSayWhatIsExpected(t *testing.T) {
	tests := []struct {
		name string
		env  [2]string
		args []string
		want []string
	}{
		{"duration flag", [2]string{}, []string{"--access-ttl", "banana"}, []string{"-access-ttl", `"banana"`, "duration", "15m"}},
		{"duration twin", [2]string{"LATCH_ACCESS_TTL", "banana"}, nil, []string{`LATCH_ACCESS_TTL="banana"`, "duration", "15m"}},
		{"boolean twin", [2]string{"LATCH_RATE_LIMIT", "maybe"}, nil, []string{`LATCH_RATE_LIMIT="maybe"`, "true or false"}},
		{"number flag", [2]string{}, []string{"--argon2-memory", "lots"}, []string{"-argon2-memory", "whole number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env[0] != "" {
				t.Setenv(tt.env[0], tt.env[1])
			}
			_, _, err := parseServe(t, tt.args...)
			if err == nil {
				t.Fatal("a bad value parsed")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "parse error") {
				t.Errorf("error %q still says only parse error", err)
			}
		})
	}
	// A boolean flag still works without a value.
	c, _, err := parseServe(t, "--rate-limit", "--metrics=false")
	if err != nil || !c.RateLimit || c.Metrics {
		t.Fatalf("boolean flags: %v, rate-limit %v, metrics %v", err, c.RateLimit, c.Metrics)
	}
}

func TestFeedStreamsPerClient(t *testing.T) {
	tests := []struct {
		args    []string
		want    int
		wantErr bool
	}{
		{nil, 16, false},
		{[]string{"--feed-streams-per-client", "1"}, 1, false},
		{[]string{"--feed-streams-per-client", "1024"}, 1024, false},
		{[]string{"--feed-streams-per-client", "0"}, 0, true},
		{[]string{"--feed-streams-per-client", "1025"}, 1025, true},
	}
	for _, tt := range tests {
		c, _, err := parseServe(t, tt.args...)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		if c.FeedStreamsPerClient != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%v: %d, Validate() = %v; want %d, error %v", tt.args, c.FeedStreamsPerClient, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "--feed-streams-per-client") {
			t.Errorf("%v: error %q does not name the flag", tt.args, err)
		}
	}
}

func TestDebugAddrIsLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr bool
	}{
		{"", false},
		{"127.0.0.1:6060", false},
		{"[::1]:6060", false},
		{"localhost:6060", false},
		{"0.0.0.0:6060", true},
		{":6060", true},
		{"10.0.0.5:6060", true},
		{"example.com:6060", true},
		{"127.0.0.1", true},
		{"127.0.0.1:0", false},
		{"127.0.0.1:65535", false},
		{"127.0.0.1:65536", true},
		{"127.0.0.1:http", true},
		{"127.0.0.1:", true},
		{"127.0.0.1:-1", true},
	}
	for _, tt := range tests {
		c, _, err := parseServe(t, "--debug-addr", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		if (err != nil) != tt.wantErr {
			t.Errorf("--debug-addr %q: Validate() = %v; want error %v", tt.addr, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "--debug-addr") {
			t.Errorf("--debug-addr %q: error %q does not name the flag", tt.addr, err)
		}
	}
}

// TestArgon2MemoryBudget: the budget sizes the hashing slots, at most one
// per core; one too small for a single hash is refused at start, naming
// both flags.
func TestArgon2MemoryBudget(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	tests := []struct {
		args    []string
		want    int
		wantErr bool
	}{
		{nil, procs, false},
		{[]string{"--argon2-memory-budget", "19456"}, 1, false},
		{[]string{"--argon2-memory-budget", "65536"}, min(3, procs), false},
		{[]string{"--argon2-memory-budget", "10000000"}, procs, false},
		{[]string{"--argon2-memory", "65536", "--argon2-memory-budget", "131071"}, 1, false},
		{[]string{"--argon2-memory-budget", "19455"}, 0, true},
		{[]string{"--argon2-memory", "65536", "--argon2-memory-budget", "65535"}, 0, true},
	}
	for _, tt := range tests {
		c, _, err := parseServe(t, tt.args...)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "--argon2-memory-budget") || !strings.Contains(err.Error(), "--argon2-memory ") {
				t.Errorf("%q: Validate() = %v, want an error naming --argon2-memory-budget and --argon2-memory", tt.args, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: Validate() = %v", tt.args, err)
			continue
		}
		if n, _ := c.HashSlots(); n != tt.want {
			t.Errorf("%q: %d hashing slots, want %d (GOMAXPROCS %d)", tt.args, n, tt.want, procs)
		}
	}
}
