// Package loadgen drives load against a running Latch server, and for the
// API scenarios against a resource server protected by bearer: virtual
// clients log in, refresh following rotation, and call the API, while every
// request's latency goes into per-operation histograms. It is the engine of
// `latch-bench`; the command only parses flags and prints the [Report].
//
// A run is always bounded: by a measured duration or a request count, and
// by a hard cap on the whole run, and it stops when its context is done,
// still returning the report of what it measured.
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scenarios.
const (
	// ScenarioLogin loops POST /v1/login for each worker's user.
	ScenarioLogin = "login"
	// ScenarioRefresh logs in once per worker, then loops the refresh_token
	// grant, keeping only the newest refresh token.
	ScenarioRefresh = "refresh"
	// ScenarioAPI logs in once per worker, then loops GET {api}/notes with
	// the same access token, refreshing it when it nears expiry.
	ScenarioAPI = "api"
	// ScenarioMixed is a realistic app: per access token, APIPerRefresh API
	// calls and then one refresh.
	ScenarioMixed = "mixed"
)

// Scenarios lists the scenario names.
var Scenarios = []string{ScenarioLogin, ScenarioRefresh, ScenarioAPI, ScenarioMixed}

// DefaultPassword is the bench users' password unless Config.Password is
// set; it passes Latch's password policy.
const DefaultPassword = "latch bench load test password"

// Config describes a run. Zero values take the defaults documented on each
// field.
type Config struct {
	Scenario string
	// Target is Latch's base URL, such as http://127.0.0.1:8080.
	Target string
	// API is the base URL of a bearer-protected resource server answering
	// GET /notes (examples/notes-api); required by the api and mixed
	// scenarios.
	API string
	// Concurrency is the number of workers (virtual clients), each with
	// one request in flight (default 16).
	Concurrency int
	// Duration is the measured time after the warm-up. Requests, if set,
	// stops the run after that many measured requests. With neither set
	// Duration is 10s; with both, the first reached stops the run.
	Duration time.Duration
	Requests int64
	// Warmup runs the load unmeasured first (0: none).
	Warmup time.Duration
	// MaxDuration caps the whole run, setup included (default 5m).
	MaxDuration time.Duration
	// Users is the number of accounts, shared round-robin by the workers
	// (default Concurrency).
	Users int
	// RunID names the accounts, bench-<RunID>-<i>@bench.invalid (default
	// random): a run given an earlier run's id reuses its accounts.
	RunID    string
	Password string // default DefaultPassword
	ClientID string // OAuth client the workers log in with (default "app")
	// APIPerRefresh is the mixed scenario's API calls per refresh
	// (default 20).
	APIPerRefresh int
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// HTTPClient replaces the client built from Concurrency and Timeout.
	HTTPClient *http.Client
	// Progress, when set, is called about once a second from one
	// goroutine while the run lasts.
	Progress func(Progress)
}

// Progress is a snapshot of a running benchmark.
type Progress struct {
	Phase   string        // "setup", "warm-up" or "measuring"
	Elapsed time.Duration // since the run started
	Ops     int64         // requests completed in the phase
	Rate    float64       // requests per second over the last interval
	Errors  int64         // failed requests in the phase
}

func (c *Config) setDefaults() error {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Requests == 0 {
		def(&c.Duration, 10*time.Second)
	}
	def(&c.MaxDuration, 5*time.Minute)
	def(&c.Timeout, 10*time.Second)
	if c.Users == 0 {
		c.Users = c.Concurrency
	}
	if c.Password == "" {
		c.Password = DefaultPassword
	}
	if c.ClientID == "" {
		c.ClientID = "app"
	}
	if c.APIPerRefresh == 0 {
		c.APIPerRefresh = 20
	}
	if c.RunID == "" {
		b := make([]byte, 4)
		rand.Read(b)
		c.RunID = hex.EncodeToString(b)
	}
	c.Target = strings.TrimRight(c.Target, "/")
	c.API = strings.TrimRight(c.API, "/")
	switch {
	case !slices.Contains(Scenarios, c.Scenario):
		return fmt.Errorf("loadgen: unknown scenario %q (want %s)", c.Scenario, strings.Join(Scenarios, ", "))
	case c.Target == "":
		return errors.New("loadgen: no target URL")
	case (c.Scenario == ScenarioAPI || c.Scenario == ScenarioMixed) && c.API == "":
		return fmt.Errorf("loadgen: scenario %s needs the resource server's URL (--api)", c.Scenario)
	case c.Concurrency < 1 || c.Users < 1 || c.APIPerRefresh < 1:
		return errors.New("loadgen: concurrency, users and API calls per refresh must be at least 1")
	case c.Duration < 0 || c.Requests < 0 || c.Warmup < 0 || c.MaxDuration < 0 || c.Timeout < 0:
		return errors.New("loadgen: durations and counts must not be negative")
	case c.Warmup+c.Duration > c.MaxDuration:
		return fmt.Errorf("loadgen: warm-up %v plus duration %v exceed the hard cap %v (--max-duration)", c.Warmup, c.Duration, c.MaxDuration)
	}
	return nil
}

// Stop reasons, in Report.Stopped.
const (
	StoppedDuration    = "duration"
	StoppedRequests    = "requests"
	StoppedInterrupted = "interrupted"
	StoppedCap         = "max-duration"
)

type op int

const (
	opLogin op = iota
	opRefresh
	opAPI
	numOps
)

var opNames = [numOps]string{"login", "refresh", "api"}

// runner is one run's shared state.
type runner struct {
	cfg    Config
	c      *client
	emails []string

	start, measureStart time.Time

	tickets   atomic.Int64 // measured requests started (Requests mode)
	completed atomic.Int64 // measured requests completed or failed
	errCount  atomic.Int64 // measured failures
	warmOps   atomic.Int64
	warmErrs  atomic.Int64

	mu      sync.Mutex
	stopAt  time.Time // set once, before cancel
	stopped string
	cancel  context.CancelFunc
}

// stop ends the load at t for reason; the first call wins.
func (r *runner) stop(reason string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped != "" {
		return
	}
	r.stopAt, r.stopped = t, reason
	r.cancel()
}

func (r *runner) stopTime() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopAt
}

// Run creates the accounts, runs the scenario and returns its report. It
// returns an error without a report when the configuration is invalid or
// the setup fails (the server unreachable, signups refused); once the load
// has started it always returns the report, also when ctx is done.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, start: time.Now()}
	r.c = &client{hc: cfg.HTTPClient, target: cfg.Target, api: cfg.API, clientID: cfg.ClientID}
	if r.c.hc == nil {
		r.c.hc = newHTTPClient(cfg.Concurrency, cfg.Timeout)
		defer r.c.hc.CloseIdleConnections()
	}
	capped, cancelCap := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancelCap()

	var setupDone atomic.Int64
	progressDone := make(chan struct{})
	stopProgress := r.progress(progressDone, &setupDone)
	defer stopProgress()

	created, existing, err := r.setup(capped, &setupDone)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("loadgen: interrupted during setup: %w", ctx.Err())
		}
		return nil, err
	}

	loadCtx, cancel := context.WithCancel(capped)
	defer cancel()
	r.cancel = cancel
	r.measureStart = time.Now().Add(cfg.Warmup)
	close(progressDone) // setup over: the ticker reports the load
	go r.watch(ctx, capped, loadCtx)

	workers := make([]*worker, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(r, r.emails[i%len(r.emails)])
		workers[i] = w
		wg.Go(func() { w.run(loadCtx) })
	}
	wg.Wait()
	r.stop(StoppedInterrupted, time.Now()) // no-op unless every worker quit on its own
	stopProgress()
	rep := r.report(workers)
	rep.Users = UsersStats{Created: created, Existing: existing}
	return rep, nil
}

// watch stops the load at the end of the measured duration, or when the
// run is interrupted or hits its cap. Requests mode stops from the worker
// that completes the last request.
func (r *runner) watch(parent, capped, load context.Context) {
	var timeout <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(time.Until(r.measureStart.Add(r.cfg.Duration)))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case now := <-timeout:
		r.stop(StoppedDuration, now)
	case <-capped.Done():
		reason := StoppedCap
		if parent.Err() != nil {
			reason = StoppedInterrupted
		}
		r.stop(reason, time.Now())
	case <-load.Done():
	}
}

// progress calls cfg.Progress once a second until the returned function is
// called; setupDone counts accounts ready while setupOver is open.
func (r *runner) progress(setupOver <-chan struct{}, setupDone *atomic.Int64) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastOps int64
		var lastPhase string
		last := time.Now()
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				p := Progress{Elapsed: now.Sub(r.start)}
				select {
				case <-setupOver:
					if now.Before(r.measureStart) {
						p.Phase, p.Ops, p.Errors = "warm-up", r.warmOps.Load(), r.warmErrs.Load()
					} else {
						p.Phase, p.Ops, p.Errors = "measuring", r.completed.Load(), r.errCount.Load()
					}
				default:
					p.Phase, p.Ops = "setup", setupDone.Load()
				}
				if p.Phase != lastPhase {
					lastOps, lastPhase = 0, p.Phase
				}
				p.Rate = float64(p.Ops-lastOps) / now.Sub(last).Seconds()
				lastOps, last = p.Ops, now
				r.cfg.Progress(p)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-finished }) }
}

// setup creates the accounts, Concurrency at a time.
func (r *runner) setup(ctx context.Context, done *atomic.Int64) (created, existing int, err error) {
	r.emails = make([]string, r.cfg.Users)
	for i := range r.emails {
		r.emails[i] = fmt.Sprintf("bench-%s-%d@bench.invalid", r.cfg.RunID, i)
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, email := range r.emails {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			existed, err := r.c.signup(ctx, email, r.cfg.Password)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("loadgen: setup: sign up %s at %s: %s%s", email, r.cfg.Target, kindOf(err), hint(kindOf(err))))
			case existed:
				existing++
			default:
				created++
			}
			done.Add(1)
		})
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return created, existing, errs[0]
	}
	return created, existing, ctx.Err()
}

func hint(kind string) string {
	switch {
	case strings.HasPrefix(kind, "429"):
		return " (the server throttles signups per IP: benchmark a server started with --rate-limit=false)"
	case kind == "connection refused":
		return " (is latch serve running there? --target)"
	}
	return ""
}
