package e2e_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// NginxEnv turns on TestBehindNginx (.ci/run sets it and installs nginx).
const NginxEnv = "LATCH_TEST_NGINX"

// publicName is the server_name of deploy/nginx-latch.conf, the host of
// the issuer URL and the certificate's name.
const publicName = "auth.example.com"

// Addresses the test's clients connect from. All of 127.0.0.0/8 is
// loopback on Linux, so a client can be a different address from nginx
// (127.0.0.1, the one trusted proxy) without leaving the machine.
const (
	userIP     = "127.0.0.2"
	attackerIP = "127.0.0.3"
	bystander  = "127.0.0.4"
)

// The spoofed client address a client writes into X-Forwarded-For.
const spoofed = "203.0.113.7"

// TestBehindNginx runs deploy/nginx-latch.conf, as shipped except for its
// ports and certificate paths, with TLS in front of two Latch nodes on one
// PostgreSQL, and checks what docs/deployment.md promises: sign-in,
// refresh, the revocation feed (a Server-Sent Events stream) and a bearer
// verifier work through it, and Latch sees the client's address as nginx
// saw it, never the proxy's and never one the client wrote into
// X-Forwarded-For.
func TestBehindNginx(t *testing.T) {
	if os.Getenv(NginxEnv) == "" {
		t.Skip(NginxEnv + " is not set; skipping the nginx test")
	}
	nginxBin, err := exec.LookPath("nginx")
	if err != nil {
		if nginxBin, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			t.Fatalf("%s is set but nginx is not installed (apt-get install nginx)", NginxEnv)
		}
	}
	dir := t.TempDir()
	certPEM, certFile, keyFile := selfSigned(t, dir, publicName)
	httpsPort, httpPort := freePort(t), freePort(t)
	issuerURL := fmt.Sprintf("https://%s:%d", publicName, httpsPort)

	c := newCluster(t, pgtest.URL(t))
	// The nodes run with deploy/latch.env on top of the cluster's test
	// settings (later entries win in an environment built by os/exec).
	c.env = append(c.env, shippedEnv(t, map[string]string{
		"LATCH_DATABASE": c.db,
		"LATCH_ISSUER":   issuerURL,
	})...)
	out, err := c.admin(t, "clients", "create", "rs", "--audience", "app", "--confidential")
	if err != nil {
		t.Fatalf("clients create: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`client secret \(shown once\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no client secret in:\n%s", out)
	}
	rsSecret := m[1]
	a, b := c.start(t, ""), c.start(t, "")

	startNginx(t, nginxBin, dir, map[string]string{
		"server 127.0.0.1:8081 ":       "server " + strings.TrimPrefix(a.base, "http://") + " ",
		"server 127.0.0.1:8082 ":       "server " + strings.TrimPrefix(b.base, "http://") + " ",
		"listen 443 ssl http2;":        fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", httpsPort),
		"listen 80;":                   fmt.Sprintf("listen 127.0.0.1:%d;", httpPort),
		"/etc/latch/tls/fullchain.pem": certFile,
		"/etc/latch/tls/privkey.pem":   keyFile,
	})
	nginxAddr := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	// from is an HTTPS client of the public URL that connects from ip.
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, nginxAddr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		}}
	}
	user := &proxied{t: t, base: issuerURL, c: from(userIP)}
	eventually(t, 20*time.Second, "nginx never answered /readyz through TLS", func() bool {
		resp, err := user.c.Get(issuerURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	tok := user.signup("proxied@example.com", spoofed)

	t.Run("sign-in and refresh through the proxy reach both nodes", func(t *testing.T) {
		user := user.in(t)
		tok = user.login("proxied@example.com", spoofed)
		rt := tok.RefreshToken
		for range 6 {
			got := user.refresh(rt)
			if got.status != 200 {
				t.Fatalf("refresh through nginx: %d %s", got.status, got.Error)
			}
			rt = got.RefreshToken
		}
		tok.RefreshToken = rt
		for _, n := range []*node{a, b} {
			// The node batches its access lines (up to 100 ms).
			deadline := time.Now().Add(3 * time.Second)
			for requestsTo(n, "/oauth/token") == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if k := requestsTo(n, "/oauth/token"); k == 0 {
				t.Errorf("node %s served no refresh: nginx did not balance over both", n.base)
			}
		}
	})

	t.Run("HSTS once, from Latch, behind an https issuer", func(t *testing.T) {
		resp, err := user.c.Get(issuerURL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Values("Strict-Transport-Security"); len(got) != 1 || !strings.HasPrefix(got[0], "max-age=") {
			t.Errorf("Strict-Transport-Security through nginx: %q; want one max-age", got)
		}
	})

	t.Run("Latch records the address nginx saw, not a spoofed X-Forwarded-For", func(t *testing.T) {
		user := user.in(t)
		for _, s := range user.sessions(tok.AccessToken) {
			if s.IP != userIP {
				t.Errorf("session %s has ip %q; want the client's address %s", s.ID, s.IP, userIP)
			}
		}
		out, err := c.admin(t, "audit", "--json", "--user", "proxied@example.com")
		if err != nil {
			t.Fatalf("audit: %v\n%s", err, out)
		}
		rows := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var e struct{ Type, IP string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("audit line %q: %v", line, err)
			}
			rows++
			if e.IP != userIP {
				t.Errorf("audit %s has ip %q; want %s", e.Type, e.IP, userIP)
			}
		}
		if rows == 0 {
			t.Fatal("no audit rows for the user")
		}
	})

	t.Run("X-Forwarded-For sent straight to a node is ignored", func(t *testing.T) {
		// A client that bypasses nginx is not a trusted proxy, so its
		// header names nobody.
		direct := &proxied{t: t, base: a.base, c: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(userIP)}}).DialContext,
		}}}
		tk := direct.signup("direct@example.com", spoofed)
		for _, s := range direct.sessions(tk.AccessToken) {
			if s.IP != userIP {
				t.Errorf("session via the node's own port has ip %q; want the peer %s", s.IP, userIP)
			}
		}
	})

	t.Run("the rate limiter counts the client's address", func(t *testing.T) {
		// Signups are limited per address: a burst of 10 per node (no
		// Redis here), and nginx spreads them over two nodes, so about the
		// 21st is refused. A limiter keyed on the spoofed header (new every time)
		// would never refuse; one keyed on nginx's address would refuse
		// the bystander too.
		attacker := &proxied{t: t, base: issuerURL, c: from(attackerIP)}
		refused := 0
		// Allow a few more than 21 in case a token refills on a slow machine.
		for i := range 30 {
			got := attacker.signupAnswer(fmt.Sprintf("flood%d@example.com", i), fmt.Sprintf("198.51.100.%d", i+1))
			if got.status == http.StatusTooManyRequests {
				refused = i + 1
				if got.header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
				break
			}
			if got.status != 200 && got.status != 201 {
				t.Fatalf("signup %d: %d %s", i, got.status, got.Error)
			}
		}
		if refused == 0 {
			t.Fatal("30 signups from one address through nginx were all accepted: the limiter does not see the client's address")
		}
		t.Logf("signup %d from %s was refused", refused, attackerIP)
		other := &proxied{t: t, base: issuerURL, c: from(bystander)}
		if got := other.signupAnswer("bystander@example.com", ""); got.status != 200 && got.status != 201 {
			t.Fatalf("a signup from another address after the flood: %d %s; want it accepted", got.status, got.Error)
		}
	})

	t.Run("a bearer verifier sees a logout through the feed stream", func(t *testing.T) {
		user := user.in(t)
		rs := from("127.0.0.5")
		rs.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		ctx := context.Background()
		v, err := bearer.New(ctx, bearer.Config{
			Issuer: issuerURL, Audience: "app", Algorithms: []string{"EdDSA"}, HTTPClient: rs,
			Revocations: &bearer.FeedConfig{ClientID: "rs", ClientSecret: rsSecret, FailClosed: true},
		})
		if err != nil {
			t.Fatalf("bearer.New through nginx: %v", err)
		}
		defer v.Close()
		fresh := user.login("proxied@example.com", "")
		if _, err := v.Verify(ctx, fresh.AccessToken); err != nil {
			t.Fatalf("a fresh token: %v", err)
		}
		user.logout(fresh.AccessToken)
		loggedOut := time.Now()
		eventually(t, 10*time.Second, "the verifier kept accepting a logged-out token", func() bool {
			_, err := v.Verify(ctx, fresh.AccessToken)
			return errors.Is(err, bearer.ErrRevoked)
		})
		t.Logf("logout reached the verifier through nginx in %v", time.Since(loggedOut).Round(time.Millisecond))
		// Other sessions are untouched.
		if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
			t.Fatalf("another session's token after the logout: %v", err)
		}
	})

	t.Run("metrics are not on the public name", func(t *testing.T) {
		resp, err := user.c.Get(issuerURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /metrics through nginx: %d; want 404", resp.StatusCode)
		}
		if status, _ := a.get(t, "/metrics"); status != 200 {
			t.Errorf("GET /metrics on the node's own address: %d; want 200", status)
		}
	})

	t.Run("plain HTTP redirects to HTTPS", func(t *testing.T) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/v1/sessions", httpPort), nil)
		req.Host = publicName
		resp, err := (&http.Transport{}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://"+publicName+"/v1/sessions" {
			t.Errorf("plain HTTP: %d to %q; want 301 to https://%s/v1/sessions", resp.StatusCode, resp.Header.Get("Location"), publicName)
		}
	})
}

// proxied is a client of one base URL.
type proxied struct {
	t    *testing.T
	base string
	c    *http.Client
}

// in is p reporting to t (a subtest).
func (p *proxied) in(t *testing.T) *proxied { q := *p; q.t = t; return &q }

func (p *proxied) do(req *http.Request) answer {
	p.t.Helper()
	resp, err := p.c.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	json.Unmarshal(body, &a.tokens)
	return a
}

func (p *proxied) post(path, contentType, body, xff string) answer {
	req, _ := http.NewRequest("POST", p.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return p.do(req)
}

func (p *proxied) signupAnswer(email, xff string) answer {
	return p.post("/v1/signup", "application/json", `{"email":"`+email+`","password":"correct horse battery staple"}`, xff)
}

func (p *proxied) signup(email, xff string) tokens {
	p.t.Helper()
	a := p.signupAnswer(email, xff)
	if a.status != http.StatusOK && a.status != http.StatusCreated {
		p.t.Fatalf("signup through %s: %d %s", p.base, a.status, a.Error)
	}
	return a.tokens
}

func (p *proxied) login(email, xff string) tokens {
	p.t.Helper()
	a := p.post("/v1/login", "application/json", `{"email":"`+email+`","password":"correct horse battery staple"}`, xff)
	if a.status != http.StatusOK {
		p.t.Fatalf("login through %s: %d %s", p.base, a.status, a.Error)
	}
	return a.tokens
}

func (p *proxied) refresh(rt string) answer {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}
	return p.post("/oauth/token", "application/x-www-form-urlencoded", form.Encode(), spoofed)
}

func (p *proxied) logout(access string) {
	p.t.Helper()
	req, _ := http.NewRequest("POST", p.base+"/v1/logout", strings.NewReader(`{"scope":"current"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+access)
	if a := p.do(req); a.status != http.StatusOK {
		p.t.Fatalf("logout through %s: %d %s", p.base, a.status, a.Error)
	}
}

type sessionRow struct {
	ID string `json:"id"`
	IP string `json:"ip"`
}

func (p *proxied) sessions(access string) []sessionRow {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.base+"/v1/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("X-Forwarded-For", spoofed)
	resp, err := p.c.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []sessionRow
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil || resp.StatusCode != 200 {
		p.t.Fatalf("GET /v1/sessions: %d %v", resp.StatusCode, err)
	}
	if len(rows) == 0 {
		p.t.Fatal("GET /v1/sessions listed no session")
	}
	return rows
}

// requestsTo counts the requests for path in a node's log.
func requestsTo(n *node, path string) int {
	k := 0
	for _, line := range strings.Split(n.log.String(), "\n") {
		var m struct{ Msg, Path string }
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "request" && m.Path == path {
			k++
		}
	}
	return k
}

// startNginx renders deploy/nginx-latch.conf with replace (every key must
// occur in the file, so an edit to the shipped file cannot silently leave
// the test running something else), wraps it in a minimal main
// configuration like Debian's, and runs nginx in the foreground until the
// test ends.
func startNginx(t *testing.T, bin, dir string, replace map[string]string) {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nginx-latch.conf"))
	if err != nil {
		t.Fatal(err)
	}
	site := string(shipped)
	for from, to := range replace {
		if !strings.Contains(site, from) {
			t.Fatalf("deploy/nginx-latch.conf no longer contains %q, which the test replaces", from)
		}
		site = strings.ReplaceAll(site, from, to)
	}
	if err := os.WriteFile(filepath.Join(dir, "latch.conf"), []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would drop to nobody, who cannot enter the test's
		// private temporary directory.
		user = "user root;"
	}
	main := fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	include %[2]s/latch.conf;
}
`, user, dir)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	log := new(testenv.LogBuffer)
	check := exec.Command(bin, "-t", "-p", dir, "-e", "stderr", "-c", conf)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", "stderr", "-c", conf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // SIGINT: fast shutdown
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nginx log:\n%s", log)
		}
	})
}

// selfSigned writes a P-256 certificate for name (and its key) to dir and
// returns the certificate's PEM and both paths.
func selfSigned(t *testing.T, dir, name string) (certPEM []byte, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var kb bytes.Buffer
	pem.Encode(&kb, &pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(keyFile, kb.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM, certFile, keyFile
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// shippedEnv reads deploy/latch.env as KEY=VALUE lines (a value may be
// quoted, as systemd allows), replaces the
// values of the keys in replace (each must be in the file), and checks
// that every key is the twin of a `latch serve` flag.
func shippedEnv(t *testing.T, replace map[string]string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "latch.env"))
	if err != nil {
		t.Fatal(err)
	}
	help, _ := exec.Command(latchBin, "serve", "-h").CombinedOutput()
	var env []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("deploy/latch.env: %q is not KEY=VALUE", line)
		}
		flag := "-" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "LATCH_")), "_", "-")
		if !strings.Contains(string(help), "  "+flag+" ") && !strings.Contains(string(help), "  "+flag+"\n") {
			t.Errorf("deploy/latch.env sets %s, but latch serve has no flag %s", k, flag)
		}
		// Quoted values as systemd's EnvironmentFile= reads them.
		if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if r, ok := replace[k]; ok {
			v = r
			seen[k] = true
		}
		env = append(env, k+"="+v)
	}
	for k := range replace {
		if !seen[k] {
			t.Fatalf("deploy/latch.env no longer sets %s, which the test replaces", k)
		}
	}
	return env
}

// The shipped unit is one systemd accepts: systemd-analyze reports
// nothing for it (an unknown or misspelt hardening option is a warning
// there, and a failure here).
func TestSystemdUnitVerifies(t *testing.T) {
	if latchBin == "" {
		t.Skip("LATCH_TEST_POSTGRES is not set: the latch binary was not built")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "deploy", "latch@.service"))
	if err != nil {
		t.Fatal(err)
	}
	const exe = "ExecStart=/usr/local/bin/latch serve"
	if !strings.Contains(string(unit), exe) {
		t.Fatalf("the unit no longer runs %q", exe)
	}
	dir := t.TempDir()
	body := strings.Replace(string(unit), exe, "ExecStart="+latchBin+" serve", 1)
	if err := os.WriteFile(filepath.Join(dir, "latch@.service"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "latch@8081.service")).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
