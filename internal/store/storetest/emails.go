package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/latchauth/latch/internal/email"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// testUpdateEmailTaken: UpdateUser writes the email, and refuses one that
// another user holds.
func testUpdateEmailTaken(t *testing.T, s Store) {
	a := newUser(t, s, "a@example.com")
	newUser(t, s, "b@example.com")
	a.Email = "a2@example.com"
	inTx(t, s, func(tx session.Tx) error { return tx.UpdateUser(ctx, a) })
	if got, err := s.UserByEmail(ctx, "a2@example.com"); err != nil || got.ID != a.ID {
		t.Fatalf("after renaming: UserByEmail = %+v, %v", got, err)
	}
	a.Email = "b@example.com"
	if err := s.InTx(ctx, func(tx session.Tx) error { return tx.UpdateUser(ctx, a) }); !errors.Is(err, session.ErrEmailTaken) {
		t.Fatalf("rename to a taken address: %v, want ErrEmailTaken", err)
	}
}

// testRenormalizeEmails: rows stored before normalisation (NFD, Unicode
// domains, an invisible character) are rewritten to the canonical form,
// except two that normalise to one address: those are reported by user id
// and left as they are, so neither account is merged into the other.
func testRenormalizeEmails(t *testing.T, s Store) {
	nfd := newUser(t, s, "jose\u0301@example.com")      // alone: rewritten to NFC
	uni := newUser(t, s, "user@b\u00fccher.de")         // alone: rewritten to xn--
	plain := newUser(t, s, "plain@example.com")         // already canonical
	c1 := newUser(t, s, "ann@xn--caf-dma.example")      // canonical
	c2 := newUser(t, s, "ann@caf\u00e9.example")        // normalises to c1's
	c3 := newUser(t, s, "ann@cafe\u0301.example")       // and so does this one
	bad := newUser(t, s, "zero\u200bwidth@example.com") // invalid now

	rep, err := session.RenormalizeEmails(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	// One created_at for all: the ids are in id order, compared as a set.
	want := []session.EmailCollision{{Email: "ann@xn--caf-dma.example", UserIDs: slices.Sorted(slices.Values([]string{c1.ID, c2.ID, c3.ID}))}}
	if rep.Updated != 2 || !slices.EqualFunc(rep.Collisions, want, func(a, b session.EmailCollision) bool {
		return a.Email == b.Email && slices.Equal(slices.Sorted(slices.Values(a.UserIDs)), b.UserIDs)
	}) || !slices.Equal(rep.Invalid, []string{bad.ID}) {
		t.Fatalf("report = %+v; want 2 updated, collisions %+v, invalid [%s]", rep, want, bad.ID)
	}
	for _, tc := range []struct {
		u    session.User
		want string
	}{
		{nfd, "jos\u00e9@example.com"},
		{uni, "user@xn--bcher-kva.de"},
		{plain, plain.Email},
		{c1, c1.Email}, {c2, c2.Email}, {c3, c3.Email},
		{bad, bad.Email},
	} {
		if got, err := s.User(ctx, tc.u.ID); err != nil || got.Email != tc.want {
			t.Errorf("user stored as %q: now %q, %v; want %q", tc.u.Email, got.Email, err, tc.want)
		}
	}
	// A second pass has nothing left to rewrite and reports the same.
	if again, err := session.RenormalizeEmails(ctx, s); err != nil || again.Updated != 0 || len(again.Collisions) != 1 {
		t.Fatalf("second pass = %+v, %v; want nothing updated, the collision still reported", again, err)
	}
}

// testServiceEmailIdentity: through the real service, each spelling of
// one address is one account, and invisible characters are refused.
func testServiceEmailIdentity(t *testing.T, env *testenv.Env) {
	signup := func(addr string) error {
		_, _, err := env.Sessions.Signup(ctx, session.SignupRequest{Email: addr, Password: testenv.Password, Client: env.Client})
		return err
	}
	for _, tc := range []struct {
		name, first, second string
	}{
		{"NFC then NFD", "jos\u00e9@example.com", "jose\u0301@example.com"},
		{"NFD then NFC", "rene\u0301@example.com", "ren\u00e9@example.com"},
		{"Unicode then ASCII domain", "user@b\u00fccher.de", "user@xn--bcher-kva.de"},
		{"ASCII then Unicode domain", "other@xn--bcher-kva.de", "Other@B\u00dcCHER.de"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := signup(tc.first); err != nil {
				t.Fatal(err)
			}
			if err := signup(tc.second); !errors.Is(err, session.ErrEmailTaken) {
				t.Fatalf("second signup as %+q after %+q: %v, want ErrEmailTaken", tc.second, tc.first, err)
			}
			_, u, err := env.Sessions.Login(ctx, session.LoginRequest{Email: tc.second, Password: testenv.Password, Client: env.Client})
			if err != nil {
				t.Fatalf("login as %+q: %v", tc.second, err)
			}
			if want, _ := email.Normalize(tc.first); u.Email != want {
				t.Fatalf("logged in as %q, want %q", u.Email, want)
			}
		})
	}
	t.Run("zero-width space", func(t *testing.T) {
		if err := signup("ad\u200ba@example.com"); !errors.Is(err, session.ErrInvalidEmail) || !errors.Is(err, email.ErrInvisible) {
			t.Fatalf("signup with U+200B: %v, want ErrInvalidEmail and email.ErrInvisible", err)
		}
	})
}
