package authclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// harness is a real Latch server (testenv's stack behind httpapi, over
// loopback HTTP) whose clock is testenv's fake clock, plus an in-memory
// resource server that verifies access tokens strictly (no leeway) by the
// server's clock.
type harness struct {
	t   *testing.T
	env *testenv.Env
	srv *httptest.Server
	api http.Handler

	authRequests atomic.Int64 // every request to the Latch server
	refreshes    atomic.Int64 // refresh requests that reached the real handler
	refreshFails atomic.Int64 // of those, answered other than 200
	faultHits    atomic.Int64 // refresh requests a fault answered (counted by the fault)

	mu    sync.Mutex
	fault func(w http.ResponseWriter, r *http.Request) bool

	realDate bool // the server runs on the real clock (testenv RealClock)

	rsRequests atomic.Int64
	rs401      atomic.Int64
	rsReject   func(token string) bool // extra rejections, for 401 tests
	tokens     sync.Map                // access tokens the resource server accepted
	verified   sync.Map                // token → verifiedToken, once its signature checked out
	dpop       *bearer.DPoPChecker     // the resource server's proof checks
}

type verifiedToken struct {
	exp time.Time
	jkt string // cnf.jkt; "" for a bearer token
}

func newHarness(t *testing.T, o testenv.Options) *harness {
	t.Helper()
	h := &harness{t: t, env: testenv.New(t, o)}
	var err error
	if h.dpop, err = bearer.NewDPoPChecker(bearer.DPoPConfig{Now: h.env.Clock.Now}); err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	h.api = httpapi.New(httpapi.Config{Issuer: h.srv.URL, DefaultClientID: "app"}, h.env.Sessions, h.env.Issuer, h.env.Store.Ping, nil)
	return h
}

// setFault installs f in front of refresh requests; f returns true when it
// answered the request itself.
func (h *harness) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	h.mu.Lock()
	h.fault = f
	h.mu.Unlock()
}

func (h *harness) serve(w http.ResponseWriter, r *http.Request) {
	h.authRequests.Add(1)
	// The server's clock is right: Date comes from it (net/http would use
	// the machine's clock, which the fake clock replaces here).
	if !h.realDate {
		w.Header().Set("Date", h.env.Clock.Now().UTC().Format(http.TimeFormat))
	}
	if r.URL.Path == "/oauth/token" {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, _ := url.ParseQuery(string(body)); form.Get("grant_type") == "refresh_token" {
			h.mu.Lock()
			f := h.fault
			h.mu.Unlock()
			if f != nil && f(w, r) {
				return
			}
			h.refreshes.Add(1)
			rec := &statusRecorder{ResponseWriter: w, status: 200}
			h.api.ServeHTTP(rec, r)
			if rec.status != 200 {
				h.refreshFails.Add(1)
			}
			return
		}
	}
	h.api.ServeHTTP(w, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// dropResponse forwards a refresh to the real server, which rotates, and
// then closes the connection without answering: a lost response.
func (h *harness) dropResponse(w http.ResponseWriter, r *http.Request) {
	h.faultHits.Add(1)
	h.refreshes.Add(1)
	h.api.ServeHTTP(httptest.NewRecorder(), r)
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		h.t.Error(err)
		return
	}
	conn.Close()
}

// client returns an authclient.Client whose clock is the server's plus skew.
func (h *harness) client(skew time.Duration, store authclient.Store) *authclient.Client {
	h.t.Helper()
	c, err := authclient.New(authclient.Config{
		Issuer: h.srv.URL, Store: store,
		Now:        func() time.Time { return h.env.Clock.Now().Add(skew) },
		HTTPClient: h.srv.Client(),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

var signups atomic.Int64

// login signs a new user up through the API and returns the session.
func (h *harness) login(c *authclient.Client) *authclient.Session {
	h.t.Helper()
	email := fmt.Sprintf("user%d@example.com", signups.Add(1))
	s, err := c.Signup(context.Background(), email, testenv.Password)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// resource is the resource server's transport: it answers in memory,
// verifying the token by the server's clock with no leeway.
func (h *harness) resource() http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		h.rsRequests.Add(1)
		rec := httptest.NewRecorder()
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		// The signature is checked once per token (as a verifier's cache
		// would), the expiry and the DPoP proof on every request.
		var vt verifiedToken
		var err error
		if v, ok := h.verified.Load(tok); ok {
			vt = v.(verifiedToken)
		} else if claims, verr := h.env.Verify(tok); verr != nil {
			err = verr
		} else {
			vt.exp = claims.Expiry.Time()
			if claims.Confirmation != nil {
				vt.jkt = claims.Confirmation.JKT
			}
			h.verified.Store(tok, vt)
		}
		if err == nil && !h.env.Clock.Now().Before(vt.exp) {
			err = errors.New("expired")
		}
		switch {
		case err != nil:
		case vt.jkt == "" && scheme != "Bearer", vt.jkt != "" && scheme != "DPoP":
			err = errors.New("wrong scheme for the token's binding")
		case vt.jkt != "":
			if p, perr := h.dpop.Check(r.Header.Get("DPoP"), r.Method, r.URL.String(), tok); perr != nil {
				err = perr
			} else if p.JKT != vt.jkt {
				err = errors.New("proof by another key")
			}
		}
		if err == nil && h.rsReject != nil && h.rsReject(tok) {
			err = errors.New("rejected")
		}
		if err != nil {
			h.rs401.Add(1)
			if vt.jkt != "" {
				rec.Header().Set("WWW-Authenticate", `DPoP error="invalid_token", algs="ES256"`)
			} else {
				rec.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			rec.WriteHeader(http.StatusUnauthorized)
			return rec.Result(), nil
		}
		h.tokens.Store(tok, true)
		rec.WriteHeader(http.StatusOK)
		return rec.Result(), nil
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// get sends a GET through hc and returns the status (or the error).
func get(hc *http.Client) (int, error) {
	resp, err := hc.Get("http://resource.test/data")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sessionActive reports whether the server still holds sid active.
func (h *harness) sessionActive(s *authclient.Session) bool {
	h.t.Helper()
	tok, err := s.AccessToken(context.Background())
	if err != nil {
		return false
	}
	claims, err := h.env.Verify(tok)
	if err != nil {
		h.t.Fatal(err)
	}
	_, err = h.env.Sessions.ActiveSession(context.Background(), claims.Subject, claims.SessionID)
	if err != nil && !errors.Is(err, session.ErrRevoked) && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrExpired) {
		h.t.Fatal(err)
	}
	return err == nil
}

var sessionMeta = session.Meta{IP: "127.0.0.1", UserAgent: "test"}
