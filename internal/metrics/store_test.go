package metrics_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/latchauth/latch/internal/metrics"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/sqlite"
)

// TestTimedStoreRotates: the timing wrapper that serve puts around SQLite
// keeps the store's one-statement rotation (without it every refresh would
// take the locked transaction), and times it as a transaction; around a
// store without one it answers ErrNotFound, which sends the refresh
// through InTx.
func TestTimedStoreRotates(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	u := session.User{ID: session.NewID(), Email: "a@example.com", PasswordHash: "$argon2id$x", CreatedAt: now, PasswordChangedAt: now}
	ses := session.Session{ID: session.NewID(), UserID: u.ID, ClientID: "app", CreatedAt: now, LastUsedAt: now,
		IdleExpiresAt: now.Add(time.Hour), Gen: 1, HandedAt: now, RotatedAt: now}
	if err := st.InTx(ctx, func(tx session.Tx) error {
		if err := tx.InsertUser(ctx, u); err != nil {
			return err
		}
		return tx.InsertSession(ctx, ses)
	}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	var rs session.Rotator = m.TimeStore(st)
	next, err := rs.RotateSession(ctx, session.Rotation{ID: ses.ID, Gen: 1, ClientID: "app", Now: now.Add(time.Second), IdleExpiresAt: now.Add(time.Hour)})
	if err != nil || next.Gen != 2 {
		t.Fatalf("RotateSession through the timing wrapper = gen %d, %v; want gen 2", next.Gen, err)
	}
	const want = `latch_storage_query_duration_seconds_count{op="tx"} 1`
	if got, err := testutil.CollectAndFormat(m.Registry(), expfmt.TypeTextPlain, "latch_storage_query_duration_seconds"); err != nil || !strings.Contains(string(got), want) {
		t.Errorf("storage timings %s (%v); want %s", got, err, want)
	}

	// A store without the rotation (a wrapper that does not pass it on).
	var plain struct{ session.Store }
	plain.Store = st
	if _, err := m.TimeStore(plain).RotateSession(ctx, session.Rotation{ID: ses.ID, Gen: 2, ClientID: "app", Now: now.Add(2 * time.Second), IdleExpiresAt: now.Add(time.Hour)}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("around a store without RotateSession: %v, want ErrNotFound", err)
	}
}
