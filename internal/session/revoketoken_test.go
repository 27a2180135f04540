package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// RevokeToken is RFC 7009 for both kinds of token, with one rule for a
// token of another client (refused) and one record (token_revoked).
func TestRevokeToken(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := t.Context()
	other := session.Client{ID: "other", Audiences: []string{"api"}, AccessTTL: 15 * time.Minute, Grants: []string{session.GrantRefresh}}
	if err := env.Sessions.EnsureClient(ctx, other); err != nil {
		t.Fatal(err)
	}
	access := func(tok session.Tokens) *session.AccessToken {
		c, err := env.Verify(tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		return &session.AccessToken{UserID: c.Subject, SessionID: c.SessionID, ClientID: c.ClientID}
	}
	a := env.Login(t, "a@example.com")
	b := env.Login(t, "b@example.com")
	c := env.Login(t, "c@example.com")
	tests := []struct {
		name    string
		req     session.RevokeTokenRequest
		wantErr error
		ends    string // the session it ends, "" for none
	}{
		{"refresh token of another client", session.RevokeTokenRequest{Token: a.RefreshToken, Client: other}, session.ErrWrongClient, ""},
		{"access token of another client", session.RevokeTokenRequest{Token: b.AccessToken, Access: access(b), Client: other}, session.ErrWrongClient, ""},
		{"garbage", session.RevokeTokenRequest{Token: "latch_rt_nope", Client: env.Client}, nil, ""},
		{"access token naming another user's session", session.RevokeTokenRequest{Token: b.AccessToken,
			Access: &session.AccessToken{UserID: "someone-else", SessionID: b.SessionID, ClientID: "app"}, Client: env.Client}, nil, ""},
		{"refresh token", session.RevokeTokenRequest{Token: a.RefreshToken, Client: env.Client}, nil, a.SessionID},
		{"again: nothing more", session.RevokeTokenRequest{Token: a.RefreshToken, Client: env.Client}, nil, ""},
		{"access token", session.RevokeTokenRequest{Token: c.AccessToken, Access: access(c), Client: env.Client}, nil, c.SessionID},
	}
	for _, tc := range tests {
		before, _ := env.Store.AuditEvents(ctx, audit.Query{Type: audit.TokenRevoked})
		err := env.Sessions.RevokeToken(ctx, tc.req)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
		after, _ := env.Store.AuditEvents(ctx, audit.Query{Type: audit.TokenRevoked})
		switch {
		case tc.ends == "" && len(after) != len(before):
			t.Errorf("%s: recorded %d token_revoked events", tc.name, len(after)-len(before))
		case tc.ends != "" && (len(after) != len(before)+1 || after[0].SessionID != tc.ends && after[len(after)-1].SessionID != tc.ends):
			t.Errorf("%s: token_revoked events %+v, want one for %s", tc.name, after, tc.ends)
		}
		if tc.ends != "" {
			if ses, _ := env.Store.Session(ctx, tc.ends); ses.RevokeReason != session.ReasonTokenRevoked {
				t.Errorf("%s: session reason %q, want %q", tc.name, ses.RevokeReason, session.ReasonTokenRevoked)
			}
		}
	}
	for _, live := range []string{b.SessionID} {
		if ses, _ := env.Store.Session(ctx, live); !ses.RevokedAt.IsZero() {
			t.Errorf("session %s revoked by a refused request", live)
		}
	}
}
