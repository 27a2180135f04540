package bearer_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestClientTokens: a token a client got for itself (client_credentials:
// no sid, sub = client_id) is refused by default and accepted with
// AcceptClientTokens, also with the revocation feed on, where the
// staleness policy still applies to it; a user's token is verified as
// before by the same verifier, and a user's revoked session is still
// refused through the feed.
func TestClientTokens(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{RealClock: true, FeedHeartbeat: 50 * time.Millisecond})
	ctx := context.Background()
	_, secret, err := l.env.Sessions.CreateClient(ctx, session.Client{ID: "worker", Audiences: []string{"app"}, AccessTTL: time.Minute,
		Grants: []string{session.GrantClientCredentials}, Scopes: []string{"reports"}}, true, session.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, _ := http.NewRequest("POST", "http://latch.test/oauth/token", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("worker", secret)
	resp, err := l.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("client_credentials: %d", resp.StatusCode)
	}

	plain := l.verifier(t, nil, &bearer.FeedConfig{})
	if _, err := plain.Verify(ctx, tok.AccessToken); !errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("a verifier without AcceptClientTokens: %v", err)
	}

	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	v, err := bearer.New(ctx, bearer.Config{Issuer: testenv.Issuer, Audience: "app", Algorithms: []string{"EdDSA"}, HTTPClient: l.client, Now: now,
		AcceptClientTokens: true,
		Revocations: &bearer.FeedConfig{ClientID: rsID, ClientSecret: rsSecret, MaxStaleness: 2 * time.Second, FailClosed: true,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	c, err := v.Verify(ctx, tok.AccessToken)
	if err != nil || !c.IsClient() || c.Subject != "worker" || !c.HasScope("reports") {
		t.Fatalf("client token with AcceptClientTokens: %+v, %v", c, err)
	}
	user := l.env.Login(t, email())
	if c, err := v.Verify(ctx, user.AccessToken); err != nil || c.IsClient() {
		t.Fatalf("a user's token: %+v, %v", c, err)
	}
	l.logout(t, user.AccessToken)
	eventually(t, "the logout in the feed", func() bool {
		_, err := v.Verify(ctx, user.AccessToken)
		return errors.Is(err, bearer.ErrRevoked)
	})
	skew.Store(int64(10 * time.Second)) // the feed silent for 10 s, as the verifier sees it
	if _, err := v.Verify(ctx, tok.AccessToken); !errors.Is(err, bearer.ErrFeedStale) {
		t.Fatalf("a client token past the staleness bound, fail closed: %v", err)
	}
}
