package authclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// mail waits for the message of kind to addr and returns its link token.
func mailToken(t *testing.T, env *testenv.Env, kind session.MessageKind, addr string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range env.Mail(t) {
			if m.Kind == kind && m.To == addr {
				return testenv.LinkToken(m)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s message to %s", kind, addr)
	return ""
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *authclient.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("error %v, want an *Error with Code %q", err, code)
	}
}

// The account lifecycle through authclient: Me, UpdateMe, VerifyEmail,
// ChangeEmail, ForgotPassword, ResetPassword (and with a login),
// DeleteAccount.
func TestAccountLifecycle(t *testing.T) {
	h := newHarness(t, testenv.Options{})
	ctx := context.Background()
	c := h.client(0, nil)
	s, err := c.Signup(ctx, "life@example.com", testenv.Password)
	if err != nil {
		t.Fatal(err)
	}
	me, err := s.Me(ctx)
	if err != nil || me.Email != "life@example.com" || me.EmailVerified || string(me.UserMetadata) != "{}" {
		t.Fatalf("Me = %+v, %v", me, err)
	}
	if me, err = s.UpdateMe(ctx, map[string]any{"nickname": "Ada"}); err != nil || string(me.UserMetadata) != `{"nickname":"Ada"}` {
		t.Fatalf("UpdateMe = %+v, %v", me, err)
	}
	_, err = s.UpdateMe(ctx, []int{1})
	wantCode(t, err, "invalid_metadata")
	h.env.Mail(t) // the signup's link, voided by the next
	if err := s.RequestVerification(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyEmail(ctx, mailToken(t, h.env, session.KindVerify, "life@example.com")); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.VerifyEmail(ctx, "latch_ev_forged"), "invalid_token")
	wantCode(t, s.ChangeEmail(ctx, "life2@example.com", "wrong password"), "invalid_credentials")
	if err := s.ChangeEmail(ctx, "life2@example.com", testenv.Password); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyEmail(ctx, mailToken(t, h.env, session.KindEmailChange, "life2@example.com")); err != nil {
		t.Fatal(err)
	}
	if me, _ := s.Me(ctx); me.Email != "life2@example.com" || !me.EmailVerified {
		t.Fatalf("after ChangeEmail: %+v", me)
	}

	if err := c.ForgotPassword(ctx, "life2@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.ForgotPassword(ctx, "nobody@example.com"); err != nil {
		t.Fatalf("an unknown address: %v; the answer must not differ", err)
	}
	tok := mailToken(t, h.env, session.KindReset, "life2@example.com")
	wantCode(t, c.ResetPassword(ctx, tok, "short"), "weak_password")
	if err := c.ResetPassword(ctx, tok, "a brand new passphrase"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.ResetPassword(ctx, tok, "a brand new passphrase"), "invalid_token")
	if _, err := s.Me(ctx); err == nil {
		t.Fatal("the session survived a password reset")
	}

	if err := c.ForgotPassword(ctx, "life2@example.com"); err != nil {
		t.Fatal(err)
	}
	s2, err := c.ResetPasswordAndLogin(ctx, mailToken(t, h.env, session.KindReset, "life2@example.com"), "yet another passphrase")
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, s2.DeleteAccount(ctx, "wrong password"), "invalid_credentials")
	if err := s2.DeleteAccount(ctx, "yet another passphrase"); err != nil {
		t.Fatal(err)
	}
	var ended *authclient.SessionEndedError
	if _, err := s2.Me(ctx); !errors.As(err, &ended) {
		t.Fatalf("after DeleteAccount: %v, want a SessionEndedError", err)
	}
	if _, err := c.Login(ctx, "life2@example.com", "yet another passphrase"); err == nil {
		t.Fatal("logged in to a deleted account")
	}
}
