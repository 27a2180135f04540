// Package cli implements the latch command: the server (serve), the admin
// commands, which share the storage flags, and the user commands (login,
// whoami, logout, token), which are clients of a server.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/config"
	"github.com/latchauth/latch/internal/feed"
	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/logbuf"
	"github.com/latchauth/latch/internal/mail"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/rtoken"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/token"
)

// ErrUsage reports a command line that could not be parsed; the usage text
// has been printed already.
var ErrUsage = errors.New("usage")

// errHelpShown ends a command whose -h output was printed; Run returns nil.
var errHelpShown = errors.New("help shown")

// ExitCode is the process exit status for an error returned by Run.
func ExitCode(err error) int {
	if errors.Is(err, ErrUsage) {
		return 2
	}
	return 1
}

const usage = `latch: authentication and session server

Usage:
  latch serve [flags]                 run the server (SQLite at ./latch.db by default;
                                      --database postgres://… for PostgreSQL)
  latch migrate [flags]               apply database migrations
  latch users create EMAIL [--password-stdin]
  latch users list | disable EMAIL | enable EMAIL | delete EMAIL
  latch sessions list EMAIL | revoke SESSION_ID | revoke --user EMAIL
  latch keys list | rotate [--force]
  latch keys rewrap --new-key-encryption-key K | --new-key-encryption-key-file F
  latch clients create ID --audience A [--access-ttl D] [--grants G] [--scopes S] [--claims C] [--confidential] [--dpop-required]
  latch clients update ID [--audience A] [--access-ttl D] [--grants G] [--scopes S] [--claims C]
  latch clients list | delete ID | rotate-secret ID
  latch audit [--since 24h] [--until T] [--type T] [--user EMAIL] [--limit N] [--json]

  latch login [--issuer URL] [--email E] [--password-stdin] [--dpop auto|require|off]   log in; the session is kept in a file
  latch whoami                        show the logged-in user and session
  latch token [--proof "METHOD URL"]  print a fresh access token (curl -H "Authorization: Bearer $(latch token)"), or a DPoP proof for one request
  latch logout [--scope current|others|all]

  latch version                       print the version and the build's Go version

Load tests and the trade-off measurements are a separate command,
latch-bench (go run ./cmd/latch-bench -h).

Every flag has an environment twin: --access-ttl is LATCH_ACCESS_TTL.
Run "latch COMMAND -h" for a command's flags.
`

type io3 struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// Run runs the latch command line args.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || slices.Contains([]string{"-h", "--help", "help"}, args[0]) {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return ErrUsage
		}
		return nil
	}
	err := dispatch(ctx, args[0], args[1:], io3{stdin, stdout, stderr})
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, cmd string, rest []string, s io3) error {
	switch cmd {
	case "serve":
		return runServe(ctx, rest, s)
	case "migrate":
		return runMigrate(ctx, rest, s)
	case "users":
		return runUsers(ctx, rest, s)
	case "sessions":
		return runSessions(ctx, rest, s)
	case "keys":
		return runKeys(ctx, rest, s)
	case "clients":
		return runClients(ctx, rest, s)
	case "audit":
		return runAudit(ctx, rest, s)
	case "login":
		return runLogin(ctx, rest, s)
	case "whoami":
		return runWhoami(ctx, rest, s)
	case "logout":
		return runLogout(ctx, rest, s)
	case "token":
		return runToken(ctx, rest, s)
	case "version":
		return runVersion(rest, s)
	case "bench":
		// The load generator left the server binary; say where it went.
		fmt.Fprintln(s.stderr, "latch: bench is its own command now: latch-bench "+strings.Join(rest, " ")+" (go run ./cmd/latch-bench …)")
		return ErrUsage
	}
	fmt.Fprintf(s.stderr, "latch: unknown command %q\n\n%s", cmd, usage)
	return ErrUsage
}

func newFlags(name string, s io3) *flag.FlagSet {
	fs := flag.NewFlagSet("latch "+name, flag.ContinueOnError)
	fs.SetOutput(s.stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string, c *config.Config) ([]string, error) {
	rest, err := config.Parse(fs, args, c)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelpShown
		}
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return rest, nil
}

// store is what the commands need of storage; SQLite and PostgreSQL
// provide it.
type store interface {
	session.Store
	feed.Source
	token.Store
	token.Resealer
	Ping(ctx context.Context) error
	Migrate(ctx context.Context) ([]string, error)
	Close() error
	mail.Outbox
}

// deps is what every command builds from the storage flags.
type deps struct {
	cfg    *config.Config
	store  store
	kek    *keywrap.KEK
	log    *slog.Logger
	issuer *token.Issuer
	emails session.EmailReport // what the email pass of migrating did
	// stopHooks, set by runHooks, flushes an admin command's webhooks.
	stopHooks func()
}

// logEmails logs what renormalising stored emails did: user ids only, the
// log is no place for addresses (latch migrate prints them).
func (d *deps) logEmails() {
	if d.emails.Updated > 0 {
		d.log.Info("rewrote stored email addresses to their canonical form (NFC, IDNA)", "count", d.emails.Updated)
	}
	for _, c := range d.emails.Collisions {
		d.log.Warn("users whose email addresses normalise to one address were left unchanged; only the one already in canonical form (if any) can log in; disable the others (latch users disable ID)", "user_ids", c.UserIDs)
	}
	if len(d.emails.Invalid) > 0 {
		d.log.Warn("users whose stored email address holds an invisible or control character cannot log in", "user_ids", d.emails.Invalid)
	}
}

func (d *deps) Close() {
	if d.stopHooks != nil {
		d.stopHooks()
	}
	if d.store != nil {
		d.store.Close()
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	var h slog.Handler = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})
	if b, ok := w.(*logbuf.Writer); ok {
		h = logbuf.Handler(h, b) // warnings and errors go out at once
	}
	return slog.New(h)
}

// kekMode says what a command needs of the key-encryption key.
type kekMode int

const (
	kekNone   kekMode = iota // migrate: storage only
	kekLoad                  // admin commands: the key must exist
	kekCreate                // serve: create the default file if missing
)

// open opens and migrates storage and loads the key-encryption key;
// pgOpts apply when the storage is PostgreSQL.
func open(ctx context.Context, c *config.Config, s io3, mode kekMode, pgOpts ...postgres.Option) (*deps, error) {
	if err := c.ValidateStorage(); err != nil {
		return nil, err
	}
	d := &deps{cfg: c, log: newLogger(s.stderr, c.LogLevel)}
	if c.IsPostgres() && mode != kekNone && c.KEK == "" && c.KEKFile == "" {
		// Every node must open the same sealed keys, so a key created on
		// the spot would be wrong; and keys at rest in a shared database
		// must be sealed.
		return nil, errors.New("PostgreSQL needs a key-encryption key, the same on every node: pass --key-encryption-key (32 random bytes, standard base64: openssl rand -base64 32) or --key-encryption-key-file")
	}
	path := c.SQLitePath()
	var err error
	if c.IsPostgres() {
		pgOpts = append(pgOpts, postgres.WithLimits(postgres.Limits{AcquireWait: c.DBAcquireTimeout}))
		d.store, err = postgres.Open(ctx, c.Database, pgOpts...)
	} else {
		opts := []sqlite.Option{sqlite.WithLimits(sqlite.Limits{AcquireWait: c.DBAcquireTimeout})}
		if mode == kekLoad {
			// Admin commands act on a database that exists; a mistyped
			// --database must not leave an empty one behind.
			opts = append(opts, sqlite.MustExist())
		}
		d.store, err = sqlite.Open(ctx, path, opts...)
	}
	if errors.Is(err, sqlite.ErrNoDatabase) {
		return nil, fmt.Errorf("no database at %s: check --database, or create it with latch migrate --database sqlite:%s (latch serve creates it too)", path, path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := d.store.Migrate(ctx); err != nil {
		d.Close()
		return nil, err
	}
	if d.emails, err = session.RenormalizeEmails(ctx, d.store); err != nil {
		d.Close()
		return nil, err
	}
	d.logEmails()
	switch {
	case mode == kekNone:
	case c.KEK != "":
		d.kek, err = keywrap.Parse(c.KEK)
	case c.KEKFile != "" && c.IsPostgres():
		d.kek, err = keywrap.LoadFile(c.KEKFile)
	case c.KEKFile != "":
		d.kek, _, err = d.kekFile(ctx, c.KEKFile)
	default:
		kekPath := path + ".kek"
		if mode != kekCreate {
			if _, serr := os.Stat(kekPath); serr != nil {
				err = fmt.Errorf("no key-encryption key: give --key-encryption-key(-file), or run latch serve once to create %s", kekPath)
				break
			}
		}
		var created bool
		d.kek, created, err = d.kekFile(ctx, kekPath)
		if created {
			d.log.Warn("created a key-encryption key file beside the database; for production keep it elsewhere and pass --key-encryption-key-file", "path", kekPath)
		}
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// kekFile loads the key-encryption key file at path, creating it (mode
// 0600) only while the database holds nothing sealed. Once it holds sealed
// signing keys or secrets, a missing file is a lost or misplaced key: a new
// one would open none of them, so it is not created (it would be left
// behind as a bogus key file) and the message says to restore the file.
func (d *deps) kekFile(ctx context.Context, path string) (k *keywrap.KEK, created bool, err error) {
	if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		k, err = keywrap.LoadFile(path)
		return k, false, err
	}
	sealed, err := token.HasSealed(ctx, d.store)
	if err != nil {
		return nil, false, err
	}
	if sealed {
		return nil, false, fmt.Errorf("the key-encryption key file %s is missing, but the database holds signing keys sealed under it: restore %s from a backup (or pass the key with --key-encryption-key or --key-encryption-key-file); a new key cannot open them, so none was created", path, path)
	}
	return keywrap.LoadOrCreateFile(path)
}

// services builds the issuer and the session service over d.
func (d *deps) services(ctx context.Context, issuer string, grace, lost, idle, maxLife time.Duration, opts ...session.Option) (*session.Service, error) {
	var err error
	d.issuer, err = token.New(d.store, d.kek, token.Config{
		Issuer: issuer, Alg: d.cfg.SigningAlg, JWKSMaxAge: d.cfg.JWKSMaxAge, LongestAccessTTL: config.LongestAccessTTL,
		// Once a minute: on PostgreSQL a rotation reaches every node at once
		// by NOTIFY (serve's changeListener), and this is the fallback.
		// Rotate waits a reload interval more than --jwks-max-age, so the
		// CLI must compute it the same way.
		Leeway: 30 * time.Second, ReloadInterval: min(time.Minute, d.cfg.JWKSMaxAge/2),
	}, token.WithLogger(d.log))
	if err != nil {
		return nil, err
	}
	if err := d.issuer.Init(ctx); err != nil {
		return nil, err
	}
	rk, err := token.RefreshKey(ctx, d.store, d.kek, time.Now())
	if err != nil {
		return nil, err
	}
	codec, err := rtoken.New(rk)
	if err != nil {
		return nil, err
	}
	slots, err := d.cfg.HashSlots()
	if err != nil {
		return nil, err
	}
	hasher, err := password.NewHasher(d.cfg.Argon2, slots)
	if err != nil {
		return nil, err
	}
	return session.New(d.store, d.issuer, codec, hasher, session.Config{
		Grace: grace, LostWindow: lost, Idle: idle, MaxLifetime: maxLife, LongestAccessTTL: config.LongestAccessTTL,
		AuditRetention: d.cfg.AuditRetention,
	}, append([]session.Option{session.WithLogger(d.log)}, opts...)...)
}

// runVersion prints the module version (set by go install of a tagged
// release; "(devel)" in a checkout), the VCS revision when the build
// recorded it, and the Go version.
func runVersion(args []string, s io3) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: version takes no arguments, got %q", ErrUsage, args)
	}
	version, rev, dirty := "(devel)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				rev = st.Value
			case "vcs.modified":
				dirty = st.Value == "true"
			}
		}
	}
	line := "latch " + version
	if rev != "" {
		line += " " + rev
		if dirty {
			line += "-dirty"
		}
	}
	fmt.Fprintln(s.stdout, line, runtime.Version())
	return nil
}
