package httpapi_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// TestRefreshRoundTripsThroughEndpoint: a refresh through POST /oauth/token
// on PostgreSQL is one round trip, the one conditional UPDATE of
// session.Rotation, and the client is read from the service's cache. Past
// session.ClientCacheTTL, or after the client changed through the service,
// the client is read again: one more. Any other row of the rotation table,
// such as a repeat of the parent within G, finds the UPDATE's conditions
// false and takes the locked transaction after it: three.
func TestRefreshRoundTripsThroughEndpoint(t *testing.T) {
	tr := &pgtest.Tracer{}
	st := pgtest.New(t, postgres.WithTracer(tr))
	// The feed's poll would share the tracer: make it rare.
	env, srv := newServer(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }, FeedInterval: time.Minute})
	rt := env.Login(t, "trips@example.com").RefreshToken
	refresh := func() {
		t.Helper()
		r := send(t, srv, req{method: "POST", path: "/oauth/token", contentType: formType,
			body: "grant_type=refresh_token&client_id=app&refresh_token=" + url.QueryEscape(rt)})
		if r.Status != http.StatusOK {
			t.Fatalf("refresh: %s", r)
		}
		var tok struct {
			RefreshToken string `json:"refresh_token"`
		}
		r.decode(t, &tok)
		rt = tok.RefreshToken
	}
	rotation := []string{"UPDATE"}
	withClientRead := append([]string{"SELECT"}, rotation...)
	var parent string
	tests := []struct {
		name   string
		before func()
		trips  int
		want   []string
	}{
		{"client cached", func() { env.Clock.Advance(time.Second) }, 1, rotation},
		{"cache expired", func() { env.Clock.Advance(session.ClientCacheTTL) }, 2, withClientRead},
		{"cached again", func() { env.Clock.Advance(time.Second) }, 1, rotation},
		{"client changed", func() {
			c, err := env.Sessions.Client(context.Background(), "app")
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Sessions.EnsureClient(context.Background(), c); err != nil {
				t.Fatal(err)
			}
		}, 2, withClientRead},
		{"the parent again, within G", func() { env.Clock.Advance(time.Millisecond); rt = parent }, 3,
			[]string{"UPDATE", "BEGIN", "SELECT", "UPDATE", "COMMIT"}},
	}
	for range 3 { // warm the statement cache and the client cache
		env.Clock.Advance(time.Second)
		refresh()
	}
	for _, tt := range tests {
		parent = rt
		refresh() // the next case's parent
		tt.before()
		tr.Reset()
		refresh()
		trips, statements := tr.Reset()
		if trips != tt.trips || !slices.Equal(statements, tt.want) {
			t.Errorf("%s: a refresh through POST /oauth/token made %d round trips with %v; want %d with %v",
				tt.name, trips, statements, tt.trips, tt.want)
		}
	}
}

// TestDPoPRefreshRoundTrips: a DPoP-bound refresh (RFC 9449 section 5)
// costs the same one round trip as a bearer one: the key's thumbprint is
// a column of the session row, one more condition of the rotation's
// UPDATE, and the proof's jti is checked in memory.
func TestDPoPRefreshRoundTrips(t *testing.T) {
	tr := &pgtest.Tracer{}
	st := pgtest.New(t, postgres.WithTracer(tr))
	env, srv := newServer(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }, FeedInterval: time.Minute})
	k := testenv.NewDPoPKey(t)
	k.Now = env.Clock.Now
	rt := dpopLogin(t, env, srv, "dpop-trips@example.com", k).RefreshToken
	refresh := func() {
		t.Helper()
		r := oauthToken(t, srv, url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "refresh_token": {rt}}, k)
		if r.Status != http.StatusOK {
			t.Fatalf("DPoP refresh: %s", r)
		}
		var tok dpopTokens
		r.decode(t, &tok)
		if tok.TokenType != "DPoP" {
			t.Fatalf("token_type %q, want DPoP", tok.TokenType)
		}
		rt = tok.RefreshToken
	}
	for range 3 { // warm the statement cache and the client cache
		env.Clock.Advance(time.Second)
		refresh()
	}
	env.Clock.Advance(time.Second)
	tr.Reset()
	refresh()
	want := []string{"UPDATE"}
	if trips, statements := tr.Reset(); trips != 1 || !slices.Equal(statements, want) {
		t.Errorf("a DPoP refresh made %d round trips with %v; want 1 with %v", trips, statements, want)
	}
}

// TestRefreshRoundTripsWithChangesHeard: with the PostgreSQL listener
// connected (as `latch serve` wires it: the service hears every node's
// client changes by NOTIFY), a refresh through POST /oauth/token stays at
// one round trip long past session.ClientCacheTTL, and a client changed
// through another node's service reaches this node's next refresh at once,
// without waiting for any TTL. When the listener is gone the TTL applies
// again.
func TestRefreshRoundTripsWithChangesHeard(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	tr := &pgtest.Tracer{}
	open := func(opts ...postgres.Option) *postgres.Store {
		s, err := postgres.Open(ctx, dbURL, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	st := open(postgres.WithTracer(tr))
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, keywrap.KeySize)
	rand.Read(kek)
	env, srv := newServer(t, testenv.Options{Store: func(testing.TB) testenv.Store { return st }, FeedInterval: time.Minute, KEK: kek})
	other := testenv.New(t, testenv.Options{Store: func(testing.TB) testenv.Store { return open() }, FeedInterval: time.Minute, KEK: kek})

	connected := make(chan bool, 10)
	forgot := make(chan string, 100)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Listen(lctx, postgres.Changes{
			Connected: func(up bool) { env.Sessions.ClientChangesHeard(up); connected <- up },
			Client:    func(id string) { env.Sessions.ForgetClient(id); forgot <- id },
		}, slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { stop(); <-done })
	select {
	case up := <-connected:
		if !up {
			t.Fatal("the listener reported down before up")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the listener never connected")
	}

	rt := env.Login(t, "heard@example.com").RefreshToken
	refresh := func() (expiresIn int) {
		t.Helper()
		r := send(t, srv, req{method: "POST", path: "/oauth/token", contentType: formType,
			body: "grant_type=refresh_token&client_id=app&refresh_token=" + url.QueryEscape(rt)})
		if r.Status != http.StatusOK {
			t.Fatalf("refresh: %s", r)
		}
		var tok struct {
			RefreshToken string `json:"refresh_token"`
			ExpiresIn    int    `json:"expires_in"`
		}
		r.decode(t, &tok)
		rt = tok.RefreshToken
		return tok.ExpiresIn
	}
	for range 3 { // warm the statement cache and the client cache
		env.Clock.Advance(time.Second)
		refresh()
	}
	rotation := []string{"UPDATE"}
	withClientRead := append([]string{"SELECT"}, rotation...)
	trips := func(name string, wantTrips int, want []string) int {
		t.Helper()
		tr.Reset()
		ttl := refresh()
		if trips, statements := tr.Reset(); trips != wantTrips || !slices.Equal(statements, want) {
			t.Errorf("%s: a refresh through POST /oauth/token made %d round trips with %v; want %d with %v",
				name, trips, statements, wantTrips, want)
		}
		return ttl
	}
	// Twenty refreshes 5 s apart: 100 s, ten times the TTL that applies
	// while changes are not heard, all from the cache.
	for i := range 20 {
		env.Clock.Advance(5 * time.Second)
		trips(fmt.Sprintf("refresh %d, %s after the warm-up", i+1, time.Duration(i+1)*5*time.Second), 1, rotation)
	}

	// Another node changes the client: this node hears it by NOTIFY (no
	// clock moves), reads it once, and issues with the new lifetime.
	drainChan(forgot)
	ttl := 7 * time.Minute
	if _, err := other.Sessions.UpdateClient(ctx, "app", session.ClientUpdate{AccessTTL: &ttl}, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-forgot:
		if id != "app" {
			t.Fatalf("heard of client %q, want app", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other node's change was never heard")
	}
	if got := trips("after another node changed the client", 2, withClientRead); got != int(ttl.Seconds()) {
		t.Errorf("expires_in %d after another node set the client's access TTL to %s; want %d", got, ttl, int(ttl.Seconds()))
	}
	trips("cached again", 1, rotation)

	// The listener goes away: changes are no longer heard, so the cache
	// falls back to session.ClientCacheTTL.
	stop()
	<-done
	env.Clock.Advance(session.ClientCacheTTL)
	trips("listener gone, past ClientCacheTTL", 2, withClientRead)
	env.Clock.Advance(time.Second)
	trips("listener gone, within ClientCacheTTL", 1, rotation)
}

// drainChan empties c without blocking.
func drainChan[T any](c chan T) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
