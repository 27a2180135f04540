package bearer_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// apiClients is the number of concurrent clients (and keep-alive
// connections) of BenchmarkAPIEndToEnd.
const apiClients = 64

// BenchmarkAPIEndToEnd measures a small API handler over loopback HTTP with
// 64 keep-alive clients, each sending its own access token again and again
// as real clients do, behind Verifier.Middleware ("bearer") and with the
// check switched off ("nocheck"); the client side is the same code for
// both. Their requests/s ratio is the cost of verification per request:
//
//	go test -run '^$' -bench APIEndToEnd -count 5 ./bearer
//
// It also reports the requests the issuer (metadata and JWKS) received
// during the run: a verified request does no I/O, keys are fetched at
// start-up and refreshed in the background only.
//
// "dpop" is the "bearer" server with DPoP-bound tokens (RFC 9449): each
// request carries "Authorization: DPoP" and a fresh proof (ES256, its own
// jti, ath of the token) that the middleware checks, the jti replay cache
// included. The proofs are signed before the timer starts, as a client
// signs its own (its cost is BenchmarkDPoPSign), so the ratio to "bearer"
// is the resource server's cost of DPoP. Run it with a fixed count, which
// bounds the proofs made in advance:
//
//	go test -run '^$' -bench APIEndToEnd -benchtime 200000x ./bearer
func BenchmarkAPIEndToEnd(b *testing.B) {
	f := newFakeIssuer(b)
	v := f.verifier(b)
	tokens := make([]string, apiClients)
	bound := make([]string, apiClients)
	keys := make([]*dpopKey, apiClients)
	for i := range tokens {
		tokens[i] = f.token(goodHeader, with(with(f.claims(), "sid", fmt.Sprintf("s%d", i)), "jti", fmt.Sprintf("j%d", i)))
		keys[i] = newDPoPKey(b, "ES256")
		bound[i] = f.token(goodHeader, with(with(with(f.claims(), "sid", fmt.Sprintf("s%d", i)), "jti", fmt.Sprintf("d%d", i)), "cnf", map[string]string{"jkt": keys[i].jkt}))
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"notes":[{"id":"n1","title":"hello"}]}`)
	})
	for _, mode := range []struct {
		name string
		h    http.Handler
		dpop bool
	}{
		{"bearer", v.Middleware(api), false},
		{"dpop", v.Middleware(api), true},
		{"nocheck", api, false},
	} {
		b.Run(mode.name, func(b *testing.B) {
			srv := httptest.NewServer(mode.h)
			defer srv.Close()
			// Proofs signed in advance, b.N in all, handed out in turn.
			var proofs [][]string
			if mode.dpop {
				proofs = make([][]string, apiClients)
				for i := range b.N {
					c := i % apiClients
					proofs[c] = append(proofs[c], keys[c].proof("GET", srv.URL+"/v1/notes", bound[c], now))
				}
			}
			tr := &http.Transport{MaxIdleConnsPerHost: apiClients}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			issuerBefore := f.requests.Load()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range apiClients {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/notes", nil)
					req.Header.Set("Authorization", "Bearer "+tokens[i])
					if mode.dpop {
						req.Header.Set("Authorization", "DPoP "+bound[i])
					}
					for n := 0; next.Add(1) <= int64(b.N); n++ {
						if mode.dpop {
							if n >= len(proofs[i]) {
								break // the other clients took fewer
							}
							req.Header.Set("DPoP", proofs[i][n])
						}
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Errorf("status %d", resp.StatusCode)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(f.requests.Load()-issuerBefore), "issuer-requests")
		})
	}
}
