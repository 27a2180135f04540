package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// TestRefreshRoundTripsThroughEndpoint: a refresh through POST /oauth/token
// on PostgreSQL is the two round trips of its transaction (BEGIN with
// SELECT … FOR UPDATE, then UPDATE with COMMIT): the client is read from
// the service's cache. Past session.ClientCacheTTL, or after the client
// changed through the service, the client is read again: one more.
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
	transaction := []string{"BEGIN", "SELECT", "UPDATE", "COMMIT"}
	withClientRead := append([]string{"SELECT"}, transaction...)
	tests := []struct {
		name   string
		before func()
		trips  int
		want   []string
	}{
		{"client cached", func() { env.Clock.Advance(time.Second) }, 2, transaction},
		{"cache expired", func() { env.Clock.Advance(session.ClientCacheTTL) }, 3, withClientRead},
		{"cached again", func() { env.Clock.Advance(time.Second) }, 2, transaction},
		{"client changed", func() {
			c, err := env.Sessions.Client(context.Background(), "app")
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Sessions.EnsureClient(context.Background(), c); err != nil {
				t.Fatal(err)
			}
		}, 3, withClientRead},
	}
	for range 3 { // warm the statement cache and the client cache
		env.Clock.Advance(time.Second)
		refresh()
	}
	for _, tt := range tests {
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
// costs the same two round trips as a bearer one: the key's thumbprint is
// a column of the session row the rotation reads and writes anyway, and
// the proof's jti is checked in memory.
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
	want := []string{"BEGIN", "SELECT", "UPDATE", "COMMIT"}
	if trips, statements := tr.Reset(); trips != 2 || !slices.Equal(statements, want) {
		t.Errorf("a DPoP refresh made %d round trips with %v; want 2 with %v", trips, statements, want)
	}
}
