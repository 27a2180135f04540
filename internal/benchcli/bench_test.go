package benchcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/benchcli"
	"github.com/latchauth/latch/internal/cli"
	"github.com/latchauth/latch/internal/testenv"
)

func bench(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = benchcli.Run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

type server struct{ url string }

// startServer runs `latch serve` in process on a fresh SQLite database
// and returns once it listens.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	db := filepath.Join(t.TempDir(), "latch.db")
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.LogBuffer{}
	done := make(chan error, 1)
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--database", "sqlite:" + db,
		"--argon2-memory", "8192", "--argon2-iterations", "1"}, extra...)
	go func() { done <- cli.Run(ctx, args, strings.NewReader(""), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &server{url: testenv.WaitServing(t, logs, done)}
}

// TestBench runs `latch-bench` against the in-process `latch serve`: a
// duration-bounded refresh run in JSON, and a request-bounded login run
// as a table, with the target from its environment twin.
func TestBench(t *testing.T) {
	s := startServer(t, "--rate-limit=false")

	start := time.Now()
	out, errOut, err := bench(t, "refresh", "--target", s.url, "-c", "4", "--duration", "1s", "--warmup", "200ms", "--json")
	if err != nil {
		t.Fatalf("bench refresh: %v\n%s\n%s", err, errOut, out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a 1s run took %v", took)
	}
	var rep struct {
		Scenario      string  `json:"scenario"`
		Stopped       string  `json:"stopped"`
		WindowSeconds float64 `json:"window_seconds"`
		Config        struct {
			Concurrency int    `json:"concurrency"`
			Duration    string `json:"duration"`
		} `json:"config"`
		Ops map[string]struct {
			Count      int64   `json:"count"`
			ErrorCount int64   `json:"error_count"`
			RPS        float64 `json:"rps"`
			P50        float64 `json:"p50_ms"`
			P99        float64 `json:"p99_ms"`
			Max        float64 `json:"max_ms"`
		} `json:"ops"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	r := rep.Ops["refresh"]
	if rep.Scenario != "refresh" || rep.Stopped != "duration" || rep.Config.Concurrency != 4 || rep.Config.Duration != "1s" ||
		rep.WindowSeconds < 1 || rep.WindowSeconds > 1.5 || r.Count == 0 || r.ErrorCount != 0 || r.RPS <= 0 || r.P50 <= 0 || r.P99 > r.Max {
		t.Fatalf("report:\n%s", out)
	}

	t.Setenv("LATCH_BENCH_TARGET", s.url)
	out, errOut, err = bench(t, "login", "--requests", "30", "-c", "3", "--warmup", "0")
	if err != nil {
		t.Fatalf("bench login: %v\n%s", err, errOut)
	}
	for _, want := range []string{"latch-bench login: 3 workers, 3 users, target " + s.url, "stopped: requests", "p99 ms", "login  30  0"} {
		if !strings.Contains(strings.Join(strings.Fields(out), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no scenario", nil, "one scenario"},
		{"two scenarios", []string{"login", "refresh"}, "one scenario"},
		{"bad flag", []string{"login", "--concurrency", "many"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, err := bench(t, tt.args...)
			if !errors.Is(err, benchcli.ErrUsage) || !strings.Contains(err.Error()+errOut, tt.want) {
				t.Fatalf("err %v, stderr %q; want a usage error mentioning %q", err, errOut, tt.want)
			}
		})
	}
	t.Run("unknown scenario", func(t *testing.T) {
		if _, _, err := bench(t, "logon", "--target", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("help", func(t *testing.T) {
		if _, errOut, err := bench(t, "-h"); err != nil || !strings.Contains(errOut, "LATCH_BENCH_TARGET") {
			t.Fatalf("err %v, stderr %q", err, errOut)
		}
	})
}

// TestBenchFailsOnErrors is the exit status a script relies on: a run in
// which more than --max-error-rate of the requests failed is an error
// (before, 101 failures in 131 requests exited 0).
func TestBenchFailsOnErrors(t *testing.T) {
	s := startServer(t, "--rate-limit=false")
	// A first run creates the accounts; a second run with the same id
	// and another password reuses them, so every measured login fails.
	if _, errOut, err := bench(t, "login", "--target", s.url, "--requests", "4", "-c", "2", "--warmup", "0", "--run-id", "errs"); err != nil {
		t.Fatalf("first run: %v\n%s", err, errOut)
	}
	_, errOut, err := bench(t, "login", "--target", s.url, "--requests", "10", "-c", "2", "--warmup", "0", "--run-id", "errs", "--password", "not the accounts' password")
	if err == nil || !strings.Contains(err.Error(), "10 of 10 requests failed") {
		t.Fatalf("err %v (stderr %q), want a failed run", err, errOut)
	}
	if errors.Is(err, benchcli.ErrUsage) || benchcli.ExitCode(err) != 1 {
		t.Fatalf("err %v: exit code %d, want 1", err, benchcli.ExitCode(err))
	}
	// The same run passes when the operator allows every request to fail.
	if _, errOut, err := bench(t, "login", "--target", s.url, "--requests", "4", "-c", "2", "--warmup", "0", "--run-id", "errs", "--password", "not the accounts' password", "--max-error-rate", "1"); err != nil {
		t.Fatalf("--max-error-rate 1: %v\n%s", err, errOut)
	}
}
