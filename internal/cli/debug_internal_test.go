package cli

import (
	"io"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/config"
	"github.com/latchauth/latch/internal/password"
)

// TestDebugServer: the profiler answers on loopback only, never shows the
// command line (which may hold --key-encryption-key or a database
// password), and refuses a request for another host name, so a web page
// that rebinds its name to 127.0.0.1 cannot read it from a browser on the
// same machine.
func TestDebugServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if stop, _, err := serveDebug("0.0.0.0:0", log); err == nil {
		stop()
		t.Fatal("serveDebug listened on every interface")
	}
	stop, addr, err := serveDebug("localhost:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get := func(host, path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	port := addr[strings.LastIndexByte(addr, ':'):]
	tests := []struct {
		host, path string
		want       int
	}{
		{addr, "/debug/pprof/", http.StatusOK},
		{"localhost" + port, "/debug/pprof/goroutine?debug=1", http.StatusOK},
		{"[::1]" + port, "/debug/pprof/heap", http.StatusOK},
		{addr, "/debug/pprof/cmdline", http.StatusNotFound},
		{"rebound.example" + port, "/debug/pprof/", http.StatusForbidden},
		{"rebound.example" + port, "/debug/pprof/heap", http.StatusForbidden},
	}
	for _, tt := range tests {
		if got := get(tt.host, tt.path); got != tt.want {
			t.Errorf("GET %s with Host %s: %d, want %d", tt.path, tt.host, got, tt.want)
		}
	}
}

// TestEnvMemoryLimit: GOMEMLIMIT replaces serve's limit only when it says
// something; empty is unset to the runtime, so serve's limit still applies.
func TestEnvMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		val  string
		want bool
	}{{"", false}, {"off", true}, {"200MiB", true}} {
		t.Setenv("GOMEMLIMIT", tt.val)
		if got := envMemoryLimit(); got != tt.want {
			t.Errorf("GOMEMLIMIT=%q: envMemoryLimit() = %v, want %v", tt.val, got, tt.want)
		}
	}
}

// TestSetGC: serve raises GOGC to serveGCPercent only while a memory limit
// bounds the heap and GOGC is unset; a GOGC the user set wins, and so does
// GOMEMLIMIT=off (no limit, so no higher GOGC). Everything is restored.
func TestSetGC(t *testing.T) {
	c := &config.Config{Argon2: password.OWASP}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64)) // as GOMEMLIMIT=off leaves it
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tt := range []struct {
		gogc, memlimit string
		wantPercent    int
		wantLimit      bool
	}{
		{"", "", serveGCPercent, true},
		{"150", "", 100, true},
		{"off", "", 100, true},
		{"", "off", 100, false},
		{"150", "off", 100, false},
	} {
		t.Setenv("GOGC", tt.gogc)
		t.Setenv("GOMEMLIMIT", tt.memlimit)
		restore := setGC(c)
		if got := gcPercent(); got != tt.wantPercent {
			t.Errorf("GOGC=%q GOMEMLIMIT=%q: GOGC %d, want %d", tt.gogc, tt.memlimit, got, tt.wantPercent)
		}
		if got := memoryLimitMiB() > 0; got != tt.wantLimit {
			t.Errorf("GOGC=%q GOMEMLIMIT=%q: memory limit %d MiB", tt.gogc, tt.memlimit, memoryLimitMiB())
		}
		restore()
		if gcPercent() != 100 || memoryLimitMiB() != 0 {
			t.Errorf("GOGC=%q GOMEMLIMIT=%q: not restored: GOGC %d, limit %d MiB", tt.gogc, tt.memlimit, gcPercent(), memoryLimitMiB())
		}
	}
}

// TestGCPercent: the logged GOGC is the collector's, off included, and
// reading it does not change it.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, want := range []int{100, 400, 50, -1} {
		debug.SetGCPercent(want)
		if got := gcPercent(); got != want {
			t.Errorf("GOGC %d: gcPercent() = %d", want, got)
		}
		if got := debug.SetGCPercent(want); got != want {
			t.Errorf("GOGC %d: after gcPercent() it is %d", want, got)
		}
	}
}

// TestConnMemoryLimit: the limit allows every open connection, and the
// next band of them, in steps of connStep.
func TestConnMemoryLimit(t *testing.T) {
	const base = 100 << 20
	for _, tt := range []struct {
		open int
		want int64
	}{
		{0, base + connStep*ConnMemory},
		{connStep - 1, base + connStep*ConnMemory},
		{connStep, base + 2*connStep*ConnMemory},
		{10 * connStep, base + 11*connStep*ConnMemory},
	} {
		got := connMemoryLimit(base, tt.open)
		if got != tt.want {
			t.Errorf("%d open: limit %d, want %d", tt.open, got, tt.want)
		}
		if got < base+int64(tt.open)*ConnMemory {
			t.Errorf("%d open: limit %d below what they hold", tt.open, got)
		}
	}
}
