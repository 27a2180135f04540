package bearer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/latchauth/latch/bearer"
)

// Protect a net/http handler: the middleware answers 401 per RFC 6750 and
// hands the claims to the handler.
func ExampleVerifier_Middleware() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := bearer.New(ctx, bearer.Config{
		Issuer:     "https://auth.example.com", // exact "iss"; metadata and JWKS are discovered from it
		Audience:   "notes-api",                // this API's identifier: "aud" must contain it
		Algorithms: []string{"EdDSA"},          // what Latch signs with (--signing-alg)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /notes", func(w http.ResponseWriter, r *http.Request) {
		c, _ := bearer.FromContext(r.Context())
		fmt.Fprintf(w, "notes of %s\n", c.Subject)
	})
	// Writes need the notes:write scope (403 insufficient_scope otherwise).
	mux.Handle("POST /notes", bearer.RequireScope("notes:write", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	log.Fatal(http.ListenAndServe(":8081", v.Middleware(mux)))
}

// Reject the tokens of revoked sessions about a second after the logout,
// with no call to Latch per request: subscribe to the revocation feed with
// a confidential client's credentials.
func ExampleFeedConfig() {
	v, err := bearer.New(context.Background(), bearer.Config{
		Issuer:     "https://auth.example.com",
		Audience:   "notes-api",
		Algorithms: []string{"EdDSA"},
		Revocations: &bearer.FeedConfig{
			ClientID:     "notes-api", // latch clients create notes-api --audience notes-api --confidential
			ClientSecret: os.Getenv("NOTES_API_CLIENT_SECRET"),
			MaxStaleness: 45 * time.Second,
			FailClosed:   false, // past 45s without news from Latch: keep serving, log a warning
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	log.Printf("revocation feed %s stale, %d sessions revoked", v.Staleness(), v.Revoked())
}

// Verify one token outside net/http (a gRPC interceptor, a queue consumer).
func ExampleVerifier_Verify() {
	f := newFakeIssuer(exampleTB{})
	defer f.srv.Close()
	v, err := bearer.New(context.Background(), bearer.Config{
		Issuer: f.srv.URL, Audience: "notes-api", Algorithms: []string{"EdDSA"},
		Now: func() time.Time { return now }, // tests only; time.Now by default
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	c, err := v.Verify(context.Background(), f.good())
	fmt.Println(c.Subject, c.SessionID, c.HasScope("notes:read"), err)

	_, err = v.Verify(context.Background(), f.token(goodHeader, with(f.claims(), "exp", now.Add(-time.Hour).Unix())))
	fmt.Println(errors.Is(err, bearer.ErrInvalidToken), errors.Is(err, bearer.ErrExpired))
	// Output:
	// user-1 s1 true <nil>
	// true true
}

// exampleTB lets an example build the test issuer; its cleanups are run by
// the example itself.
type exampleTB struct{}

func (exampleTB) Helper()        {}
func (exampleTB) Cleanup(func()) {}
