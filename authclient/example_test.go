package authclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/latchauth/latch/authclient"
)

// A CLI logs in once, keeps the session in a file, and sends requests to a
// resource server with a token that is always fresh.
//
// The example runs against a stand-in that answers as the Latch server does
// (from the golden files of testdata/wire) and a resource server that wants
// the token; a real CLI names its Latch server (https://auth.example.com)
// and keeps the file at authclient.DefaultCredentialsPath().
func Example() {
	latch := wireServer()
	defer latch.Close()
	notes := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+goldenAccessToken {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer notes.Close()
	dir, err := os.MkdirTemp("", "authclient-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	c, err := authclient.New(authclient.Config{
		Issuer: latch.URL,
		Store:  authclient.NewFileStore(filepath.Join(dir, "credentials.json")),
	})
	if err != nil {
		log.Fatal(err)
	}
	s, err := c.Resume(ctx)
	if errors.Is(err, authclient.ErrNoSession) {
		fmt.Println("no saved session: logging in")
		s, err = c.Login(ctx, "ada@example.com", "correct horse battery staple")
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("session", s.ID())

	api := &http.Client{Transport: s.Transport(nil)}
	resp, err := api.Get(notes.URL + "/v1/notes")
	var ended *authclient.SessionEndedError
	var unavailable *authclient.UnavailableError
	switch {
	case errors.As(err, &ended):
		fmt.Println("session over: log in again")
	case errors.As(err, &unavailable):
		fmt.Println("auth server unavailable; retry in", unavailable.RetryAfter)
	case err != nil:
		log.Fatal(err)
	default:
		resp.Body.Close()
		fmt.Println(resp.Status)
	}

	// The next run of the CLI finds the session in the file.
	again, err := c.Resume(ctx)
	fmt.Println("resumed", again.ID(), err)
	// Output:
	// no saved session: logging in
	// session Z29sZGVuLXNlc3Npb24tMQ
	// 200 OK
	// resumed Z29sZGVuLXNlc3Npb24tMQ <nil>
}
