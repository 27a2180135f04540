package session_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/testenv"
)

// countingStore counts client reads that reach storage.
type countingStore struct {
	testenv.Store
	reads atomic.Int64
}

func (s *countingStore) Client(ctx context.Context, id string) (session.Client, error) {
	s.reads.Add(1)
	return s.Store.Client(ctx, id)
}

// TestClientCache: the service reads a client from storage once per
// session.ClientCacheTTL, or once per ClientCacheHeardTTL while changes
// made elsewhere are heard (ForgetClient); a change through the service
// (EnsureClient, RotateClientSecret, DeleteClient) is seen at once,
// unknown ids are never cached, and a caller changing the client it got
// changes nothing for the next.
func TestClientCache(t *testing.T) {
	t.Parallel()
	var st *countingStore
	env := testenv.New(t, testenv.Options{Store: func(t testing.TB) testenv.Store {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "latch.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		st = &countingStore{Store: db}
		return st
	}})
	ctx := context.Background()
	get := func() session.Client {
		t.Helper()
		c, err := env.Sessions.Client(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := get()
	tests := []struct {
		name      string
		do        func()
		reads     int64 // storage reads by the next lookup
		wantTTL   time.Duration
		audiences []string
	}{
		{"cached", func() { env.Clock.Advance(session.ClientCacheTTL - time.Second) }, 0, c.AccessTTL, c.Audiences},
		{"expired", func() { env.Clock.Advance(time.Second) }, 1, c.AccessTTL, c.Audiences},
		{"a caller's change stays its own", func() {
			got := get()
			got.Audiences[0] = "changed"
			st.reads.Store(0)
		}, 0, c.AccessTTL, c.Audiences},
		{"changed through the service", func() {
			changed := c
			changed.AccessTTL = 7 * time.Minute
			if err := env.Sessions.EnsureClient(ctx, changed); err != nil {
				t.Fatal(err)
			}
		}, 1, 7 * time.Minute, c.Audiences},
		// Changes heard (the PostgreSQL listener connected): everything
		// cached is forgotten once, then kept far past ClientCacheTTL.
		{"changes heard from now on", func() { env.Sessions.ClientChangesHeard(true) }, 1, 7 * time.Minute, c.Audiences},
		{"heard: past ClientCacheTTL", func() { env.Clock.Advance(10 * session.ClientCacheTTL) }, 0, 7 * time.Minute, c.Audiences},
		{"heard: another node changed it", func() {
			changed := c
			changed.AccessTTL = 9 * time.Minute
			if err := st.InTx(ctx, func(tx session.Tx) error { return tx.PutClient(ctx, changed) }); err != nil {
				t.Fatal(err)
			}
			env.Sessions.ForgetClient("app") // what the listener does for its NOTIFY
		}, 1, 9 * time.Minute, c.Audiences},
		{"heard: past the safety TTL", func() { env.Clock.Advance(session.ClientCacheHeardTTL) }, 1, 9 * time.Minute, c.Audiences},
		// The listener lost: ClientCacheTTL again, counted from the read.
		{"no longer heard", func() {
			env.Sessions.ClientChangesHeard(false)
			env.Clock.Advance(session.ClientCacheTTL)
		}, 1, 9 * time.Minute, c.Audiences},
	}
	confidential := session.Client{ID: "rs", Name: "rs", Audiences: []string{"api"}, AccessTTL: time.Minute,
		SecretHash: session.HashClientSecret("old")}
	if err := env.Sessions.EnsureClient(ctx, confidential); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		tt.do()
		st.reads.Store(0)
		got := get()
		if n := st.reads.Load(); n != tt.reads || got.AccessTTL != tt.wantTTL || !slices.Equal(got.Audiences, tt.audiences) {
			t.Errorf("%s: %d storage reads, AccessTTL %s, audiences %v; want %d, %s, %v",
				tt.name, n, got.AccessTTL, got.Audiences, tt.reads, tt.wantTTL, tt.audiences)
		}
	}
	// Rotating the secret and deleting the client, through the service,
	// are seen at once on this node: the cached copy is forgotten.
	if _, err := env.Sessions.Client(ctx, "rs"); err != nil {
		t.Fatal(err)
	}
	secret, err := env.Sessions.RotateClientSecret(ctx, "rs", session.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := env.Sessions.Client(ctx, "rs"); err != nil || got.CheckSecret("old") || !got.CheckSecret(secret) {
		t.Fatalf("after rotate-secret: err %v, old secret accepted %v, new accepted %v", err, got.CheckSecret("old"), got.CheckSecret(secret))
	}
	if _, err := env.Sessions.DeleteClient(ctx, "rs", session.Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Sessions.Client(ctx, "rs"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	// Unknown ids reach storage every time: nothing is cached for them.
	for range 2 {
		st.reads.Store(0)
		if _, err := env.Sessions.Client(ctx, "nobody"); err == nil || st.reads.Load() != 1 {
			t.Fatalf("unknown client: err %v, %d storage reads; want ErrNotFound from 1", err, st.reads.Load())
		}
	}
}
