package authclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/testenv"
)

// throttledHarness is a harness whose server runs the default rate limits
// on the fake clock, takes the client address from X-Forwarded-For (the
// test is the trusted proxy) and records the device token of every login.
func throttledHarness(t *testing.T) (*harness, func() []string) {
	t.Helper()
	h := newHarness(t, testenv.Options{})
	th, err := ratelimit.New(ratelimit.NewMemory(ratelimit.MemoryClock(h.env.Clock.Now)), ratelimit.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(httpapi.Config{Issuer: h.srv.URL, DefaultClientID: "app", Throttle: th,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		h.env.Sessions, h.env.Issuer, h.env.Store.Ping, nil)
	var mu sync.Mutex
	var sent []string
	h.api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/login" {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			var body struct {
				DeviceToken string `json:"device_token"`
			}
			json.Unmarshal(b, &body)
			mu.Lock()
			sent = append(sent, body.DeviceToken)
			mu.Unlock()
		}
		api.ServeHTTP(w, r)
	})
	return h, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), sent...)
	}
}

// from returns a client of h whose requests come from ip.
func (h *harness) from(ip string, store authclient.Store) *authclient.Client {
	h.t.Helper()
	base := h.srv.Client().Transport
	c, err := authclient.New(authclient.Config{
		Issuer: h.srv.URL, Store: store, Now: h.env.Clock.Now,
		HTTPClient: &http.Client{Transport: rtFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("X-Forwarded-For", ip)
			return base.RoundTrip(r)
		})},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// TestDeviceTokenKept: the device token of a login is saved with the
// session, survives refreshes, logout and a new process, and is sent with
// the next login to that issuer, so that the owner logs in from a new
// network while an attacker keeps the account's bucket empty; a client
// without it is throttled (docs/design.md "Returning devices").
func TestDeviceTokenKept(t *testing.T) {
	h, sent := throttledHarness(t)
	ctx := context.Background()
	const owner = "owner@example.com"
	path := filepath.Join(t.TempDir(), "credentials.json")
	s, err := h.from("192.0.2.1", authclient.NewFileStore(path)).Signup(ctx, owner, testenv.Password)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := authclient.NewFileStore(path).Load(ctx)
	dt := saved.DeviceToken
	if err != nil || !strings.HasPrefix(dt, "latch_dt_") {
		t.Fatalf("saved after signup: %+v, %v; want a latch_dt_ device token", saved, err)
	}
	h.env.Clock.Advance(time.Minute)
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if saved, _ := authclient.NewFileStore(path).Load(ctx); saved.DeviceToken != dt {
		t.Fatalf("device token after a refresh = %q, want %q kept", saved.DeviceToken, dt)
	}
	if _, err := s.Logout(ctx, authclient.ScopeCurrent); err != nil {
		t.Fatal(err)
	}
	// Logout leaves no session, only the device token.
	if _, err := h.from("192.0.2.1", authclient.NewFileStore(path)).Resume(ctx); !errors.Is(err, authclient.ErrNoSession) {
		t.Fatalf("Resume after logout = %v, want ErrNoSession", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var left map[string]any
	json.Unmarshal(b, &left)
	if left["device_token"] != dt || left["refresh_token"] != "" || left["access_token"] != "" || left["email"] != nil {
		t.Fatalf("the file after logout holds %s, want the device token and no tokens or email", b)
	}

	// The attacker drains the account's bucket from many addresses.
	for i := range 12 {
		body := url.Values{"grant_type": {"password"}, "client_id": {"app"}, "username": {owner}, "password": {"wrong password!"}}
		req, _ := http.NewRequest("POST", h.srv.URL+"/oauth/token", strings.NewReader(body.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	// A new process on a new network, with the saved device token.
	s, err = h.from("203.0.113.9", authclient.NewFileStore(path)).Login(ctx, owner, testenv.Password)
	if err != nil {
		t.Fatalf("the owner's login with the saved device token during the attack: %v", err)
	}
	if got := sent(); got[len(got)-1] != dt {
		t.Fatalf("the login sent device_token %q, want the saved %q", got[len(got)-1], dt)
	}
	if saved, _ := authclient.NewFileStore(path).Load(ctx); !strings.HasPrefix(saved.DeviceToken, "latch_dt_") || saved.RefreshToken == "" {
		t.Fatalf("saved after the login: %+v, want the session and its device token", saved)
	}
	// The same owner on a device that has never logged in is held back.
	_, err = h.from("203.0.113.10", &authclient.MemoryStore{}).Login(ctx, owner, testenv.Password)
	var apiErr *authclient.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusTooManyRequests {
		t.Fatalf("a login without a device token during the attack = %v, want 429", err)
	}
	// The owner, resumed on yet another network, changes the password: the
	// change is a login for the throttle, and carries the device token too.
	s, err = h.from("203.0.113.11", authclient.NewFileStore(path)).Resume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ChangePassword(ctx, testenv.Password, "a brand new passphrase"); err != nil {
		t.Fatalf("the owner's password change during the attack: %v", err)
	}
}

// TestDeviceTokenStaysWithItsIssuer: a device token saved for one issuer
// or client is never sent to another.
func TestDeviceTokenStaysWithItsIssuer(t *testing.T) {
	h, sent := throttledHarness(t)
	ctx := context.Background()
	h.env.Login(t, "ada@example.com")
	tests := []struct {
		name  string
		saved authclient.Saved
		want  string
	}{
		{"this issuer", authclient.Saved{Issuer: h.srv.URL, ClientID: "app", DeviceToken: "latch_dt_mine"}, "latch_dt_mine"},
		{"another issuer", authclient.Saved{Issuer: "https://other.example", ClientID: "app", DeviceToken: "latch_dt_other"}, ""},
		{"another client", authclient.Saved{Issuer: h.srv.URL, ClientID: "cli", DeviceToken: "latch_dt_cli"}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &authclient.MemoryStore{}
			if err := store.Save(ctx, tt.saved); err != nil {
				t.Fatal(err)
			}
			// A device token the server does not know counts as none.
			if _, err := h.from(fmt.Sprintf("192.0.2.%d", 10+i), store).Login(ctx, "ada@example.com", testenv.Password); err != nil {
				t.Fatal(err)
			}
			if got := sent(); got[len(got)-1] != tt.want {
				t.Fatalf("login sent device_token %q, want %q", got[len(got)-1], tt.want)
			}
		})
	}
}
