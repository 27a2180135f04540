package e2e_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/mail/mailtest"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// A `latch serve` process killed (SIGKILL) after the transaction that
// queued a message committed and before the message left: a new process
// on the same database delivers it, once. The SMTP server refuses mail
// while the first process runs, so the kill surely falls between commit
// and send; the second node shares the database and the keys, as after a
// crash and a restart on another machine.
func TestOutboxSurvivesKill(t *testing.T) {
	c := newCluster(t, pgtest.URL(t))
	sink := mailtest.Start(t, mailtest.Options{})
	sink.SetDown(true)
	c.env = append(c.env, "LATCH_SMTP_URL="+sink.URL(), "LATCH_EMAIL_FROM=no-reply@latch.test")
	first := c.start(t, "")
	first.signup(t, "killed@example.com") // the verification is queued with the user
	eventually(t, 10*time.Second, "a refused delivery", func() bool {
		return strings.Contains(first.log.String(), "delivery failed")
	})
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.cmd.Wait()
	if n := len(sink.Messages()); n != 0 {
		t.Fatalf("%d messages delivered while the server refused them", n)
	}
	sink.SetDown(false)
	second := c.start(t, "")
	m := sink.WaitFor(t, "killed@example.com", "Confirm your email", 20*time.Second)
	if !strings.HasPrefix(m.Token(), "latch_ev_") {
		t.Fatalf("no link in %q", m.Text)
	}
	// The link works on the node that delivered it.
	req, _ := http.NewRequest("POST", second.base+"/v1/email/verify", strings.NewReader(`{"token":"`+m.Token()+`"}`))
	req.Header.Set("Content-Type", "application/json")
	if a := do(t, req); a.status != http.StatusNoContent {
		t.Fatalf("verify: %d %s", a.status, a.Error)
	}
	time.Sleep(time.Second)
	if n := len(sink.Messages()); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}
