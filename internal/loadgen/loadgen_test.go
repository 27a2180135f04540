package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/loadgen"
	"github.com/latchauth/latch/internal/ratelimit"
	"github.com/latchauth/latch/internal/testenv"
)

// stack is a real Latch over loopback, and a bearer-protected resource
// server answering GET /notes, as examples/notes-api does.
type stack struct {
	latch, api string
	env        *testenv.Env
}

func newStack(t *testing.T, o testenv.Options) *stack {
	t.Helper()
	o.RealClock = true
	env := testenv.New(t, o)
	latch := httptest.NewServer(env.Handler)
	t.Cleanup(latch.Close)

	// The verifier finds Latch at its issuer URL, http://latch.test.
	var d net.Dialer
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, latch.Listener.Addr().String())
		},
	}}
	v, err := bearer.New(context.Background(), bearer.Config{
		Issuer: testenv.Issuer, Audience: "app", Algorithms: []string{"EdDSA"}, HTTPClient: hc,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /notes", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := bearer.FromContext(r.Context()); !ok {
			t.Error("handler reached without claims")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("[]"))
	})
	api := httptest.NewServer(v.Middleware(mux))
	t.Cleanup(api.Close)
	return &stack{latch: latch.URL, api: api.URL, env: env}
}

func (s *stack) config(scenario string) loadgen.Config {
	return loadgen.Config{Scenario: scenario, Target: s.latch, API: s.api, Concurrency: 4,
		Duration: time.Second, Warmup: 200 * time.Millisecond, MaxDuration: 30 * time.Second}
}

// TestScenarios runs each scenario for about a second against a real Latch
// and checks counts and errors, not speed.
func TestScenarios(t *testing.T) {
	s := newStack(t, testenv.Options{})
	tests := []struct {
		scenario string
		ops      []string
	}{
		{loadgen.ScenarioLogin, []string{"login"}},
		{loadgen.ScenarioRefresh, []string{"refresh"}},
		{loadgen.ScenarioAPI, []string{"api"}},
		{loadgen.ScenarioMixed, []string{"api", "refresh"}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			cfg := s.config(tt.scenario)
			cfg.APIPerRefresh = 5
			cfg.Progress = func(p loadgen.Progress) { t.Logf("%+v", p) }
			start := time.Now()
			rep, err := loadgen.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("run took %v, want about 1.2s", took)
			}
			if rep.Stopped != loadgen.StoppedDuration {
				t.Errorf("stopped: %q, want %q", rep.Stopped, loadgen.StoppedDuration)
			}
			if rep.WindowSeconds < 1 || rep.WindowSeconds > 1.5 {
				t.Errorf("window %vs, want about 1s", rep.WindowSeconds)
			}
			if rep.Users.Created != 4 {
				t.Errorf("users created: %d, want 4", rep.Users.Created)
			}
			if rep.Total.ErrorCount != 0 {
				t.Errorf("errors: %v", rep.Total.Errors)
			}
			var sum int64
			for _, name := range tt.ops {
				st, ok := rep.Ops[name]
				if !ok || st.Count == 0 {
					t.Fatalf("no %s requests: %+v", name, rep.Ops)
				}
				if st.P50MS <= 0 || st.P50MS > st.P90MS || st.P90MS > st.P99MS || st.P99MS > st.MaxMS {
					t.Errorf("%s latencies out of order: %+v", name, st)
				}
				sum += st.Count
			}
			// The workers logged in during the warm-up, so only the
			// scenario's operations are measured.
			if len(rep.Ops) != len(tt.ops) {
				t.Errorf("ops %v, want only %v", keys(rep.Ops), tt.ops)
			}
			if rep.Total.Count != sum {
				t.Errorf("total %d, want the sum %d", rep.Total.Count, sum)
			}
			if tt.scenario == loadgen.ScenarioMixed {
				// 5 API calls per refresh, give or take the cycles cut by
				// the window's edges.
				api, refresh := rep.Ops["api"].Count, rep.Ops["refresh"].Count
				if api < 5*(refresh-8) || api > 5*(refresh+8) {
					t.Errorf("mixed: %d API calls for %d refreshes, want 5 per refresh", api, refresh)
				}
			}
			var text bytes.Buffer
			rep.WriteText(&text)
			if !strings.Contains(text.String(), "p99 ms") || !strings.Contains(text.String(), tt.ops[0]) {
				t.Errorf("text report:\n%s", text.String())
			}
		})
	}
}

// TestRequests stops after exactly the requested number of measured
// requests, and a warm-up's requests are not among them.
func TestRequests(t *testing.T) {
	s := newStack(t, testenv.Options{})
	cfg := s.config(loadgen.ScenarioRefresh)
	cfg.Duration, cfg.Requests = 0, 137
	rep, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != loadgen.StoppedRequests || rep.Total.Count != 137 || rep.Ops["refresh"].Count != 137 {
		t.Fatalf("stopped %q after %d requests (%+v), want requests after 137", rep.Stopped, rep.Total.Count, rep.Ops)
	}
	if rep.Total.ErrorCount != 0 {
		t.Fatalf("errors: %v", rep.Total.Errors)
	}
}

// TestInterrupted: a cancelled context ends the run at once, with a report.
func TestInterrupted(t *testing.T) {
	s := newStack(t, testenv.Options{})
	cfg := s.config(loadgen.ScenarioRefresh)
	cfg.Duration, cfg.Warmup, cfg.MaxDuration = time.Minute, 0, 2*time.Minute
	// Long enough for the users' setup (password hashes) and a few
	// requests on a busy CI machine; the point is that the run ends soon
	// after its context, far before its one-minute duration.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("interrupted run took %v", took)
	}
	if rep.Stopped != loadgen.StoppedInterrupted || rep.Total.Count == 0 || rep.Total.ErrorCount != 0 {
		t.Errorf("stopped %q, %d requests, errors %v", rep.Stopped, rep.Total.Count, rep.Total.Errors)
	}
}

// TestMaxDuration: the hard cap ends a run whatever its request count.
func TestMaxDuration(t *testing.T) {
	s := newStack(t, testenv.Options{})
	cfg := s.config(loadgen.ScenarioRefresh)
	cfg.Duration, cfg.Requests, cfg.Warmup, cfg.MaxDuration = 0, 1<<40, 0, 800*time.Millisecond
	rep, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != loadgen.StoppedCap || rep.WindowSeconds > 1 {
		t.Errorf("stopped %q after %vs, want max-duration within 0.8s", rep.Stopped, rep.WindowSeconds)
	}
}

// TestThrottled: the default rate limits answer 429 to a login benchmark;
// the report shows them as errors and says why.
func TestThrottled(t *testing.T) {
	// Three logins per IP, then none for an hour: the run meets the limit
	// after a fixed number of requests, however fast the machine is (with
	// the default policy and a 1 s run, a slow machine never reached it).
	pol := ratelimit.DefaultPolicy()
	pol.LoginPerIP = ratelimit.Bucket{Every: time.Hour, Burst: 3}
	th, err := ratelimit.New(ratelimit.NewMemory(), pol)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, testenv.Options{API: func(c *httpapi.Config) { c.Throttle = th }})
	cfg := s.config(loadgen.ScenarioLogin)
	cfg.Warmup = 0
	cfg.Duration = 0
	cfg.Requests = 12
	rep, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Ops["login"].Errors["429 too_many_requests"]; got < 12-3 {
		t.Fatalf("no 429 among the errors: %+v", rep.Ops["login"])
	}
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "--rate-limit=false") {
		t.Errorf("notes: %q", rep.Notes)
	}
}

// TestSetupErrors: an unreachable server or a missing --api fails before
// any load, with a message that says what to do.
func TestSetupErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name string
		cfg  loadgen.Config
		want string
	}{
		{"server down", loadgen.Config{Scenario: "refresh", Target: down}, "connection refused"},
		{"api without --api", loadgen.Config{Scenario: "api", Target: down}, "--api"},
		{"unknown scenario", loadgen.Config{Scenario: "logon", Target: down}, "unknown scenario"},
		{"over the cap", loadgen.Config{Scenario: "login", Target: down, Duration: time.Hour}, "--max-duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := loadgen.Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v (report %v), want one mentioning %q", err, rep, tt.want)
			}
		})
	}
}

// TestJSON: the JSON report parses back, with the documented fields.
func TestJSON(t *testing.T) {
	s := newStack(t, testenv.Options{})
	cfg := s.config(loadgen.ScenarioMixed)
	cfg.Duration, cfg.Warmup = 1500*time.Millisecond, 0 // a few requests even on a busy machine
	rep, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Scenario string `json:"scenario"`
		Config   struct {
			Concurrency   int `json:"concurrency"`
			APIPerRefresh int `json:"api_per_refresh"`
		} `json:"config"`
		Ops map[string]struct {
			Count  int64            `json:"count"`
			RPS    float64          `json:"rps"`
			P99    float64          `json:"p99_ms"`
			Errors map[string]int64 `json:"errors"`
		} `json:"ops"`
		Total struct {
			Count int64 `json:"count"`
		} `json:"total"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if got.Scenario != "mixed" || got.Config.Concurrency != 4 || got.Config.APIPerRefresh != 20 ||
		got.Ops["api"].Count == 0 || got.Ops["api"].RPS <= 0 || got.Ops["api"].P99 <= 0 || got.Total.Count == 0 {
		t.Errorf("JSON report:\n%s", buf.String())
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
