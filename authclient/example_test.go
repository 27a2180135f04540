package authclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"

	"github.com/latchauth/latch/authclient"
)

// A CLI logs in once, keeps the session in a file, and sends requests to a
// resource server with a token that is always fresh.
func Example() {
	ctx := context.Background()
	path, err := authclient.DefaultCredentialsPath()
	if err != nil {
		log.Fatal(err)
	}
	c, err := authclient.New(authclient.Config{
		Issuer: "https://auth.example.com",
		Store:  authclient.NewFileStore(path),
	})
	if err != nil {
		log.Fatal(err)
	}
	s, err := c.Resume(ctx)
	if errors.Is(err, authclient.ErrNoSession) {
		s, err = c.Login(ctx, "ada@example.com", "correct horse battery staple")
	}
	if err != nil {
		log.Fatal(err)
	}
	api := &http.Client{Transport: s.Transport(nil)}
	resp, err := api.Get("https://notes.example.com/v1/notes")
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
}
