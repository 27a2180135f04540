package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestAbandonedRefreshAfterPause is the paused node of issue 19 in one
// process: a client writes a refresh presenting an ancestor and closes its
// connection while the server does not run (a middleware holds the request
// before the API reads it); when the server resumes it must not revoke the
// session. The same request from a client that waits is reuse, as ever.
func TestAbandonedRefreshAfterPause(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	paused, resume, served := make(chan struct{}, 1), make(chan struct{}), make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Pause") != "" {
			paused <- struct{}{}
			<-resume
			defer func() { served <- struct{}{} }()
			// As when net/http has not noticed the FIN yet (its background
			// read runs on a goroutine of its own, which a busy node may run
			// late): only a look at the connection can tell.
			r = r.WithContext(context.WithoutCancel(r.Context()))
		}
		env.Handler.ServeHTTP(w, r)
	}))
	srv.Config.ConnContext = httpapi.ConnContext
	srv.Start()
	t.Cleanup(srv.Close)

	a0 := env.Login(t, "paused@example.com")
	a1 := serviceRefresh(t, env, a0.RefreshToken)
	serviceRefresh(t, env, a1.RefreshToken) // a0 is an ancestor now
	body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a0.RefreshToken}, "client_id": {env.Client.ID}}.Encode()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /oauth/token HTTP/1.1\r\nHost: latch.test\r\nX-Test-Pause: 1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	<-paused
	conn.Close() // the client gives up while the node is paused
	close(resume)
	<-served
	if s := sessionRow(t, env, a0.SessionID); !s.RevokedAt.IsZero() {
		t.Fatalf("an abandoned request revoked the session (%s)", s.RevokeReason)
	}
	if n := countAudit(t, env, audit.RefreshReuse); n != 0 {
		t.Fatalf("%d reuse audit events for an abandoned request", n)
	}

	// The control: a client that waits for the same request.
	r := postForm(t, srv, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a0.RefreshToken}, "client_id": {env.Client.ID}})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "invalid_grant") {
		t.Fatalf("a fresh ancestor: %s, want 400 invalid_grant", r)
	}
	if s := sessionRow(t, env, a0.SessionID); s.RevokeReason != session.ReasonReuse {
		t.Fatalf("a fresh ancestor did not revoke the session: %+v", s)
	}
}

// TestRefreshRequestTime: request_time (Unix ms, server clock) more than
// G old makes a lost-response retry or a reuse a 503
// temporarily_unavailable with Retry-After that changes nothing; within G
// it is decided as ever; a malformed value is invalid_request.
func TestRefreshRequestTime(t *testing.T) {
	const g = 3 * time.Second
	env, srv := newServer(t, testenv.Options{Grace: g, LostWindow: 12 * time.Second})
	a0 := env.Login(t, "request-time@example.com")
	a1 := serviceRefresh(t, env, a0.RefreshToken)
	env.Clock.Advance(g + time.Second) // a0 is now a lost-response retry
	form := func(tok string, sent time.Time) url.Values {
		return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}, "client_id": {env.Client.ID},
			httpapi.RequestTimeParam: {strconv.FormatInt(sent.UnixMilli(), 10)}}
	}
	before := sessionRow(t, env, a0.SessionID)
	r := postForm(t, srv, "/oauth/token", form(a0.RefreshToken, env.Clock.Now().Add(-g-time.Millisecond)))
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), httpapi.CodeTemporarilyUnavailable) || r.Header.Get("Retry-After") == "" {
		t.Fatalf("a lost-response retry sent more than G ago: %s (Retry-After %q), want 503 temporarily_unavailable with Retry-After", r, r.Header.Get("Retry-After"))
	}
	if after := sessionRow(t, env, a0.SessionID); after != before {
		t.Fatalf("a stale request changed the session:\nbefore %+v\nafter  %+v", before, after)
	}
	// Sent within G: a lost-response successor.
	r = postForm(t, srv, "/oauth/token", form(a0.RefreshToken, env.Clock.Now().Add(-g+time.Millisecond)))
	a2 := checkTokenResponse(t, r, http.StatusOK)
	if a2.RefreshToken == a1.RefreshToken {
		t.Fatal("want a lost-response successor, got the identical token")
	}
	// a1 is abandoned now: presenting it late changes nothing; on time, reuse.
	r = postForm(t, srv, "/oauth/token", form(a1.RefreshToken, env.Clock.Now().Add(-time.Minute)))
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("a stale abandoned token: %s, want 503", r)
	}
	if s := sessionRow(t, env, a0.SessionID); !s.RevokedAt.IsZero() {
		t.Fatal("a stale request revoked the session")
	}
	r = postForm(t, srv, "/oauth/token", form(a1.RefreshToken, env.Clock.Now()))
	if r.Status != http.StatusBadRequest {
		t.Fatalf("an abandoned token on time: %s, want 400 invalid_grant", r)
	}
	for _, bad := range []string{"soon", "1.5", "-3"} {
		f := form(a2.RefreshToken, env.Clock.Now())
		f.Set(httpapi.RequestTimeParam, bad)
		if r := postForm(t, srv, "/oauth/token", f); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), httpapi.RequestTimeParam) {
			t.Errorf("request_time %q: %s, want 400 naming request_time", bad, r)
		}
	}
}

func serviceRefresh(t *testing.T, env *testenv.Env, tok string) session.Tokens {
	t.Helper()
	got, err := env.Sessions.Refresh(t.Context(), session.RefreshRequest{Token: tok, Client: env.Client})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return got
}

func sessionRow(t *testing.T, env *testenv.Env, id string) session.Session {
	t.Helper()
	s, err := env.Store.Session(t.Context(), id)
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		t.Fatal(err)
	}
	return s
}

func countAudit(t *testing.T, env *testenv.Env, typ string) int {
	t.Helper()
	evs, err := env.Store.AuditEvents(t.Context(), audit.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}
