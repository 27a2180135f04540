package session_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestGoneWhileWaitingForWriterSQLite: on SQLite too, a refresh whose
// client hangs up (Gone) while the refresh waits for the database's write
// lock must change nothing; the transaction re-read Gone once it held the
// lock.
func TestGoneWhileWaitingForWriterSQLite(t *testing.T) {
	dir := t.TempDir()
	env := testenv.New(t, testenv.Options{NoLostWindow: true, Dir: dir})
	a0 := env.Login(t, "left@example.com")
	before, err := env.Store.Session(context.Background(), a0.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "latch.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var gone atomic.Bool
	done := make(chan error, 1)
	go func() {
		_, err := env.Sessions.Refresh(context.Background(), session.RefreshRequest{Token: a0.RefreshToken, Client: env.Client, Gone: gone.Load})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	gone.Store(true)
	time.Sleep(100 * time.Millisecond)
	conn.ExecContext(context.Background(), "ROLLBACK")
	conn.Close()
	err = <-done
	after, _ := env.Store.Session(context.Background(), a0.SessionID)
	if err == nil || after.Gen != before.Gen {
		t.Errorf("client gone while waiting for the writer: err %v, gen %d -> %d; want ErrStale and no change", err, before.Gen, after.Gen)
	}
}
