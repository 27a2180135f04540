package authclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/internal/testenv"
)

// orderStore checks, inside every Save, that no caller has received the
// access token being saved: the rotated token is durable before anyone
// can use it. Saves fail while failing is set.
type orderStore struct {
	authclient.MemoryStore
	t       *testing.T
	mu      sync.Mutex
	handed  map[string]bool // access tokens callers received
	saved   []string        // access tokens saved, in order
	failing bool
}

func (o *orderStore) Save(ctx context.Context, s authclient.Saved) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.handed[s.AccessToken] {
		o.t.Errorf("Save of a token a caller already holds: handed out before it was durable")
	}
	time.Sleep(5 * time.Millisecond) // a slow disk widens any window
	if o.failing {
		return errors.New("disk full")
	}
	o.saved = append(o.saved, s.AccessToken)
	return o.MemoryStore.Save(ctx, s)
}

func (o *orderStore) handOut(tok string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handed[tok] = true
	if len(o.saved) == 0 || o.saved[len(o.saved)-1] != tok {
		o.t.Errorf("a caller received a token that is not the last one saved")
	}
}

func (o *orderStore) setFailing(b bool) {
	o.mu.Lock()
	o.failing = b
	o.mu.Unlock()
}

// TestPersistBeforeHandOut shows the ordering that makes losing the only
// valid refresh token impossible: a rotated token is saved before any
// caller receives it; when the save fails, callers get a *PersistError and
// no token, the new tokens stay in memory, the save is retried on the next
// call, and once it succeeds the session carries on with no extra refresh.
func TestPersistBeforeHandOut(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	store := &orderStore{t: t, handed: map[string]bool{}}
	s := h.login(h.client(0, store))
	ctx := context.Background()
	use := func() (string, error) {
		tok, err := s.AccessToken(ctx)
		if err == nil {
			store.handOut(tok)
		}
		return tok, err
	}
	if _, err := use(); err != nil {
		t.Fatal(err)
	}

	// A due refresh with 20 concurrent callers: one rotation, saved first.
	h.env.Clock.Advance(46 * time.Second)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := use(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if h.refreshes.Load() != 1 {
		t.Fatalf("%d refreshes, want 1", h.refreshes.Load())
	}

	// The store fails at the next rotation.
	store.setFailing(true)
	h.env.Clock.Advance(46 * time.Second)
	_, err := use()
	var persist *authclient.PersistError
	if !errors.As(err, &persist) {
		t.Fatalf("AccessToken with a failing store = %v, want *PersistError", err)
	}
	if _, err := use(); !errors.As(err, &persist) {
		t.Fatalf("second call with a failing store = %v, want *PersistError again (save retried, not skipped)", err)
	}
	if h.refreshes.Load() != 2 {
		t.Fatalf("%d refreshes, want 2: a failed save must not cause another rotation", h.refreshes.Load())
	}
	// The store recovers: the save is retried and the new token handed out.
	store.setFailing(false)
	tok, err := use()
	if err != nil {
		t.Fatal(err)
	}
	if h.refreshes.Load() != 2 || !h.sessionActive(s) {
		t.Fatalf("%d refreshes (want 2), or the session was revoked", h.refreshes.Load())
	}
	saved, _ := store.Load(ctx)
	if saved.AccessToken != tok {
		t.Fatal("the store does not hold the token in use")
	}
	// A new process resuming from the store continues the session.
	s2, err := h.client(0, store).Resume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.env.Clock.Advance(46 * time.Second)
	if _, err := s2.AccessToken(ctx); err != nil || s2.Stats().Refreshes != 1 || h.refreshFails.Load() != 0 {
		t.Fatalf("resumed session: %v, %+v, %d refused", err, s2.Stats(), h.refreshFails.Load())
	}
}

// TestSessionEnded: invalid_grant ends the session with a typed error and
// clears the store; logout ends it too.
func TestSessionEnded(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	ctx := context.Background()
	store := &authclient.MemoryStore{}
	s := h.login(h.client(0, store))
	tok, _ := s.AccessToken(ctx)
	claims, err := h.env.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.env.Sessions.RevokeSession(ctx, claims.Subject, claims.SessionID, sessionMeta); err != nil {
		t.Fatal(err)
	}
	h.env.Clock.Advance(46 * time.Second)
	_, err = s.AccessToken(ctx)
	var ended *authclient.SessionEndedError
	var apiErr *authclient.Error
	if !errors.As(err, &ended) || !errors.As(err, &apiErr) || apiErr.Code != "invalid_grant" {
		t.Fatalf("AccessToken of a revoked session = %v, want *SessionEndedError wrapping invalid_grant", err)
	}
	if _, err := store.Load(ctx); !errors.Is(err, authclient.ErrNoSession) {
		t.Fatalf("store after the session ended: %v, want ErrNoSession", err)
	}
	hc := &http.Client{Transport: s.Transport(h.resource())}
	if _, err := get(hc); !errors.As(err, &ended) {
		t.Fatalf("request through the transport = %v, want *SessionEndedError", err)
	}

	s = h.login(h.client(0, store))
	if n, err := s.Logout(ctx, authclient.ScopeCurrent); err != nil || n != 1 {
		t.Fatalf("Logout = %d, %v", n, err)
	}
	if _, err := s.AccessToken(ctx); !errors.As(err, &ended) {
		t.Fatalf("AccessToken after logout = %v, want *SessionEndedError", err)
	}
	if _, err := store.Load(ctx); !errors.Is(err, authclient.ErrNoSession) {
		t.Fatalf("store after logout: %v", err)
	}
}

// TestRetryOn401: a resource server's 401 invalid_token triggers one
// refresh and one retry for replayable requests, never a loop; a body that
// cannot be re-read is not retried.
func TestRetryOn401(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	s := h.login(h.client(0, nil))
	first, _ := s.AccessToken(context.Background())
	h.rsReject = func(tok string) bool { return tok == first }
	hc := &http.Client{Transport: s.Transport(h.resource())}
	if code, err := get(hc); err != nil || code != 200 || h.refreshes.Load() != 1 || h.rsRequests.Load() != 2 {
		t.Fatalf("rejected token: %d %v, %d refreshes, %d requests; want 200 after 1 refresh and 2 requests",
			code, err, h.refreshes.Load(), h.rsRequests.Load())
	}

	h.rsReject = func(string) bool { return true }
	h.rsRequests.Store(0)
	if code, err := get(hc); err != nil || code != 401 || h.refreshes.Load() != 2 || h.rsRequests.Load() != 2 {
		t.Fatalf("always rejected: %d %v, %d refreshes, %d requests; want the 401 after 1 more refresh and 2 requests",
			code, err, h.refreshes.Load(), h.rsRequests.Load())
	}

	h.rsRequests.Store(0)
	req, _ := http.NewRequest("POST", "http://resource.test/upload", onlyReader{})
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 401 || h.rsRequests.Load() != 1 || h.refreshes.Load() != 2 {
		t.Fatalf("unreplayable body: %v %v, %d requests, %d refreshes; want the 401 at once", resp, err, h.rsRequests.Load(), h.refreshes.Load())
	}
	resp.Body.Close()
	if h.refreshFails.Load() != 0 || !h.sessionActive(s) {
		t.Fatal("forced refreshes were refused or revoked the session")
	}
}

// onlyReader is a body http.NewRequest cannot snapshot (no GetBody).
type onlyReader struct{}

func (onlyReader) Read(p []byte) (int, error) { return 0, errors.New("EOF") }

func TestFileStore(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "latch")
	path := filepath.Join(dir, "credentials.json")
	fs := authclient.NewFileStore(path)
	if _, err := fs.Load(ctx); !errors.Is(err, authclient.ErrNoSession) {
		t.Fatalf("Load of a missing file = %v, want ErrNoSession", err)
	}
	for i := range 3 {
		want := authclient.Saved{Issuer: "https://auth.example", ClientID: "app", RefreshToken: fmt.Sprint("rt", i),
			AccessToken: "at", Lifetime: authclient.Duration(15 * time.Minute), Expiry: time.Unix(1e9, 0).UTC()}
		if err := fs.Save(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := fs.Load(ctx)
		if err != nil || got != want {
			t.Fatalf("Load = %+v, %v; want %+v", got, err, want)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", di.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the credentials (no temporary files)", len(entries))
	}
	if err := fs.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Load(ctx); !errors.Is(err, authclient.ErrNoSession) {
		t.Fatalf("Load after Clear = %v", err)
	}
}

// TestSharedStore: two processes sharing one store (a CLI and a daemon)
// never present a token older than the store's: a session due for refresh
// first adopts the newer tokens another one saved, so the server sees no
// lost-response retry and no reuse.
func TestSharedStore(t *testing.T) {
	h := newHarness(t, testenv.Options{AccessTTL: time.Minute})
	ctx := context.Background()
	store := &authclient.MemoryStore{}
	s1 := h.login(h.client(0, store))
	s2, err := h.client(0, store).Resume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		h.env.Clock.Advance(46 * time.Second)
		a, err1 := s1.AccessToken(ctx)
		h.env.Clock.Advance(time.Second)
		b, err2 := s2.AccessToken(ctx)
		if err1 != nil || err2 != nil || a != b {
			t.Fatalf("round %d: %v %v; same token %v", round, err1, err2, a == b)
		}
	}
	if h.refreshes.Load() != 3 || s2.Stats().Refreshes != 0 || h.refreshFails.Load() != 0 || !h.sessionActive(s1) {
		t.Fatalf("%d refreshes (want 3, all by the first), second made %d, %d refused",
			h.refreshes.Load(), s2.Stats().Refreshes, h.refreshFails.Load())
	}
}

// TestAccount: the account calls, through the session's own transport.
func TestAccount(t *testing.T) {
	h := newHarness(t, testenv.Options{})
	ctx := context.Background()
	c := h.client(0, nil)
	s := h.login(c)
	email := s.Email()
	other, err := c.Login(ctx, email, testenv.Password)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(ctx, email, "wrong password entirely"); !isCode(err, "invalid_credentials") {
		t.Fatalf("Login with a wrong password = %v, want *Error invalid_credentials", err)
	}
	if _, err := c.Signup(ctx, email, testenv.Password); !isCode(err, "email_taken") {
		t.Fatalf("Signup of a taken email = %v, want *Error email_taken", err)
	}
	list, err := s.Sessions(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Sessions = %v, %v; want 2", list, err)
	}
	for _, x := range list {
		if x.Current != (x.ID == s.ID()) || x.CreatedAt.IsZero() {
			t.Fatalf("session %+v: Current or CreatedAt wrong", x)
		}
	}
	if err := s.ChangePassword(ctx, "not the password at all", "a brand new passphrase"); !isCode(err, "invalid_credentials") {
		t.Fatalf("ChangePassword with a wrong current password = %v", err)
	}
	if err := s.ChangePassword(ctx, testenv.Password, "a brand new passphrase"); err != nil {
		t.Fatal(err)
	}
	// The other session ended with the password change.
	var ended *authclient.SessionEndedError
	if _, err := other.Sessions(ctx); !errors.As(err, &ended) {
		t.Fatalf("Sessions of a session the password change ended = %v, want *SessionEndedError", err)
	}
	if err := s.RevokeSession(ctx, "no-such-session"); !isCode(err, "not_found") {
		t.Fatalf("RevokeSession of an unknown id = %v, want not_found", err)
	}
	if err := s.RevokeSession(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccessToken(ctx); !errors.As(err, &ended) {
		t.Fatalf("AccessToken after revoking this session = %v, want *SessionEndedError", err)
	}
}

func isCode(err error, code string) bool {
	var e *authclient.Error
	return errors.As(err, &e) && e.Code == code
}
