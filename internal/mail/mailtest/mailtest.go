// Package mailtest is a real SMTP server for tests (github.com/emersion/
// go-smtp v0.25.1, server side): it listens on loopback, speaks SMTP over
// TCP, optionally STARTTLS or implicit TLS and AUTH PLAIN, and keeps what
// it receives. It can refuse mail for a while, as a server that is down.
// Imported only by tests.
package mailtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one received message.
type Message struct {
	From     string
	To       []string
	Header   mail.Header
	Text     string
	HTML     string
	TLS      bool // the session was encrypted
	AuthUser string
}

// Token returns the link token in the message's text, "" if none.
func (m Message) Token() string {
	if s := linkToken.FindStringSubmatch(m.Text); s != nil {
		return s[1]
	}
	return ""
}

// Link returns the first URL holding a token in the text.
func (m Message) Link() string { return linkURL.FindString(m.Text) }

var (
	linkToken = regexp.MustCompile(`[?&]token=(latch_(?:ev|pr)_[A-Za-z0-9_-]+)`)
	linkURL   = regexp.MustCompile(`\S+[?&]token=latch_(?:ev|pr)_[A-Za-z0-9_-]+`)
)

// Options configure a Server.
type Options struct {
	// TLS: "" plain, "starttls" (offers STARTTLS) or "implicit" (TLS from
	// the first byte, RFC 8314).
	TLS string
	// User and Password, when set, are required through AUTH PLAIN.
	User, Password string
}

// Server is a running SMTP server.
type Server struct {
	Addr string
	// CA trusts the server's certificate (for TLS modes).
	CA *x509.CertPool

	srv  *smtp.Server
	opts Options
	mu   sync.Mutex
	msgs []Message
	down bool
	// arrived is signalled on every message.
	arrived chan struct{}
}

// Start runs a server on 127.0.0.1 until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{opts: o, arrived: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.AllowInsecureAuth = o.TLS == ""
	var ln net.Listener
	var err error
	if o.TLS != "" {
		cfg, pool := selfSigned(t)
		s.CA = pool
		s.srv.TLSConfig = cfg
	}
	if o.TLS == "implicit" {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", s.srv.TLSConfig)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// URL is the --smtp-url of the server.
func (s *Server) URL() string {
	scheme := "smtp"
	if s.opts.TLS == "implicit" {
		scheme = "smtps"
	}
	user := ""
	if s.opts.User != "" {
		user = s.opts.User + ":" + s.opts.Password + "@"
	}
	return scheme + "://" + user + s.Addr
}

// SetDown makes the server refuse every message (451, a temporary
// failure) until SetDown(false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Messages returns what arrived so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Wait waits up to d for at least n messages and returns all of them; the
// test fails if fewer arrive.
func (s *Server) Wait(t testing.TB, n int, d time.Duration) []Message {
	t.Helper()
	deadline := time.After(d)
	for {
		if got := s.Messages(); len(got) >= n {
			return got
		}
		select {
		case <-s.arrived:
		case <-deadline:
			t.Fatalf("mailtest: %d messages after %s, want %d: %+v", len(s.Messages()), d, n, s.Messages())
		}
	}
}

// WaitFor waits for a message to addr whose subject contains subject.
func (s *Server) WaitFor(t testing.TB, addr, subject string, d time.Duration) Message {
	t.Helper()
	deadline := time.After(d)
	for {
		for _, m := range s.Messages() {
			if len(m.To) == 1 && strings.EqualFold(m.To[0], addr) && strings.Contains(m.Header.Get("Subject"), subject) {
				return m
			}
		}
		select {
		case <-s.arrived:
		case <-deadline:
			t.Fatalf("mailtest: no message to %s about %q after %s; got %+v", addr, subject, d, s.Messages())
		}
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &sess{s: b.s, tls: isTLS}, nil
}

type sess struct {
	s    *Server
	tls  bool
	user string
	from string
	to   []string
}

func (x *sess) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *sess) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != x.s.opts.User || pass != x.s.opts.Password {
			return errors.New("invalid credentials")
		}
		x.user = user
		return nil
	}), nil
}

func (x *sess) Mail(from string, _ *smtp.MailOptions) error {
	x.s.mu.Lock()
	down := x.s.down
	x.s.mu.Unlock()
	if down {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "down for maintenance"}
	}
	if x.s.opts.User != "" && x.user == "" {
		return smtp.ErrAuthRequired
	}
	x.from = from
	return nil
}

func (x *sess) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *sess) Data(r io.Reader) error {
	raw, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	m := Message{From: x.from, To: x.to, Header: raw.Header, TLS: x.tls, AuthUser: x.user}
	if err := readBody(&m, raw.Header.Get("Content-Type"), raw.Header.Get("Content-Transfer-Encoding"), raw.Body); err != nil {
		return err
	}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, m)
	x.s.mu.Unlock()
	select {
	case x.s.arrived <- struct{}{}:
	default:
	}
	return nil
}

func (x *sess) Reset()        { x.from, x.to = "", nil }
func (x *sess) Logout() error { return nil }

// readBody walks a MIME body for its text/plain and text/html parts.
func readBody(m *Message, ctype, cte string, r io.Reader) error {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := readBody(m, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
				return err
			}
		}
	}
	body, err := decode(cte, r)
	if err != nil {
		return err
	}
	switch mt {
	case "text/html":
		m.HTML = body
	default:
		m.Text = body
	}
	return nil
}

func decode(cte string, r io.Reader) (string, error) {
	switch strings.ToLower(cte) {
	case "quoted-printable":
		r = quotedPrintable(r)
	case "base64":
		r = base64Reader(r)
	}
	b, err := io.ReadAll(r)
	return strings.ReplaceAll(string(b), "\r\n", "\n"), err
}

// selfSigned returns a server TLS config for 127.0.0.1 and localhost and
// a pool that trusts it.
func selfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mailtest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}

func quotedPrintable(r io.Reader) io.Reader { return quotedprintable.NewReader(r) }

func base64Reader(r io.Reader) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, newlineStripper{r})
}

// newlineStripper drops CR and LF, which MIME base64 bodies wrap with.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		c, err := n.r.Read(p)
		j := 0
		for _, b := range p[:c] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
