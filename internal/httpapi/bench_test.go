package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/metrics"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/testenv"
)

// BenchmarkRefreshHTTP measures POST /oauth/token with grant_type
// refresh_token end to end over loopback HTTP on SQLite: each parallel
// client follows the rotation of its own session. Metrics are on, as in
// latch serve by default (outcome counters, request histogram, storage
// timings).
func BenchmarkRefreshHTTP(b *testing.B) {
	m := metrics.New()
	env := testenv.New(b, testenv.Options{RealClock: true, Observer: m,
		WrapStore: func(s session.Store) session.Store { return m.TimeStore(s) },
		API:       func(c *httpapi.Config) { c.Observer = m; c.Metrics = m.Handler() }})
	srv := httptest.NewServer(env.Handler)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var n atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS concurrent clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rt := env.Login(b, fmt.Sprintf("u%d@example.com", n.Add(1))).RefreshToken
		for pb.Next() {
			resp, err := client.Post(srv.URL+"/oauth/token", "application/x-www-form-urlencoded",
				strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}.Encode()))
			if err != nil {
				b.Fatal(err)
			}
			var body struct {
				RefreshToken string `json:"refresh_token"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("refresh: %d %v", resp.StatusCode, err)
			}
			rt = body.RefreshToken
		}
	})
}

// BenchmarkRefreshConcurrency measures refresh over loopback HTTP with a
// fixed number of clients (each following its own session's rotation) on
// each store, and reports throughput and latency percentiles:
//
//	LATCH_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench RefreshConcurrency -benchtime 5s ./internal/httpapi
func BenchmarkRefreshConcurrency(b *testing.B) {
	stores := []struct {
		name string
		open func(testing.TB) testenv.Store
	}{
		{"sqlite", nil},
		{"postgres", func(t testing.TB) testenv.Store { return pgtest.New(t) }},
	}
	for _, st := range stores {
		for _, c := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("store=%s/c=%d", st.name, c), func(b *testing.B) {
				if st.open != nil && os.Getenv(pgtest.Env) == "" {
					b.Skip(pgtest.Env + " is not set")
				}
				benchRefreshClients(b, testenv.Options{RealClock: true, Store: st.open}, c)
			})
		}
	}
}

func benchRefreshClients(b *testing.B, o testenv.Options, clients int) {
	env := testenv.New(b, o)
	srv := httptest.NewServer(env.Handler)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	rts := make([]string, clients)
	for i := range rts {
		rts[i] = env.Login(b, fmt.Sprintf("c%d@example.com", i)).RefreshToken
	}
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			rt := rts[i]
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := client.Post(srv.URL+"/oauth/token", "application/x-www-form-urlencoded",
					strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}.Encode()))
				if err != nil {
					b.Error(err)
					return
				}
				var body struct {
					RefreshToken string `json:"refresh_token"`
				}
				err = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					b.Errorf("refresh: %d %v", resp.StatusCode, err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
				rt = body.RefreshToken
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	testenv.ReportLatency(b, lat, elapsed, "refresh/s")
}
