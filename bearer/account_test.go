package bearer_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// A password reset and an account deletion end every session of the user:
// a resource server's verifier on the revocation feed rejects the access
// tokens of all of them within a second, and their refresh tokens get
// invalid_grant (docs/design.md "Account lifecycle (email)").
func TestResetAndDeletionReachTheFeed(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{RealClock: true, FeedHeartbeat: 100 * time.Millisecond})
	ctx := context.Background()
	v := l.verifier(t, nil, &bearer.FeedConfig{})
	cases := []struct {
		name string
		end  func(t *testing.T, user string, s session.Tokens)
	}{
		{"password reset", func(t *testing.T, user string, _ session.Tokens) {
			l.env.Mail(t)
			if code, body := l.do(t, "POST", "/v1/password/forgot", "", "application/json", `{"email":"`+user+`"}`, false); code != http.StatusAccepted {
				t.Fatalf("forgot: %d %s", code, body)
			}
			var tok string
			eventually(t, "the reset message", func() bool {
				for _, m := range l.env.Mail(t) {
					if m.Kind == session.KindReset && m.To == user {
						tok = testenv.LinkToken(m)
					}
				}
				return tok != ""
			})
			if code, body := l.do(t, "POST", "/v1/password/reset", "", "application/json",
				`{"token":"`+tok+`","new_password":"a brand new passphrase 7"}`, false); code != http.StatusNoContent {
				t.Fatalf("reset: %d %s", code, body)
			}
		}},
		{"account deletion", func(t *testing.T, _ string, s session.Tokens) {
			if code, body := l.do(t, "DELETE", "/v1/me", s.AccessToken, "application/json", `{"password":"`+testenv.Password+`"}`, false); code != http.StatusNoContent {
				t.Fatalf("delete: %d %s", code, body)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user := email()
			s1 := l.env.Login(t, user)
			s2 := l.login(t, user)
			for _, s := range []session.Tokens{s1, s2} {
				if _, err := v.Verify(ctx, s.AccessToken); err != nil {
					t.Fatalf("before: %v", err)
				}
			}
			tc.end(t, user, s2)
			ended := time.Now()
			eventually(t, "both sessions' revocations to reach the verifier", func() bool {
				_, e1 := v.Verify(ctx, s1.AccessToken)
				_, e2 := v.Verify(ctx, s2.AccessToken)
				return errors.Is(e1, bearer.ErrRevoked) && errors.Is(e2, bearer.ErrRevoked)
			})
			if d := time.Since(ended); d > time.Second {
				t.Fatalf("the verifier rejected the tokens %s after the answer, want within a second", d)
			}
			for _, s := range []session.Tokens{s1, s2} {
				if _, err := l.env.Sessions.Refresh(ctx, session.RefreshRequest{Token: s.RefreshToken, Client: l.env.Client}); !session.IsInvalidGrant(err) {
					t.Fatalf("refresh after %s: %v, want invalid_grant", tc.name, err)
				}
			}
		})
	}
}
