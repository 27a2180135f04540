package bearer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/latchauth/latch/bearer"
)

// Protect a net/http handler: the middleware answers 401 per RFC 6750 and
// hands the claims to the handler.
//
// The example runs against a stand-in issuer (its metadata and JWKS); a
// real resource server names its Latch server, https://auth.example.com,
// and listens with http.ListenAndServe(":8081", v.Middleware(mux)).
func ExampleVerifier_Middleware() {
	f := newFakeIssuer(exampleTB{})
	defer f.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := bearer.New(ctx, bearer.Config{
		Issuer:     f.srv.URL,                       // exact "iss"; metadata and JWKS are discovered from it
		Audience:   "notes-api",                     // this API's identifier: "aud" must contain it
		Algorithms: []string{"EdDSA"},               // what Latch signs with (--signing-alg)
		Now:        func() time.Time { return now }, // tests only; time.Now by default
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
	api := httptest.NewServer(v.Middleware(mux))
	defer api.Close()

	call := func(method, token string) {
		req, _ := http.NewRequest(method, api.URL+"/notes", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(method, resp.StatusCode, strings.TrimSpace(string(body)))
		if h := resp.Header.Get("WWW-Authenticate"); h != "" {
			fmt.Println("  WWW-Authenticate:", h)
		}
	}
	call("GET", f.good()) // scope notes:read
	call("GET", "")
	call("POST", f.good())
	// Output:
	// GET 200 notes of user-1
	// GET 401 unauthorized
	//   WWW-Authenticate: Bearer realm="notes-api"
	// POST 403 forbidden
	//   WWW-Authenticate: Bearer error="insufficient_scope", scope="notes:write"
}

// Reject the tokens of revoked sessions about a second after the logout,
// with no call to Latch per request: subscribe to the revocation feed with
// a confidential client's credentials.
//
// The example's stand-in feed answers with the golden files of
// testdata/wire, which revoke the sessions Z29sZGVuLXNlc3Npb24tMQ and
// Z29sZGVuLXNlc3Npb24tMg; against Latch, FeedConfig.URL is left empty (it is
// discovered) and the secret comes from the environment.
func ExampleFeedConfig() {
	f := newFakeIssuer(exampleTB{})
	defer f.srv.Close()
	feed := goldenFeed(exampleTB{}, "feed_page.golden", "feed_events_caught_up.golden")
	defer feed.Close()
	at := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC) // while the golden entries last
	v, err := bearer.New(context.Background(), bearer.Config{
		Issuer:     f.srv.URL,
		Audience:   "notes-api",
		Algorithms: []string{"EdDSA"},
		Now:        func() time.Time { return at }, // tests only
		Revocations: &bearer.FeedConfig{
			URL:          feed.URL,      // default: discovered from the issuer's metadata
			ClientID:     "notes-api",   // latch clients create notes-api --audience notes-api --confidential
			ClientSecret: "feed-secret", // os.Getenv("NOTES_API_CLIENT_SECRET")
			MaxStaleness: 45 * time.Second,
			FailClosed:   false, // past 45s without news from Latch: keep serving, log a warning
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	for v.Revoked() < 2 { // the feed is read in the background
		time.Sleep(time.Millisecond)
	}
	claims := with(f.claims(), "sid", "Z29sZGVuLXNlc3Npb24tMQ")
	claims["iat"], claims["nbf"], claims["exp"] = at.Add(-time.Minute).Unix(), at.Add(-time.Minute).Unix(), at.Add(time.Minute).Unix()
	_, err = v.Verify(context.Background(), f.token(goodHeader, claims))
	fmt.Println(v.Revoked(), "sessions revoked; the token of one of them:", errors.Is(err, bearer.ErrRevoked))
	// Output:
	// 2 sessions revoked; the token of one of them: true
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
