package mail_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/mail"
	"github.com/latchauth/latch/internal/mail/mailtest"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

var ctx = context.Background()

func content(to string) session.Content {
	return session.Content{To: to, Subject: "Reset your password", Text: "Open https://latch.test/reset?token=latch_pr_abc\n",
		HTML: `<p><a href="https://latch.test/reset?token=latch_pr_abc">Reset</a></p>`, Kind: session.KindReset}
}

// Each transport mode against a real SMTP server on loopback: STARTTLS with
// AUTH, implicit TLS, and plain SMTP (allowed to loopback only).
func TestSMTPModes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    mailtest.Options
		wantTLS bool
	}{
		{"starttls with auth", mailtest.Options{TLS: "starttls", User: "latch", Password: "s3cret"}, true},
		{"implicit tls", mailtest.Options{TLS: "implicit"}, true},
		{"plain to loopback", mailtest.Options{}, false},
		// A development sink on loopback with a self-signed certificate:
		// nothing to verify there, the message goes (over TLS).
		{"starttls self-signed on loopback", mailtest.Options{TLS: "starttls"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mailtest.Start(t, tc.opts)
			cfg := &tls.Config{RootCAs: srv.CA}
			if strings.Contains(tc.name, "self-signed") {
				cfg = nil // the default configuration, as latch serve uses
			}
			tr, err := mail.NewSMTP(mail.SMTPConfig{URL: srv.URL(), From: "Latch <no-reply@latch.test>", TLS: cfg})
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.Send(ctx, "msg1", content("ada@example.com")); err != nil {
				t.Fatal(err)
			}
			m := srv.Wait(t, 1, 5*time.Second)[0]
			if m.TLS != tc.wantTLS || m.AuthUser != tc.opts.User {
				t.Fatalf("session TLS %v auth %q, want %v %q", m.TLS, m.AuthUser, tc.wantTLS, tc.opts.User)
			}
			if m.From != "no-reply@latch.test" || len(m.To) != 1 || m.To[0] != "ada@example.com" {
				t.Fatalf("envelope %q → %v", m.From, m.To)
			}
			if got := m.Header.Get("Subject"); got != "Reset your password" {
				t.Fatalf("Subject = %q", got)
			}
			if m.Header.Get("Auto-Submitted") != "auto-generated" || m.Header.Get("Message-Id") != "<msg1@latch>" {
				t.Fatalf("headers %v", m.Header)
			}
			if m.Token() != "latch_pr_abc" || !strings.Contains(m.HTML, `href="https://latch.test/reset?token=latch_pr_abc"`) {
				t.Fatalf("text %q, html %q", m.Text, m.HTML)
			}
		})
	}
}

// A wrong password is refused by the server: Send fails (and the sender
// retries later).
func TestSMTPAuthFailure(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{TLS: "starttls", User: "latch", Password: "right"})
	tr, err := mail.NewSMTP(mail.SMTPConfig{URL: "smtp://latch:wrong@" + srv.Addr, From: "no-reply@latch.test", TLS: &tls.Config{RootCAs: srv.CA}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(ctx, "m", content("ada@example.com")); err == nil {
		t.Fatal("sent with a wrong password")
	}
}

func TestNewSMTPRefuses(t *testing.T) {
	for _, u := range []string{"", "http://mail.example.com", "smtp://", "smtp://mail.example.com:99999", "mail.example.com:25", "smtp://mail.example.com/path"} {
		if _, err := mail.NewSMTP(mail.SMTPConfig{URL: u, From: "a@example.com"}); err == nil {
			t.Errorf("NewSMTP(%q) accepted", u)
		}
	}
	if _, err := mail.NewSMTP(mail.SMTPConfig{URL: "smtp://mail.example.com"}); err == nil {
		t.Error("no --email-from accepted")
	}
	if _, err := mail.NewSMTP(mail.SMTPConfig{URL: "smtp://mail.example.com", From: "not an address"}); err == nil {
		t.Error("a bad --email-from accepted")
	}
	tr, err := mail.NewSMTP(mail.SMTPConfig{URL: "smtp://user:pw@mail.example.com", From: "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if addr, sec := tr.Describe(); addr != "mail.example.com:587" || sec != "starttls" || strings.Contains(addr+sec, "pw") {
		t.Fatalf("Describe = %q, %q", addr, sec)
	}
}

func TestLinks(t *testing.T) {
	l, err := mail.ParseLinks("myapp://{action}?token={token}")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.For(session.KindReset, "latch_pr_x"); got != "myapp://reset?token=latch_pr_x" {
		t.Fatalf("deep link %q", got)
	}
	if got := l.For(session.KindEmailChange, "latch_ev_x"); got != "myapp://verify?token=latch_ev_x" {
		t.Fatalf("deep link %q", got)
	}
	if got := mail.DefaultLinks("http://127.0.0.1:8080/").For(session.KindVerify, "latch_ev_y"); got != "http://127.0.0.1:8080/verify?token=latch_ev_y" {
		t.Fatalf("default link %q", got)
	}
	for _, bad := range []string{"https://app.example.com/reset", "http://app.example.com/{action}?token={token}", "javascript:alert({token})", "/{action}?token={token}", "https://a/{token}/{token}"} {
		if _, err := mail.ParseLinks(bad); err == nil {
			t.Errorf("ParseLinks(%q) accepted", bad)
		}
	}
}

// Templates are overridable from a directory, file by file; a broken one
// fails at start.
func TestTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "reset.txt"), []byte(`{{define "subject"}}Acme: new password{{end}}Go to {{.Link}} ({{.Expires}})`), 0o600)
	c, err := mail.NewComposer(mail.DefaultLinks("https://auth.example.com"), dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Compose(session.MessageData{Kind: session.KindReset, To: "a@example.com", Expires: 30 * time.Minute}, "latch_pr_t")
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "Acme: new password" || got.Text != "Go to https://auth.example.com/reset?token=latch_pr_t (30 minutes)\n" {
		t.Fatalf("overridden: %+v", got)
	}
	if !strings.Contains(got.HTML, "Choose a new password") {
		t.Fatalf("the embedded HTML should stay: %q", got.HTML)
	}
	v, _ := c.Compose(session.MessageData{Kind: session.KindVerify, To: "<b>@example.com", Expires: 24 * time.Hour}, "latch_ev_t")
	if strings.Contains(v.HTML, "<b>@") || !strings.Contains(v.Text, "24 hours") {
		t.Fatalf("HTML not escaped or expiry wrong: %+v", v)
	}
	os.WriteFile(filepath.Join(dir, "verify.html"), []byte(`{{.Nope}}`), 0o600)
	if _, err := mail.NewComposer(mail.DefaultLinks("https://a.example.com"), dir); err == nil {
		t.Fatal("a broken template was accepted")
	}
	os.WriteFile(filepath.Join(dir, "verify.html"), []byte(`ok`), 0o600)
	os.WriteFile(filepath.Join(dir, "verify.txt"), []byte(`no subject`), 0o600)
	if _, err := mail.NewComposer(mail.DefaultLinks("https://a.example.com"), dir); err == nil {
		t.Fatal("a text template without a subject was accepted")
	}
}

// stores runs fn on SQLite and, with LATCH_TEST_POSTGRES, on PostgreSQL.
func stores(t *testing.T, fn func(t *testing.T, env *testenv.Env)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, testenv.New(t, testenv.Options{RealClock: true})) })
	t.Run("postgres", func(t *testing.T) {
		fn(t, testenv.New(t, testenv.Options{RealClock: true, Store: func(tb testing.TB) testenv.Store { return pgtest.New(tb) }}))
	})
}

func outbox(env *testenv.Env) mail.Outbox { return env.Store.(mail.Outbox) }

func pending(t *testing.T, env *testenv.Env) int {
	n, err := env.Store.(interface {
		PendingMessages(context.Context) (int, error)
	}).PendingMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newSMTP(t *testing.T, srv *mailtest.Server) *mail.SMTP {
	tr, err := mail.NewSMTP(mail.SMTPConfig{URL: srv.URL(), From: "no-reply@latch.test", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func run(t *testing.T, s *mail.Sender) (stop func()) {
	c, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(c) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// The SMTP server is down for a while: the sender retries with backoff and
// delivers each message once when it is back; the request that queued the
// message never waited.
func TestSenderSurvivesSMTPOutage(t *testing.T) {
	stores(t, func(t *testing.T, env *testenv.Env) {
		srv := mailtest.Start(t, mailtest.Options{})
		srv.SetDown(true)
		s := mail.NewSender(outbox(env), env.Sessions, newSMTP(t, srv), slog.New(slog.DiscardHandler),
			mail.SenderConfig{Interval: 20 * time.Millisecond, Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		run(t, s)
		start := time.Now()
		env.Login(t, "outage@example.com")
		if d := time.Since(start); d > time.Second {
			t.Fatalf("signup took %s with SMTP down", d)
		}
		time.Sleep(400 * time.Millisecond) // several failed attempts
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("%d messages while down", n)
		}
		if pending(t, env) != 1 {
			t.Fatal("the message left the outbox while SMTP was down")
		}
		srv.SetDown(false)
		m := srv.WaitFor(t, "outage@example.com", "Confirm", 5*time.Second)
		if !strings.HasPrefix(m.Token(), session.PrefixVerify) {
			t.Fatalf("delivered message has no link: %q", m.Text)
		}
		time.Sleep(300 * time.Millisecond)
		if n := len(srv.Messages()); n != 1 {
			t.Fatalf("%d deliveries, want 1", n)
		}
		if pending(t, env) != 0 {
			t.Fatal("a delivered message stayed in the outbox")
		}
	})
}

// A sender that claimed messages and died before sending them (a crash
// between commit and send): another sender delivers them once the claim
// runs out; nothing is lost.
func TestSenderCrashLosesNothing(t *testing.T) {
	stores(t, func(t *testing.T, env *testenv.Env) {
		srv := mailtest.Start(t, mailtest.Options{})
		env.Login(t, "crash1@example.com")
		env.Login(t, "crash2@example.com")
		const lease = 300 * time.Millisecond
		// The first sender claims both, then dies: it never sends or
		// releases anything.
		claimed, err := outbox(env).ClaimMessages(ctx, time.Now(), lease, 10)
		if err != nil || len(claimed) != 2 {
			t.Fatalf("claim = %d, %v", len(claimed), err)
		}
		s := mail.NewSender(outbox(env), env.Sessions, newSMTP(t, srv), nil, mail.SenderConfig{Interval: 20 * time.Millisecond, Lease: lease})
		run(t, s)
		time.Sleep(lease / 2)
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("%d messages sent while the dead sender's claim held", n)
		}
		got := srv.Wait(t, 2, 5*time.Second)
		time.Sleep(lease)
		if len(srv.Messages()) != 2 || got[0].To[0] == got[1].To[0] {
			t.Fatalf("deliveries %+v, want one to each address", srv.Messages())
		}
	})
}

// Several senders on one outbox (as on several nodes) never send one
// message twice.
func TestSendersDoNotDuplicate(t *testing.T) {
	stores(t, func(t *testing.T, env *testenv.Env) {
		srv := mailtest.Start(t, mailtest.Options{})
		const users = 12
		for i := range users {
			env.Login(t, "dup"+string(rune('a'+i))+"@example.com")
		}
		var wg sync.WaitGroup
		for range 3 {
			s := mail.NewSender(outbox(env), env.Sessions, newSMTP(t, srv), nil, mail.SenderConfig{Interval: 10 * time.Millisecond, Batch: 2})
			wg.Add(1)
			stop := run(t, s)
			go func() { defer wg.Done(); time.Sleep(1500 * time.Millisecond); stop() }()
		}
		wg.Wait()
		seen := map[string]int{}
		for _, m := range srv.Messages() {
			seen[m.To[0]]++
		}
		if len(seen) != users {
			t.Fatalf("%d addresses got mail, want %d", len(seen), users)
		}
		for addr, n := range seen {
			if n != 1 {
				t.Fatalf("%s got %d messages", addr, n)
			}
		}
	})
}

// Stopping a sender hands back what it claimed but had not tried.
func TestSenderReleasesOnStop(t *testing.T) {
	env := testenv.New(t, testenv.Options{RealClock: true})
	srv := mailtest.Start(t, mailtest.Options{})
	env.Login(t, "release@example.com")
	blocked := &blockingTransport{started: make(chan struct{})}
	s := mail.NewSender(outbox(env), env.Sessions, blocked, nil, mail.SenderConfig{Interval: 10 * time.Millisecond})
	stop := run(t, s)
	<-blocked.started
	stop()
	// Released, not left claimed for the lease (5 minutes): a new sender
	// sends at once.
	run(t, mail.NewSender(outbox(env), env.Sessions, newSMTP(t, srv), nil, mail.SenderConfig{Interval: 10 * time.Millisecond}))
	srv.WaitFor(t, "release@example.com", "Confirm", 3*time.Second)
}

// blockingTransport fails every send after its context ends, as a server
// that hangs until shutdown.
type blockingTransport struct {
	once    sync.Once
	started chan struct{}
}

func (b *blockingTransport) Send(ctx context.Context, id string, c session.Content) error {
	b.once.Do(func() { close(b.started) })
	<-ctx.Done()
	return ctx.Err()
}
