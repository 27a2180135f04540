package cli

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
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
