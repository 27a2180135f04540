package authclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/testenv"
)

// fixedNonce is a resource server's nonce source: one nonce at a time,
// replaced by next().
type fixedNonce struct{ cur string }

func (n *fixedNonce) Nonce() string           { return n.cur }
func (n *fixedNonce) Valid(nonce string) bool { return nonce == n.cur }

// api is a bearer-protected API on a real listener: bearer's middleware,
// keys from the Latch issuer's memory, the stack's clock.
func (h *harness) protectedAPI(t *testing.T, nonce bearer.NonceSource) *httptest.Server {
	t.Helper()
	cfg := h.env.Issuer.VerifierConfig("app")
	d, err := bearer.NewDPoPChecker(bearer.DPoPConfig{Now: h.env.Clock.Now, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	cfg.DPoP = d
	v, err := bearer.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := bearer.FromContext(r.Context())
		io.WriteString(w, c.Subject)
	})))
	t.Cleanup(srv.Close)
	return srv
}

func status(t *testing.T, hc *http.Client, method, u string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader("{}"))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDPoPSession: against a server that offers DPoP, a session is bound
// to a key made at sign-in and saved with it (mode 0600); the transport
// proves it on every request to a bearer-protected API; another process
// resuming from the file keeps the binding; a copy of the file without the
// key is refused at refresh while the owner's session goes on.
func TestDPoPSession(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	dir := t.TempDir()
	path := filepath.Join(dir, "latch", "credentials.json")
	c := h.client(0, authclient.NewFileStore(path))
	s := h.login(c)
	if !s.DPoP() {
		t.Fatal("the session is not DPoP-bound though the server offers DPoP")
	}
	tok, _ := s.AccessToken(context.Background())
	claims, err := h.env.Verify(tok)
	if err != nil || claims.Confirmation == nil || claims.Confirmation.JKT == "" {
		t.Fatalf("access token cnf %+v, %v", claims, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v, %v; want 0600", fi, err)
	}
	var saved authclient.Saved
	b, _ := os.ReadFile(path)
	json.Unmarshal(b, &saved)
	if saved.DPoPKey == "" || saved.DPoPAlg != "ES256" {
		t.Fatalf("saved DPoP key %q alg %q", saved.DPoPKey, saved.DPoPAlg)
	}

	api := h.protectedAPI(t, nil)
	hc := s.HTTPClient()
	for _, m := range []string{"GET", "POST", "DELETE"} {
		if got := status(t, hc, m, api.URL+"/notes/1?x=1"); got != 200 {
			t.Fatalf("%s through the transport: %d", m, got)
		}
	}
	// The token alone, as a bearer token or with the DPoP scheme but no
	// proof, is refused.
	for _, authz := range []string{"Bearer " + tok, "DPoP " + tok} {
		req, _ := http.NewRequest("GET", api.URL+"/notes/1", nil)
		req.Header.Set("Authorization", authz)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "DPoP ") {
			t.Errorf("%s…: %d %q, want 401 with a DPoP challenge", authz[:6], resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// Proof for a caller that sends the token itself.
	p, err := s.Proof(context.Background(), "GET", api.URL+"/notes/2")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", api.URL+"/notes/2", nil)
	req.Header.Set("Authorization", "DPoP "+tok)
	req.Header.Set("DPoP", p)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("with Session.Proof: %v %v", resp, err)
	}

	// A thief copies the file but not the key (say, a backup that left
	// the key out): its refresh is refused and its copy ends.
	stolen := saved
	stolen.DPoPKey, stolen.DPoPAlg = "", ""
	thiefStore := &authclient.MemoryStore{}
	thiefStore.Save(context.Background(), stolen)
	tc := h.client(0, thiefStore)
	ts, err := tc.Resume(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ended *authclient.SessionEndedError
	if err := ts.Refresh(context.Background()); !errors.As(err, &ended) {
		t.Fatalf("the thief's refresh: %v, want the session ended (invalid_grant)", err)
	}
	// Another process of the owner resumes from the file: the binding and
	// the session go on.
	h.env.Clock.Advance(2 * time.Minute)
	c2 := h.client(0, authclient.NewFileStore(path))
	s2, err := c2.Resume(context.Background())
	if err != nil || !s2.DPoP() {
		t.Fatalf("resume: %v, DPoP %v", err, s2 != nil && s2.DPoP())
	}
	if got := status(t, s2.HTTPClient(), "GET", api.URL+"/after"); got != 200 {
		t.Fatalf("after the theft and a refresh in another process: %d", got)
	}
	if st := s2.Stats(); st.Refreshes != 1 {
		t.Errorf("refreshes = %d, want 1", st.Refreshes)
	}
}

// TestDPoPNonces (RFC 9449 sections 8 and 9): a server that requires
// nonces answers the first proof use_dpop_nonce; the client retries once
// with the nonce, at login, at refresh and at the API.
func TestDPoPNonces(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	h.api = httpapi.New(httpapi.Config{Issuer: h.srv.URL, DefaultClientID: "app", DPoPNonceKey: []byte("0123456789abcdef0123456789abcdef")},
		h.env.Sessions, h.env.Issuer, h.env.Store.Ping, nil)
	s := h.login(h.client(0, nil))
	if !s.DPoP() {
		t.Fatal("not bound")
	}
	n := &fixedNonce{cur: "n1"}
	api := h.protectedAPI(t, n)
	hc := s.HTTPClient()
	if got := status(t, hc, "GET", api.URL+"/a"); got != 200 {
		t.Fatalf("first API call (nonce learnt from the 401): %d", got)
	}
	n.cur = "n2"
	if got := status(t, hc, "POST", api.URL+"/b"); got != 200 {
		t.Fatalf("after the nonce changed: %d", got)
	}
	h.env.Clock.Advance(2 * time.Minute)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh with nonces: %v", err)
	}
	if got := status(t, hc, "GET", api.URL+"/c"); got != 200 {
		t.Fatalf("after refresh: %d", got)
	}
}

// TestDPoPModes: DPoPOff keeps bearer tokens; an unknown algorithm is
// refused at New; EdDSA keys work.
func TestDPoPModes(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	off, err := authclient.New(authclient.Config{Issuer: h.srv.URL, HTTPClient: h.srv.Client(), Now: h.env.Clock.Now, DPoP: authclient.DPoPOff})
	if err != nil {
		t.Fatal(err)
	}
	if s := h.login(off); s.DPoP() {
		t.Error("DPoPOff made a bound session")
	}
	if _, err := authclient.New(authclient.Config{Issuer: h.srv.URL, DPoPAlgorithm: "HS256"}); err == nil {
		t.Error("DPoPAlgorithm HS256 accepted")
	}
	ed, err := authclient.New(authclient.Config{Issuer: h.srv.URL, HTTPClient: h.srv.Client(), Now: h.env.Clock.Now, DPoP: authclient.DPoPRequire, DPoPAlgorithm: "EdDSA"})
	if err != nil {
		t.Fatal(err)
	}
	s := h.login(ed)
	if !s.DPoP() {
		t.Fatal("EdDSA: not bound")
	}
	if got := status(t, s.HTTPClient(), "GET", h.protectedAPI(t, nil).URL+"/x"); got != 200 {
		t.Fatalf("EdDSA proof: %d", got)
	}
}
