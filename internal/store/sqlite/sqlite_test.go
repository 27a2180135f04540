package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/store/storetest"
)

func newStore(t *testing.T) storetest.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func TestMigrateIsIdempotent(t *testing.T) {
	s := newStore(t).(*sqlite.Store)
	applied, err := s.Migrate(context.Background())
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}
}

func TestUpgradeBackfillsRotationOrigin(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	migrate := func() []string {
		applied, err := s.Migrate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return applied
	}
	migrate()
	undo := func() {
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range []string{
			`ALTER TABLE sessions DROP COLUMN rotated_ip`,
			`ALTER TABLE sessions DROP COLUMN rotated_user_agent`,
			`DELETE FROM schema_migrations WHERE version = '0002_rotation_origin'`,
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	storetest.UpgradeBackfillsRotationOrigin(t, s, undo, migrate)
}

func TestOpenRejectsMemory(t *testing.T) {
	if _, err := sqlite.Open(context.Background(), ":memory:"); err == nil {
		t.Fatal("Open accepted :memory:")
	}
}
