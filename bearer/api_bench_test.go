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
func BenchmarkAPIEndToEnd(b *testing.B) {
	f := newFakeIssuer(b)
	v := f.verifier(b)
	tokens := make([]string, apiClients)
	for i := range tokens {
		tokens[i] = f.token(goodHeader, with(with(f.claims(), "sid", fmt.Sprintf("s%d", i)), "jti", fmt.Sprintf("j%d", i)))
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"notes":[{"id":"n1","title":"hello"}]}`)
	})
	for _, mode := range []struct {
		name string
		h    http.Handler
	}{
		{"bearer", v.Middleware(api)},
		{"nocheck", api},
	} {
		b.Run(mode.name, func(b *testing.B) {
			srv := httptest.NewServer(mode.h)
			defer srv.Close()
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
					for next.Add(1) <= int64(b.N) {
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
