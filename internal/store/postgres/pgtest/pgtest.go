// Package pgtest gives tests their own PostgreSQL schema on the server that
// LATCH_TEST_POSTGRES names, so runs never collide. Tests skip when it is
// unset; .ci/run sets it, so CI always runs them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchauth/latch/internal/store/postgres"
)

// Env is the variable naming the test server, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const Env = "LATCH_TEST_POSTGRES"

// URL creates an empty schema and returns a database URL whose
// search_path selects it; the schema is dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(Env)
	if base == "" {
		t.Skip(Env + " is not set; skipping the PostgreSQL tests")
	}
	return schemaURL(t, base, base)
}

// schemaURL creates an empty schema through base and returns via with a
// search_path selecting it; the schema is dropped when the test ends.
func schemaURL(t testing.TB, base, via string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("%s: %v", Env, err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "latch_t_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("dropping %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping %s: %v", schema, err)
		}
	})
	u, err := url.Parse(via)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// New returns a migrated store in a fresh schema.
func New(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	return open(t, URL(t), opts)
}

// open returns a migrated store at url, closed when the test ends.
func open(t testing.TB, url string, opts []postgres.Option) *postgres.Store {
	t.Helper()
	// As in testenv: the acquire wait sheds load by design, and a test's
	// burst on a machine busy with other tests must not be shed; opts may
	// set it lower.
	opts = append([]postgres.Option{postgres.WithLimits(postgres.Limits{AcquireWait: 10 * time.Second})}, opts...)
	s, err := postgres.Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}
