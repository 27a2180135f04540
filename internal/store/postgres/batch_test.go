package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// TestRotationsShareAStatement: rotations that arrive while the batch
// before them waits go out together, as one statement, and each caller
// gets its own session's rotation. The pool has one connection, held by
// the test, so the first rotation's batch waits for it while the others
// queue behind.
func TestRotationsShareAStatement(t *testing.T) {
	ctx := context.Background()
	tr := &pgtest.Tracer{}
	s, err := postgres.Open(ctx, pgtest.URL(t)+"&pool_max_conns=1", postgres.WithTracer(tr), postgres.WithRotationBatches(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	u := session.User{ID: session.NewID(), Email: "a@example.com", PasswordHash: "$argon2id$x", CreatedAt: at, PasswordChangedAt: at}
	const n = 12
	var rs []session.Rotation
	if err := s.InTx(ctx, func(tx session.Tx) error {
		if err := tx.InsertUser(ctx, u); err != nil {
			return err
		}
		for i := range n {
			ses := session.Session{ID: session.NewID(), UserID: u.ID, ClientID: "app", CreatedAt: at, LastUsedAt: at,
				IdleExpiresAt: at.Add(time.Hour), Gen: uint64(i + 1), HandedAt: at, RotatedAt: at}
			if err := tx.InsertSession(ctx, ses); err != nil {
				return err
			}
			now := at.Add(time.Minute)
			rs = append(rs, session.Rotation{ID: ses.ID, Gen: ses.Gen, ClientID: "app", Now: now, IdleExpiresAt: now.Add(time.Hour), IP: "192.0.2.9", UserAgent: "ua"})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	held, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var release sync.Once
	t.Cleanup(func() { release.Do(held.Release) }) // before the store closes
	tr.Reset()
	var wg sync.WaitGroup
	got := make([]session.Session, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = s.RotateSession(ctx, rs[i]) })
	}
	// The first batch takes the calls there by then and waits for the
	// connection; the others queue behind it.
	var first int
	for deadline := time.Now().Add(5 * time.Second); ; {
		queued, sending := s.Rotations()
		if queued+sending == n && sending > 0 {
			first = sending
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rotations queued and %d in a batch, want %d in all", queued, sending, n)
		}
		time.Sleep(time.Millisecond)
	}
	release.Do(held.Release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i].ID != rs[i].ID || got[i].Gen != rs[i].Gen+1 || got[i].UserID != u.ID {
			t.Errorf("rotation %d: %+v, %v; want session %s at generation %d", i, got[i], errs[i], rs[i].ID, rs[i].Gen+1)
		}
		if stored, err := s.Session(ctx, rs[i].ID); err != nil || stored.Gen != rs[i].Gen+1 || stored.ParentGen != rs[i].Gen {
			t.Errorf("session %d stored at generation %d (parent %d), %v", i, stored.Gen, stored.ParentGen, err)
		}
	}
	trips, statements := tr.Reset()
	// The checks above read with SELECTs: count the UPDATEs.
	updates := 0
	for _, st := range statements {
		if st == "UPDATE" {
			updates++
		}
	}
	want := 2 // the first batch, and the rest in one
	if first == n {
		want = 1
	}
	if updates != want {
		t.Errorf("%d UPDATE statements for %d rotations, %d of them in the first batch (%d round trips: %v), want %d", updates, n, first, trips, statements, want)
	}
}
