package sqlite_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// A deleted account leaves no trace in the database files: not its email,
// its metadata or its sessions' user agent, neither in the database's free
// space (secure_delete) nor in the WAL (emptied after the deletion).
func TestDeletedAccountLeavesNoBytes(t *testing.T) {
	dir := t.TempDir()
	env := testenv.New(t, testenv.Options{Dir: dir})
	ctx := context.Background()
	const (
		addr = "erase-me-7f3a@example.com"
		ua   = "UniqueAgent/9.9 (erase test)"
		meta = `{"secret_nickname":"zx-4471-unicorn"}`
	)
	_, tok, err := env.Sessions.Signup(ctx, session.SignupRequest{Email: addr, Password: testenv.Password, Login: true, Client: env.Client,
		Meta: session.Meta{IP: "203.0.113.77", UserAgent: ua}})
	if err != nil {
		t.Fatal(err)
	}
	ses, _ := env.Store.Session(ctx, tok.SessionID)
	if _, err := env.Sessions.UpdateMetadata(ctx, ses.UserID, []byte(meta), session.Meta{UserAgent: ua}); err != nil {
		t.Fatal(err)
	}
	markers := [][]byte{[]byte(addr), []byte(ua), []byte("zx-4471-unicorn")}
	files := func() map[string][]byte {
		out := map[string][]byte{}
		for _, name := range []string{"latch.db", "latch.db-wal"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				out[name] = b
			}
		}
		return out
	}
	found := false
	for _, b := range files() {
		found = found || bytes.Contains(b, markers[0])
	}
	if !found {
		t.Fatal("the email is not in the files before the deletion: the test would prove nothing")
	}
	if err := env.Sessions.DeleteAccount(ctx, ses.UserID, testenv.Password, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	for name, b := range files() {
		for _, m := range markers {
			if bytes.Contains(b, m) {
				t.Errorf("%s still holds %q after the deletion", name, m)
			}
		}
	}
}
