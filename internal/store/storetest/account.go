package storetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// Outbox is the outbox side a store offers the mail sender.
type Outbox interface {
	ClaimMessages(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]session.Message, error)
	MessageSent(ctx context.Context, id string) error
	MessageFailed(ctx context.Context, id string, retry time.Time, reason string) error
	PendingMessages(ctx context.Context) (int, error)
	NextMessageDue(ctx context.Context, now time.Time) (time.Time, bool, error)
}

func testUserProfile(t *testing.T, s Store) {
	u := newUser(t, s, "p@example.com")
	u.EmailVerifiedAt, u.Metadata = t0.Add(time.Minute), `{"theme":"dark"}`
	inTx(t, s, func(tx session.Tx) error { return tx.UpdateUser(ctx, u) })
	if got, _ := s.User(ctx, u.ID); got != u {
		t.Fatalf("after update: %+v, want %+v", got, u)
	}
	u.EmailVerifiedAt, u.Metadata = time.Time{}, ""
	inTx(t, s, func(tx session.Tx) error { return tx.UpdateUser(ctx, u) })
	if got, _ := s.User(ctx, u.ID); got != u {
		t.Fatalf("after clearing: %+v, want %+v", got, u)
	}
}

func msgToken(u session.User, purpose string, b byte, at time.Time) session.MessageToken {
	return session.MessageToken{Hash: bytes.Repeat([]byte{b}, 32), UserID: u.ID, Purpose: purpose, Email: u.Email, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
}

func sameToken(a, b session.MessageToken) bool {
	return bytes.Equal(a.Hash, b.Hash) && a.UserID == b.UserID && a.Purpose == b.Purpose && a.Email == b.Email &&
		a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) && a.SessionID == b.SessionID
}

// Message tokens: stored and read back, a newer one of a purpose voids the
// older (and only that purpose's), each is taken once, a rolled-back take
// leaves it, and the sweeper deletes expired ones.
func testMessageTokens(t *testing.T, s Store) {
	u := newUser(t, s, "m@example.com")
	other := newUser(t, s, "o@example.com")
	first := msgToken(u, session.PurposeReset, 1, t0)
	verify := msgToken(u, session.PurposeVerify, 2, t0)
	theirs := msgToken(other, session.PurposeReset, 3, t0)
	inTx(t, s, func(tx session.Tx) error {
		for _, m := range []session.MessageToken{first, verify, theirs} {
			if err := tx.PutMessageToken(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if got, err := s.MessageToken(ctx, first.Hash); err != nil || !sameToken(got, first) {
		t.Fatalf("MessageToken = %+v, %v; want %+v", got, err, first)
	}
	newer := msgToken(u, session.PurposeReset, 4, t0.Add(time.Minute))
	newer.SessionID = "sid-1"
	inTx(t, s, func(tx session.Tx) error { return tx.PutMessageToken(ctx, newer) })
	if _, err := s.MessageToken(ctx, first.Hash); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("the older reset token after a newer one: %v, want ErrNotFound", err)
	}
	for _, m := range []session.MessageToken{verify, theirs, newer} {
		if _, err := s.MessageToken(ctx, m.Hash); err != nil {
			t.Fatalf("token %s of %s: %v; only the older token of that user and purpose goes", m.Purpose, m.UserID, err)
		}
	}
	// A take that rolls back leaves the token.
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx session.Tx) error {
		if _, err := tx.TakeMessageToken(ctx, newer.Hash); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want boom", err)
	}
	var got session.MessageToken
	inTx(t, s, func(tx session.Tx) error {
		var err error
		got, err = tx.TakeMessageToken(ctx, newer.Hash)
		return err
	})
	if !sameToken(got, newer) {
		t.Fatalf("taken %+v, want %+v", got, newer)
	}
	err = s.InTx(ctx, func(tx session.Tx) error { _, err := tx.TakeMessageToken(ctx, newer.Hash); return err })
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("second take: %v, want ErrNotFound", err)
	}
	inTx(t, s, func(tx session.Tx) error { return tx.DeleteMessageTokens(ctx, u.ID) })
	if _, err := s.MessageToken(ctx, verify.Hash); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after DeleteMessageTokens: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteStale(ctx, t0, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MessageToken(ctx, theirs.Hash); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("an expired token after the sweep: %v, want ErrNotFound", err)
	}
}

// The outbox: a message exists only if its transaction committed; a claim
// hides it from other claims until its lease ends (then it is due again,
// so a dead sender loses nothing); a failure schedules a retry; a sent
// message is gone.
func testOutbox(t *testing.T, s Store) {
	o, ok := s.(Outbox)
	if !ok {
		t.Fatal("the store has no outbox")
	}
	u := newUser(t, s, "q@example.com")
	rolled := session.Message{ID: session.NewID(), UserID: u.ID, Body: []byte("rolled back"), CreatedAt: t0}
	boom := errors.New("boom")
	if err := s.InTx(ctx, func(tx session.Tx) error {
		if err := tx.EnqueueMessage(ctx, rolled); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	m := session.Message{ID: session.NewID(), UserID: u.ID, Body: []byte("sealed"), CreatedAt: t0}
	inTx(t, s, func(tx session.Tx) error { return tx.EnqueueMessage(ctx, m) })
	lease := time.Minute
	got, err := o.ClaimMessages(ctx, t0, lease, 10)
	if err != nil || len(got) != 1 || got[0].ID != m.ID || !bytes.Equal(got[0].Body, m.Body) || got[0].Attempts != 1 || got[0].UserID != u.ID {
		t.Fatalf("claim = %+v, %v; want the committed message only, attempt 1", got, err)
	}
	if again, err := o.ClaimMessages(ctx, t0.Add(lease/2), lease, 10); err != nil || len(again) != 0 {
		t.Fatalf("a second claim inside the lease = %+v, %v; want nothing", again, err)
	}
	// A sender that starts now learns when the claim runs out.
	if at, ok, err := o.NextMessageDue(ctx, t0.Add(lease/2)); err != nil || !ok || !at.Equal(t0.Add(lease)) {
		t.Fatalf("next due inside the lease = %s, %t, %v; want %s", at, ok, err, t0.Add(lease))
	}
	// The claimant died: after the lease the message is due again.
	again, err := o.ClaimMessages(ctx, t0.Add(lease), lease, 10)
	if err != nil || len(again) != 1 || again[0].Attempts != 2 {
		t.Fatalf("claim after the lease = %+v, %v; want the message, attempt 2", again, err)
	}
	retry := t0.Add(time.Hour)
	if err := o.MessageFailed(ctx, m.ID, retry, "451 try later"); err != nil {
		t.Fatal(err)
	}
	if got, _ := o.ClaimMessages(ctx, retry.Add(-time.Second), lease, 10); len(got) != 0 {
		t.Fatalf("claimed before its retry time: %+v", got)
	}
	if at, ok, err := o.NextMessageDue(ctx, retry.Add(-time.Second)); err != nil || !ok || !at.Equal(retry) {
		t.Fatalf("next due before the retry = %s, %t, %v; want %s", at, ok, err, retry)
	}
	if got, _ := o.ClaimMessages(ctx, retry, lease, 10); len(got) != 1 {
		t.Fatalf("not claimed at its retry time: %+v", got)
	}
	if err := o.MessageSent(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := o.PendingMessages(ctx); err != nil || n != 0 {
		t.Fatalf("pending after sent = %d, %v; want 0", n, err)
	}
	if _, ok, err := o.NextMessageDue(ctx, retry); err != nil || ok {
		t.Fatalf("next due with an empty outbox: %t, %v; want none", ok, err)
	}
}

// DeleteUser removes the user and everything keyed to them, keeps their
// audit events stripped to the user id, and leaves the revocation feed
// entries of the sessions revoked in the same transaction.
func testDeleteUser(t *testing.T, s Store) {
	u := newUser(t, s, "gone@example.com")
	keep := newUser(t, s, "stays@example.com")
	ses := newSession(t, s, u, t0)
	kept := newSession(t, s, keep, t0)
	inTx(t, s, func(tx session.Tx) error {
		if err := tx.PutMessageToken(ctx, msgToken(u, session.PurposeReset, 9, t0)); err != nil {
			return err
		}
		if err := tx.EnqueueMessage(ctx, session.Message{ID: session.NewID(), UserID: u.ID, Body: []byte("x"), CreatedAt: t0}); err != nil {
			return err
		}
		for _, id := range []string{u.ID, keep.ID} {
			if err := tx.AppendAudit(ctx, audit.Event{At: t0, Type: audit.LoginSucceeded, UserID: id, SessionID: ses.ID, IP: "192.0.2.7", UserAgent: "Phone/1", Detail: "from 192.0.2.7"}); err != nil {
				return err
			}
		}
		return nil
	})
	before, _ := s.Revocations(ctx, session.FeedCursor{}, 100)
	inTx(t, s, func(tx session.Tx) error {
		if _, err := tx.RevokeSessions(ctx, session.Revocation{UserID: u.ID, Scope: session.ScopeAll, Reason: session.ReasonUserDeleted, At: t0, Until: t0.Add(time.Hour)}); err != nil {
			return err
		}
		return tx.DeleteUser(ctx, u.ID)
	})
	if _, err := s.User(ctx, u.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("deleted user: %v, want ErrNotFound", err)
	}
	if _, err := s.UserByEmail(ctx, u.Email); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("deleted user's email: %v, want ErrNotFound", err)
	}
	if _, err := s.Session(ctx, ses.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("deleted user's session: %v, want ErrNotFound (its IP and user agent erased)", err)
	}
	if _, err := s.MessageToken(ctx, msgToken(u, session.PurposeReset, 9, t0).Hash); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("deleted user's token: %v, want ErrNotFound", err)
	}
	if n, _ := s.(Outbox).PendingMessages(ctx); n != 0 {
		t.Fatalf("deleted user's queued messages: %d, want 0", n)
	}
	// feedAtLeast: on PostgreSQL an entry shows once no older transaction
	// of the cluster is running, and tests in other packages share it.
	after, _ := feedAtLeast(t, s, session.FeedCursor{}, 100, len(before)+1)
	if len(after) != len(before)+1 || after[len(after)-1].SessionID != ses.ID {
		t.Fatalf("feed after delete = %+v; want the deleted user's session added", after)
	}
	evs, err := s.AuditEvents(ctx, audit.Query{UserID: u.ID})
	if err != nil || len(evs) != 1 {
		t.Fatalf("audit of the deleted user = %+v, %v; want the row kept", evs, err)
	}
	if e := evs[0]; e.IP != "" || e.UserAgent != "" || e.Detail != "" || e.Type != audit.LoginSucceeded {
		t.Fatalf("audit row of the deleted user = %+v; want only user id, type and time", e)
	}
	if evs, _ := s.AuditEvents(ctx, audit.Query{UserID: keep.ID}); len(evs) != 1 || evs[0].IP == "" {
		t.Fatalf("another user's audit rows changed: %+v", evs)
	}
	if got, err := s.Session(ctx, kept.ID); err != nil || !got.RevokedAt.IsZero() {
		t.Fatalf("another user's session: %+v, %v", got, err)
	}
	err = s.InTx(ctx, func(tx session.Tx) error { return tx.DeleteUser(ctx, u.ID) })
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("deleting again: %v, want ErrNotFound", err)
	}
}

// mailTo returns the one message of kind to addr among ms.
func mailTo(t *testing.T, ms []session.Content, kind session.MessageKind, addr string) session.Content {
	t.Helper()
	var found []session.Content
	for _, m := range ms {
		if m.Kind == kind && m.To == addr {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s message to %s, got %d among %+v", kind, addr, len(found), ms)
	}
	return found[0]
}

func wantInvalidToken(t *testing.T, err error, why string) {
	t.Helper()
	if !errors.Is(err, session.ErrInvalidMessageToken) {
		t.Fatalf("%s: %v, want ErrInvalidMessageToken", why, err)
	}
}

// Message tokens through the session service: each is taken once, is
// refused for another purpose, after expiry, when tampered with, once a
// newer one was sent and once the password changed.
func testServiceMessageTokens(t *testing.T, env *testenv.Env) {
	const addr = "tok@example.com"
	a := env.Login(t, addr)
	u, _ := env.Sessions.UserByEmail(ctx, addr)
	if !u.EmailVerifiedAt.IsZero() {
		t.Fatal("a new user is verified")
	}
	signupLink := testenv.LinkToken(mailTo(t, env.Mail(t), session.KindVerify, addr))
	if !strings.HasPrefix(signupLink, session.PrefixVerify) {
		t.Fatalf("verification token %q lacks the %s prefix", signupLink, session.PrefixVerify)
	}
	// A newer verification voids the signup's.
	if err := env.Sessions.RequestVerification(ctx, u.ID, meta); err != nil {
		t.Fatal(err)
	}
	newer := testenv.LinkToken(mailTo(t, env.Mail(t), session.KindVerify, addr))
	wantInvalidToken(t, env.Sessions.VerifyEmail(ctx, signupLink, meta), "the older verification token")
	// Tampering: one character changed.
	tampered := newer[:len(session.PrefixVerify)] + flip(newer[len(session.PrefixVerify)]) + newer[len(session.PrefixVerify)+1:]
	wantInvalidToken(t, env.Sessions.VerifyEmail(ctx, tampered, meta), "a tampered token")
	// Wrong purpose: a verification token is no reset token, even relabelled.
	_, err := env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: newer, NewPassword: "a brand new passphrase"})
	wantInvalidToken(t, err, "a verification token at reset")
	_, err = env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: session.PrefixReset + strings.TrimPrefix(newer, session.PrefixVerify), NewPassword: "a brand new passphrase"})
	wantInvalidToken(t, err, "a verification token relabelled as a reset token")
	if err := env.Sessions.VerifyEmail(ctx, newer, meta); err != nil {
		t.Fatalf("verify: %v", err)
	}
	wantInvalidToken(t, env.Sessions.VerifyEmail(ctx, newer, meta), "a used token")
	if u, _ = env.Sessions.User(ctx, u.ID); u.EmailVerifiedAt.IsZero() {
		t.Fatal("not verified after the link")
	}

	// Reset: expiry.
	if err := env.Sessions.ForgotPassword(ctx, addr, meta); err != nil {
		t.Fatal(err)
	}
	expired := testenv.LinkToken(mailTo(t, env.Mail(t), session.KindReset, addr))
	if !strings.HasPrefix(expired, session.PrefixReset) {
		t.Fatalf("reset token %q lacks the %s prefix", expired, session.PrefixReset)
	}
	env.Clock.Advance(31 * time.Minute)
	_, err = env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: expired, NewPassword: "a brand new passphrase"})
	wantInvalidToken(t, err, "an expired reset token")
	wantInvalidToken(t, env.Sessions.VerifyEmail(ctx, expired, meta), "a reset token at verify")
	// A password change voids a reset link sent before it.
	if err := env.Sessions.ForgotPassword(ctx, addr, meta); err != nil {
		t.Fatal(err)
	}
	beforeChange := testenv.LinkToken(mailTo(t, env.Mail(t), session.KindReset, addr))
	env.Clock.Advance(time.Second)
	if err := env.Sessions.ChangePassword(ctx, u.ID, a.SessionID, testenv.Password, "another fine passphrase", meta); err != nil {
		t.Fatal(err)
	}
	_, err = env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: beforeChange, NewPassword: "a brand new passphrase"})
	wantInvalidToken(t, err, "a reset token from before a password change")
	// An unknown address sends nothing and is no error.
	if err := env.Sessions.ForgotPassword(ctx, "nobody@example.com", meta); err != nil {
		t.Fatal(err)
	}
	if ms := env.Mail(t); len(ms) != 0 {
		t.Fatalf("a reset request for an unknown address sent %+v", ms)
	}
}

// A reset ends every session of the user (feed included), sets the
// password, verifies the address, and can log in at once; the link then
// is spent.
func testServiceReset(t *testing.T, env *testenv.Env) {
	const addr = "reset@example.com"
	a := env.Login(t, addr)
	b := env.Login2(t, addr)
	env.Mail(t)
	before, _ := env.Store.Revocations(ctx, session.FeedCursor{}, 100)
	if err := env.Sessions.ForgotPassword(ctx, addr, meta); err != nil {
		t.Fatal(err)
	}
	tok := testenv.LinkToken(mailTo(t, env.Mail(t), session.KindReset, addr))
	_, err := env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: tok, NewPassword: "short"})
	if err == nil || errors.Is(err, session.ErrInvalidMessageToken) {
		t.Fatalf("weak password: %v, want a policy error", err)
	}
	got, err := env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: tok, NewPassword: "a brand new passphrase", Login: true, Client: env.Client, Meta: meta})
	if err != nil || got.RefreshToken == "" {
		t.Fatalf("reset = %+v, %v; want a new session", got, err)
	}
	wantInvalidGrant(t, env, a.RefreshToken, "first session after a reset")
	wantInvalidGrant(t, env, b.RefreshToken, "second session after a reset")
	mustRefresh(t, env, got.RefreshToken)
	after, _ := feedAtLeast(t, env.Store, session.FeedCursor{}, 100, len(before)+2)
	if len(after)-len(before) != 2 {
		t.Fatalf("feed grew by %d, want 2", len(after)-len(before))
	}
	_, err = env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: tok, NewPassword: "yet another passphrase"})
	wantInvalidToken(t, err, "a reset token used twice")
	if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: addr, Password: testenv.Password, Client: env.Client}); !errors.Is(err, session.ErrBadCredential) {
		t.Fatalf("old password after reset: %v", err)
	}
	if _, _, err := env.Sessions.Login(ctx, session.LoginRequest{Email: addr, Password: "a brand new passphrase", Client: env.Client}); err != nil {
		t.Fatalf("new password after reset: %v", err)
	}
	if u, _ := env.Sessions.UserByEmail(ctx, addr); u.EmailVerifiedAt.IsZero() {
		t.Fatal("a reset through the link did not verify the address")
	}
	mailTo(t, env.Mail(t), session.KindPasswordChanged, addr)
}

// An email change: a link to the new address, a notice to the old; the
// change happens when the link is used. A taken address gets a notice.
func testServiceEmailChange(t *testing.T, env *testenv.Env) {
	a := env.Login(t, "old@example.com")
	other := env.Login2(t, "old@example.com")
	env.Login(t, "taken@example.com")
	env.Mail(t)
	u, _ := env.Sessions.UserByEmail(ctx, "old@example.com")
	if err := env.Sessions.ChangeEmail(ctx, u.ID, a.SessionID, "new@example.com", "wrong password", meta); !errors.Is(err, session.ErrBadCredential) {
		t.Fatalf("wrong password: %v", err)
	}
	if err := env.Sessions.ChangeEmail(ctx, u.ID, a.SessionID, "New@Example.com", testenv.Password, meta); err != nil {
		t.Fatal(err)
	}
	ms := env.Mail(t)
	link := testenv.LinkToken(mailTo(t, ms, session.KindEmailChange, "new@example.com"))
	if n := mailTo(t, ms, session.KindEmailChangeNotice, "old@example.com"); !strings.Contains(n.Text, "new@example.com") || testenv.LinkToken(n) != "" {
		t.Fatalf("notice to the old address: %+v", n)
	}
	if got, _ := env.Sessions.User(ctx, u.ID); got.Email != "old@example.com" {
		t.Fatal("the address changed before the new one was verified")
	}
	if err := env.Sessions.VerifyEmail(ctx, link, meta); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.Sessions.User(ctx, u.ID); got.Email != "new@example.com" || got.EmailVerifiedAt.IsZero() {
		t.Fatalf("after the link: %+v", got)
	}
	mustRefresh(t, env, a.RefreshToken) // the session that asked stays
	wantInvalidGrant(t, env, other.RefreshToken, "another session after the email change")
	if err := env.Sessions.ChangeEmail(ctx, u.ID, a.SessionID, "taken@example.com", testenv.Password, meta); err != nil {
		t.Fatal(err)
	}
	ms = env.Mail(t)
	if m := mailTo(t, ms, session.KindAccountExists, "taken@example.com"); testenv.LinkToken(m) != "" {
		t.Fatalf("the taken address got a link: %+v", m)
	}
	mailTo(t, ms, session.KindEmailChangeNotice, "new@example.com")
}

// Deleting an account revokes every session (feed), erases the user's
// personal data and keeps audit rows by user id only.
func testServiceDeleteAccount(t *testing.T, env *testenv.Env) {
	const addr = "delete@example.com"
	a := env.Login(t, addr)
	u, _ := env.Sessions.UserByEmail(ctx, addr)
	if _, err := env.Sessions.UpdateMetadata(ctx, u.ID, []byte(`{"name":"Ada"}`), meta); err != nil {
		t.Fatal(err)
	}
	before, _ := env.Store.Revocations(ctx, session.FeedCursor{}, 100)
	if err := env.Sessions.DeleteAccount(ctx, u.ID, "wrong password", meta); !errors.Is(err, session.ErrBadCredential) {
		t.Fatalf("wrong password: %v", err)
	}
	if err := env.Sessions.DeleteAccount(ctx, u.ID, testenv.Password, meta); err != nil {
		t.Fatal(err)
	}
	wantInvalidGrant(t, env, a.RefreshToken, "after deletion")
	after, _ := feedAtLeast(t, env.Store, session.FeedCursor{}, 100, len(before)+1)
	if after[len(after)-1].SessionID != a.SessionID {
		t.Fatalf("feed after deletion: %+v", after)
	}
	if _, err := env.Sessions.User(ctx, u.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("deleted user: %v", err)
	}
	evs, _ := env.Store.AuditEvents(ctx, audit.Query{UserID: u.ID})
	if len(evs) == 0 {
		t.Fatal("audit rows of the deleted user are gone")
	}
	for _, e := range evs {
		if e.IP != "" || e.UserAgent != "" || e.Detail != "" {
			t.Fatalf("audit row keeps personal data: %+v", e)
		}
	}
	// The address is free again.
	env.Login(t, addr)
}

// flip returns another base64url character than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// One link used by many requests at once: exactly one succeeds, whatever
// the engine (the row is taken under its lock).
func testServiceConcurrentLinkUse(t *testing.T, env *testenv.Env) {
	const addr = "race@example.com"
	env.Login(t, addr)
	env.Mail(t)
	if err := env.Sessions.ForgotPassword(ctx, addr, meta); err != nil {
		t.Fatal(err)
	}
	tok := testenv.LinkToken(mailTo(t, env.Mail(t), session.KindReset, addr))
	const n = 8
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			_, err := env.Sessions.ResetPassword(ctx, session.ResetRequest{Token: tok, NewPassword: "concurrent passphrase " + string(rune('a'+i))})
			errs <- err
		}()
	}
	close(start)
	ok := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, session.ErrInvalidMessageToken):
		default:
			t.Fatalf("a concurrent use: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent uses of one reset link succeeded, want 1", ok, n)
	}
}
