package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/httpapi"
	"github.com/latchauth/latch/internal/metrics"
	"github.com/latchauth/latch/internal/password"
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
				succ, err := refreshOnce(client, srv.URL, rt)
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
				rt = succ
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	testenv.ReportLatency(b, lat, elapsed, "refresh/s")
}

// BenchmarkLoginHTTP measures POST /v1/login end to end over loopback HTTP
// (SQLite, metrics on, no throttle, as latch-bench runs against a node
// with --rate-limit=false) next to bare Argon2id hashes with the same
// parameters and concurrency, in the same run: the hasher has slots
// hashing slots, the bare hashes run on as many goroutines, and twice as
// many HTTP clients keep every slot busy while other logins are in the
// database. ratio is logins/s over hashes/s: what a login adds to its
// hash. slots=GOMAXPROCS is what latch serve runs by default
// (password.Slots), 2×GOMAXPROCS what it ran before. gc=default is the Go
// runtime's GOGC=100 without a memory limit, gc=memory-limit the soft
// limit latch serve sets (password.MemoryLimit). gc-cpu-% is the
// collector's share of the busy CPU during the logins; go-mem-peak-MiB the
// most memory the runtime held from the OS (sampled every 5 ms; the test's
// own heap counts too):
//
//	go test -run '^$' -bench LoginHTTP -benchtime 96x ./internal/httpapi
func BenchmarkLoginHTTP(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	for _, slots := range []int{procs, 2 * procs} {
		for _, gc := range []string{"default", "memory-limit"} {
			if slots != procs && gc != "default" {
				continue
			}
			b.Run(fmt.Sprintf("slots=%d/gc=%s", slots, gc), func(b *testing.B) {
				limit := int64(math.MaxInt64)
				if gc == "memory-limit" {
					limit = password.MemoryLimit(password.OWASP, slots)
				}
				defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit))
				benchLoginHTTP(b, slots)
			})
		}
	}
}

func benchLoginHTTP(b *testing.B, slots int) {
	clients := 2 * slots
	m := metrics.New()
	env := testenv.New(b, testenv.Options{RealClock: true, Argon2: password.OWASP, HashSlots: slots, Observer: m,
		WrapStore: func(s session.Store) session.Store { return m.TimeStore(s) },
		API:       func(c *httpapi.Config) { c.Observer = m; c.Metrics = m.Handler() }})
	srv := httptest.NewServer(env.Handler)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	bodies := make([]string, clients)
	for i := range bodies {
		email := fmt.Sprintf("l%d@example.com", i)
		env.Login(b, email)
		body, _ := json.Marshal(map[string]string{"email": email, "password": testenv.Password, "client_id": "app"})
		bodies[i] = string(body)
	}
	// The bare hash, as many at once as the hasher allows.
	h, err := password.NewHasher(password.OWASP, slots)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	enc, _ := h.Hash(ctx, "", testenv.Password)
	login := func(i int) error {
		resp, err := client.Post(srv.URL+"/v1/login", "application/json", strings.NewReader(bodies[i]))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("login: %d %v", resp.StatusCode, err)
		}
		return nil
	}
	hash := func(int) error { return h.Verify(ctx, "", testenv.Password, enc) }
	// run does n operations on workers goroutines and returns how long
	// they took.
	run := func(n, workers int, op func(i int) error) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for i := range workers {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if err := op(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	runtime.GC()
	peak := watchHeap(b)
	b.ResetTimer()
	// Logins and bare hashes alternate in rounds of about half a second
	// each, so that both see the same machine: on a shared one, load from
	// elsewhere comes and goes within a run.
	var loginTime, hashTime time.Duration
	var gc cpuTimes
	var loginUse, hashUse rusage
	round := 16 * slots
	for done := 0; done < b.N; done += round {
		n := min(round, b.N-done)
		t0, r0 := gcCPU(), usage()
		loginTime += run(n, clients, login)
		gc = gc.add(gcCPU().sub(t0))
		r1 := usage()
		loginUse = loginUse.add(r1.sub(r0))
		hashTime += run(n, slots, hash)
		hashUse = hashUse.add(usage().sub(r1))
	}
	b.StopTimer()
	held := peak()
	logins := float64(b.N) / loginTime.Seconds()
	hashes := float64(b.N) / hashTime.Seconds()
	b.ReportMetric(logins, "logins/s")
	b.ReportMetric(hashes, "hashes/s")
	b.ReportMetric(logins/hashes, "ratio")
	b.ReportMetric(100*gc.gc/gc.total, "gc-cpu-%")
	b.ReportMetric(float64(loginUse.faults)/float64(b.N), "faults/login")
	b.ReportMetric(float64(hashUse.faults)/float64(b.N), "faults/hash")
	b.ReportMetric(loginUse.cpu.Seconds()*1000/float64(b.N), "cpu-ms/login")
	b.ReportMetric(hashUse.cpu.Seconds()*1000/float64(b.N), "cpu-ms/hash")
	// The ratio a CPU-bound node reaches whatever else runs on the machine.
	b.ReportMetric(float64(hashUse.cpu)/float64(loginUse.cpu), "cpu-ratio")
	b.ReportMetric(float64(held)/(1<<20), "go-mem-peak-MiB")
}

type cpuTimes struct{ gc, total float64 }

func (a cpuTimes) sub(b cpuTimes) cpuTimes { return cpuTimes{a.gc - b.gc, a.total - b.total} }
func (a cpuTimes) add(b cpuTimes) cpuTimes { return cpuTimes{a.gc + b.gc, a.total + b.total} }

// rusage is the process's CPU time (user and system) and minor page
// faults: a page the kernel maps and zeroes on first touch, as for memory
// the runtime returned to the OS and allocates again.
type rusage struct {
	cpu    time.Duration
	faults int64
}

func usage() rusage {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return rusage{time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt}
}

func (a rusage) sub(b rusage) rusage { return rusage{a.cpu - b.cpu, a.faults - b.faults} }
func (a rusage) add(b rusage) rusage { return rusage{a.cpu + b.cpu, a.faults + b.faults} }

// gcCPU reads the collector's and the process's busy CPU time so far.
func gcCPU() cpuTimes {
	s := []rtmetrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/total:cpu-seconds"}, {Name: "/cpu/classes/idle:cpu-seconds"}}
	rtmetrics.Read(s)
	return cpuTimes{s[0].Value.Float64(), s[1].Value.Float64() - s[2].Value.Float64()}
}

// watchHeap samples the memory the Go runtime holds from the OS (mapped,
// not released: what counts towards RSS and the memory limit) every 5 ms
// until the returned function, which stops it and reports the largest.
func watchHeap(b *testing.B) (peak func() uint64) {
	s := []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	var max atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			rtmetrics.Read(s)
			if v := s[0].Value.Uint64() - s[1].Value.Uint64(); v > max.Load() {
				max.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { close(done); <-stopped }) }
	b.Cleanup(stop)
	return func() uint64 { stop(); return max.Load() }
}
