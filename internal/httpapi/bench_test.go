package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/latchauth/latch/internal/testenv"
)

// BenchmarkRefreshHTTP measures POST /oauth/token with grant_type
// refresh_token end to end over loopback HTTP on SQLite: each parallel
// client follows the rotation of its own session.
func BenchmarkRefreshHTTP(b *testing.B) {
	env := testenv.New(b, testenv.Options{RealClock: true})
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
