package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
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

// TestFileModes: the database and its -wal and -shm files are readable by
// their owner only, whatever the umask lets SQLite's default 0644 through.
func TestFileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(context.Background()); err != nil { // writes: WAL and shared memory exist
		t.Fatal(err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(name), got)
		}
	}
}

// TestPathIsNotAURI: '?', '#' and '%' in a file name are part of the name,
// not SQLite URI parameters, a fragment or escapes.
func TestPathIsNotAURI(t *testing.T) {
	for _, name := range []string{
		"a.db?mode=memory",
		"b.db?_pragma=journal_mode(DELETE)",
		"c#frag.db",
		"d%3f.db",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if want := []string{name, name + "-shm", name + "-wal"}; !slices.Equal(names, want) {
				t.Fatalf("files created %q, want %q", names, want)
			}
		})
	}
}

// TestMustExist: with MustExist a missing file is ErrNoDatabase and is not
// created; an existing database opens read-write.
func TestMustExist(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "typo.db")
	if s, err := sqlite.Open(ctx, path, sqlite.MustExist()); !errors.Is(err, sqlite.ErrNoDatabase) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open(missing, MustExist) = %v, want ErrNoDatabase", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file was created (stat: %v)", err)
	}
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlite.Open(ctx, path, sqlite.MustExist())
	if err != nil {
		t.Fatalf("Open(existing, MustExist): %v", err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("an existing database opened with MustExist is not writable: %v", err)
	}
}
