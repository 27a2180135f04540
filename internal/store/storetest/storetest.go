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
	"github.com/latchauth/latch/internal/testenv"
	"github.com/latchauth/latch/internal/token"
)

// Store is what a Latch store implements.
type Store = testenv.Store

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
		{"UpdateEmailTaken", testUpdateEmailTaken},
		{"RenormalizeEmails", testRenormalizeEmails},
		{"SessionRoundTrip", testSessionRoundTrip},
		{"RollbackOnError", testRollback},
		{"RevokeScopes", testRevokeScopes},
		{"LockSerialisesWriters", testLockSerialises},
		{"RotateSessionIsRotate", testRotateSession},
		{"RotateSessionsAtOnce", testRotateSessionsAtOnce},
		{"RotateSessionSerialises", testRotateSessionSerialises},
		{"DeleteStale", testDeleteStale},
		{"Clients", testClients},
		{"DeleteClientEndsItsSessions", testDeleteClient},
		{"SigningKeys", testSigningKeys},
		{"Secrets", testSecrets},
		{"FeedPaging", testFeedPaging},
		{"ResealIsAtomic", testReseal},
		{"UserProfile", testUserProfile},
		{"MessageTokens", testMessageTokens},
		{"Outbox", testOutbox},
		{"DeleteUser", testDeleteUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
	// The refresh protocol, driven through the real session service on
	// this store: the rules must hold whatever the engine.
	service := []struct {
		name string
		fn   func(*testing.T, *testenv.Env)
		// grace and lost set G and L; zero takes testenv's defaults.
		grace, lost time.Duration
	}{
		{name: "Service/Rotation", fn: testServiceRotation},
		{name: "Service/LostResponseThenReuse", fn: testServiceLostThenReuse},
		{name: "Service/Expiry", fn: testServiceExpiry},
		{name: "Service/RevocationFeedsAndBlocks", fn: testServiceRevocation},
		{name: "Service/ConcurrentRefreshRotatesOnce", fn: testServiceConcurrent},
		{name: "Service/SweeperBoundsTables", fn: testServiceSweep},
		{name: "Service/GraceBoundedAndSuspicious", fn: testServiceGraceBounded, grace: graceG, lost: graceL},
		{name: "Service/EmailIdentity", fn: testServiceEmailIdentity},
		{name: "Service/MessageTokens", fn: testServiceMessageTokens},
		{name: "Service/Reset", fn: testServiceReset},
		{name: "Service/EmailChange", fn: testServiceEmailChange},
		{name: "Service/DeleteAccount", fn: testServiceDeleteAccount},
		{name: "Service/ConcurrentLinkUse", fn: testServiceConcurrentLinkUse},
		{name: "Admin/Users", fn: testAdminUsers},
		{name: "Admin/Sessions", fn: testAdminSessions},
		{name: "Admin/Clients", fn: testAdminClients},
		{name: "Admin/Audit", fn: testAdminAudit},
		{name: "Admin/PaginationUnderInserts", fn: testAdminPagination},
		{name: "Admin/Refusals", fn: testAdminRefusals},
	}
	for _, tt := range service {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, testenv.New(t, testenv.Options{
				Store:          func(testing.TB) testenv.Store { return newStore(t) },
				Grace:          tt.grace,
				LostWindow:     tt.lost,
				Idle:           24 * time.Hour,
				MaxLifetime:    7 * 24 * time.Hour,
				AuditRetention: 24 * time.Hour,
			}))
		})
	}
}

// UpgradeBackfillsRotationOrigin checks migration 0002 on a database that
// had sessions before it: each session's rotation origin is taken from its
// last use, so the first grace answer after an upgrade raises no false
// suspicious-grace alarm. undo puts the schema back as it was before 0002
// (drops the columns and forgets the version); migrate runs the store's
// migrations and returns the versions applied.
func UpgradeBackfillsRotationOrigin(t *testing.T, s Store, undo func(), migrate func() []string) {
	u := newUser(t, s, "a@example.com")
	ses := newSession(t, s, u, t0)
	undo()
	if applied := migrate(); !slices.Equal(applied, []string{"0002_rotation_origin"}) {
		t.Fatalf("migrate applied %v, want [0002_rotation_origin]", applied)
	}
	got, err := s.Session(ctx, ses.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RotatedIP != ses.IP || got.RotatedUserAgent != ses.UserAgent {
		t.Fatalf("after the upgrade the rotation origin is %q, %q; want the last use %q, %q", got.RotatedIP, got.RotatedUserAgent, ses.IP, ses.UserAgent)
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
		IdleExpiresAt: at.Add(time.Hour), Gen: 1, HandedAt: at, RotatedAt: at, RotatedIP: "192.0.2.1", RotatedUserAgent: "ua",
		DPoPJKT: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"}
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
		locked.RotatedIP, locked.RotatedUserAgent = "2001:db8::2", "ua3"
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
	c := session.Client{ID: "svc", Name: "svc", SecretHash: session.HashClientSecret("s3cret"), Audiences: []string{"https://api"},
		AccessTTL: 90 * time.Second, Grants: []string{"refresh_token"}, Scopes: []string{"a", "b"}, CreatedAt: t0, DPoPRequired: true}
	inTx(t, s, func(tx session.Tx) error { return tx.PutClient(ctx, c) })
	got, err := s.Client(ctx, "svc")
	if err != nil || !got.DPoPRequired || got.AccessTTL != c.AccessTTL || !slices.Equal(got.Scopes, c.Scopes) || !got.CheckSecret("s3cret") || got.CheckSecret("other") {
		t.Fatalf("Client = %+v, %v", got, err)
	}
	if !slices.Equal(got.Audiences, c.Audiences) {
		t.Fatalf("Audiences = %q, want %q", got.Audiences, c.Audiences)
	}
	// Several audiences round-trip in order.
	c.SecretHash, c.Audiences, c.DPoPRequired = nil, []string{"https://api2", "https://accounts.example"}, false
	inTx(t, s, func(tx session.Tx) error { return tx.PutClient(ctx, c) })
	if got, _ := s.Client(ctx, "svc"); got.Confidential() || got.DPoPRequired || !slices.Equal(got.Audiences, c.Audiences) {
		t.Fatalf("after replace: %+v", got)
	}
	// A web client keeps its flag and origins in order.
	c.Web, c.Origins = true, []string{"https://app.example", "http://localhost:3000"}
	inTx(t, s, func(tx session.Tx) error { return tx.PutClient(ctx, c) })
	if got, _ := s.Client(ctx, "svc"); !got.Web || !slices.Equal(got.Origins, c.Origins) || !got.AllowsOrigin("https://app.example") || got.AllowsOrigin("https://evil.example") {
		t.Fatalf("web client: %+v", got)
	}
	if _, err := s.Client(ctx, "nope"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("missing client: %v", err)
	}
}

// testDeleteClient: a client is deleted once, and a ScopeAll revocation
// by ClientID ends that client's sessions of every user and no others.
func testDeleteClient(t *testing.T, s Store) {
	inTx(t, s, func(tx session.Tx) error {
		return tx.PutClient(ctx, session.Client{ID: "gone", Audiences: []string{"x"}, AccessTTL: time.Minute, CreatedAt: t0})
	})
	u, v := newUser(t, s, "a@example.com"), newUser(t, s, "b@example.com")
	keep := newSession(t, s, u, t0)
	var ofClient []string
	for _, owner := range []session.User{u, v} {
		ses := session.Session{ID: session.NewID(), UserID: owner.ID, ClientID: "gone", CreatedAt: t0, LastUsedAt: t0,
			IdleExpiresAt: t0.Add(time.Hour), Gen: 1, HandedAt: t0, RotatedAt: t0}
		inTx(t, s, func(tx session.Tx) error { return tx.InsertSession(ctx, ses) })
		ofClient = append(ofClient, ses.ID)
	}
	var ids []string
	inTx(t, s, func(tx session.Tx) error {
		if err := tx.DeleteClient(ctx, "gone"); err != nil {
			return err
		}
		var err error
		ids, err = tx.RevokeSessions(ctx, session.Revocation{ClientID: "gone", Scope: session.ScopeAll, Reason: "admin", At: t0, Until: t0.Add(time.Hour)})
		return err
	})
	if slices.Sort(ids); !slices.Equal(ids, sorted(ofClient...)) {
		t.Fatalf("revoked %v, want the client's sessions %v", ids, sorted(ofClient...))
	}
	if got, _ := s.Session(ctx, keep.ID); !got.RevokedAt.IsZero() {
		t.Fatal("a session of another client was revoked")
	}
	if _, err := s.Client(ctx, "gone"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("deleted client: %v", err)
	}
	err := s.InTx(ctx, func(tx session.Tx) error { return tx.DeleteClient(ctx, "gone") })
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
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

// feedAtLeast reads the feed after cursor until it returns at least n
// entries or 20 s pass. On PostgreSQL a committed entry is withheld while
// any older writing transaction on the cluster is still open (the cursor
// must never pass a row that could still commit behind it), so a test
// running beside another package's slow commit must wait, not read once.
func feedAtLeast(t *testing.T, s interface {
	Revocations(context.Context, session.FeedCursor, int) ([]session.FeedEntry, error)
}, after session.FeedCursor, limit, n int) ([]session.FeedEntry, error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := s.Revocations(ctx, after, limit)
		if err != nil || len(got) >= n || time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testFeedPaging(t *testing.T, s Store) {
	u := newUser(t, s, "feed@example.com")
	var ids []string
	for range 5 {
		ids = append(ids, newSession(t, s, u, t0).ID)
	}
	inTx(t, s, func(tx session.Tx) error {
		_, err := tx.RevokeSessions(ctx, session.Revocation{UserID: u.ID, Scope: session.ScopeAll, Reason: "test", At: t0, Until: t0.Add(time.Hour)})
		return err
	})
	first, err := feedAtLeast(t, s, session.FeedCursor{}, 3, 3)
	if err != nil || len(first) != 3 {
		t.Fatalf("first page = %v, %v; want 3 entries", first, err)
	}
	rest, err := s.Revocations(ctx, first[2].Cursor(), 100)
	if err != nil || len(rest) != 2 {
		t.Fatalf("second page = %v, %v; want 2 entries", rest, err)
	}
	var got []string
	var last session.FeedCursor
	for _, e := range append(first, rest...) {
		if !e.Cursor().After(last) {
			t.Fatalf("cursor %+v after %+v: not increasing", e.Cursor(), last)
		}
		last = e.Cursor()
		if !e.RevokedAt.Equal(t0) || !e.Until.Equal(t0.Add(time.Hour)) {
			t.Fatalf("entry %+v: times not kept", e)
		}
		got = append(got, e.SessionID)
	}
	if !slices.Equal(sorted(got...), sorted(ids...)) {
		t.Fatalf("feed lists %v, want %v", got, ids)
	}
}

var meta = session.Meta{IP: "192.0.2.7", UserAgent: "storetest"}

func refresh(env *testenv.Env, tok string) (session.Tokens, error) {
	return env.Sessions.Refresh(ctx, session.RefreshRequest{Token: tok, Client: env.Client, Meta: meta})
}

func mustRefresh(t *testing.T, env *testenv.Env, tok string) session.Tokens {
	t.Helper()
	got, err := refresh(env, tok)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return got
}

func wantInvalidGrant(t *testing.T, env *testenv.Env, tok, why string) error {
	t.Helper()
	_, err := refresh(env, tok)
	if !session.IsInvalidGrant(err) {
		t.Fatalf("%s: refresh = %v, want invalid_grant", why, err)
	}
	return err
}

func loadSession(t *testing.T, env *testenv.Env, id string) session.Session {
	t.Helper()
	ses, err := env.Store.Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return ses
}

func testServiceRotation(t *testing.T, env *testenv.Env) {
	a := env.Login(t, "rot@example.com")
	env.Clock.Advance(time.Minute)
	b := mustRefresh(t, env, a.RefreshToken)
	if b.RefreshToken == a.RefreshToken || b.SessionID != a.SessionID {
		t.Fatal("refresh did not rotate within the session")
	}
	// The parent within G: the identical current token.
	env.Clock.Advance(10 * time.Second)
	dup := mustRefresh(t, env, a.RefreshToken)
	if dup.RefreshToken != b.RefreshToken {
		t.Fatal("a duplicate within the grace window got a different refresh token")
	}
	c := mustRefresh(t, env, b.RefreshToken)
	if c.RefreshToken == b.RefreshToken {
		t.Fatal("the current token did not rotate")
	}
	// a is now the grandparent: reuse.
	err := wantInvalidGrant(t, env, a.RefreshToken, "grandparent")
	if !errors.Is(err, session.ErrReused) {
		t.Fatalf("grandparent: %v, want reuse", err)
	}
	if ses := loadSession(t, env, a.SessionID); ses.RevokeReason != session.ReasonReuse || ses.RevokedAt.IsZero() {
		t.Fatalf("after reuse the session is %+v, want revoked for reuse", ses)
	}
	wantInvalidGrant(t, env, c.RefreshToken, "the current token after reuse")
}

func testServiceLostThenReuse(t *testing.T, env *testenv.Env) {
	a := env.Login(t, "lost@example.com")
	b := mustRefresh(t, env, a.RefreshToken)
	// b's response never arrived; much later the client retries with a.
	env.Clock.Advance(time.Hour)
	succ := mustRefresh(t, env, a.RefreshToken)
	if succ.RefreshToken == b.RefreshToken || succ.RefreshToken == a.RefreshToken {
		t.Fatal("a lost-response retry did not get a fresh successor")
	}
	mustRefresh(t, env, succ.RefreshToken)
	// Whoever holds the abandoned b is found out.
	if err := wantInvalidGrant(t, env, b.RefreshToken, "abandoned token"); !errors.Is(err, session.ErrReused) {
		t.Fatalf("abandoned token: %v, want reuse", err)
	}
	events, err := env.Store.AuditEvents(ctx, audit.Query{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var lost, reuse bool
	for _, e := range events {
		lost = lost || e.Type == audit.RefreshLost && e.IP == meta.IP
		reuse = reuse || e.Type == audit.RefreshReuse && e.SessionID == a.SessionID
	}
	if !lost || !reuse {
		t.Fatalf("audit trail %+v lacks the lost-response or reuse event", events)
	}
}

// The windows of the reported attack: G 5 s, L 12 s, the parent replayed
// every 2 s.
const (
	graceG     = 5 * time.Second
	graceL     = 12 * time.Second
	graceEvery = 2 * time.Second
)

// testServiceGraceBounded: the parent replayed every 2 s (< G) gets the
// identical current token only until L after the rotation, then is reuse;
// a grace answer to another IP or user agent than the rotation's is audited
// as suspicious, one to the rotating client is not. The rotation's origin
// is read back from the store, so this holds on every engine.
func testServiceGraceBounded(t *testing.T, env *testenv.Env) {
	a := env.Login(t, "grace@example.com")
	env.Clock.Advance(time.Minute)
	b := mustRefresh(t, env, a.RefreshToken) // rotated by meta
	if ses := loadSession(t, env, a.SessionID); ses.RotatedIP != meta.IP || ses.RotatedUserAgent != meta.UserAgent {
		t.Fatalf("rotation origin stored as %q, %q; want %q, %q", ses.RotatedIP, ses.RotatedUserAgent, meta.IP, meta.UserAgent)
	}
	other := session.Meta{IP: "203.0.113.9", UserAgent: "other/1.0"}
	suspicious := func() []audit.Event {
		t.Helper()
		evs, err := env.Store.AuditEvents(ctx, audit.Query{Type: audit.RefreshSuspiciousGrace, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	steps := []struct {
		name string
		m    session.Meta
		want int // suspicious-grace events so far
	}{
		{"rotating client", meta, 0},
		{"another IP", session.Meta{IP: other.IP, UserAgent: meta.UserAgent}, 1},
		{"another user agent", session.Meta{IP: meta.IP, UserAgent: other.UserAgent}, 2},
		{"rotating client again", meta, 2},
	}
	for _, st := range steps {
		env.Clock.Advance(graceEvery)
		got, err := env.Sessions.Refresh(ctx, session.RefreshRequest{Token: a.RefreshToken, Client: env.Client, Meta: st.m})
		if err != nil || got.RefreshToken != b.RefreshToken {
			t.Fatalf("%s: parent within G = %v; want the identical current token", st.name, err)
		}
		evs := suspicious()
		if len(evs) != st.want {
			t.Fatalf("%s: %d suspicious-grace events, want %d: %+v", st.name, len(evs), st.want, evs)
		}
		if st.m != meta && (evs[0].IP != st.m.IP || evs[0].UserAgent != st.m.UserAgent || evs[0].SessionID != a.SessionID) {
			t.Fatalf("%s: event %+v, want the presenter's IP and user agent and the session", st.name, evs[0])
		}
	}
	// The replays went on within G of each other (8 s so far): exactly L
	// after the rotation the parent still gets the current token, just
	// past L it is reuse, though the last grace answer was 2 s before.
	rotated := loadSession(t, env, a.SessionID).RotatedAt
	env.Clock.Advance(rotated.Add(graceL).Sub(env.Clock.Now()))
	if got := mustRefresh(t, env, a.RefreshToken); got.RefreshToken != b.RefreshToken {
		t.Fatal("the parent exactly L after the rotation did not get the identical current token")
	}
	env.Clock.Advance(time.Microsecond)
	if err := wantInvalidGrant(t, env, a.RefreshToken, "the parent past L, within G of a grace answer"); !errors.Is(err, session.ErrReused) {
		t.Fatalf("the parent past L: %v, want reuse", err)
	}
}

func testServiceExpiry(t *testing.T, env *testenv.Env) {
	idle := env.Login(t, "idle@example.com")
	env.Clock.Advance(25 * time.Hour) // past the 24 h idle limit
	if err := wantInvalidGrant(t, env, idle.RefreshToken, "idle session"); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("idle session: %v, want expired", err)
	}
	busy := env.Login(t, "busy@example.com")
	rt := busy.RefreshToken
	for range 8 { // refreshed daily, yet past the 7-day absolute limit
		env.Clock.Advance(23 * time.Hour)
		tok, err := refresh(env, rt)
		if err != nil {
			if !errors.Is(err, session.ErrExpired) {
				t.Fatalf("refresh: %v", err)
			}
			return
		}
		if tok.AccessExpiry.After(busy.AccessExpiry.Add(-15 * time.Minute).Add(7 * 24 * time.Hour)) {
			t.Fatalf("access token expires %v, after the session's absolute end", tok.AccessExpiry)
		}
		rt = tok.RefreshToken
	}
	t.Fatal("a session outlived its absolute lifetime")
}

func testServiceRevocation(t *testing.T, env *testenv.Env) {
	a := env.Login(t, "rev@example.com")
	if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "rev@example.com", Password: testenv.Password, Client: env.Client}); err != nil {
		t.Fatal(err)
	}
	before, _ := env.Store.Revocations(ctx, session.FeedCursor{}, 100)
	ses := loadSession(t, env, a.SessionID)
	ids, err := env.Sessions.Logout(ctx, ses.UserID, a.SessionID, session.ScopeAll, meta)
	if err != nil || len(ids) != 2 {
		t.Fatalf("logout all = %v, %v; want both sessions", ids, err)
	}
	wantInvalidGrant(t, env, a.RefreshToken, "after logout")
	after, _ := feedAtLeast(t, env.Store, session.FeedCursor{}, 100, len(before)+2)
	if len(after)-len(before) != 2 {
		t.Fatalf("feed grew by %d entries, want 2", len(after)-len(before))
	}
	for _, e := range after[len(before):] {
		if want := e.RevokedAt.Add(env.Config.LongestAccessTTL); !e.Until.Equal(want) {
			t.Fatalf("entry until %v, want revoked_at + longest access TTL = %v", e.Until, want)
		}
	}
	if _, err := env.Sessions.ActiveSession(ctx, ses.UserID, a.SessionID); err == nil {
		t.Fatal("a logged-out session is still active")
	}
}

func testServiceConcurrent(t *testing.T, env *testenv.Env) {
	a := env.Login(t, "race@example.com")
	const n = 16
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			tok, err := refresh(env, a.RefreshToken)
			got[i], errs[i] = tok.RefreshToken, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("racing refresh %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("racing refreshes got two different successors")
		}
	}
	if ses := loadSession(t, env, a.SessionID); ses.Gen != 2 || !ses.RevokedAt.IsZero() {
		t.Fatalf("after the race the session is gen %d, revoked %v; want one rotation, live", ses.Gen, ses.RevokedAt)
	}
	mustRefresh(t, env, got[0])
}

func testServiceSweep(t *testing.T, env *testenv.Env) {
	live := env.Login(t, "live@example.com")
	rt := live.RefreshToken
	for range 50 {
		env.Clock.Advance(time.Minute)
		rt = mustRefresh(t, env, rt).RefreshToken
	}
	uid := loadSession(t, env, live.SessionID).UserID
	for range 10 {
		tok, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: "live@example.com", Password: testenv.Password, Client: env.Client})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Sessions.Logout(ctx, uid, tok.SessionID, session.ScopeOne, meta); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := env.Store.UserSessions(ctx, uid)
	if len(list) != 11 {
		t.Fatalf("%d session rows before the sweep, want 11 (50 refreshes add none)", len(list))
	}
	if old, _ := env.Store.AuditEvents(ctx, audit.Query{}); len(old) == 0 {
		t.Fatal("no audit events to age out")
	}
	// Past retention, past every feed entry's until, past audit retention.
	env.Clock.Advance(env.Config.LongestAccessTTL + time.Hour)
	rt = mustRefresh(t, env, rt).RefreshToken
	n, err := env.Sessions.Sweep(ctx, time.Hour)
	if err != nil || n != 10 {
		t.Fatalf("sweep = %d, %v; want the 10 logged-out sessions", n, err)
	}
	list, _ = env.Store.UserSessions(ctx, uid)
	feed, _ := env.Store.Revocations(ctx, session.FeedCursor{}, 100)
	if len(list) != 1 || len(feed) != 0 {
		t.Fatalf("after the sweep: %d sessions, %d feed entries; want 1 and 0", len(list), len(feed))
	}
	if kept, _ := env.Store.AuditEvents(ctx, audit.Query{Until: env.Clock.Now().Add(-24 * time.Hour)}); len(kept) != 0 {
		t.Fatalf("%d audit events older than the audit retention survived the sweep", len(kept))
	}
	mustRefresh(t, env, rt)
}

func testReseal(t *testing.T, s Store) {
	r, ok := s.(token.Resealer)
	if !ok {
		t.Fatal("the store cannot reseal (latch keys rewrap needs it)")
	}
	key := func(kid, state string) token.StoredKey {
		return token.StoredKey{KID: kid, Alg: "EdDSA", State: state, Sealed: []byte("sealed-" + kid), PublicJWK: []byte(`{}`), CreatedAt: t0}
	}
	if err := s.InsertSigningKeys(ctx, key("k1", token.StateCurrent), key("k2", token.StateNext)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSecretIfAbsent(ctx, "mac", []byte("sealed-mac"), t0); err != nil {
		t.Fatal(err)
	}
	// A failure on the last value rolls back the ones before it.
	_, err := r.Reseal(ctx, func(kind, name string, sealed []byte) ([]byte, error) {
		if kind == token.SealedSecret {
			return nil, errors.New("cannot open")
		}
		return []byte("new"), nil
	})
	if err == nil {
		t.Fatal("Reseal ignored the function's error")
	}
	if keys, _ := s.SigningKeys(ctx); string(keys[0].Sealed) != "sealed-"+keys[0].KID {
		t.Fatalf("a failed reseal changed key %s to %q", keys[0].KID, keys[0].Sealed)
	}
	seen := map[string]string{}
	n, err := r.Reseal(ctx, func(kind, name string, sealed []byte) ([]byte, error) {
		seen[kind+"/"+name] = string(sealed)
		return append([]byte("re-"), sealed...), nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Reseal = %d, %v; want 3 values", n, err)
	}
	want := map[string]string{"signing-key/k1": "sealed-k1", "signing-key/k2": "sealed-k2", "secret/mac": "sealed-mac"}
	if len(seen) != len(want) {
		t.Fatalf("Reseal visited %v, want %v", seen, want)
	}
	for k, v := range want {
		if seen[k] != v {
			t.Fatalf("Reseal visited %v, want %v", seen, want)
		}
	}
	keys, _ := s.SigningKeys(ctx)
	for _, k := range keys {
		if string(k.Sealed) != "re-sealed-"+k.KID {
			t.Fatalf("key %s holds %q after reseal", k.KID, k.Sealed)
		}
	}
	if v, _ := s.Secret(ctx, "mac"); string(v) != "re-sealed-mac" {
		t.Fatalf("secret holds %q after reseal", v)
	}
}

// testRotateSession holds the store's one-statement rotation to rotate
// itself (session.Rotation.Rotates), row by row: where rotate rotates, the
// store writes rotate's next row and returns it; everywhere else it
// changes nothing and says ErrNotFound.
// rotateCase is a session row and a rotation presented against it.
type rotateCase struct {
	name string
	row  func(*session.Session)
	req  func(*session.Rotation)
	want bool // what rotate says, checked against Rotates too
}

// rotateNow is the time of the rotateCases.
var rotateNow = t0.Add(30*time.Minute + 7*time.Microsecond)

var rotateCases = func() []rotateCase {
	now := rotateNow
	const jkt, otherJKT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	return []rotateCase{
		{name: "current token of a live session", want: true},
		{name: "bound session, its key", row: func(r *session.Session) { r.DPoPJKT = jkt }, req: func(q *session.Rotation) { q.DPoPJKT = jkt }, want: true},
		{name: "bound session, another key", row: func(r *session.Session) { r.DPoPJKT = jkt }, req: func(q *session.Rotation) { q.DPoPJKT = otherJKT }},
		{name: "bound session, no key", row: func(r *session.Session) { r.DPoPJKT = jkt }},
		{name: "unbound session, a key: stays unbound", req: func(q *session.Rotation) { q.DPoPJKT = jkt }, want: true},
		{name: "parent", req: func(q *session.Rotation) { q.Gen-- }},
		{name: "generation never handed out", req: func(q *session.Rotation) { q.Gen++ }},
		{name: "another client", req: func(q *session.Rotation) { q.ClientID = "other" }},
		{name: "revoked", row: func(r *session.Session) { r.RevokedAt, r.RevokeReason = now.Add(-time.Minute), "logout" }},
		{name: "absolute expiry now", row: func(r *session.Session) { r.ExpiresAt = now }},
		{name: "absolute expiry just after now", row: func(r *session.Session) { r.ExpiresAt = now.Add(time.Microsecond) }, want: true},
		{name: "idle expiry now", row: func(r *session.Session) { r.IdleExpiresAt = now }},
		{name: "idle expiry just after now", row: func(r *session.Session) { r.IdleExpiresAt = now.Add(time.Microsecond) }, want: true},
		{name: "hand-out after now (a clock that lags)", row: func(r *session.Session) { r.HandedAt = now.Add(time.Second) }, want: true},
		{name: "missing", row: func(r *session.Session) { r.ID = "" }},
	}
}()

// setUp stores the case's row (unless it is "missing") and returns it and
// the rotation presented, with what rotate makes of them.
func (tt rotateCase) setUp(t *testing.T, s Store, u session.User) (row session.Session, r session.Rotation, want session.Session) {
	t.Helper()
	now := rotateNow
	row = session.Session{ID: session.NewID(), UserID: u.ID, ClientID: "app", Scope: "read write",
		CreatedAt: t0, LastUsedAt: t0.Add(time.Minute), UserAgent: "ua", IP: "192.0.2.1",
		IdleExpiresAt: t0.Add(time.Hour), Gen: 7, ParentGen: 6, HandedAt: t0.Add(time.Minute), RotatedAt: t0.Add(time.Minute),
		RotatedIP: "192.0.2.1", RotatedUserAgent: "ua"}
	if tt.row != nil {
		tt.row(&row)
	}
	id := row.ID
	if id == "" {
		id = session.NewID() // never inserted
	} else {
		inTx(t, s, func(tx session.Tx) error { return tx.InsertSession(ctx, row) })
	}
	r = session.Rotation{ID: id, Gen: row.Gen, ClientID: "app", Now: now, IdleExpiresAt: now.Add(24 * time.Hour),
		IP: "2001:db8::7", UserAgent: "ua2"}
	if tt.req != nil {
		tt.req(&r)
	}
	want, rotates := r.Rotates(row)
	if rotates != tt.want && row.ID != "" {
		t.Fatalf("%s: rotate says rotates = %v, the test expects %v", tt.name, rotates, tt.want)
	}
	return row, r, want
}

// check holds RotateSession's answer got, err to rotate's: the rotated
// fields and the stored row, or ErrNotFound and the row unchanged.
func (tt rotateCase) check(t *testing.T, s Store, row session.Session, r session.Rotation, want, got session.Session, err error) {
	t.Helper()
	if !tt.want {
		if !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s: RotateSession = %+v, %v; want ErrNotFound", tt.name, got, err)
		}
		if row.ID != "" {
			if stored, _ := s.Session(ctx, r.ID); stored != row {
				t.Errorf("%s: the row changed:\n got %+v\nwant %+v", tt.name, stored, row)
			}
		}
		return
	}
	if err != nil || got != session.RotatedFields(want) {
		t.Errorf("%s: RotateSession = %+v, %v;\nrotate's %+v", tt.name, got, err, session.RotatedFields(want))
	}
	if stored, _ := s.Session(ctx, r.ID); stored != want {
		t.Errorf("%s: stored\n got %+v\nwant %+v", tt.name, stored, want)
	}
}

func testRotateSession(t *testing.T, s Store) {
	rs, ok := s.(session.Rotator)
	if !ok {
		t.Fatal("the store has no RotateSession (session.Rotator)")
	}
	u := newUser(t, s, "a@example.com")
	for _, tt := range rotateCases {
		t.Run(tt.name, func(t *testing.T) {
			row, r, want := tt.setUp(t, s, u)
			got, err := rs.RotateSession(ctx, r)
			tt.check(t, s, row, r, want, got, err)
			if t.Failed() || !tt.want {
				return
			}
			// The presented token is now the parent: the same rotation again
			// matches nothing.
			if _, err := rs.RotateSession(ctx, r); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("the same rotation again: %v, want ErrNotFound", err)
			}
		})
	}
}

// batchRotator is a store that can also send several rotations as one
// statement (PostgreSQL's batches, batch.go).
type batchRotator interface {
	RotateSessions(ctx context.Context, rs []session.Rotation) ([]session.Session, []error)
}

// testRotateSessionsAtOnce presents every case of RotateSessionIsRotate at
// once: as one statement where the store batches (each row must come out
// as it does alone), else concurrently. The same session twice in one
// batch goes once; the other presentation matches nothing (it takes the
// locked transaction).
func testRotateSessionsAtOnce(t *testing.T, s Store) {
	u := newUser(t, s, "a@example.com")
	type setUp struct {
		row, want session.Session
		r         session.Rotation
	}
	var (
		cases []setUp
		rs    []session.Rotation
	)
	for _, tt := range rotateCases {
		row, r, want := tt.setUp(t, s, u)
		cases = append(cases, setUp{row, want, r})
		rs = append(rs, r)
	}
	got := make([]session.Session, len(rs))
	errs := make([]error, len(rs))
	if b, ok := s.(batchRotator); ok {
		// The first case's rotation again, last: one of the two wins.
		got, errs = b.RotateSessions(ctx, append(slices.Clone(rs), rs[0]))
		if len(got) != len(rs)+1 || len(errs) != len(rs)+1 {
			t.Fatalf("RotateSessions answered %d and %d of %d", len(got), len(errs), len(rs)+1)
		}
		if !errors.Is(errs[len(rs)], session.ErrNotFound) {
			t.Errorf("the same session twice in one batch: the second = %v, want ErrNotFound", errs[len(rs)])
		}
		got, errs = got[:len(rs)], errs[:len(rs)]
	} else {
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Go(func() { got[i], errs[i] = s.(session.Rotator).RotateSession(ctx, r) })
		}
		wg.Wait()
	}
	for i, tt := range rotateCases {
		c := cases[i]
		tt.check(t, s, c.row, c.r, c.want, got[i], errs[i])
	}
}

// testRotateSessionSerialises races one-statement rotations of one
// generation, alone and against the locked transaction: exactly one wins.
func testRotateSessionSerialises(t *testing.T, s Store) {
	rs := s.(session.Rotator)
	u := newUser(t, s, "a@example.com")
	ses := newSession(t, s, u, t0)
	now := t0.Add(time.Minute)
	r := session.Rotation{ID: ses.ID, Gen: ses.Gen, ClientID: ses.ClientID, DPoPJKT: ses.DPoPJKT, Now: now, IdleExpiresAt: now.Add(time.Hour), IP: "192.0.2.9", UserAgent: "ua"}
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			won := false
			if i%2 == 0 {
				_, err := rs.RotateSession(ctx, r)
				if err != nil && !errors.Is(err, session.ErrNotFound) {
					t.Error(err)
				}
				won = err == nil
			} else {
				// The transaction's compare-and-write of the same generation.
				err := s.InTx(ctx, func(tx session.Tx) error {
					cur, err := tx.LockSession(ctx, ses.ID)
					if err != nil || cur.Gen != ses.Gen {
						return err
					}
					won = true
					cur.ParentGen, cur.Gen = cur.Gen, cur.Gen+1
					return tx.UpdateSession(ctx, cur)
				})
				if err != nil {
					t.Error(err)
				}
			}
			if won {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got, _ := s.Session(ctx, ses.ID)
	if wins != 1 || got.Gen != ses.Gen+1 {
		t.Fatalf("%d of %d rotations of generation %d won; the session is at %d, want exactly one win and %d", wins, n, ses.Gen, got.Gen, ses.Gen+1)
	}
}
