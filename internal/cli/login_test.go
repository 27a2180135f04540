package cli_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/cli"
)

// freeAddr returns a loopback address that was free a moment ago, so the
// server's issuer (http://<addr>) is the URL the client reaches.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// user runs a user command with its own credentials file.
func user(t *testing.T, creds, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--credentials", creds)
	err := cli.Run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestLoginWhoamiTokenLogout drives the user commands against a running
// server: login keeps the session in a 0600 file, whoami shows it, token
// prints an access token the server accepts, logout ends it.
func TestLoginWhoamiTokenLogout(t *testing.T) {
	s := startServer(t, "--addr", freeAddr(t))
	s.mustLatch(t, "a long enough password\n", "users", "create", "ada@example.com", "--password-stdin")
	creds := filepath.Join(t.TempDir(), "cfg", "latch", "credentials.json")

	if _, _, err := user(t, creds, "wrong password\n", "login", "--issuer", s.url, "--email", "ada@example.com", "--password-stdin"); err == nil ||
		!strings.Contains(err.Error(), "wrong email or password") {
		t.Fatalf("login with a wrong password: %v", err)
	}
	if _, err := os.Stat(creds); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed login left credentials (%v)", err)
	}
	// Email and password from standard input (not a terminal).
	t.Setenv("LATCH_ISSUER", s.url)
	out, _, err := user(t, creds, "ada@example.com\na long enough password\n", "login")
	if err != nil || !strings.Contains(out, "logged in to "+s.url+" as ada@example.com") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if fi, err := os.Stat(creds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v, want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(creds); strings.Contains(string(b), "a long enough password") {
		t.Fatal("the credentials file holds the password")
	}

	// Logging in again replaces the session and ends the previous one.
	if _, _, err := user(t, creds, "a long enough password\n", "login", "--email", "ada@example.com", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	out, _, err = user(t, creds, "", "whoami")
	if err != nil || !strings.Contains(out, "ada@example.com") || !strings.Contains(out, "sessions 1 active") || !strings.Contains(out, s.url) {
		t.Fatalf("whoami: %v\n%s", err, out)
	}

	out, _, err = user(t, creds, "", "token")
	tok := strings.TrimSpace(out)
	if err != nil || strings.Count(tok, ".") != 2 || strings.Contains(tok, "\n") {
		t.Fatalf("token printed %q (%v), want one JWT and nothing else", out, err)
	}
	// The server offers DPoP, so the session is bound: the token goes
	// with the DPoP scheme and a proof, and alone it is refused.
	proof, _, err := user(t, creds, "", "token", "--proof", "GET "+s.url+"/v1/sessions")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", s.url+"/v1/sessions", nil)
	req.Header.Set("Authorization", "DPoP "+tok)
	req.Header.Set("DPoP", strings.TrimSpace(proof))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the printed token with its proof was refused: %v %v", resp.StatusCode, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Del("DPoP")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("the bound token as a bearer token: %v %v, want 401", resp.StatusCode, err)
	}
	if b, _ := os.ReadFile(creds); !strings.Contains(string(b), `"dpop_key"`) {
		t.Error("the credentials file holds no DPoP key")
	}

	// A second device, then logout of the others from the first.
	creds2 := filepath.Join(t.TempDir(), "credentials.json")
	if _, _, err := user(t, creds2, "a long enough password\n", "login", "--email", "ada@example.com", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	out, _, err = user(t, creds, "", "logout", "--scope", "others")
	if err != nil || !strings.Contains(out, "1 session(s) ended") {
		t.Fatalf("logout --scope others: %v\n%s", err, out)
	}
	if _, _, err := user(t, creds2, "", "whoami"); err == nil || !strings.Contains(err.Error(), "latch login") {
		t.Fatalf("whoami on the logged-out device: %v, want advice to log in", err)
	}

	out, _, err = user(t, creds, "", "logout")
	if err != nil || !strings.Contains(out, "1 session(s) ended") {
		t.Fatalf("logout: %v\n%s", err, out)
	}
	// Only the device token stays, for the next login (docs/design.md
	// "Returning devices").
	if b, err := os.ReadFile(creds); err != nil || strings.Contains(string(b), "latch_rt_") || strings.Contains(string(b), "eyJ") ||
		!strings.Contains(string(b), "latch_dt_") {
		t.Fatalf("after logout the credentials file holds %s (%v), want the device token and no session", b, err)
	}
	if _, _, err := user(t, creds, "", "token"); err == nil || !strings.Contains(err.Error(), "not logged in") {
		t.Fatalf("token after logout: %v", err)
	}
}
