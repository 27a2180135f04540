package cli_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
)

// TestServeRevocationFeed runs the binary's serve with a resource server
// subscribed to its feed: a confidential client made with `latch clients
// create --confidential` reads it, an admin command run in another process
// (as another node would) reaches the subscriber through the database
// poll, and a graceful shutdown does not wait on the open stream.
func TestServeRevocationFeed(t *testing.T) {
	s := startServer(t, "--audience", "notes-api", "--feed-poll-interval", "50ms")
	out := s.mustLatch(t, "", "clients", "create", "notes-api", "--audience", "notes-api", "--confidential")
	m := regexp.MustCompile(`client secret \(shown once\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("clients create printed no secret:\n%s", out)
	}
	ctx := context.Background()
	// The issuer is http://<--addr>, and --addr has port 0: name the URLs.
	v, err := bearer.New(ctx, bearer.Config{Issuer: "http://127.0.0.1:0", Audience: "notes-api", Algorithms: []string{"EdDSA"},
		JWKSURL:     s.url + "/.well-known/jwks.json",
		Revocations: &bearer.FeedConfig{URL: s.url + "/v1/revocations", ClientID: "notes-api", ClientSecret: m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s.mustLatch(t, "a long enough password\n", "users", "create", "ada@example.com", "--password-stdin")
	code, tok := passwordLogin(t, s, "ada@example.com", "a long enough password")
	if code != 200 {
		t.Fatalf("login: %d %v", code, tok)
	}
	at := tok["access_token"].(string)
	if _, err := v.Verify(ctx, at); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.mustLatch(t, "", "sessions", "revoke", tok["session_id"].(string))
	for {
		_, err := v.Verify(ctx, at)
		if errors.Is(err, bearer.ErrRevoked) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("still %v 5s after an admin revoke", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("admin revoke (another process) → rejection: %s", time.Since(start).Round(time.Millisecond))
	if strings.Contains(s.logs.String(), m[1]) {
		t.Fatal("server log contains the client secret")
	}
	// Shutdown with the stream open.
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("graceful shutdown returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not shut down with a feed stream open")
	}
}
