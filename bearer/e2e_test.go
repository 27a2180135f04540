package bearer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// The resource server's confidential client, registered as with
// `latch clients create rs --audience app --confidential`.
const (
	rsID     = "rs"
	rsSecret = "rs-secret-0123456789"
)

// latch is a real Latch stack served over a real listener, reachable at the
// issuer URL http://latch.test through the client's transport.
type latch struct {
	env    *testenv.Env
	client *http.Client
	addr   string
	// jwksDown makes the JWKS answer 503.
	jwksDown atomic.Bool
	// lastEventIDs records the Last-Event-ID of every feed request.
	mu           sync.Mutex
	lastEventIDs []string
	srv          *http.Server
}

func startLatch(t testing.TB, o testenv.Options) *latch {
	t.Helper()
	env := testenv.New(t, o)
	if err := env.Sessions.EnsureClient(context.Background(), session.Client{ID: rsID, Name: rsID, Audiences: []string{"app"},
		AccessTTL: 15 * time.Minute, SecretHash: session.HashClientSecret(rsSecret)}); err != nil {
		t.Fatal(err)
	}
	l := &latch{env: env}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	l.serve(ln)
	t.Cleanup(l.stop)
	var d net.Dialer
	l.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, l.addr)
		},
	}}
	return l
}

func (l *latch) serve(ln net.Listener) {
	l.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/jwks.json" && l.jwksDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/v1/revocations" {
			l.mu.Lock()
			l.lastEventIDs = append(l.lastEventIDs, r.Header.Get("Last-Event-ID"))
			l.mu.Unlock()
		}
		l.env.Handler.ServeHTTP(w, r)
	})}
	go l.srv.Serve(ln)
}

// stop closes the server and every connection, as a crash would.
func (l *latch) stop() { l.srv.Close() }

// restart serves again on the same address.
func (l *latch) restart(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	l.serve(ln)
}

func (l *latch) verifier(t testing.TB, now func() time.Time, feed *bearer.FeedConfig) *bearer.Verifier {
	t.Helper()
	if feed != nil {
		feed.ClientID, feed.ClientSecret = rsID, rsSecret
		if feed.MinBackoff == 0 {
			feed.MinBackoff, feed.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
		}
	}
	v, err := bearer.New(context.Background(), bearer.Config{
		Issuer: testenv.Issuer, Audience: "app", Algorithms: []string{"EdDSA"},
		HTTPClient: l.client, Now: now, Revocations: feed,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// do sends a request to Latch.
func (l *latch) do(t testing.TB, method, path, bearerTok, contentType, body string, basic bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://latch.test"+path, strings.NewReader(body))
	if bearerTok != "" {
		req.Header.Set("Authorization", "Bearer "+bearerTok)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if basic {
		req.SetBasicAuth(rsID, rsSecret)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (l *latch) logout(t testing.TB, tok string) {
	t.Helper()
	if code, body := l.do(t, "POST", "/v1/logout", tok, "", "", false); code != http.StatusOK {
		t.Fatalf("logout: %d %s", code, body)
	}
}

var emails atomic.Int64

func email() string { return fmt.Sprintf("u%d@example.com", emails.Add(1)) }

// login starts another session of user.
func (l *latch) login(t testing.TB, user string) session.Tokens {
	t.Helper()
	tok, _, err := l.env.Sessions.Login(context.Background(), session.LoginRequest{Email: user, Password: testenv.Password, Client: l.env.Client})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func kid(t testing.TB, tok string) string {
	t.Helper()
	s, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return s.Signatures[0].Header.KeyID
}

// eventually waits for cond for up to 5s (testenv.Eventually).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "timed out waiting for "+what, cond)
}

// TestKeyRotation: tokens signed before and after a rotation (what `latch
// keys rotate` runs) both verify until they expire, and the new key is known
// to the verifier before it signs anything: the JWKS is unreachable when the
// first token of the new key is verified.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{})
	ctx := context.Background()
	v := l.verifier(t, l.env.Clock.Now, nil)
	before := l.env.Login(t, email()).AccessToken
	if _, err := v.Verify(ctx, before); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	l.jwksDown.Store(true)
	// The next key has been published for a JWKS cache lifetime.
	l.env.Clock.Advance(6 * time.Minute)
	if _, err := l.env.Issuer.Rotate(ctx, false); err != nil {
		t.Fatal(err)
	}
	after := l.env.Login(t, email()).AccessToken
	if kid(t, before) == kid(t, after) {
		t.Fatal("rotation did not change the signing key")
	}
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("%s rotation, JWKS down: %v", name, err)
		}
	}
	// With the JWKS back and the cache refreshed, both still verify.
	l.jwksDown.Store(false)
	l.env.Clock.Advance(6 * time.Minute)
	fetches := v.JWKSFetches()
	// The expired cache refreshes in the background. A refresh that
	// started while the JWKS was down may still be failing, so keep
	// asking, as requests would.
	eventually(t, "a JWKS refresh", func() bool {
		v.Verify(ctx, after)
		return v.JWKSFetches() > fetches
	})
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("%s rotation, refreshed: %v", name, err)
		}
	}
	// Until expiry: the first token's 15 minutes end at 15m + leeway.
	l.env.Clock.Advance(4 * time.Minute)
	if _, err := v.Verify(ctx, before); !errors.Is(err, bearer.ErrExpired) {
		t.Fatalf("old token after expiry: %v, want ErrExpired", err)
	}
	if _, err := v.Verify(ctx, after); err != nil {
		t.Fatalf("new token: %v", err)
	}
}

// TestIssuerDown: with Latch unreachable, tokens keep verifying with the
// cached keys, past the cache lifetime; an unknown kid is rejected.
func TestIssuerDown(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{})
	ctx := context.Background()
	v := l.verifier(t, l.env.Clock.Now, nil)
	tok := l.env.Login(t, email()).AccessToken
	l.stop()
	for range 3 {
		l.env.Clock.Advance(4 * time.Minute) // past the 5m max-age
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("issuer down: %v", err)
		}
	}
	f := newFakeIssuer(t)
	f.srv.URL = testenv.Issuer
	c := f.claims()
	c["aud"] = "app"
	c["exp"] = l.env.Clock.Now().Add(time.Minute).Unix()
	if _, err := v.Verify(ctx, f.token(`{"alg":"EdDSA","kid":"unknown","typ":"at+jwt"}`, c)); !errors.Is(err, bearer.ErrInvalidToken) {
		t.Fatalf("unknown kid while down: %v", err)
	}
}

// TestFeedRevocations: every kind of revocation reaches the verifier, and
// only the revoked session's tokens are rejected.
func TestFeedRevocations(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{RealClock: true, FeedHeartbeat: 100 * time.Millisecond})
	ctx := context.Background()
	v := l.verifier(t, nil, &bearer.FeedConfig{})
	svc := l.env.Sessions
	cases := []struct {
		name string
		// revoke ends the first session of the user (and perhaps more).
		revoke func(t *testing.T, user string, s1, s2 session.Tokens)
		// survives says whether s2 stays valid.
		survives bool
	}{
		{"logout", func(t *testing.T, _ string, s1, _ session.Tokens) { l.logout(t, s1.AccessToken) }, true},
		{"session revoke", func(t *testing.T, _ string, s1, s2 session.Tokens) {
			if code, body := l.do(t, "DELETE", "/v1/sessions/"+s1.SessionID, s2.AccessToken, "", "", false); code != http.StatusNoContent {
				t.Fatalf("delete session: %d %s", code, body)
			}
		}, true},
		{"password change", func(t *testing.T, _ string, _, s2 session.Tokens) {
			if code, body := l.do(t, "POST", "/v1/password", s2.AccessToken, "application/json",
				`{"current_password":"`+testenv.Password+`","new_password":"another long passphrase 42"}`, false); code != http.StatusNoContent {
				t.Fatalf("password: %d %s", code, body)
			}
		}, true},
		{"user disable", func(t *testing.T, user string, _, _ session.Tokens) {
			u, err := svc.UserByEmail(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.DisableUser(ctx, u.ID, session.Meta{}); err != nil {
				t.Fatal(err)
			}
		}, false},
		// Reuse is driven in the loop below: it needs a rotated session.
		{"refresh token reuse", nil, true},
		{"RFC 7009 revoke", func(t *testing.T, _ string, s1, _ session.Tokens) {
			if code, body := l.do(t, "POST", "/oauth/revoke", "", "application/x-www-form-urlencoded", "client_id=app&token="+url.QueryEscape(s1.RefreshToken), false); code != http.StatusOK {
				t.Fatalf("revoke: %d %s", code, body)
			}
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user := email()
			s1 := l.env.Login(t, user)
			s2 := l.login(t, user)
			if tc.name == "refresh token reuse" {
				// Reuse needs a token older than the parent: rotate twice.
				r1, err := svc.Refresh(ctx, session.RefreshRequest{Token: s1.RefreshToken, Client: l.env.Client})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := svc.Refresh(ctx, session.RefreshRequest{Token: r1.RefreshToken, Client: l.env.Client}); err != nil {
					t.Fatal(err)
				}
				if _, err := svc.Refresh(ctx, session.RefreshRequest{Token: s1.RefreshToken, Client: l.env.Client}); !errors.Is(err, session.ErrReused) {
					t.Fatalf("reuse: %v", err)
				}
			} else {
				for _, s := range []session.Tokens{s1, s2} {
					if _, err := v.Verify(ctx, s.AccessToken); err != nil {
						t.Fatalf("before: %v", err)
					}
				}
				tc.revoke(t, user, s1, s2)
			}
			eventually(t, "the revocation to reach the verifier", func() bool {
				_, err := v.Verify(ctx, s1.AccessToken)
				return errors.Is(err, bearer.ErrRevoked)
			})
			_, err := v.Verify(ctx, s2.AccessToken)
			if tc.survives && err != nil {
				t.Fatalf("other session: %v", err)
			}
			if !tc.survives && !errors.Is(err, bearer.ErrRevoked) {
				t.Fatalf("other session: %v, want ErrRevoked", err)
			}
		})
	}
}

// TestIntrospection: RFC 7662 for confidential clients; active turns false
// as soon as the session is revoked.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{RealClock: true})
	tok := l.env.Login(t, email())
	form := "application/x-www-form-urlencoded"
	introspect := func(tok string, basic bool) (int, string) {
		return l.do(t, "POST", "/oauth/introspect", "", form, "token="+url.QueryEscape(tok), basic)
	}
	code, body := introspect(tok.AccessToken, true)
	if code != 200 || !strings.Contains(body, `"active":true`) || !strings.Contains(body, `"sid":"`+tok.SessionID+`"`) || !strings.Contains(body, `"token_type":"Bearer"`) {
		t.Fatalf("active token: %d %s", code, body)
	}
	for name, tt := range map[string]string{"refresh token": tok.RefreshToken, "garbage": "x.y.z"} {
		if code, body := introspect(tt, true); code != 200 || body != "{\"active\":false}\n" {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	// Public clients and bad secrets are refused.
	if code, body := l.do(t, "POST", "/oauth/introspect", "", form, "client_id=app&token="+tok.AccessToken, false); code != 401 || !strings.Contains(body, "invalid_client") {
		t.Errorf("public client: %d %s", code, body)
	}
	if code, body := l.do(t, "POST", "/oauth/introspect", "", form, "client_id=rs&client_secret=wrong&token="+tok.AccessToken, false); code != 401 || !strings.Contains(body, "invalid_client") {
		t.Errorf("bad secret: %d %s", code, body)
	}
	l.logout(t, tok.AccessToken)
	if code, body := introspect(tok.AccessToken, true); code != 200 || body != "{\"active\":false}\n" {
		t.Fatalf("after logout: %d %s", code, body)
	}
}

// TestFeedPoll: the ?since= form, its authentication, and its cursor.
func TestFeedPoll(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{RealClock: true})
	if code, body := l.do(t, "GET", "/v1/revocations?since=0", "", "", "", false); code != 401 || !strings.Contains(body, "invalid_client") {
		t.Fatalf("no credentials: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", "http://latch.test/v1/revocations", nil)
	req.SetBasicAuth("app", "")
	if resp, err := l.client.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("public client: %v %v", resp, err)
	}
	tok := l.env.Login(t, email())
	l.logout(t, tok.AccessToken)
	var body string
	eventually(t, "the entry in the poll", func() bool {
		_, body = l.do(t, "GET", "/v1/revocations?since=0", "", "", "", true)
		return strings.Contains(body, tok.SessionID)
	})
	if !strings.Contains(body, `"cursor":"`) || !strings.Contains(body, `"revoked_at":`) || !strings.Contains(body, `"until":`) {
		t.Fatalf("poll body: %s", body)
	}
	cur := body[strings.Index(body, `"cursor":"`)+10:]
	cur = cur[:strings.IndexByte(cur, '"')]
	if _, body := l.do(t, "GET", "/v1/revocations?since="+cur, "", "", "", true); strings.Contains(body, tok.SessionID) {
		t.Fatalf("poll after the cursor repeats the entry: %s", body)
	}
	if code, _ := l.do(t, "GET", "/v1/revocations?since=abc", "", "", "", true); code != 400 {
		t.Fatalf("bad cursor: %d", code)
	}
}

// TestFeedEntriesExpire: an entry past its until leaves the server's feed
// and the verifier's set.
func TestFeedEntriesExpire(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{FeedHeartbeat: 50 * time.Millisecond, FeedInterval: 20 * time.Millisecond})
	ctx := context.Background()
	v := l.verifier(t, l.env.Clock.Now, &bearer.FeedConfig{MaxStaleness: time.Hour})
	tok := l.env.Login(t, email())
	l.logout(t, tok.AccessToken)
	eventually(t, "the entry", func() bool { return v.Revoked() == 1 })
	// until = revoked_at + the longest access TTL (15m here).
	l.env.Clock.Advance(16 * time.Minute)
	eventually(t, "the server's feed to drop the entry", func() bool {
		_, body := l.do(t, "GET", "/v1/revocations?since=0", "", "", "", true)
		return strings.Contains(body, `"entries":[]`)
	})
	eventually(t, "the verifier to drop the entry", func() bool { return v.Revoked() == 0 })
	if _, err := v.Verify(ctx, tok.AccessToken); !errors.Is(err, bearer.ErrExpired) {
		t.Fatalf("the token itself has expired: %v", err)
	}
}

// TestFeedResumes: after Latch restarts, the verifier reconnects with the
// cursor and receives what was revoked while it was away.
func TestFeedResumes(t *testing.T) {
	t.Parallel()
	l := startLatch(t, testenv.Options{RealClock: true, FeedHeartbeat: 100 * time.Millisecond})
	ctx := context.Background()
	v := l.verifier(t, nil, &bearer.FeedConfig{})
	user := email()
	s1, s2, s3 := l.env.Login(t, user), l.login(t, user), l.login(t, user)
	l.logout(t, s1.AccessToken)
	eventually(t, "s1 rejected", func() bool { _, err := v.Verify(ctx, s1.AccessToken); return err != nil })
	l.stop()
	for _, s := range []session.Tokens{s2, s3} {
		if err := l.env.Sessions.RevokeSession(ctx, "", s.SessionID, session.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	l.restart(t)
	for _, s := range []session.Tokens{s2, s3} {
		eventually(t, "a session revoked while Latch was down", func() bool {
			_, err := v.Verify(ctx, s.AccessToken)
			return errors.Is(err, bearer.ErrRevoked)
		})
	}
	l.mu.Lock()
	ids := slices.Clone(l.lastEventIDs)
	l.mu.Unlock()
	if last := ids[len(ids)-1]; last == "" || last == "0" {
		t.Fatalf("reconnect sent Last-Event-ID %q, want the cursor (all: %q)", last, ids)
	}
}

// TestFeedStaleness: past MaxStaleness a fail-closed verifier refuses every
// token (503 from the middleware), a fail-open one accepts; both recover
// with the next heartbeat.
func TestFeedStaleness(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{true, false} {
		t.Run(fmt.Sprintf("FailClosed=%v", failClosed), func(t *testing.T) {
			t.Parallel()
			l := startLatch(t, testenv.Options{RealClock: true, FeedHeartbeat: 50 * time.Millisecond})
			ctx := context.Background()
			var skew atomic.Int64
			now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			v := l.verifier(t, now, &bearer.FeedConfig{MaxStaleness: 2 * time.Second, FailClosed: failClosed})
			tok := l.env.Login(t, email()).AccessToken
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
			// Ten seconds without a word from the feed, as the verifier sees it.
			skew.Store(int64(10 * time.Second))
			if got := v.Staleness(); got < 9*time.Second {
				t.Fatalf("Staleness = %s, want about 10s", got)
			}
			_, err := v.Verify(ctx, tok)
			if failClosed != errors.Is(err, bearer.ErrFeedStale) || (!failClosed && err != nil) {
				t.Fatalf("stale feed, FailClosed=%v: %v", failClosed, err)
			}
			if failClosed {
				w := httptest.NewRecorder()
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				v.Middleware(http.NotFoundHandler()).ServeHTTP(w, r)
				if w.Code != http.StatusServiceUnavailable {
					t.Fatalf("middleware with a stale feed: %d, want 503", w.Code)
				}
			}
			eventually(t, "a heartbeat", func() bool { return v.Staleness() < time.Second })
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
		})
	}
}
