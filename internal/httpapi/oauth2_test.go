package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

func oauth2Config(srv *httptest.Server) *oauth2.Config {
	return &oauth2.Config{
		ClientID: "app",
		Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams},
	}
}

// oauth2Context makes x/oauth2 use the test server's client.
func oauth2Context(t *testing.T, srv *httptest.Server) context.Context {
	return context.WithValue(t.Context(), oauth2.HTTPClient, srv.Client())
}

// wantRetrieveError checks that err is an RFC 6749 error response with code.
func wantRetrieveError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want an *oauth2.RetrieveError %q", err, code)
	}
	if re.ErrorCode != code {
		t.Errorf("ErrorCode = %q, want %q (body %s)", re.ErrorCode, code, re.Body)
	}
	if re.ErrorDescription == "" {
		t.Errorf("ErrorDescription is empty (body %s)", re.Body)
	}
}

// sessionsStatus calls GET /v1/sessions through an x/oauth2 HTTP client that
// holds tok.
func sessionsStatus(t *testing.T, ctx context.Context, cfg *oauth2.Config, srv *httptest.Server, tok *oauth2.Token) int {
	t.Helper()
	resp, err := cfg.Client(ctx, tok).Get(srv.URL + "/v1/sessions")
	if err != nil {
		t.Fatalf("GET /v1/sessions: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOAuth2PasswordGrantAndRotation drives the token endpoint with
// golang.org/x/oauth2: the password grant, then refreshes through several
// rotations, then reuse of an old token, which ends the session.
func TestOAuth2PasswordGrantAndRotation(t *testing.T) {
	t.Parallel()
	// x/oauth2 judges expiry by the wall clock.
	_, srv := newServer(t, testenv.Options{RealClock: true})
	ctx := oauth2Context(t, srv)
	cfg := oauth2Config(srv)
	signupOnly(t, srv, "user@example.com", testPassword)

	start := time.Now()
	tok, err := cfg.PasswordCredentialsToken(ctx, "user@example.com", testPassword)
	if err != nil {
		t.Fatalf("PasswordCredentialsToken: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token lacks access or refresh token: %+v", tok)
	}
	if tok.TokenType != "Bearer" {
		t.Errorf("TokenType = %q, want Bearer", tok.TokenType)
	}
	if lo, hi := start.Add(14*time.Minute), time.Now().Add(15*time.Minute+time.Second); tok.Expiry.Before(lo) || tok.Expiry.After(hi) {
		t.Errorf("Expiry = %v, want about 15 minutes from now", tok.Expiry)
	}
	sid, _ := tok.Extra("session_id").(string)
	if sid == "" {
		t.Errorf("token response lacks session_id")
	}
	if got := sessionsStatus(t, ctx, cfg, srv, tok); got != http.StatusOK {
		t.Fatalf("GET /v1/sessions with the password-grant token = %d, want 200", got)
	}

	rts := []string{tok.RefreshToken}
	newest := tok
	for i := range 4 {
		ts := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rts[len(rts)-1], Expiry: time.Now().Add(-time.Minute)})
		next, err := ts.Token()
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if slices.Contains(rts, next.RefreshToken) {
			t.Fatalf("refresh %d: got refresh token %d again, want a new one", i, slices.Index(rts, next.RefreshToken))
		}
		if got, _ := next.Extra("session_id").(string); got != sid {
			t.Errorf("refresh %d: session_id = %q, want %q", i, got, sid)
		}
		if !next.Valid() {
			t.Errorf("refresh %d: token not valid: expiry %v", i, next.Expiry)
		}
		rts = append(rts, next.RefreshToken)
		newest = next
	}
	if got := sessionsStatus(t, ctx, cfg, srv, newest); got != http.StatusOK {
		t.Fatalf("GET /v1/sessions with the newest token = %d, want 200", got)
	}

	// The previous-but-one refresh token is a copy someone kept: reuse.
	_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rts[len(rts)-3], Expiry: time.Now().Add(-time.Minute)}).Token()
	wantRetrieveError(t, err, "invalid_grant")

	// The reuse ended the session: the newest tokens fail too.
	_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rts[len(rts)-1], Expiry: time.Now().Add(-time.Minute)}).Token()
	wantRetrieveError(t, err, "invalid_grant")
	if got := sessionsStatus(t, ctx, cfg, srv, newest); got != http.StatusUnauthorized {
		t.Errorf("GET /v1/sessions with the newest access token after reuse = %d, want 401", got)
	}
}

// TestOAuth2TokenSourceRefreshesWhenExpired checks that an x/oauth2 client
// whose token has expired refreshes on its own and keeps working, and that a
// second holder of the same old token (another tab) within G gets the
// identical successor instead of ending the session.
func TestOAuth2TokenSourceRefreshesWhenExpired(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, testenv.Options{RealClock: true})
	ctx := oauth2Context(t, srv)
	cfg := oauth2Config(srv)
	signupOnly(t, srv, "user@example.com", testPassword)
	tok, err := cfg.PasswordCredentialsToken(ctx, "user@example.com", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	expired := func() *oauth2.Token {
		return &oauth2.Token{AccessToken: "stale", RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
	}
	ts := cfg.TokenSource(ctx, expired())
	resp, err := oauth2.NewClient(ctx, ts).Get(srv.URL + "/v1/sessions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/sessions through a refreshing client = %d, want 200", resp.StatusCode)
	}
	first, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if first.RefreshToken == tok.RefreshToken || first.AccessToken == "stale" {
		t.Fatalf("the client did not refresh: %+v", first)
	}

	other, err := cfg.TokenSource(ctx, expired()).Token()
	if err != nil {
		t.Fatalf("second holder's refresh within G: %v", err)
	}
	if other.RefreshToken != first.RefreshToken {
		t.Errorf("second holder got a different refresh token, want the identical successor")
	}
	// Both holders now share one live session.
	if got := sessionsStatus(t, ctx, cfg, srv, first); got != http.StatusOK {
		t.Errorf("GET /v1/sessions with the first holder's token = %d, want 200", got)
	}
	if got := sessionsStatus(t, ctx, cfg, srv, other); got != http.StatusOK {
		t.Errorf("GET /v1/sessions with the second holder's token = %d, want 200", got)
	}
}

func TestOAuth2PasswordGrantFailures(t *testing.T) {
	t.Parallel()
	env, srv := newServer(t, testenv.Options{RealClock: true})
	ctx := oauth2Context(t, srv)
	signupOnly(t, srv, "user@example.com", testPassword)
	signupOnly(t, srv, "disabled@example.com", testPassword)
	u, err := env.Sessions.UserByEmail(ctx, "disabled@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Sessions.DisableUser(ctx, u.ID, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		clientID       string
		user, password string
		wantCode       string
	}{
		{"wrong password", "app", "user@example.com", "wrong password!", "invalid_grant"},
		{"unknown user", "app", "nobody@example.com", testPassword, "invalid_grant"},
		{"disabled user", "app", "disabled@example.com", testPassword, "invalid_grant"},
		{"unknown client", "nope", "user@example.com", testPassword, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := oauth2Config(srv)
			cfg.ClientID = tt.clientID
			_, err := cfg.PasswordCredentialsToken(ctx, tt.user, tt.password)
			wantRetrieveError(t, err, tt.wantCode)
		})
	}
}
