package benchcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/latchauth/latch/internal/loadgen"
)

const benchUsage = `Usage: latch-bench SCENARIO [flags]

Load-test a running Latch (and, for api and mixed, a resource server protected
by bearer, such as examples/notes-api). Scenarios:
  login     each worker logs in again and again (POST /v1/login)
  refresh   each worker logs in once, then refreshes, following rotation
  api       each worker logs in once, then calls GET {api}/notes with its
            access token, refreshing it near expiry
  mixed     a realistic app: per access token, --api-per-refresh API calls
            and one refresh
  tradeoffs the measurements behind docs/tradeoffs.md ("latch-bench
            tradeoffs -h")

Reports requests/s, p50/p90/p99/max latency and errors by kind per operation,
and exits with status 1 when more than --max-error-rate of the measured
requests failed, so a script or CI job notices a broken run.
A run is bounded by --duration or --requests and by --max-duration; Ctrl-C
stops it and still prints the report. Start the server with
--rate-limit=false, or logins, refreshes and signups are throttled (429).
Every flag has an environment twin prefixed LATCH_BENCH_: --target is
LATCH_BENCH_TARGET.

Flags:
`

func runBench(ctx context.Context, args []string, s io2) error {
	if len(args) > 0 && args[0] == "tradeoffs" {
		return runTradeoffs(ctx, args[1:], s)
	}
	fs := newFlags("", s)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Target, "target", defaultTarget, "Latch's base URL")
	fs.StringVar(&cfg.API, "api", "", "resource server's base URL, for api and mixed (examples/notes-api: http://127.0.0.1:8081)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 16, "workers (virtual clients), each with one request in flight")
	fs.IntVar(&cfg.Concurrency, "c", 16, "short for --concurrency")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time after the warm-up")
	fs.Int64Var(&cfg.Requests, "requests", 0, "stop after this many measured requests instead (with --duration too: whichever comes first)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured load first (logins, connections, caches)")
	fs.DurationVar(&cfg.MaxDuration, "max-duration", 5*time.Minute, "hard cap on the whole run, setup included")
	fs.IntVar(&cfg.Users, "users", 0, "accounts to sign up, shared by the workers (default: --concurrency)")
	fs.StringVar(&cfg.Password, "password", loadgen.DefaultPassword, "the accounts' password")
	fs.StringVar(&cfg.RunID, "run-id", "", "names the accounts bench-ID-N@bench.invalid; an earlier run's id reuses its accounts (default random)")
	fs.StringVar(&cfg.ClientID, "client-id", defaultClientID, "OAuth client to log in with (its audience must be the API's for api and mixed)")
	fs.IntVar(&cfg.APIPerRefresh, "api-per-refresh", 20, "mixed: API calls per refresh (per access-token lifetime)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	asJSON := fs.Bool("json", false, "print one JSON document instead of the table")
	maxErrRate := fs.Float64("max-error-rate", 0.01, "fail (exit 1) when more than this fraction of measured requests failed; 1 never fails")
	fs.Usage = func() {
		fmt.Fprint(s.stderr, benchUsage)
		fs.PrintDefaults()
	}
	rest, set, err := parseBench(fs, args)
	if err != nil {
		return err
	}
	if *maxErrRate < 0 || *maxErrRate > 1 {
		return fmt.Errorf("%w: --max-error-rate %v: want a fraction from 0 to 1", ErrUsage, *maxErrRate)
	}
	if len(rest) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: bench takes one scenario (%s), got %q", ErrUsage, strings.Join(loadgen.Scenarios, ", "), rest)
	}
	cfg.Scenario = rest[0]
	if set["requests"] && !set["duration"] {
		cfg.Duration = 0
	}
	if f, ok := s.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = func(p loadgen.Progress) {
			fmt.Fprintf(s.stderr, "\r%-60s", fmt.Sprintf("%5.0fs  %-9s  %d requests  %.0f/s  %d errors",
				p.Elapsed.Seconds(), p.Phase, p.Ops, p.Rate, p.Errors))
		}
	}
	rep, err := loadgen.Run(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprintf(s.stderr, "\r%60s\r", "")
	}
	if err != nil {
		return err
	}
	if *asJSON {
		err = rep.WriteJSON(s.stdout)
	} else {
		err = rep.WriteText(s.stdout)
	}
	if err != nil {
		return err
	}
	return checkErrors(rep.Total.Count, rep.Total.ErrorCount, *maxErrRate)
}

// checkErrors fails a run whose error share exceeds maxRate, and a run that
// measured nothing at all.
func checkErrors(count, failed int64, maxRate float64) error {
	if count == 0 {
		return errors.New("bench: no request was measured")
	}
	if float64(failed) > maxRate*float64(count) {
		return fmt.Errorf("bench: %d of %d requests failed (%.1f%%), more than --max-error-rate %.1f%%",
			failed, count, 100*float64(failed)/float64(count), 100*maxRate)
	}
	return nil
}

// parseBench parses flags and positional arguments in any order, then
// fills each flag not given from its LATCH_BENCH_ twin. It returns the
// positional arguments and the names of the flags set either way.
func parseBench(fs *flag.FlagSet, args []string) ([]string, map[string]bool, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, nil, errHelpShown
			}
			return nil, nil, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		if args = fs.Args(); len(args) == 0 {
			break
		}
		positional, args = append(positional, args[0]), args[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["c"] {
		set["concurrency"] = true
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || len(f.Name) == 1 {
			return
		}
		name := "LATCH_BENCH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			set[f.Name] = true
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return positional, set, nil
}
