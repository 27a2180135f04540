// Package storetest is the conformance suite every Latch store runs: the
// same cases against SQLite and PostgreSQL, through the interfaces the
// session and token packages consume.
package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/token"
)

// Store is what a Latch store implements.
type Store interface {
	session.Store
	token.Store
	Ping(ctx context.Context) error
}

var ctx = context.Background()

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Run runs the suite; newStore returns an empty, migrated store.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, Store)
	}{
		{"UserRoundTrip", testUserRoundTrip},
		{"EmailTaken", testEmailTaken},
		{"SessionRoundTrip", testSessionRoundTrip},
		{"RollbackOnError", testRollback},
		{"RevokeScopes", testRevokeScopes},
		{"LockSerialisesWriters", testLockSerialises},
		{"DeleteStale", testDeleteStale},
		{"Clients", testClients},
		{"SigningKeys", testSigningKeys},
		{"Secrets", testSecrets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func inTx(t *testing.T, s Store, fn func(session.Tx) error) {
	t.Helper()
	if err := s.InTx(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func newUser(t *testing.T, s Store, email string) session.User {
	t.Helper()
	u := session.User{ID: session.NewID(), Email: email, PasswordHash: "$argon2id$x", CreatedAt: t0, PasswordChangedAt: t0}
	inTx(t, s, func(tx session.Tx) error { return tx.InsertUser(ctx, u) })
	return u
}

func newSession(t *testing.T, s Store, u session.User, at time.Time) session.Session {
	t.Helper()
	ses := session.Session{ID: session.NewID(), UserID: u.ID, ClientID: "app", Scope: "read write",
		CreatedAt: at, LastUsedAt: at, UserAgent: "ua", IP: "192.0.2.1",
		IdleExpiresAt: at.Add(time.Hour), Gen: 1, HandedAt: at, RotatedAt: at}
	inTx(t, s, func(tx session.Tx) error { return tx.InsertSession(ctx, ses) })
	return ses
}

func testUserRoundTrip(t *testing.T, s Store) {
	u := newUser(t, s, "a@example.com")
	got, err := s.UserByEmail(ctx, "a@example.com")
	if err != nil || got != u {
		t.Fatalf("UserByEmail = %+v, %v; want %+v", got, err, u)
	}
	u.PasswordHash, u.DisabledAt = "$argon2id$y", t0.Add(time.Second)
	inTx(t, s, func(tx session.Tx) error { return tx.UpdateUser(ctx, u) })
	if got, _ := s.User(ctx, u.ID); got != u {
		t.Fatalf("after update: %+v, want %+v", got, u)
	}
	if _, err := s.User(ctx, "missing"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("missing user: %v, want ErrNotFound", err)
	}
	err = s.InTx(ctx, func(tx session.Tx) error { return tx.UpdateUser(ctx, session.User{ID: "missing"}) })
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("update missing user: %v, want ErrNotFound", err)
	}
}

func testEmailTaken(t *testing.T, s Store) {
	newUser(t, s, "a@example.com")
	err := s.InTx(ctx, func(tx session.Tx) error {
		return tx.InsertUser(ctx, session.User{ID: session.NewID(), Email: "a@example.com", PasswordHash: "h", CreatedAt: t0, PasswordChangedAt: t0})
	})
	if !errors.Is(err, session.ErrEmailTaken) {
		t.Fatalf("duplicate email: %v, want ErrEmailTaken", err)
	}
}

func testSessionRoundTrip(t *testing.T, s Store) {
	u := newUser(t, s, "a@example.com")
	ses := newSession(t, s, u, t0)
	ses.ExpiresAt = time.Time{}
	got, err := s.Session(ctx, ses.ID)
	if err != nil || got != ses {
		t.Fatalf("Session = %+v, %v;\nwant %+v", got, err, ses)
	}
	// Every refresh-state field survives an update at microsecond precision.
	now := t0.Add(1234567 * time.Microsecond)
	inTx(t, s, func(tx session.Tx) error {
		locked, err := tx.LockSession(ctx, ses.ID)
		if err != nil {
			return err
		}
		locked.Gen, locked.ParentGen = 1<<40, 1<<40-1
		locked.HandedAt, locked.RotatedAt, locked.LastUsedAt = now, now.Add(-time.Microsecond), now
		locked.IdleExpiresAt, locked.IP, locked.UserAgent = now.Add(time.Hour), "2001:db8::1", "ua2"
		ses = locked
		return tx.UpdateSession(ctx, locked)
	})
	if got, _ := s.Session(ctx, ses.ID); got != ses {
		t.Fatalf("after update:\n got %+v\nwant %+v", got, ses)
	}
	if _, err := s.Session(ctx, "missing"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("missing session: %v, want ErrNotFound", err)
	}
	err = s.InTx(ctx, func(tx session.Tx) error { _, err := tx.LockSession(ctx, "missing"); return err })
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("lock missing session: %v, want ErrNotFound", err)
	}
}

func testRollback(t *testing.T, s Store) {
	u := newUser(t, s, "a@example.com")
	ses := newSession(t, s, u, t0)
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx session.Tx) error {
		locked, _ := tx.LockSession(ctx, ses.ID)
		locked.Gen = 99
		if err := tx.UpdateSession(ctx, locked); err != nil {
			return err
		}
		if _, err := tx.RevokeSessions(ctx, session.Revocation{UserID: u.ID, Scope: session.ScopeAll, Reason: "x", At: t0, Until: t0}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx, audit.Event{At: t0, Type: "x"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want the callback's error", err)
	}
	if got, _ := s.Session(ctx, ses.ID); got != ses {
		t.Fatalf("rolled-back transaction changed the session: %+v", got)
	}
}

func testRevokeScopes(t *testing.T, s Store) {
	u := newUser(t, s, "a@example.com")
	other := newUser(t, s, "b@example.com")
	a, b, c := newSession(t, s, u, t0), newSession(t, s, u, t0.Add(time.Second)), newSession(t, s, u, t0.Add(2*time.Second))
	o := newSession(t, s, other, t0)
	revoke := func(r session.Revocation) []string {
		t.Helper()
		r.At, r.Until, r.Reason = t0.Add(time.Minute), t0.Add(time.Hour), "logout"
		var ids []string
		inTx(t, s, func(tx session.Tx) error {
			var err error
			ids, err = tx.RevokeSessions(ctx, r)
			return err
		})
		slices.Sort(ids)
		return ids
	}
	// Another user's session is out of reach of a scoped revocation.
	if ids := revoke(session.Revocation{UserID: u.ID, SessionID: o.ID, Scope: session.ScopeOne}); len(ids) != 0 {
		t.Fatalf("revoked another user's session: %v", ids)
	}
	if ids := revoke(session.Revocation{UserID: u.ID, SessionID: a.ID, Scope: session.ScopeOthers}); !slices.Equal(ids, sorted(b.ID, c.ID)) {
		t.Fatalf("others = %v, want %v", ids, sorted(b.ID, c.ID))
	}
	if ids := revoke(session.Revocation{UserID: u.ID, Scope: session.ScopeAll}); !slices.Equal(ids, []string{a.ID}) {
		t.Fatalf("all = %v, want only the remaining %v", ids, a.ID)
	}
	if ids := revoke(session.Revocation{UserID: u.ID, Scope: session.ScopeAll}); len(ids) != 0 {
		t.Fatalf("repeat revoked %v", ids)
	}
	got, _ := s.Session(ctx, b.ID)
	if got.RevokedAt != t0.Add(time.Minute) || got.RevokeReason != "logout" {
		t.Fatalf("revoked session: at %s reason %q", got.RevokedAt, got.RevokeReason)
	}
	if got, _ := s.Session(ctx, o.ID); !got.RevokedAt.IsZero() {
		t.Fatal("other user's session revoked")
	}
	list, err := s.UserSessions(ctx, u.ID)
	if err != nil || len(list) != 3 || list[0].ID != c.ID {
		t.Fatalf("UserSessions = %d sessions (%v), want 3 newest first", len(list), err)
	}
}

func sorted(v ...string) []string { slices.Sort(v); return v }

// testLockSerialises: concurrent read-modify-write transactions on one
// session never lose an update, because LockSession holds a lock.
func testLockSerialises(t *testing.T, s Store) {
	u := newUser(t, s, "a@example.com")
	ses := newSession(t, s, u, t0)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.InTx(ctx, func(tx session.Tx) error {
				locked, err := tx.LockSession(ctx, ses.ID)
				if err != nil {
					return err
				}
				locked.Gen++
				return tx.UpdateSession(ctx, locked)
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.Session(ctx, ses.ID); got.Gen != 1+n {
		t.Fatalf("gen = %d after %d increments, want %d: an update was lost", got.Gen, n, 1+n)
	}
}

func testDeleteStale(t *testing.T, s Store) {
	u := newUser(t, s, "a@example.com")
	live := newSession(t, s, u, t0.Add(2*time.Hour))
	idle := newSession(t, s, u, t0) // idle-expires at t0+1h
	revoked := newSession(t, s, u, t0.Add(2*time.Hour))
	inTx(t, s, func(tx session.Tx) error {
		_, err := tx.RevokeSessions(ctx, session.Revocation{UserID: u.ID, SessionID: revoked.ID, Scope: session.ScopeOne, Reason: "x", At: t0.Add(2 * time.Hour), Until: t0.Add(3 * time.Hour)})
		return err
	})
	n, err := s.DeleteStale(ctx, t0.Add(90*time.Minute), t0.Add(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteStale = %d, %v; want the idle session only", n, err)
	}
	if _, err := s.Session(ctx, idle.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatal("idle session survived")
	}
	for _, id := range []string{live.ID, revoked.ID} {
		if _, err := s.Session(ctx, id); err != nil {
			t.Fatalf("session %s deleted too early: %v", id, err)
		}
	}
	if n, _ := s.DeleteStale(ctx, t0.Add(3*time.Hour), t0.Add(4*time.Hour)); n != 1 {
		t.Fatalf("second sweep deleted %d, want the revoked session", n)
	}
}

func testClients(t *testing.T, s Store) {
	c := session.Client{ID: "svc", Name: "svc", SecretHash: session.HashClientSecret("s3cret"), Audience: "https://api",
		AccessTTL: 90 * time.Second, Grants: []string{"refresh_token"}, Scopes: []string{"a", "b"}, CreatedAt: t0}
	inTx(t, s, func(tx session.Tx) error { return tx.PutClient(ctx, c) })
	got, err := s.Client(ctx, "svc")
	if err != nil || got.AccessTTL != c.AccessTTL || !slices.Equal(got.Scopes, c.Scopes) || !got.CheckSecret("s3cret") || got.CheckSecret("other") {
		t.Fatalf("Client = %+v, %v", got, err)
	}
	c.SecretHash, c.Audience = nil, "https://api2"
	inTx(t, s, func(tx session.Tx) error { return tx.PutClient(ctx, c) })
	if got, _ := s.Client(ctx, "svc"); got.Confidential() || got.Audience != "https://api2" {
		t.Fatalf("after replace: %+v", got)
	}
	if _, err := s.Client(ctx, "nope"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("missing client: %v", err)
	}
}

func testSigningKeys(t *testing.T, s Store) {
	key := func(kid, state string) token.StoredKey {
		return token.StoredKey{KID: kid, Alg: "EdDSA", State: state, Sealed: []byte{1, 2, 3}, PublicJWK: []byte(`{"kid":"` + kid + `"}`), CreatedAt: t0}
	}
	if err := s.InsertSigningKeys(ctx, key("k1", token.StateCurrent), key("k2", token.StateNext)); err != nil {
		t.Fatal(err)
	}
	// A second node racing to create first keys loses cleanly.
	if err := s.InsertSigningKeys(ctx, key("k3", token.StateCurrent), key("k4", token.StateNext)); !errors.Is(err, token.ErrConflict) {
		t.Fatalf("second current key: %v, want ErrConflict", err)
	}
	if keys, _ := s.SigningKeys(ctx); len(keys) != 2 {
		t.Fatalf("%d keys after the losing insert, want 2 (it must roll back whole)", len(keys))
	}
	r := token.Rotation{RetireKID: "k1", PromoteKID: "k2", Next: key("k5", token.StateNext), At: t0.Add(time.Hour)}
	if err := s.RotateSigningKeys(ctx, r); err != nil {
		t.Fatal(err)
	}
	// The same rotation again (another node, stale view) conflicts.
	r.Next = key("k6", token.StateNext)
	if err := s.RotateSigningKeys(ctx, r); !errors.Is(err, token.ErrConflict) {
		t.Fatalf("stale rotation: %v, want ErrConflict", err)
	}
	keys, _ := s.SigningKeys(ctx)
	states := map[string]string{}
	for _, k := range keys {
		states[k.KID] = k.State
	}
	if len(keys) != 3 || states["k1"] != "retired" || states["k2"] != "current" || states["k5"] != "next" {
		t.Fatalf("states after rotation = %v", states)
	}
	if n, err := s.DeleteRetiredKeys(ctx, t0.Add(2*time.Hour)); n != 1 || err != nil {
		t.Fatalf("DeleteRetiredKeys = %d, %v", n, err)
	}
}

func testSecrets(t *testing.T, s Store) {
	if _, err := s.Secret(ctx, "k"); !errors.Is(err, token.ErrNotFound) {
		t.Fatalf("missing secret: %v", err)
	}
	first, err := s.PutSecretIfAbsent(ctx, "k", []byte("one"), t0)
	if err != nil || string(first) != "one" {
		t.Fatalf("first put = %q, %v", first, err)
	}
	second, err := s.PutSecretIfAbsent(ctx, "k", []byte("two"), t0)
	if err != nil || string(second) != "one" {
		t.Fatalf("second put = %q, %v; want the first value kept", second, err)
	}
}
