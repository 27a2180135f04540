package authclient

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

const (
	// The refresh margin is a random fraction of the token's lifetime in
	// [marginMin, marginMax), at least minMargin and at most half of it.
	marginMin = 0.25
	marginMax = 1.0 / 3
	minMargin = 5 * time.Second
	// safety: a token with less than this left (server time) is not sent.
	// It covers the Date header's one-second resolution and a round trip.
	safety = 2 * time.Second
	// Backoff after a failed refresh: 1 s doubling to 1 min, with jitter,
	// or the server's Retry-After when longer.
	backoffBase = time.Second
	backoffMax  = time.Minute
)

// Session is one logged-in session. It keeps a fresh access token for any
// number of goroutines and is safe for concurrent use.
//
// It is an [oauth2.TokenSource]; [Session.Transport] adds the token to
// requests. Before handing out a token it checks, in the server's time,
// whether the token is due for refresh (less than a quarter to a third of
// its lifetime left, chosen at random per token). If so, one refresh runs
// (single flight) and every caller waiting for it gets its result. When a
// refresh fails for a reason other than invalid_grant, callers keep
// receiving the current token while it is valid, and an *UnavailableError
// once it is not; the session itself survives. Nothing runs in the
// background between calls.
type Session struct {
	c *Client

	mu        sync.Mutex
	key       *dpopKey // cur's DPoP key; nil for a bearer session
	cur       Saved
	refreshAt time.Time // server time at which cur is due for refresh
	unsaved   bool      // cur is not durable yet: a Save failed
	flight    *flight
	ended     *SessionEndedError
	failures  int       // consecutive failed refreshes
	retryAt   time.Time // local time before which no refresh is tried
	lastErr   error
	stats     Stats
}

// Stats counts a session's refreshes, for tests and metrics.
type Stats struct {
	Refreshes       int // successful rotations
	FailedRefreshes int // refresh attempts that failed (any reason)
}

// flight is one refresh (or save retry) and its result, which every
// caller that waited for it receives. tok and err are written before done
// is closed.
type flight struct {
	done chan struct{}
	tok  handout
	err  error
}

func newSession(c *Client, s Saved) *Session {
	ss := &Session{c: c, cur: s}
	ss.key, _ = sessionKey(s) // Resume has checked it parses
	ss.schedule()
	return ss
}

// schedule picks cur's refresh time: expiry minus a jittered margin, but
// not within the grace window G of receiving it (the client contract). The
// jitter is drawn from the refresh token itself, so clients spread out yet
// every process holding the same token (a shared credentials file, a
// restart) agrees on when it is due and none refreshes early.
func (s *Session) schedule() {
	life := time.Duration(s.cur.Lifetime)
	sum := sha256.Sum256([]byte(s.cur.RefreshToken))
	frac := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53) // uniform in [0, 1)
	margin := time.Duration(float64(life) * (marginMin + frac*(marginMax-marginMin)))
	margin = min(max(margin, minMargin), life/2)
	s.refreshAt = s.cur.Expiry.Add(-margin)
	if g := s.cur.ReceivedAt.Add(s.c.cfg.Grace); s.refreshAt.Before(g) {
		s.refreshAt = g
	}
}

func (s *Session) usable(now time.Time) bool { return now.Before(s.cur.Expiry.Add(-safety)) }

// ID returns the session's id (the server's session_id).
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.SessionID
}

// Email returns the email the session was logged in with, if known.
func (s *Session) Email() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.Email
}

// ClockOffset returns the estimated server clock minus the local clock.
func (s *Session) ClockOffset() time.Duration { return s.c.skew.get() }

// Stats returns the session's refresh counts.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// AccessToken returns a valid access token, refreshing first if it is due.
func (s *Session) AccessToken(ctx context.Context) (string, error) {
	t, err := s.token(ctx, "")
	return t.access, err
}

// DPoP reports whether the session is bound to a DPoP key (RFC 9449): its
// access tokens are then sent as "Authorization: DPoP" with a proof, which
// [Session.Transport] adds, and [Session.Proof] makes for other callers.
func (s *Session) DPoP() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key != nil
}

// Proof returns a DPoP proof for one request with method to rawURL bound
// to the current access token (RFC 9449 section 4.2), for a caller that
// sends the token itself ("Authorization: DPoP " + the token of
// [Session.AccessToken]). Each proof is for one request only. It fails for
// a bearer session.
func (s *Session) Proof(ctx context.Context, method, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	t, err := s.token(ctx, "")
	if err != nil {
		return "", err
	}
	if t.key == nil {
		return "", errors.New("authclient: the session is not DPoP-bound")
	}
	return t.key.proof(method, u, t.access, s.c.nonces.get(u), s.c.serverNow())
}

// Refresh forces a refresh now, unless another one is in flight (then it
// waits for that one), and returns its error.
func (s *Session) Refresh(ctx context.Context) error {
	s.mu.Lock()
	seen := s.cur.AccessToken
	s.mu.Unlock()
	_, err := s.token(ctx, seen)
	return err
}

// Token implements [oauth2.TokenSource]. The returned token carries no
// refresh token, and its Expiry is the local time at which the session
// will replace it (earlier than the token's own exp), so a wrapping
// oauth2.ReuseTokenSource comes back exactly when a refresh is due.
func (s *Session) Token() (*oauth2.Token, error) {
	t, err := s.token(context.Background(), "")
	if err != nil {
		return nil, err
	}
	typ := "Bearer"
	if s.key != nil {
		// A bound token needs a proof per request: send it with
		// [Session.Transport], not oauth2.Transport.
		typ = "DPoP"
	}
	return &oauth2.Token{AccessToken: t.access, TokenType: typ, Expiry: t.refreshAt.Add(-s.c.skew.get())}, nil
}

var _ oauth2.TokenSource = (*Session)(nil)

type handout struct {
	access    string
	refreshAt time.Time
	key       *dpopKey // the key access is bound to; nil for a bearer token
}

// token returns the access token to send. seen, when not empty, is a token
// a resource server rejected with invalid_token: if it is still the
// current one, a refresh is forced (a newer token is returned as is).
// Callers that find a refresh due join the one in flight, or start it,
// and all receive its result.
func (s *Session) token(ctx context.Context, seen string) (handout, error) {
	s.mu.Lock()
	if s.ended != nil {
		s.mu.Unlock()
		return handout{}, s.ended
	}
	now := s.c.serverNow()
	forced := seen != "" && s.cur.AccessToken == seen
	due := forced || !now.Before(s.refreshAt) || !s.usable(now)
	if !s.unsaved && !due {
		defer s.mu.Unlock()
		return handout{s.cur.AccessToken, s.refreshAt, s.key}, nil
	}
	if s.flight == nil {
		if !s.unsaved && s.c.cfg.Now().Before(s.retryAt) {
			// Backing off after a failure: no new attempt yet.
			defer s.mu.Unlock()
			if s.usable(now) && !forced {
				return handout{s.cur.AccessToken, s.refreshAt, s.key}, nil
			}
			return handout{}, &UnavailableError{RetryAfter: s.retryAt.Sub(s.c.cfg.Now()), Err: s.lastErr}
		}
		s.start(s.unsaved)
	}
	f := s.flight
	s.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return handout{}, ctx.Err()
	}
	if f.err == nil {
		return f.tok, nil
	}
	var ended *SessionEndedError
	var persist *PersistError
	if errors.As(f.err, &ended) || errors.As(f.err, &persist) {
		return handout{}, f.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usable(s.c.serverNow()) && s.cur.AccessToken != seen && !s.unsaved {
		// The current token still works: use it; the refresh is retried
		// after the backoff.
		return handout{s.cur.AccessToken, s.refreshAt, s.key}, nil
	}
	return handout{}, f.err
}

// start launches a refresh (or, with saveOnly, a retry of a failed save)
// in its own goroutine, detached from any caller's context: a caller that
// gives up does not cancel the refresh the others wait for. Called with
// s.mu held.
func (s *Session) start(saveOnly bool) {
	f := &flight{done: make(chan struct{})}
	s.flight = f
	cur := s.cur
	go func() {
		var err error
		if saveOnly {
			err = s.persist(cur)
		} else {
			err = s.refresh(cur)
		}
		s.mu.Lock()
		f.err = err
		if err == nil {
			f.tok = handout{s.cur.AccessToken, s.refreshAt, s.key}
		}
		s.flight = nil
		s.mu.Unlock()
		close(f.done)
	}()
}

// refresh rotates cur's refresh token. The new tokens are saved to the
// store before they become the session's current ones, so no caller ever
// receives an access token whose refresh token is not durable.
func (s *Session) refresh(cur Saved) error {
	// Client contract: an attempt that cannot complete well within G is
	// abandoned (its answer ignored), never replayed later.
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.Grace*2/3)
	defer cancel()
	// Another process sharing the store (two CLI invocations, a CLI and a
	// daemon) may have rotated already: adopt its newer tokens rather than
	// present an older one, which the server would take for a lost
	// response (abandoning the other's token) or, if older still, reuse.
	if saved, err := s.c.cfg.Store.Load(ctx); err == nil && saved.SessionID == cur.SessionID &&
		saved.RefreshToken != cur.RefreshToken && saved.ReceivedAt.After(cur.ReceivedAt) {
		s.mu.Lock()
		s.cur = saved
		s.key, _ = sessionKey(saved)
		s.schedule()
		now := s.c.serverNow()
		fresh := now.Before(s.refreshAt) && s.usable(now)
		s.mu.Unlock()
		if fresh {
			return nil
		}
		cur = saved
	}
	meta, err := s.c.discover(ctx)
	if err != nil {
		return s.failed(err)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cur.RefreshToken}, "client_id": {s.c.cfg.ClientID}}
	// request_time: when this attempt is sent, in server time (Unix ms).
	// The server never lets an attempt it reaches more than G later, or
	// after this client gave up on it, abandon a token or revoke the
	// session (docs/design.md "Abandoned and late requests"). Sent only
	// once the offset is known: the local clock alone may be minutes off.
	if at, ok := s.c.skew.serverNow(s.c.cfg.Now()); ok {
		form.Set("request_time", strconv.FormatInt(at.UnixMilli(), 10))
	}
	// A bound session proves its key at every refresh (RFC 9449 section 5).
	key, err := sessionKey(cur)
	if err != nil {
		return s.failed(err)
	}
	next, err := s.c.exchange(func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, meta.TokenEndpoint, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	}, key, cur)
	if err != nil {
		return s.failed(err)
	}
	serr := s.c.cfg.Store.Save(context.Background(), next)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = next // newest refresh token only, kept in memory even if unsaved
	if next.DPoPKey == "" {
		key = nil
	}
	s.key = key
	s.schedule()
	s.failures, s.retryAt, s.lastErr = 0, time.Time{}, nil
	s.stats.Refreshes++
	s.unsaved = serr != nil
	if serr != nil {
		return &PersistError{Err: serr}
	}
	return nil
}

// persist retries saving cur after a failed Save.
func (s *Session) persist(cur Saved) error {
	if err := s.c.cfg.Store.Save(context.Background(), cur); err != nil {
		return &PersistError{Err: err}
	}
	s.mu.Lock()
	if s.cur.RefreshToken == cur.RefreshToken {
		s.unsaved = false
	}
	s.mu.Unlock()
	return nil
}

// failed classifies a failed refresh: invalid_grant ends the session;
// anything else keeps it and backs off.
func (s *Session) failed(err error) error {
	var se *statusError
	isStatus := errors.As(err, &se)
	s.mu.Lock()
	s.stats.FailedRefreshes++
	if isStatus && se.e.Code == "invalid_grant" {
		s.ended = &SessionEndedError{Reason: "invalid_grant", Err: se.e}
		ended, rt := s.ended, s.cur.RefreshToken
		s.mu.Unlock()
		s.forget(context.Background(), rt)
		return ended
	}
	defer s.mu.Unlock()
	s.failures++
	backoff := min(backoffBase<<min(s.failures-1, 10), backoffMax)
	wait := backoff/2 + rand.N(backoff/2+1)
	var cause error = err
	if isStatus {
		cause = se.e
		wait = max(wait, se.retryAfter)
	}
	s.retryAt = s.c.cfg.Now().Add(wait)
	s.lastErr = cause
	if isStatus && se.e.Status != http.StatusTooManyRequests && se.e.Status < 500 {
		return cause // a refusal, not an outage (e.g. invalid_client)
	}
	return &UnavailableError{RetryAfter: wait, Err: cause}
}

// end marks the session over (logged out) and forgets it.
func (s *Session) end(ctx context.Context) {
	s.mu.Lock()
	if s.ended == nil {
		s.ended = &SessionEndedError{Reason: "logged out"}
	}
	rt := s.cur.RefreshToken
	s.mu.Unlock()
	s.forget(ctx, rt)
}

// forget clears the store if it still holds this session's token rt (and
// not a session logged in since by another process), keeping only the
// device token for the next login (see [Saved]).
func (s *Session) forget(ctx context.Context, rt string) {
	saved, err := s.c.cfg.Store.Load(ctx)
	if err == nil && saved.RefreshToken != rt && saved.SessionID != s.ID() {
		return
	}
	s.mu.Lock()
	keep := Saved{Issuer: s.cur.Issuer, ClientID: s.cur.ClientID, DeviceToken: s.cur.DeviceToken}
	s.mu.Unlock()
	if keep.DeviceToken == "" || s.c.cfg.Store.Save(ctx, keep) != nil {
		s.c.cfg.Store.Clear(ctx)
	}
}

// KeepFresh refreshes the session in the background, at the time a caller
// would otherwise find the token due, so that requests never wait for a
// refresh. It returns when ctx is done or the session has ended (with the
// *SessionEndedError). Callers still check on every use, because timers
// miss sleeps; KeepFresh only moves the refresh off the request path.
// Timers run on the real clock, whatever Config.Now says.
func (s *Session) KeepFresh(ctx context.Context) error {
	for {
		s.mu.Lock()
		wait := s.refreshAt.Sub(s.c.serverNow())
		if s.ended != nil {
			s.mu.Unlock()
			return s.ended
		}
		if r := s.retryAt.Sub(s.c.cfg.Now()); r > wait {
			wait = r
		}
		s.mu.Unlock()
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		var ended *SessionEndedError
		if _, err := s.token(ctx, ""); errors.As(err, &ended) {
			return err
		}
	}
}
