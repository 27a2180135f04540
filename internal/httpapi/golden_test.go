package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// The wire formats the server defines and its clients parse are kept as
// golden files in testdata/wire at the repository root: these tests check
// that the server writes them, and the clients' tests (authclient, bearer)
// parse the same files. A deliberate change of format is
//
//	go test ./internal/httpapi -run TestGolden -update
//
// and then the clients' tests say what the change breaks.
var update = flag.Bool("update", false, "rewrite the golden files of testdata/wire from the server's output")

const wireDir = "../../testdata/wire"

// Values that differ at every run are replaced with these fixed ones once
// the test has checked their form; the session ids are 16 bytes in Latch's
// base64url form, so the clients accept them as they would real ones.
const (
	goldenAccessToken  = "eyJhbGciOiJFZERTQSIsImtpZCI6ImdvbGRlbiIsInR5cCI6ImF0K2p3dCJ9.eyJnb2xkZW4iOnRydWV9.c2lnbmF0dXJl"
	goldenRefreshToken = "latch_rt_golden-refresh-token"
	goldenDeviceToken  = "latch_dt_golden-device-token"
	goldenSession1     = "Z29sZGVuLXNlc3Npb24tMQ" // "golden-session-1"
	goldenSession2     = "Z29sZGVuLXNlc3Npb24tMg" // "golden-session-2"
	goldenServerTime   = 1767225600               // 2026-01-01T00:00:00Z
)

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(wireDir, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/httpapi -run TestGolden -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the server's %s changed; if that is meant, run go test ./internal/httpapi -run TestGolden -update and fix the clients.\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// replacer swaps the run's values for the golden ones, after checking each
// has the form a client relies on.
type replacer struct {
	t     *testing.T
	pairs []string
}

func (r *replacer) add(what, got string, form *regexp.Regexp, fixed string) {
	r.t.Helper()
	if !form.MatchString(got) {
		r.t.Fatalf("%s %q does not have the form %s", what, got, form)
	}
	r.pairs = append(r.pairs, got, fixed)
}

func (r *replacer) apply(b []byte) []byte {
	return []byte(strings.NewReplacer(r.pairs...).Replace(string(b)))
}

var (
	jwtForm     = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)
	refreshForm = regexp.MustCompile(`^latch_rt_[A-Za-z0-9_-]+$`)
	deviceForm  = regexp.MustCompile(`^latch_dt_[A-Za-z0-9_-]+$`)
	idForm      = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)
)

// indent re-indents a JSON body so the golden file reads well and its diff
// names the field; the key order stays the server's.
func indent(t *testing.T, body []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// TestGoldenTokenResponse: POST /v1/login (what authclient sends) answers
// testdata/wire/token_response.golden; POST /oauth/token answers the same
// fields, less the device token.
func TestGoldenTokenResponse(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	if _, _, err := env.Sessions.Signup(context.Background(), session.SignupRequest{Email: "wire@example.com", Password: testenv.Password}); err != nil {
		t.Fatal(err)
	}
	r := postJSON(t, srv, "/v1/login", map[string]string{"email": "wire@example.com", "password": testenv.Password}, "")
	if r.Status != http.StatusOK {
		t.Fatalf("login: %s", r)
	}
	var tok struct{ AccessToken, RefreshToken, SessionID, DeviceToken string }
	var raw map[string]any
	r.decode(t, &raw)
	tok.AccessToken, _ = raw["access_token"].(string)
	tok.RefreshToken, _ = raw["refresh_token"].(string)
	tok.SessionID, _ = raw["session_id"].(string)
	tok.DeviceToken, _ = raw["device_token"].(string)
	rep := &replacer{t: t}
	rep.add("access_token", tok.AccessToken, jwtForm, goldenAccessToken)
	rep.add("refresh_token", tok.RefreshToken, refreshForm, goldenRefreshToken)
	rep.add("session_id", tok.SessionID, idForm, goldenSession1)
	rep.add("device_token", tok.DeviceToken, deviceForm, goldenDeviceToken)
	checkGolden(t, "token_response.golden", indent(t, rep.apply(r.Body)))
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store (RFC 6749 section 5.1)", cc)
	}

	// The refresh grant answers the same object, without a device token.
	rr := postForm(t, srv, "/oauth/token", map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app"}})
	if rr.Status != http.StatusOK {
		t.Fatalf("refresh: %s", rr)
	}
	var golden, refreshed map[string]any
	json.Unmarshal(indent(t, rep.apply(r.Body)), &golden)
	rr.decode(t, &refreshed)
	delete(golden, "device_token")
	for k := range golden {
		if _, ok := refreshed[k]; !ok {
			t.Errorf("the refresh response lacks %q, which the login response has", k)
		}
	}
	for k := range refreshed {
		if _, ok := golden[k]; !ok {
			t.Errorf("the refresh response has %q, which the golden token response lacks", k)
		}
	}
}

// TestGoldenSessionList: GET /v1/sessions answers
// testdata/wire/session_list.golden: two sessions, newest first, the
// caller's (the newer) marked current.
func TestGoldenSessionList(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	if _, _, err := env.Sessions.Signup(context.Background(), session.SignupRequest{Email: "wire@example.com", Password: testenv.Password}); err != nil {
		t.Fatal(err)
	}
	login := func(ua string) map[string]any {
		r := send(t, srv, req{method: http.MethodPost, path: "/v1/login", contentType: "application/json",
			body: `{"email":"wire@example.com","password":"` + testenv.Password + `"}`, header: map[string]string{"User-Agent": ua}})
		if r.Status != http.StatusOK {
			t.Fatalf("login: %s", r)
		}
		var m map[string]any
		r.decode(t, &m)
		return m
	}
	older := login("NotesApp/2.1 (iPhone)")
	env.Clock.Advance(time.Hour)
	newer := login("latch-cli")
	r := get(t, srv, "/v1/sessions", newer["access_token"].(string))
	if r.Status != http.StatusOK {
		t.Fatalf("sessions: %s", r)
	}
	rep := &replacer{t: t}
	rep.add("the older session id", older["session_id"].(string), idForm, goldenSession1)
	rep.add("the newer session id", newer["session_id"].(string), idForm, goldenSession2)
	checkGolden(t, "session_list.golden", indent(t, rep.apply(r.Body)))
}

// TestGoldenFeedEvents: the revocation feed's JSON page is
// testdata/wire/feed_page.golden, and its stream starts with
// feed_events.golden: the backlog (one revoke event per session ended, with
// the cursor as id), then the ready event.
func TestGoldenFeedEvents(t *testing.T) {
	env, srv := newServer(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Sessions.EnsureClient(ctx, session.Client{ID: "rs", Name: "rs", Audiences: []string{"app"}, AccessTTL: time.Minute,
		SecretHash: session.HashClientSecret("secret")}); err != nil {
		t.Fatal(err)
	}
	if err := env.Feed.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "empty_feed_page.golden", indent(t, feedPage(t, ctx, srv)))
	a := env.Login(t, "a@example.com")
	b := env.Login(t, "b@example.com")
	for _, sid := range []string{a.SessionID, b.SessionID} {
		if err := env.Sessions.RevokeSession(ctx, "", sid, session.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Feed.Poll(ctx); err != nil { // both in the backlog
		t.Fatal(err)
	}
	rep := &replacer{t: t}
	rep.add("the first session id", a.SessionID, idForm, goldenSession1)
	rep.add("the second session id", b.SessionID, idForm, goldenSession2)

	// The JSON page, which a subscriber reads first (bearer does).
	checkGolden(t, "feed_page.golden", indent(t, rep.apply(feedPage(t, ctx, srv))))

	// The stream, from the start and from the last cursor.
	got := feedStream(t, ctx, srv, "")
	caughtUp := feedStream(t, ctx, srv, "2")
	// The ready event carries the server's real clock (time.Now), not the
	// test's: checked for form, then fixed.
	ready := regexp.MustCompile(`"time":(\d+)`)
	fix := func(b []byte) []byte {
		return []byte(ready.ReplaceAllString(string(rep.apply(b)), `"time":`+strconv.Itoa(goldenServerTime)))
	}
	checkGolden(t, "feed_events.golden", fix(got))
	checkGolden(t, "feed_events_caught_up.golden", fix(caughtUp))
}

func feedPage(t *testing.T, ctx context.Context, srv *httptest.Server) []byte {
	t.Helper()
	rq, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/revocations?since=0", nil)
	rq.SetBasicAuth("rs", "secret")
	rq.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page: %d %s", resp.StatusCode, body)
	}
	return body
}

// feedStream reads the stream (resuming after lastID, if set) up to and
// including its ready event.
func feedStream(t *testing.T, ctx context.Context, srv *httptest.Server, lastID string) []byte {
	t.Helper()
	rq, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/revocations", nil)
	rq.SetBasicAuth("rs", "secret")
	rq.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		rq.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got bytes.Buffer
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		got.WriteString(sc.Text() + "\n")
		if sc.Text() == "" && strings.Contains(got.String(), "event: ready\n") {
			break
		}
	}
	return got.Bytes()
}
