package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/latchauth/latch/internal/session"
)

// Transport delivers one composed message.
type Transport interface {
	Send(ctx context.Context, id string, c session.Content) error
}

// SMTP sends through an SMTP server with github.com/wneessen/go-mail
// (v0.8.1: maintained, no dependencies beyond x/ and its own SASL code;
// it does STARTTLS and implicit TLS, SMTP AUTH with mechanism discovery,
// MIME multipart/alternative and RFC 2047 headers, which are the parts
// of mail that are easy to get subtly wrong by hand).
type SMTP struct {
	from   string
	opts   []gomail.Option
	host   string
	secure string // for logs: "starttls", "tls" or "none (loopback)"
}

// SMTPConfig configures NewSMTP.
type SMTPConfig struct {
	// URL is smtp://[user:pass@]host[:port] (STARTTLS required, port 587
	// by default) or smtps://[user:pass@]host[:port] (implicit TLS, RFC
	// 8314, port 465). To a loopback host, smtp:// uses STARTTLS when the
	// server offers it and plain SMTP otherwise, as for development sinks.
	URL string
	// From is the envelope and header sender.
	From string
	// TLS, if set, is the TLS configuration (tests trust their own CA).
	TLS *tls.Config
	// Timeout bounds each connection (default 15s).
	Timeout time.Duration
}

// NewSMTP checks cfg and returns the transport. It does not connect.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Path != "" && u.Path != "/" {
		return nil, errors.New("--smtp-url must be smtp://[user:pass@]host[:port] (STARTTLS) or smtps://[user:pass@]host[:port] (implicit TLS)")
	}
	if cfg.From == "" {
		return nil, errors.New("--email-from is required with --smtp-url")
	}
	if err := gomail.NewMsg().From(cfg.From); err != nil {
		return nil, fmt.Errorf("--email-from: %q is not an address", cfg.From)
	}
	host := u.Hostname()
	port := 587
	if u.Scheme == "smtps" {
		port = 465
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return nil, errors.New("--smtp-url: bad port")
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	loopback := loopbackHost(host)
	tlsCfg := cfg.TLS
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		// To a loopback host nothing crosses a network, which is why plain
		// SMTP is allowed there; a certificate proves nothing there either,
		// and development sinks offer STARTTLS with self-signed ones.
		tlsCfg.InsecureSkipVerify = loopback
	}
	tlsCfg = tlsCfg.Clone()
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = host
	}
	opts := []gomail.Option{gomail.WithPort(port), gomail.WithTimeout(cfg.Timeout), gomail.WithTLSConfig(tlsCfg)}
	s := &SMTP{from: cfg.From, host: net.JoinHostPort(host, strconv.Itoa(port))}
	switch {
	case u.Scheme == "smtps":
		opts, s.secure = append(opts, gomail.WithSSL()), "tls"
	case loopback:
		// Nothing crosses a network: a development sink may have no TLS.
		opts, s.secure = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic)), "starttls if offered (loopback)"
	default:
		// RFC 3207: STARTTLS, and refuse to go on without it, so neither
		// the credentials nor the links cross the network in clear.
		opts, s.secure = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory)), "starttls"
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		auth := gomail.SMTPAuthAutoDiscover
		if loopback && u.Scheme == "smtp" {
			auth = gomail.SMTPAuthPlainNoEnc // go-mail refuses PLAIN without TLS otherwise
		}
		opts = append(opts, gomail.WithSMTPAuth(auth), gomail.WithUsername(u.User.Username()), gomail.WithPassword(pass))
	}
	s.opts = opts
	// Build one client now, so a bad option fails at start.
	if _, err := gomail.NewClient(host, opts...); err != nil {
		return nil, fmt.Errorf("--smtp-url: %w", err)
	}
	return s, nil
}

// Describe names the server and its protection, for the start-up log
// (never the credentials).
func (s *SMTP) Describe() (addr, security string) { return s.host, s.secure }

// Send implements Transport: one connection per message, so that a
// broken connection never holds back the next one.
func (s *SMTP) Send(ctx context.Context, id string, c session.Content) error {
	m := gomail.NewMsg()
	if err := m.From(s.from); err != nil {
		return err
	}
	if err := m.To(c.To); err != nil {
		return fmt.Errorf("mail: recipient: %w", err)
	}
	m.Subject(c.Subject)
	m.SetDate()
	// The outbox id: a resend after a crash carries the same Message-ID,
	// so a receiving system may drop the duplicate.
	m.SetMessageIDWithValue(id + "@latch")
	// RFC 3834 section 5: automatic, so autoresponders stay quiet.
	m.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	m.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "All")
	m.SetBodyString(gomail.TypeTextPlain, c.Text)
	if c.HTML != "" {
		m.AddAlternativeString(gomail.TypeTextHTML, c.HTML)
	}
	host, _, _ := net.SplitHostPort(s.host)
	cl, err := gomail.NewClient(host, s.opts...)
	if err != nil {
		return err
	}
	return cl.DialAndSendWithContext(ctx, m)
}

// Log is the transport without SMTP: each message goes to the log at info
// level, link included, since a developer has no other way to get it.
type Log struct{ Logger *slog.Logger }

// Send implements Transport.
func (l Log) Send(ctx context.Context, id string, c session.Content) error {
	// The message first, then the warning: serve's batched log writes a
	// warning at once with every line before it, so the link is readable
	// the moment it is sent, not up to a batch interval later.
	l.Logger.Info("email", "id", id, "kind", string(c.Kind), "to", c.To, "subject", c.Subject, "text", c.Text)
	l.Logger.Warn("no SMTP server configured (--smtp-url): the message above was written to the log instead of being sent; the log now holds a live link", "id", id, "kind", string(c.Kind))
	return nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
