package authclient_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/testenv"
)

// TestRoundTripsPerHour measures one simulated hour with 15-minute access
// tokens and one API request every 10 seconds (360 requests), for the
// proactive authclient session and for a reactive client that refreshes
// only after a 401. The resource server checks exp with no leeway. Run
// with -v to see the numbers (docs/client.md quotes them):
//
//	go test -run TestRoundTripsPerHour -v ./authclient
func TestRoundTripsPerHour(t *testing.T) {
	for _, ttl := range []time.Duration{time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour} {
		t.Run(ttl.String(), func(t *testing.T) { roundTripsPerHour(t, ttl) })
	}
}

func roundTripsPerHour(t *testing.T, ttl time.Duration) {
	const (
		every = 10 * time.Second
		span  = time.Hour
	)
	type result struct {
		api, api401, auth, refreshes, slowest int64
	}
	run := func(t *testing.T, proactive bool) result {
		h := newHarness(t, testenv.Options{AccessTTL: ttl})
		var r result
		var send func() (trips int64)
		if proactive {
			s := h.login(h.client(0, nil))
			hc := &http.Client{Transport: s.Transport(h.resource())}
			send = func() int64 {
				a, b := h.authRequests.Load(), h.rsRequests.Load()
				if code, err := get(hc); err != nil || code != 200 {
					t.Fatalf("proactive: %d %v", code, err)
				}
				return h.authRequests.Load() - a + h.rsRequests.Load() - b
			}
		} else {
			rc := newReactive(t, h)
			send = func() int64 {
				a, b := h.authRequests.Load(), h.rsRequests.Load()
				rc.get()
				return h.authRequests.Load() - a + h.rsRequests.Load() - b
			}
		}
		start, auth0 := h.env.Clock.Now(), h.authRequests.Load()
		for h.env.Clock.Now().Sub(start) < span {
			r.slowest = max(r.slowest, send())
			h.env.Clock.Advance(every)
		}
		r.api, r.api401 = h.rsRequests.Load(), h.rs401.Load()
		r.auth, r.refreshes = h.authRequests.Load()-auth0, h.refreshes.Load()
		return r
	}
	pro, re := run(t, true), run(t, false)
	t.Logf("1 h, %s tokens, a request every %s (%d requests):", ttl, every, int(span/every))
	for _, x := range []struct {
		name string
		r    result
	}{{"proactive (authclient)", pro}, {"reactive (refresh on 401)", re}} {
		t.Logf("  %-26s %3d API round trips (%d answered 401), %d auth-server round trips (%d refreshes), %d total; worst request %d round trips",
			x.name, x.r.api, x.r.api401, x.r.auth, x.r.refreshes, x.r.api+x.r.auth, x.r.slowest)
	}
	if pro.api401 != 0 || pro.api != int64(span/every) {
		t.Fatalf("proactive client: %d API requests, %d 401s; want %d and 0", pro.api, pro.api401, int(span/every))
	}
}

// reactive is the classic client: it sends its token until a 401, then
// refreshes and retries.
type reactive struct {
	t      *testing.T
	h      *harness
	at, rt string
	rs     http.RoundTripper
}

func newReactive(t *testing.T, h *harness) *reactive {
	body, _ := json.Marshal(map[string]string{"email": "reactive@example.com", "password": testenv.Password})
	resp, err := h.srv.Client().Post(h.srv.URL+"/v1/signup", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := &reactive{t: t, h: h, rs: h.resource()}
	r.decode(resp)
	return r
}

func (r *reactive) decode(resp *http.Response) {
	var tr struct{ AccessToken, RefreshToken string }
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	tr.AccessToken, _ = m["access_token"].(string)
	tr.RefreshToken, _ = m["refresh_token"].(string)
	if tr.AccessToken == "" {
		r.t.Fatalf("reactive client: no tokens (%d %v)", resp.StatusCode, m)
	}
	r.at, r.rt = tr.AccessToken, tr.RefreshToken
}

func (r *reactive) send() int {
	req, _ := http.NewRequest("GET", "http://resource.test/data", nil)
	req.Header.Set("Authorization", "Bearer "+r.at)
	resp, _ := r.rs.RoundTrip(req)
	resp.Body.Close()
	return resp.StatusCode
}

func (r *reactive) get() {
	if r.send() != http.StatusUnauthorized {
		return
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.rt}, "client_id": {"app"}}
	resp, err := r.h.srv.Client().Post(r.h.srv.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	r.decode(resp)
	if r.send() != http.StatusOK {
		r.t.Fatal("reactive client: retry failed")
	}
}
