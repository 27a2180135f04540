package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/config"
	"github.com/latchauth/latch/internal/email"
	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/token"
)

// admin parses the storage flags of an admin command and opens storage and
// the services; the rest of args are returned.
func admin(ctx context.Context, name string, args []string, s io3, extra func(*flagSet)) (*deps, *session.Service, []string, error) {
	var c config.Config
	fs := newFlags(name, s)
	config.Storage(fs, &c)
	config.Webhooks(fs, &c)
	if extra != nil {
		extra(&flagSet{fs})
	}
	rest, err := parse(fs, idsAfterDashes(fs, args), &c)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := c.ValidateWebhooks(); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if c.LogLevel == "info" {
		c.LogLevel = "warn" // admin output is for people; keep routine logs out of it
	}
	d, err := open(ctx, &c, s, kekLoad)
	if err != nil {
		return nil, nil, nil, err
	}
	// The hooks latch serve has, so that what an operator does here is
	// sent to the webhook as it would be from a server.
	opts, hooks, err := commitHooks(&c, d.log, nil)
	if err != nil {
		d.Close()
		return nil, nil, nil, err
	}
	// Admin commands never sign tokens; the issuer value is immaterial.
	svc, err := d.services(ctx, "http://latch-cli.invalid", 0, 0, time.Hour, 0, opts...)
	if err != nil {
		d.Close()
		return nil, nil, nil, err
	}
	if hooks != nil {
		d.runHooks(ctx, hooks)
	}
	return d, svc, rest, nil
}

type flagSet struct{ *flag.FlagSet }

// idsAfterDashes keeps ids arguments: session and user ids are base64url
// and one in 64 begins with '-', which the flag package would take for an
// undefined flag. Such an argument that names no flag of fs (and is no
// flag's value) is moved behind "--", where the flag package leaves it.
func idsAfterDashes(fs *flag.FlagSet, args []string) []string {
	if slices.Contains(args, "--") {
		return args
	}
	var keep, ids []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			keep = append(keep, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil {
			keep = append(keep, a)
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) && i+1 < len(args) {
				i++
				keep = append(keep, args[i]) // the flag's value, whatever it looks like
			}
			continue
		}
		if looksLikeID(a) {
			ids = append(ids, a)
			continue
		}
		keep = append(keep, a)
	}
	if len(ids) == 0 {
		return args
	}
	return append(append(keep, "--"), ids...)
}

// looksLikeID reports whether a is shaped like a session or user id: 22
// characters of unpadded base64url (16 random bytes).
func looksLikeID(a string) bool {
	if len(a) != 22 {
		return false
	}
	for _, r := range a {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func subcommand(args []string, s io3, name string, subs ...string) (string, []string, error) {
	if len(args) == 0 {
		fmt.Fprintf(s.stderr, "usage: latch %s %s\n", name, strings.Join(subs, "|"))
		return "", nil, ErrUsage
	}
	for _, sub := range subs {
		if args[0] == sub {
			return sub, args[1:], nil
		}
	}
	fmt.Fprintf(s.stderr, "latch %s: unknown subcommand %q (want %s)\n", name, args[0], strings.Join(subs, ", "))
	return "", nil, ErrUsage
}

func oneArg(args []string, s io3, what string) (string, error) {
	if len(args) != 1 {
		fmt.Fprintf(s.stderr, "expected one argument: %s\n", what)
		return "", ErrUsage
	}
	return args[0], nil
}

func runMigrate(ctx context.Context, args []string, s io3) error {
	var c config.Config
	fs := newFlags("migrate", s)
	config.Storage(fs, &c)
	if _, err := parse(fs, args, &c); err != nil {
		return err
	}
	if err := c.ValidateStorage(); err != nil {
		return err
	}
	d, err := open(ctx, &c, s, kekNone)
	if err != nil {
		return err
	}
	d.Close()
	fmt.Fprintln(s.stdout, "migrations applied")
	if d.emails.Updated > 0 {
		fmt.Fprintf(s.stdout, "rewrote %d stored email addresses to their canonical form (NFC, IDNA)\n", d.emails.Updated)
	}
	for _, c := range d.emails.Collisions {
		fmt.Fprintf(s.stdout, "warning: users %s have addresses that all normalise to %s; left unchanged: only one already in that form (if any) can log in; disable the others with latch users disable ID\n",
			strings.Join(c.UserIDs, ", "), c.Email)
	}
	if len(d.emails.Invalid) > 0 {
		fmt.Fprintf(s.stdout, "warning: users %s have a stored address holding an invisible or control character; nobody can log in as them\n", strings.Join(d.emails.Invalid, ", "))
	}
	return nil
}

func runUsers(ctx context.Context, args []string, s io3) error {
	sub, rest, err := subcommand(args, s, "users", "create", "list", "disable", "enable", "delete")
	if err != nil {
		return err
	}
	var pwStdin *bool
	d, svc, rest, err := admin(ctx, "users "+sub, rest, s, func(f *flagSet) {
		if sub == "create" {
			pwStdin = f.Bool("password-stdin", false, "read the password from the first line of standard input (default: generate one and print it)")
		}
	})
	if err != nil {
		return err
	}
	defer d.Close()
	switch sub {
	case "create":
		addr, err := oneArg(rest, s, "EMAIL")
		if err != nil {
			return err
		}
		pw, generated := "", false
		if *pwStdin {
			line, err := bufio.NewReader(s.stdin).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("read password: %w", err)
			}
			pw = strings.TrimRight(line, "\r\n")
		} else {
			b := make([]byte, 18)
			rand.Read(b)
			pw, generated = base64.RawURLEncoding.EncodeToString(b), true
		}
		u, _, err := svc.Signup(ctx, session.SignupRequest{Email: addr, Password: pw, Meta: cliMeta})
		switch {
		case errors.Is(err, session.ErrEmailTaken):
			return fmt.Errorf("users create: %s is already registered (latch users list shows the accounts)", addr)
		case errors.Is(err, email.ErrInvisible):
			return fmt.Errorf("users create: %q contains an invisible or control character; type the address again", addr)
		case errors.Is(err, session.ErrInvalidEmail):
			return fmt.Errorf("users create: %q is not a valid email address", addr)
		case errors.Is(err, password.ErrTooShort), errors.Is(err, password.ErrTooLong), errors.Is(err, password.ErrCommon), errors.Is(err, password.ErrInvalid):
			return fmt.Errorf("users create: the password from stdin is refused: %s", strings.TrimPrefix(err.Error(), "password: "))
		case err != nil:
			return fmt.Errorf("users create: %w", err)
		}
		fmt.Fprintf(s.stdout, "created user %s (%s)\n", u.ID, u.Email)
		if generated {
			fmt.Fprintf(s.stdout, "password: %s\n", pw)
		}
	case "list":
		users, err := svc.Users(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEMAIL\tCREATED\tDISABLED")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.ID, u.Email, stamp(u.CreatedAt), stamp(u.DisabledAt))
		}
		return tw.Flush()
	case "disable":
		u, err := argUser(ctx, rest, s, svc)
		if err != nil {
			return err
		}
		if err := svc.DisableUser(ctx, u.ID, cliMeta); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "disabled %s; all sessions revoked\n", u.Email)
	case "enable":
		u, err := argUser(ctx, rest, s, svc)
		if err != nil {
			return err
		}
		changed, err := svc.EnableUser(ctx, u.ID, cliMeta)
		if err != nil {
			return err
		}
		if !changed {
			fmt.Fprintf(s.stdout, "%s is not disabled; nothing changed\n", u.Email)
			return nil
		}
		fmt.Fprintf(s.stdout, "enabled %s; they can log in again (their old sessions stay ended)\n", u.Email)
	case "delete":
		u, err := argUser(ctx, rest, s, svc)
		if err != nil {
			return err
		}
		// Through the session service, as DELETE /v1/me: sessions revoked
		// (the revocation feed hears of them), personal data erased, audit
		// rows kept by user id.
		if err := svc.DeleteUser(ctx, u.ID, session.Meta{}); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "deleted user %s; all sessions revoked; email, metadata and session IPs and user agents erased (audit events keep the id only)\n", u.ID)
	}
	return nil
}

// argUser is the user named by the command's one argument, an email or a
// user id.
func argUser(ctx context.Context, rest []string, s io3, svc *session.Service) (session.User, error) {
	arg, err := oneArg(rest, s, "EMAIL or user id")
	if err != nil {
		return session.User{}, err
	}
	return findUser(ctx, svc, arg)
}

func findUser(ctx context.Context, svc *session.Service, emailOrID string) (session.User, error) {
	if strings.Contains(emailOrID, "@") {
		u, err := svc.UserByEmail(ctx, emailOrID)
		if errors.Is(err, session.ErrNotFound) {
			return u, fmt.Errorf("no user with email %s", emailOrID)
		}
		return u, err
	}
	u, err := svc.User(ctx, emailOrID)
	if errors.Is(err, session.ErrNotFound) {
		return u, fmt.Errorf("no user with id %s", emailOrID)
	}
	return u, err
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func runSessions(ctx context.Context, args []string, s io3) error {
	sub, rest, err := subcommand(args, s, "sessions", "list", "revoke")
	if err != nil {
		return err
	}
	var (
		all  *bool
		user *string
	)
	d, svc, rest, err := admin(ctx, "sessions "+sub, rest, s, func(f *flagSet) {
		switch sub {
		case "list":
			all = f.Bool("all", false, "include revoked and expired sessions not yet swept")
		case "revoke":
			user = f.String("user", "", "revoke every session of this user (EMAIL or user id) instead of one SESSION_ID; the user can log in again")
		}
	})
	if err != nil {
		return err
	}
	defer d.Close()
	switch sub {
	case "list":
		u, err := argUser(ctx, rest, s, svc)
		if err != nil {
			return err
		}
		list, err := svc.Sessions(ctx, u.ID)
		if *all {
			list, err = svc.UserSessions(ctx, u.ID)
		}
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCLIENT\tCREATED\tLAST USED\tIP\tREVOKED\tUSER AGENT")
		for _, ses := range list {
			revoked := stamp(ses.RevokedAt)
			if ses.RevokeReason != "" {
				revoked += " (" + ses.RevokeReason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ses.ID, ses.ClientID, stamp(ses.CreatedAt), stamp(ses.LastUsedAt), ses.IP, revoked, ses.UserAgent)
		}
		return tw.Flush()
	case "revoke":
		if *user != "" {
			if len(rest) > 0 {
				return fmt.Errorf("%w: sessions revoke takes either SESSION_ID or --user, not both", ErrUsage)
			}
			u, err := findUser(ctx, svc, *user)
			if err != nil {
				return err
			}
			ids, err := svc.RevokeUserSessions(ctx, u.ID, cliMeta)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "revoked %d sessions of %s\n", len(ids), u.Email)
			return nil
		}
		id, err := oneArg(rest, s, "SESSION_ID (or --user EMAIL)")
		if err != nil {
			return err
		}
		if err := svc.RevokeSession(ctx, "", id, cliMeta); err != nil {
			if errors.Is(err, session.ErrNotFound) {
				return fmt.Errorf("no session %s", id)
			}
			return err
		}
		fmt.Fprintf(s.stdout, "revoked session %s\n", id)
	}
	return nil
}

func runKeys(ctx context.Context, args []string, s io3) error {
	sub, rest, err := subcommand(args, s, "keys", "list", "rotate", "rewrap")
	if err != nil {
		return err
	}
	var (
		force, create      *bool
		newKEK, newKEKFile *string
	)
	d, svc, _, err := admin(ctx, "keys "+sub, rest, s, func(f *flagSet) {
		switch sub {
		case "rotate":
			force = f.Bool("force", false, "rotate even if the next key has not been published for a full JWKS cache lifetime")
		case "rewrap":
			newKEK = f.String("new-key-encryption-key", "", "the new key-encryption key, 32 random bytes in standard base64")
			newKEKFile = f.String("new-key-encryption-key-file", "", "file holding the new key-encryption key (must exist unless --create)")
			create = f.Bool("create", false, "create --new-key-encryption-key-file with a new random key (mode 0600) if it does not exist")
		}
	})
	if err != nil {
		return err
	}
	defer d.Close()
	switch sub {
	case "list":
		keys, err := d.issuer.Keys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tALG\tSTATE\tPUBLISHED\tCREATED\tACTIVATED\tRETIRED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", k.KID, k.Alg, k.State, k.Published, stamp(k.CreatedAt), stamp(k.ActivatedAt), stamp(k.RetiredAt))
		}
		return tw.Flush()
	case "rotate":
		r, err := d.issuer.Rotate(ctx, *force)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "retired %s\ncurrent %s\nnext    %s\nRunning servers pick the change up within their key reload interval (at most 15s).\n", r.RetireKID, r.PromoteKID, r.Next.KID)
		return svc.RecordAudit(ctx, audit.Event{Type: audit.KeysRotated, Detail: "retired " + r.RetireKID + ", current " + r.PromoteKID + ", next " + r.Next.KID}, cliMeta)
	case "rewrap":
		var next *keywrap.KEK
		switch {
		case (*newKEK == "") == (*newKEKFile == ""):
			return fmt.Errorf("%w: keys rewrap needs exactly one of --new-key-encryption-key and --new-key-encryption-key-file", ErrUsage)
		case *newKEK != "" && *create:
			return fmt.Errorf("%w: keys rewrap --create applies to --new-key-encryption-key-file only", ErrUsage)
		case *newKEK != "":
			next, err = keywrap.Parse(*newKEK)
		case *create:
			var created bool
			next, created, err = keywrap.LoadOrCreateFile(*newKEKFile)
			if created {
				fmt.Fprintf(s.stdout, "created a new key-encryption key in %s (mode 0600); keep a copy: without it the database cannot be opened.\n", *newKEKFile)
			}
		default:
			// A mistyped path must not silently become a new key that the
			// database is then sealed under.
			if _, serr := os.Stat(*newKEKFile); errors.Is(serr, os.ErrNotExist) {
				return fmt.Errorf("keys rewrap: --new-key-encryption-key-file %s does not exist; to generate a new key in it, add --create", *newKEKFile)
			}
			next, err = keywrap.LoadFile(*newKEKFile)
		}
		if err != nil {
			return err
		}
		n, err := token.Rewrap(ctx, d.store, d.kek, next)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "rewrapped %d sealed values under the new key-encryption key.\nRestart every node with the new key now: a node still holding the old one keeps serving from memory but cannot load keys created from now on.\n", n)
		return svc.RecordAudit(ctx, audit.Event{Type: audit.KeysRewrapped, Detail: fmt.Sprintf("%d sealed values", n)}, cliMeta)
	}
	return nil
}

// cliMeta marks the audit events of admin commands.
var cliMeta = session.Meta{UserAgent: "latch-cli"}

func runClients(ctx context.Context, args []string, s io3) error {
	sub, rest, err := subcommand(args, s, "clients", "create", "update", "list", "delete", "rotate-secret")
	if err != nil {
		return err
	}
	var (
		audiences              listFlag
		grants, scopes, claims *string
		ttl                    *time.Duration
		confidential, web      *bool
		origins                *string
		fs                     *flagSet
		dpopRequired           *bool
	)
	d, svc, rest, err := admin(ctx, "clients "+sub, rest, s, func(f *flagSet) {
		fs = f
		if sub != "create" && sub != "update" {
			return
		}
		f.Var(&audiences, "audience", "an aud of the client's access tokens (required; repeat for several, and give the account audience, --account-audience of latch serve, to a client that manages accounts or calls the admin API)")
		ttl = f.Duration("access-ttl", 15*time.Minute, "access-token lifetime, 1m to 24h")
		grants = f.String("grants", "", `space- or comma-separated grant types: password, refresh_token, client_credentials, or "none" (default: password and refresh_token for public first-party apps, none for --confidential clients)`)
		scopes = f.String("scopes", "", "space- or comma-separated scopes the client may request (admin: the admin API)")
		claims = f.String("claims", "", `space- or comma-separated app_metadata keys that become claims of the client's access tokens (roles,tenant); "none" clears them on update`)
		if sub == "create" {
			confidential = f.Bool("confidential", false, "give the client a secret (resource servers, backends)")
			web = f.Bool("web", false, "a browser app in cookie mode: the refresh token only in an HttpOnly cookie, requests only from --origins (docs/design.md \"Browser clients: cookie mode\")")
			origins = f.String("origins", "", "with --web: space- or comma-separated exact origins of the app (https://app.example.com; http only on localhost)")
			dpopRequired = f.Bool("dpop-required", false, "refuse the client's token requests without a DPoP proof (RFC 9449): its tokens are always bound to a key")
		}
	})
	if err != nil {
		return err
	}
	defer d.Close()
	switch sub {
	case "create":
		id, err := oneArg(rest, s, "CLIENT_ID")
		if err != nil {
			return err
		}
		g := splitList(*grants)
		switch {
		case *grants == "" && !*confidential:
			g = []string{session.GrantPassword, session.GrantRefresh}
		case *grants == "none":
			g = nil
		}
		// Confidential clients are resource servers and backends: no
		// password grant unless asked for (docs/security.md LOGIN-13).
		c := session.Client{ID: id, Name: id, Audiences: audiences, AccessTTL: *ttl,
			Grants: g, Scopes: splitList(*scopes), Claims: splitList(*claims), Web: *web, Origins: splitList(*origins), DPoPRequired: *dpopRequired}
		if *confidential && *web {
			// A page cannot keep a secret; cookie mode is for public clients.
			return errors.New("clients create: --web and --confidential exclude each other: a browser app cannot keep a client secret")
		}
		_, secret, err := svc.CreateClient(ctx, c, *confidential, cliMeta)
		switch {
		case errors.Is(err, session.ErrClientExists):
			return fmt.Errorf("client %s already exists", id)
		case errors.Is(err, session.ErrInvalidClient):
			return fmt.Errorf("clients create: %s", clientProblem(err))
		case err != nil:
			return err
		}
		fmt.Fprintf(s.stdout, "created client %s\n", id)
		if secret != "" {
			fmt.Fprintf(s.stdout, "client secret (shown once): %s\n", secret)
		}
	case "update":
		id, err := oneArg(rest, s, "CLIENT_ID")
		if err != nil {
			return err
		}
		// Only the flags given change anything.
		var u session.ClientUpdate
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "audience":
				a := []string(audiences)
				u.Audiences = &a
			case "access-ttl":
				u.AccessTTL = ttl
			case "grants":
				g := splitList(*grants)
				if *grants == "none" {
					g = nil
				}
				u.Grants = &g
			case "scopes":
				sc := splitList(*scopes)
				u.Scopes = &sc
			case "claims":
				cl := splitList(*claims)
				if *claims == "none" {
					cl = nil
				}
				u.Claims = &cl
			}
		})
		c, err := svc.UpdateClient(ctx, id, u, cliMeta)
		switch {
		case errors.Is(err, session.ErrNotFound):
			return fmt.Errorf("clients update: no client %s (latch clients list shows them)", id)
		case errors.Is(err, session.ErrInvalidClient):
			return fmt.Errorf("clients update: %s", clientProblem(err))
		case err != nil:
			return err
		}
		fmt.Fprintf(s.stdout, "updated client %s: %s\nRunning servers see the change at once on PostgreSQL (within %s on SQLite or behind a transaction-mode pooler); new claims reach a session's tokens at its next refresh.\n", id, clientSummary(c), session.ClientCacheTTL)
	case "list":
		clients, err := svc.Clients(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTYPE\tAUDIENCES\tACCESS TTL\tGRANTS\tSCOPES\tORIGINS\tCLAIMS")
		for _, c := range clients {
			typ := "public"
			switch {
			case c.Confidential():
				typ = "confidential"
			case c.Web:
				typ = "web"
			}
			if c.DPoPRequired {
				typ += "+dpop"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, typ, strings.Join(c.Audiences, " "), c.AccessTTL, strings.Join(c.Grants, " "), strings.Join(c.Scopes, " "), strings.Join(c.Origins, " "), strings.Join(c.Claims, " "))
		}
		return tw.Flush()
	case "delete":
		id, err := oneArg(rest, s, "CLIENT_ID")
		if err != nil {
			return err
		}
		if id == BuiltinClientID || id == AccountClientID {
			// serve registers it again at every start.
			return fmt.Errorf("clients delete: %s is the built-in client, which latch serve registers at every start; it cannot be deleted", id)
		}
		n, err := svc.DeleteClient(ctx, id, cliMeta)
		if errors.Is(err, session.ErrNotFound) {
			return fmt.Errorf("clients delete: no client %s (latch clients list shows them)", id)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "deleted client %s; %d of its sessions revoked\n", id, n)
	case "rotate-secret":
		id, err := oneArg(rest, s, "CLIENT_ID")
		if err != nil {
			return err
		}
		secret, err := svc.RotateClientSecret(ctx, id, cliMeta)
		switch {
		case errors.Is(err, session.ErrNotFound):
			return fmt.Errorf("clients rotate-secret: no client %s (latch clients list shows them)", id)
		case errors.Is(err, session.ErrPublicClient):
			return fmt.Errorf("clients rotate-secret: %s is a public client, which has no secret", id)
		case err != nil:
			return err
		}
		fmt.Fprintf(s.stdout, "rotated the secret of client %s; the old secret no longer works\nclient secret (shown once): %s\n", id, secret)
	}
	return nil
}

// clientProblem is CheckClient's complaint, one rule per line, without
// the package prefix.
func clientProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), session.ErrInvalidClient.Error()+": ")
	return strings.ReplaceAll(msg, "\n", "; ")
}

func clientSummary(c session.Client) string {
	return fmt.Sprintf("audiences %s; access TTL %s; grants %s; scopes %s; claims %s", strings.Join(c.Audiences, " "), c.AccessTTL,
		orNone(c.Grants), orNone(c.Scopes), orNone(c.Claims))
}

func orNone(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, " ")
}

// listFlag is a flag given once per value (--audience a --audience b).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(v string) error {
	if !slices.Contains(*l, v) {
		*l = append(*l, v)
	}
	return nil
}

func splitList(s string) []string {
	return strings.Fields(strings.ReplaceAll(s, ",", " "))
}
