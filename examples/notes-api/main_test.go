package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/testenv"
)

// TestNotesAPI runs the README's "Protect your API" steps against a real
// Latch: a token for notes-api reads and writes the user's notes, a token
// for another audience is refused, and after logout the token is refused.
func TestNotesAPI(t *testing.T) {
	env := testenv.New(t, testenv.Options{RealClock: true})
	latch := httptest.NewServer(env.Handler)
	defer latch.Close()
	ctx := context.Background()
	// latch clients create notes-api --audience notes-api --confidential
	// latch clients create notes-web --audience notes-api
	web := session.Client{ID: "notes-web", Name: "notes-web", Audiences: []string{"notes-api"}, AccessTTL: 15 * time.Minute,
		Grants: []string{session.GrantPassword, session.GrantRefresh}}
	for _, c := range []session.Client{web, {ID: "notes-api", Name: "notes-api", Audiences: []string{"notes-api"},
		AccessTTL: 15 * time.Minute, SecretHash: session.HashClientSecret("s3cret")}} {
		if err := env.Sessions.EnsureClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	v, err := bearer.New(ctx, bearer.Config{
		Issuer: testenv.Issuer, Audience: "notes-api", Algorithms: []string{"EdDSA"},
		JWKSURL: latch.URL + "/.well-known/jwks.json",
		Revocations: &bearer.FeedConfig{URL: latch.URL + "/v1/revocations", ClientID: "notes-api", ClientSecret: "s3cret",
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	api := httptest.NewServer(newHandler(v))
	defer api.Close()

	_, tok, err := env.Sessions.Signup(ctx, session.SignupRequest{Email: "ada@example.com", Password: testenv.Password, Login: true, Client: web})
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, tok, body string) (int, string) {
		req, _ := http.NewRequest(method, api.URL+"/notes", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("POST", tok.AccessToken, `{"text":"buy milk"}`); code != http.StatusCreated {
		t.Fatalf("POST /notes: %d %s", code, body)
	}
	if code, body := call("GET", tok.AccessToken, ""); code != 200 || !strings.Contains(body, "buy milk") {
		t.Fatalf("GET /notes: %d %s", code, body)
	}
	// A token of the built-in client has aud "app": not for this API.
	other := env.Login(t, "bob@example.com")
	if code, _ := call("GET", other.AccessToken, ""); code != http.StatusUnauthorized {
		t.Fatalf("token for another audience: %d", code)
	}
	if _, err := env.Sessions.Logout(ctx, "", tok.SessionID, session.ScopeOne, session.Meta{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := call("GET", tok.AccessToken, "")
		if code == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after logout", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get(api.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`bearer_rejected_total{reason="claims"} 1`, // the other audience
		`bearer_rejected_total{reason="revoked"} 1`,
		`bearer_rejected_total{reason="signature"} 0`,
		"bearer_revoked_sessions 1",
		"bearer_jwks_fetches_total 1",
		"bearer_cache_hits_total ",
		"bearer_verified_total ",
		"bearer_feed_staleness_seconds ",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("GET /metrics lacks %q:\n%s", want, b)
		}
	}
}
