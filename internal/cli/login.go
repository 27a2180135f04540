package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/internal/config"
)

// The user commands (login, whoami, logout, token) are clients of a Latch
// server, built on authclient and its file store.

const defaultIssuer = "http://127.0.0.1:8080"

// credentialsFlag registers --credentials and returns a function giving the
// file store it names (default: authclient.DefaultCredentialsPath).
func credentialsFlag(fs *flag.FlagSet) func() (*authclient.FileStore, error) {
	path := fs.String("credentials", "", "file holding the session (default $XDG_CONFIG_HOME/latch/credentials.json)")
	return func() (*authclient.FileStore, error) {
		p := *path
		if p == "" {
			var err error
			if p, err = authclient.DefaultCredentialsPath(); err != nil {
				return nil, err
			}
		}
		return authclient.NewFileStore(p), nil
	}
}

func parseUser(fs *flag.FlagSet, args []string, name string) error {
	rest, err := parse(fs, args, &config.Config{})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: %s takes no arguments, got %q", ErrUsage, name, rest)
	}
	return nil
}

func runLogin(ctx context.Context, args []string, s io3) error {
	fs := newFlags("login", s)
	issuer := fs.String("issuer", defaultIssuer, "the Latch server's issuer URL")
	clientID := fs.String("client-id", "app", "OAuth client to log in with")
	email := fs.String("email", "", "account email (prompted for when missing)")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	dpop := fs.String("dpop", "auto", "bind the session to a DPoP key (RFC 9449) kept in the credentials file: auto (when the server offers it), require or off")
	store := credentialsFlag(fs)
	if err := parseUser(fs, args, "login"); err != nil {
		return err
	}
	mode, ok := map[string]authclient.DPoPMode{"auto": authclient.DPoPAuto, "require": authclient.DPoPRequire, "off": authclient.DPoPOff}[*dpop]
	if !ok {
		return fmt.Errorf("%w: --dpop must be auto, require or off", ErrUsage)
	}
	st, err := store()
	if err != nil {
		return err
	}
	in := bufio.NewReader(s.stdin)
	tty := isTerminal(s.stdin)
	if *email == "" {
		if tty {
			fmt.Fprint(s.stderr, "Email: ")
		}
		if *email, err = readLine(in); err != nil {
			return fmt.Errorf("reading the email: %w", err)
		}
	}
	var pw string
	if tty && !*pwStdin {
		fmt.Fprint(s.stderr, "Password: ")
		b, err := term.ReadPassword(int(s.stdin.(*os.File).Fd()))
		fmt.Fprintln(s.stderr)
		if err != nil {
			return fmt.Errorf("reading the password: %w", err)
		}
		pw = string(b)
	} else if pw, err = readLine(in); err != nil {
		return fmt.Errorf("reading the password: %w", err)
	}
	if *email == "" || pw == "" {
		return fmt.Errorf("%w: an email and a password are required", ErrUsage)
	}
	c, err := authclient.New(authclient.Config{Issuer: *issuer, ClientID: *clientID, Store: st, UserAgent: "latch-cli", DPoP: mode})
	if err != nil {
		return err
	}
	previous, perr := st.Load(ctx)
	sess, err := c.Login(ctx, *email, pw)
	var apiErr *authclient.Error
	if errors.As(err, &apiErr) && apiErr.Code == "invalid_credentials" {
		return errors.New("login failed: wrong email or password")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "logged in to %s as %s (session %s)\ncredentials saved in %s\n", c.Issuer(), *email, sess.ID(), st.Path())
	if sess.DPoP() {
		fmt.Fprintln(s.stdout, "the session is DPoP-bound: its key is in the credentials file, and its tokens work only with a proof (latch token --proof)")
	}
	if perr == nil {
		endPrevious(ctx, previous)
	}
	return nil
}

// endPrevious logs out, best effort, the session a new login replaced in
// the credentials file, so it does not linger on the server.
func endPrevious(ctx context.Context, previous authclient.Saved) {
	mem := &authclient.MemoryStore{}
	mem.Save(ctx, previous)
	c, err := authclient.New(authclient.Config{Issuer: previous.Issuer, ClientID: previous.ClientID, Store: mem, UserAgent: "latch-cli"})
	if err != nil {
		return
	}
	old, err := c.Resume(ctx)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	old.Logout(ctx, authclient.ScopeCurrent)
}

// resume opens the saved session.
// resumeFrom opens the credentials file the flags name and resumes its
// session.
func resumeFrom(ctx context.Context, store func() (*authclient.FileStore, error)) (*authclient.FileStore, *authclient.Client, *authclient.Session, error) {
	st, err := store()
	if err != nil {
		return nil, nil, nil, err
	}
	c, sess, err := resume(ctx, st)
	return st, c, sess, err
}

func resume(ctx context.Context, st *authclient.FileStore) (*authclient.Client, *authclient.Session, error) {
	saved, err := st.Load(ctx)
	if errors.Is(err, authclient.ErrNoSession) {
		return nil, nil, errors.New("not logged in; run latch login")
	}
	if err != nil {
		return nil, nil, err
	}
	c, err := authclient.New(authclient.Config{Issuer: saved.Issuer, ClientID: saved.ClientID, Store: st, UserAgent: "latch-cli"})
	if err != nil {
		return nil, nil, err
	}
	sess, err := c.Resume(ctx)
	return c, sess, err
}

// explain turns the end of a session into advice.
func explain(err error) error {
	var ended *authclient.SessionEndedError
	if errors.As(err, &ended) {
		return errors.New("the session has ended; run latch login")
	}
	return err
}

func runWhoami(ctx context.Context, args []string, s io3) error {
	fs := newFlags("whoami", s)
	store := credentialsFlag(fs)
	if err := parseUser(fs, args, "whoami"); err != nil {
		return err
	}
	_, c, sess, err := resumeFrom(ctx, store)
	if err != nil {
		return err
	}
	// Listing the sessions proves the session is alive (the server checks
	// it on every account call) and tells when it began.
	list, err := sess.Sessions(ctx)
	if err != nil {
		return explain(err)
	}
	tok, err := sess.AccessToken(ctx)
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(s.stdout, "issuer   %s\n", c.Issuer())
	if e := sess.Email(); e != "" {
		fmt.Fprintf(s.stdout, "email    %s\n", e)
	}
	if sub := subject(tok); sub != "" {
		fmt.Fprintf(s.stdout, "user     %s\n", sub)
	}
	for _, x := range list {
		if x.Current {
			fmt.Fprintf(s.stdout, "session  %s (since %s)\n", x.ID, x.CreatedAt.Local().Format(time.DateTime))
		}
	}
	fmt.Fprintf(s.stdout, "sessions %d active\n", len(list))
	return nil
}

// subject reads the sub claim of an access token for display only: the
// token is not verified (the server just accepted it).
func subject(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	json.Unmarshal(b, &c)
	return c.Sub
}

func runLogout(ctx context.Context, args []string, s io3) error {
	fs := newFlags("logout", s)
	scope := fs.String("scope", authclient.ScopeCurrent, "current (this session), others (every other session) or all")
	store := credentialsFlag(fs)
	if err := parseUser(fs, args, "logout"); err != nil {
		return err
	}
	switch *scope {
	case authclient.ScopeCurrent, authclient.ScopeOthers, authclient.ScopeAll:
	default:
		return fmt.Errorf("%w: --scope must be current, others or all", ErrUsage)
	}
	st, _, sess, err := resumeFrom(ctx, store)
	if err != nil {
		return err
	}
	n, err := sess.Logout(ctx, *scope)
	var ended *authclient.SessionEndedError
	if errors.As(err, &ended) {
		st.Clear(ctx)
		fmt.Fprintln(s.stdout, "the session had already ended; credentials removed")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "logged out: %d session(s) ended\n", n)
	if *scope != authclient.ScopeOthers {
		fmt.Fprintf(s.stdout, "credentials removed from %s (its device token stays for the next login)\n", st.Path())
	}
	return nil
}

func runToken(ctx context.Context, args []string, s io3) error {
	fs := newFlags("token", s)
	store := credentialsFlag(fs)
	proof := fs.String("proof", "", `with "METHOD URL", print a DPoP proof for that one request instead of the token (a DPoP-bound session's token goes with "Authorization: DPoP" and a proof)`)
	if err := parseUser(fs, args, "token"); err != nil {
		return err
	}
	_, _, sess, err := resumeFrom(ctx, store)
	if err != nil {
		return err
	}
	if *proof != "" {
		method, target, ok := strings.Cut(*proof, " ")
		if !ok || method == "" || target == "" {
			return fmt.Errorf(`%w: --proof takes "METHOD URL"`, ErrUsage)
		}
		p, err := sess.Proof(ctx, method, strings.TrimSpace(target))
		if err != nil {
			return explain(err)
		}
		fmt.Fprintln(s.stdout, p)
		return nil
	}
	tok, err := sess.AccessToken(ctx)
	if err != nil {
		return explain(err)
	}
	fmt.Fprintln(s.stdout, tok)
	return nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
