package authclient_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/authclient"
)

// The golden files of the server's wire formats (internal/httpapi's
// TestGolden* write them from the real server; go test ./internal/httpapi
// -run TestGolden -update after a deliberate change).
const wireDir = "../testdata/wire"

// goldenAccessToken is the access token of token_response.golden.
const goldenAccessToken = "eyJhbGciOiJFZERTQSIsImtpZCI6ImdvbGRlbiIsInR5cCI6ImF0K2p3dCJ9.eyJnb2xkZW4iOnRydWV9.c2lnbmF0dXJl"

func golden(name string) []byte {
	b, err := os.ReadFile(filepath.Join(wireDir, name))
	if err != nil {
		panic(err)
	}
	return b
}

// wireServer answers as the Latch server does, with the bytes of the golden
// files: what authclient parses is what the server writes.
func wireServer() *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method + " " + r.URL.Path {
		case "GET /.well-known/oauth-authorization-server":
			fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":%q}`, srv.URL, srv.URL+"/oauth/token")
		case "POST /v1/login":
			w.Header().Set("Cache-Control", "no-store")
			w.Write(golden("token_response.golden"))
		case "GET /v1/sessions":
			if r.Header.Get("Authorization") != "Bearer "+goldenAccessToken {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"error":"invalid_token"}`)
				return
			}
			w.Write(golden("session_list.golden"))
		default:
			http.NotFound(w, r)
		}
	}))
	return srv
}

// TestGoldenWire: authclient reads the server's token response and session
// list as testdata/wire has them: every field it keeps.
func TestGoldenWire(t *testing.T) {
	srv := wireServer()
	defer srv.Close()
	ctx := context.Background()
	store := &authclient.MemoryStore{}
	c, err := authclient.New(authclient.Config{Issuer: srv.URL, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Login(ctx, "wire@example.com", "a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	if s.ID() != "Z29sZGVuLXNlc3Npb24tMQ" {
		t.Errorf("session id %q, want the golden session_id", s.ID())
	}
	if at, err := s.AccessToken(ctx); err != nil || at != goldenAccessToken {
		t.Errorf("access token %q, %v; want the golden access_token", at, err)
	}
	saved, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if saved.RefreshToken != "latch_rt_golden-refresh-token" || saved.DeviceToken != "latch_dt_golden-device-token" ||
		time.Duration(saved.Lifetime) != 900*time.Second {
		t.Errorf("saved %+v; want the golden refresh_token, device_token and expires_in", saved)
	}

	list, err := s.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []authclient.SessionInfo{
		{ID: "Z29sZGVuLXNlc3Npb24tMg", CreatedAt: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC), LastUsedAt: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC),
			UserAgent: "latch-cli", IP: "127.0.0.1", ClientID: "app", Current: true},
		{ID: "Z29sZGVuLXNlc3Npb24tMQ", CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), LastUsedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			UserAgent: "NotesApp/2.1 (iPhone)", IP: "127.0.0.1", ClientID: "app"},
	}
	if len(list) != len(want) {
		t.Fatalf("sessions %+v, want %+v", list, want)
	}
	for i := range want {
		if !list[i].CreatedAt.Equal(want[i].CreatedAt) || !list[i].LastUsedAt.Equal(want[i].LastUsedAt) {
			t.Errorf("session %d times %v %v, want %v %v", i, list[i].CreatedAt, list[i].LastUsedAt, want[i].CreatedAt, want[i].LastUsedAt)
		}
		list[i].CreatedAt, list[i].LastUsedAt = want[i].CreatedAt, want[i].LastUsedAt
		if list[i] != want[i] {
			t.Errorf("session %d = %+v, want %+v", i, list[i], want[i])
		}
	}
	if !strings.Contains(string(golden("token_response.golden")), `"token_type": "Bearer"`) {
		t.Error("the golden token response is not a Bearer token response")
	}
}
