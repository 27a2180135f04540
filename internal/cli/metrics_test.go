package cli_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/latchauth/latch/internal/store/postgres/pgtest"
)

// scrape reads GET /metrics of the server.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the value of the series of family name whose labels
// include want ("k=v,k=v"): a counter's or gauge's value, a histogram's
// count. ok is false when there is no such series.
func sample(fams map[string]*dto.MetricFamily, name, want string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for kv := range strings.SplitSeq(want, ",") {
			if k, val, _ := strings.Cut(kv, "="); kv != "" && have[k] != val {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestServeMetrics drives `latch serve` through a login, a failed login, a
// rotation, a grace duplicate, a reuse and a logout, and checks each moved
// its counter, with the right labels, on GET /metrics.
func TestServeMetrics(t *testing.T) {
	s := startServer(t)
	s.mustLatch(t, "a long enough password\n", "users", "create", "ada@example.com", "--password-stdin")

	if code, _ := passwordLogin(t, s, "ada@example.com", "wrong password"); code != 400 {
		t.Fatalf("bad login: %d", code)
	}
	code, tok := passwordLogin(t, s, "ada@example.com", "a long enough password")
	if code != 200 {
		t.Fatalf("login: %d %v", code, tok)
	}
	rt0 := tok["refresh_token"].(string)
	_, r1 := refresh(t, s, rt0)
	_, dup := refresh(t, s, rt0) // within the 30s grace window
	if dup["refresh_token"] != r1["refresh_token"] {
		t.Fatalf("grace duplicate: got %v, want the identical token", dup)
	}
	if code, _ := refresh(t, s, r1["refresh_token"].(string)); code != 200 {
		t.Fatalf("second rotation: %d", code)
	}
	if code, _ := refresh(t, s, rt0); code != 400 { // an ancestor: reuse
		t.Fatalf("reuse: %d", code)
	}
	if code, _ := refresh(t, s, "latch_rt_garbage"); code != 400 {
		t.Fatalf("garbage: %d", code)
	}
	_, tok2 := passwordLogin(t, s, "ada@example.com", "a long enough password")
	req, _ := http.NewRequest("POST", s.url+"/v1/logout", nil)
	req.Header.Set("Authorization", "Bearer "+tok2["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("logout: %s", resp.Status)
	}
	http.Get(s.url + "/v1/no-such-path?token=secret")

	fams := scrape(t, s.url)
	fams = scrape(t, s.url) // the first scrape is now in the histogram
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"latch_logins_total", "outcome=success", 2},
		{"latch_logins_total", "outcome=bad_credentials", 1},
		{"latch_logins_total", "outcome=throttled", 0},
		{"latch_refreshes_total", "outcome=rotated", 2},
		{"latch_refreshes_total", "outcome=grace_duplicate", 1},
		{"latch_refreshes_total", "outcome=reuse", 1},
		{"latch_refreshes_total", "outcome=invalid", 1},
		{"latch_refreshes_total", "outcome=lost_response", 0},
		{"latch_refresh_reuse_total", "cause=ancestor", 1},
		{"latch_revocations_total", "reason=refresh_token_reuse", 1},
		{"latch_revocations_total", "reason=logout", 1},
		{"latch_http_request_duration_seconds", "route=POST /oauth/token,method=POST,code=200", 5},
		{"latch_http_request_duration_seconds", "route=POST /oauth/token,method=POST,code=400", 3},
		{"latch_http_request_duration_seconds", "route=POST /v1/logout,method=POST,code=200", 1},
		{"latch_http_request_duration_seconds", "route=/,method=GET,code=404", 1},
		{"latch_http_request_duration_seconds", "route=GET /metrics,method=GET,code=200", 1},
		{"latch_feed_subscribers", "", 0},
		{"latch_storage_pool_max_connections", "pool=write", 1},
		{"latch_storage_pool_max_connections", "pool=read", 4},
	} {
		got, ok := sample(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, op := range []string{"tx", "read"} {
		if n, _ := sample(fams, "latch_storage_query_duration_seconds", "op="+op); n == 0 {
			t.Errorf("no storage timings for op %s", op)
		}
	}
	for _, name := range []string{"latch_feed_lag_seconds", "go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := sample(fams, name, ""); !ok {
			t.Errorf("%s missing", name)
		}
	}
	// No series is labelled with a raw path.
	for _, m := range fams["latch_http_request_duration_seconds"].Metric {
		for _, l := range m.Label {
			if strings.Contains(l.GetValue(), "no-such-path") {
				t.Errorf("a raw path reached a label: %s", l.GetValue())
			}
		}
	}
	// Scrapes stay out of the access log (info level).
	if strings.Contains(s.logs.String(), `"path":"/metrics"`) {
		t.Error("a /metrics scrape was logged at info level")
	}
}

// TestServeMetricsOff checks --metrics=false: no /metrics route.
func TestServeMetricsOff(t *testing.T) {
	s := startServer(t, "--metrics=false")
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics with --metrics=false: %s, want 404", resp.Status)
	}
}

// TestServeMetricsPostgres checks the PostgreSQL pool gauges and statement
// timings of `latch serve` on PostgreSQL (LATCH_TEST_POSTGRES).
func TestServeMetricsPostgres(t *testing.T) {
	u := pgtest.URL(t)
	kek := base64.StdEncoding.EncodeToString(make([]byte, 32))
	s := startServer(t, "--database", u, "--key-encryption-key", kek)
	resp, err := http.Post(s.url+"/v1/signup", "application/json",
		strings.NewReader(`{"email":"pg@example.com","password":"a long enough password"}`))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if code, _ := refresh(t, s, body.RefreshToken); code != 200 {
		t.Fatalf("refresh: %d", code)
	}
	fams := scrape(t, s.url)
	if n, _ := sample(fams, "latch_refreshes_total", "outcome=rotated"); n != 1 {
		t.Errorf("rotated = %v, want 1", n)
	}
	for _, c := range []struct{ name, labels string }{
		{"latch_storage_pool_max_connections", "pool=postgres"},
		{"latch_storage_pool_open_connections", "pool=postgres"},
		{"latch_storage_pool_acquires_total", "pool=postgres"},
		{"latch_storage_query_duration_seconds", "op=batch"},
		{"latch_storage_query_duration_seconds", "op=select"},
	} {
		if n, ok := sample(fams, c.name, c.labels); !ok || n == 0 {
			t.Errorf("%s{%s} = %v (present %v), want > 0", c.name, c.labels, n, ok)
		}
	}
}
