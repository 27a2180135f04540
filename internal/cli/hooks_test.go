package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/webhook"
)

// hookReceiver is a webhook endpoint that checks signatures and hands over
// the events it accepted.
func hookReceiver(t *testing.T, secret string) (string, <-chan map[string]any) {
	t.Helper()
	got := make(chan map[string]any, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte(secret), r.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		got <- ev
	}))
	t.Cleanup(recv.Close)
	return recv.URL, got
}

func nextEvent(t *testing.T, got <-chan map[string]any, what string) map[string]any {
	t.Helper()
	select {
	case ev := <-got:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no webhook call for %s", what)
		return nil
	}
}

// TestAdminActionsSendWebhooks: an admin command runs through the session
// service with the hooks latch serve has, so ending a user's sessions from
// the command line sends the session.revoked event a DELETE /v1/sessions/ID
// sends, and disabling a user, rotating keys and deleting a client send
// theirs; each is in the audit trail too. The command has flushed its
// webhooks by the time it returns.
func TestAdminActionsSendWebhooks(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-test"
	url, got := hookReceiver(t, secret)
	types := "session.revoked,user.disabled,keys.rotated,client.deleted"
	s := startServer(t, "--webhook-url", url, "--webhook-secret", secret, "--webhook-events", types)
	hook := []string{"--webhook-url", url, "--webhook-secret", secret, "--webhook-events", types}
	admin := func(args ...string) string { return s.mustLatch(t, "", append(args, hook...)...) }
	const pw = "a long enough password"
	s.mustLatch(t, pw+"\n", "users", "create", "ops@example.com", "--password-stdin")
	_, a := passwordLogin(t, s, "ops@example.com", pw)
	_, b := passwordLogin(t, s, "ops@example.com", pw)

	// The HTTP path: the user ends session b from session a.
	req, _ := http.NewRequest(http.MethodDelete, s.url+"/v1/sessions/"+b["session_id"].(string), nil)
	req.Header.Set("Authorization", "Bearer "+a["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /v1/sessions/ID: %d", resp.StatusCode)
	}
	viaHTTP := nextEvent(t, got, "DELETE /v1/sessions/ID")

	// The same kind of change from the command line.
	admin("sessions", "revoke", "--user", "ops@example.com")
	viaCLI := nextEvent(t, got, "sessions revoke --user")
	for _, ev := range []map[string]any{viaHTTP, viaCLI} {
		if ev["type"] != "session.revoked" || ev["user_id"] != viaHTTP["user_id"] || ev["user_id"] == nil {
			t.Fatalf("events %v and %v, want session.revoked of one user", viaHTTP, viaCLI)
		}
	}
	if viaCLI["user_agent"] != "latch-cli" {
		t.Errorf("CLI event user_agent %v, want latch-cli", viaCLI["user_agent"])
	}

	admin("users", "disable", "ops@example.com")
	if ev := nextEvent(t, got, "users disable"); ev["type"] != "user.disabled" || ev["user_id"] != viaHTTP["user_id"] {
		t.Fatalf("users disable sent %v", ev)
	}
	admin("keys", "rotate", "--force")
	if ev := nextEvent(t, got, "keys rotate"); ev["type"] != "keys.rotated" || !strings.HasPrefix(ev["detail"].(string), "retired ") {
		t.Fatalf("keys rotate sent %v", ev)
	}
	s.mustLatch(t, "", "clients", "create", "gone", "--audience", "gone")
	admin("clients", "delete", "gone")
	if ev := nextEvent(t, got, "clients delete"); ev["type"] != "client.deleted" || ev["client_id"] != "gone" {
		t.Fatalf("clients delete sent %v", ev)
	}
	for _, typ := range []string{"session.revoked", "user.disabled", "keys.rotated", "client.deleted"} {
		if auditCount(t, s, typ) == 0 {
			t.Errorf("no %s in the audit trail", typ)
		}
	}
	select {
	case ev := <-got:
		t.Fatalf("an extra webhook call: %v", ev)
	default:
	}

	// Without the webhook flags an admin command sends nothing.
	s.mustLatch(t, "", "users", "enable", "ops@example.com")
	s.mustLatch(t, "", "users", "disable", "ops@example.com")
	select { // the command has returned, so it had nothing left to send
	case ev := <-got:
		t.Fatalf("a command without --webhook-url sent %v", ev)
	default:
	}
	if _, err := s.latch(t, "", "users", "list", "--webhook-url", url); err == nil {
		t.Fatal("--webhook-url without --webhook-secret was accepted")
	}
}
