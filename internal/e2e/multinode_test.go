package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// Two nodes on one PostgreSQL behave as one server.
func TestTwoNodesShareOneDatabase(t *testing.T) { twoNodes(t, pgtest.URL(t)) }

// The same through PgBouncer in transaction mode (?pooler=transaction).
func TestTwoNodesThroughPgBouncer(t *testing.T) { twoNodes(t, pgtest.NewBouncer(t).URL(t)) }

func twoNodes(t *testing.T, dbURL string) {
	c := newCluster(t, dbURL)
	a := c.start(t, "")
	b := c.start(t, "")

	t.Run("log in through A, refresh through B", func(t *testing.T) {
		tok := a.signup(t, "ab@example.com")
		next := b.mustRefresh(t, tok.RefreshToken)
		a.mustRefresh(t, next.RefreshToken)
	})

	t.Run("one token sent to A and B at once rotates once", func(t *testing.T) {
		rt := a.signup(t, "race@example.com").RefreshToken
		for i := range 20 {
			ra, rb := a.refreshReq(rt), b.refreshReq(rt)
			var wg sync.WaitGroup
			var got [2]answer
			start := make(chan struct{})
			for j, req := range []*http.Request{ra, rb} {
				wg.Go(func() {
					<-start
					got[j] = do(t, req)
				})
			}
			close(start)
			wg.Wait()
			if got[0].status != 200 || got[1].status != 200 {
				t.Fatalf("round %d: statuses %d (%s) and %d (%s), want both 200", i, got[0].status, got[0].Error, got[1].status, got[1].Error)
			}
			if got[0].RefreshToken != got[1].RefreshToken {
				t.Fatalf("round %d: A and B answered different refresh tokens: the session forked", i)
			}
			rt = got[0].RefreshToken
		}
		// The shared successor is the session's current token.
		b.mustRefresh(t, rt)
	})

	t.Run("logout through B ends refresh through A", func(t *testing.T) {
		tok := a.signup(t, "out@example.com")
		req, _ := http.NewRequest("POST", b.base+"/v1/logout", strings.NewReader(`{"scope":"current"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		if got := do(t, req); got.status != http.StatusOK && got.status != http.StatusNoContent {
			t.Fatalf("logout through B: %d %s", got.status, got.Error)
		}
		if got := a.refresh(t, tok.RefreshToken); got.status != http.StatusBadRequest || got.Error != "invalid_grant" {
			t.Fatalf("refresh through A after logout through B: %d %q, want 400 invalid_grant", got.status, got.Error)
		}
	})

	t.Run("keys rotate reaches both nodes without a restart", func(t *testing.T) {
		oldNext := c.keyIn(t, "next")
		// The next key must have been published for a JWKS lifetime (2 s
		// here) before it may sign; rotate refuses until then.
		eventually(t, 15*time.Second, "latch keys rotate kept refusing", func() bool {
			_, err := c.admin(t, "keys", "rotate")
			return err == nil
		})
		if cur := c.keyIn(t, "current"); cur != oldNext {
			t.Fatalf("after rotate the current key is %s, want the old next key %s", cur, oldNext)
		}
		newNext := c.keyIn(t, "next")
		// Each node reloads its keys at once (NOTIFY latch_keys), or at the
		// latest within min(1 min, max-age/2) = 1 s: it publishes the new
		// next key and signs with the promoted one.
		for i, n := range []*node{a, b} {
			eventually(t, 10*time.Second, "a node never published the new next key", func() bool {
				return slices.Contains(jwksKIDs(t, n), newNext)
			})
			eventually(t, 10*time.Second, "a node kept signing with the retired key", func() bool {
				email := fmt.Sprintf("kid%d-%d@example.com", i, time.Now().UnixNano())
				return tokenKID(t, n.signup(t, email).AccessToken) == oldNext
			})
		}
	})
}

// keyIn returns the kid of the key in state, from `latch keys list`.
func (c *cluster) keyIn(t *testing.T, state string) string {
	t.Helper()
	out, err := c.admin(t, "keys", "list")
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == state {
			return f[0]
		}
	}
	t.Fatalf("no %s key in:\n%s", state, out)
	return ""
}

// jwksKIDs lists the kids a node publishes, in order.
func jwksKIDs(t *testing.T, n *node) []string {
	t.Helper()
	status, body := n.get(t, "/.well-known/jwks.json")
	if status != 200 {
		t.Fatalf("jwks: %d", status)
	}
	var set struct{ Keys []struct{ Kid string } }
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}

// tokenKID reads the kid from a JWT header (no verification: the nodes'
// own tests verify; this only asks which key signed).
func tokenKID(t *testing.T, jwt string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Kid string }
	json.Unmarshal(h, &v)
	return v.Kid
}
