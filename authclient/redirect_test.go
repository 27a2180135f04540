package authclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/internal/testenv"
)

// recorder is an httptest server that keeps the Authorization header and
// body of every request it receives.
type recorder struct {
	srv *httptest.Server

	mu   sync.Mutex
	seen []string // "path auth=<Authorization> body=<body>"
}

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.URL.Path+" auth="+r.Header.Get("Authorization")+" body="+string(b))
		rec.mu.Unlock()
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestTokenNotSentAcrossOrigins: a resource server that redirects to
// another origin (here another port on the same host, which is another
// origin and which net/http itself treats as the same host) makes
// Session.HTTPClient follow the redirect without the access token; a
// redirect within the origin keeps it.
func TestTokenNotSentAcrossOrigins(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	s := h.login(h.client(0, nil))
	tok, err := s.AccessToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + tok
	if s.DPoP() {
		bearer = "DPoP " + tok
	}
	other := newRecorder(t, nil)
	for _, tc := range []struct {
		name        string
		status      int
		toOther     bool   // redirect to the other server (else within the first)
		wantOther   string // Authorization the other server receives
		wantOrigin2 string // Authorization the first server receives on /final
	}{
		{name: "302 to another origin", status: http.StatusFound, toOther: true, wantOther: ""},
		{name: "307 to another origin", status: http.StatusTemporaryRedirect, toOther: true, wantOther: ""},
		{name: "308 to another origin", status: http.StatusPermanentRedirect, toOther: true, wantOther: ""},
		{name: "302 within the origin", status: http.StatusFound, wantOrigin2: bearer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first *recorder
			first = newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/start" {
					return
				}
				target := first.srv.URL + "/final"
				if tc.toOther {
					target = other.srv.URL + "/final"
				}
				http.Redirect(w, r, target, tc.status)
			})
			other.mu.Lock()
			other.seen = nil
			other.mu.Unlock()
			resp, err := s.HTTPClient().Post(first.srv.URL+"/start", "text/plain", strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := first.requests(); len(got) == 0 || !strings.HasPrefix(got[0], "/start auth="+bearer+" ") {
				t.Fatalf("first server saw %q, want /start with the token", got)
			}
			if tc.toOther {
				got := other.requests()
				if len(got) != 1 || !strings.HasPrefix(got[0], "/final auth="+tc.wantOther+" ") {
					t.Fatalf("other origin saw %q, want one /final request with auth=%q", got, tc.wantOther)
				}
			} else if got := first.requests(); len(got) != 2 || !strings.HasPrefix(got[1], "/final auth="+tc.wantOrigin2+" ") {
				t.Fatalf("first server saw %q, want /final with the token", got)
			}
		})
	}
}

// TestLatchServerRedirectNotFollowed: calls to the Latch server (login,
// refresh) never follow a redirect, so a 307 cannot move a password or a
// refresh token to another host; the redirect is an *Error with its status.
func TestLatchServerRedirectNotFollowed(t *testing.T) {
	ctx := context.Background()
	elsewhere := newRecorder(t, nil)

	t.Run("login", func(t *testing.T) {
		var latch *httptest.Server
		latch = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/.well-known/oauth-authorization-server" {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"issuer":"`+latch.URL+`","token_endpoint":"`+latch.URL+`/oauth/token"}`)
				return
			}
			http.Redirect(w, r, elsewhere.srv.URL+r.URL.Path, http.StatusTemporaryRedirect)
		}))
		t.Cleanup(latch.Close)
		c, err := authclient.New(authclient.Config{Issuer: latch.URL})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Login(ctx, "user@example.com", "secret password")
		var apiErr *authclient.Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusTemporaryRedirect {
			t.Fatalf("Login answered 307 = %v, want an *Error with status 307", err)
		}
		if got := elsewhere.requests(); len(got) != 0 {
			t.Fatalf("the redirect target received %q, want nothing", got)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
		s := h.login(h.client(0, nil))
		h.setFault(func(w http.ResponseWriter, r *http.Request) bool {
			http.Redirect(w, r, elsewhere.srv.URL+"/oauth/token", http.StatusTemporaryRedirect)
			return true
		})
		err := s.Refresh(ctx)
		var apiErr *authclient.Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusTemporaryRedirect {
			t.Fatalf("Refresh answered 307 = %v, want an *Error with status 307", err)
		}
		if got := elsewhere.requests(); len(got) != 0 {
			t.Fatalf("the redirect target received %q, want nothing", got)
		}
	})
}
