package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a run's result. Its JSON form is stable, for docs and CI
// comparisons: durations in the config are Go duration strings, latencies
// are milliseconds, times in seconds.
type Report struct {
	Scenario string       `json:"scenario"`
	Config   ReportConfig `json:"config"`
	Users    UsersStats   `json:"users"`
	// WarmupSeconds and WindowSeconds: the unmeasured start, and the
	// measured window that rates are computed over.
	WarmupSeconds float64 `json:"warmup_seconds"`
	WindowSeconds float64 `json:"window_seconds"`
	// Stopped says what ended the run: "duration", "requests",
	// "interrupted" or "max-duration".
	Stopped string `json:"stopped"`
	// Ops holds each operation's statistics, by name ("login",
	// "refresh", "api"); Total covers them all.
	Ops   map[string]OpStats `json:"ops"`
	Total OpStats            `json:"total"`
	// Notes explain what the numbers may hide (throttling, audiences).
	Notes []string `json:"notes,omitempty"`
}

// ReportConfig is the run's configuration, as run (defaults filled in).
type ReportConfig struct {
	Target        string `json:"target"`
	API           string `json:"api,omitempty"`
	Concurrency   int    `json:"concurrency"`
	Duration      string `json:"duration,omitempty"`
	Requests      int64  `json:"requests,omitempty"`
	Warmup        string `json:"warmup"`
	MaxDuration   string `json:"max_duration"`
	Users         int    `json:"users"`
	RunID         string `json:"run_id"`
	ClientID      string `json:"client_id"`
	APIPerRefresh int    `json:"api_per_refresh,omitempty"`
	Timeout       string `json:"timeout"`
}

// UsersStats counts the accounts the setup signed up and those that
// existed already (409 email_taken, from an earlier run with the same id).
type UsersStats struct {
	Created  int `json:"created"`
	Existing int `json:"existing"`
}

// OpStats are one operation's numbers over the measured window. Count
// includes failed requests; the latencies are those of successful ones
// (a fast 429 or refused connection would flatter them), computed from
// every sample of every worker, to within 0.8%, max exact.
type OpStats struct {
	Count      int64            `json:"count"`
	ErrorCount int64            `json:"error_count"`
	RPS        float64          `json:"rps"`
	MeanMS     float64          `json:"mean_ms"`
	P50MS      float64          `json:"p50_ms"`
	P90MS      float64          `json:"p90_ms"`
	P99MS      float64          `json:"p99_ms"`
	MaxMS      float64          `json:"max_ms"`
	Errors     map[string]int64 `json:"errors"`
}

func (r *runner) report(workers []*worker) *Report {
	cfg := r.cfg
	rep := &Report{
		Scenario: cfg.Scenario,
		Config: ReportConfig{
			Target: cfg.Target, API: cfg.API, Concurrency: cfg.Concurrency, Requests: cfg.Requests,
			Warmup: cfg.Warmup.String(), MaxDuration: cfg.MaxDuration.String(), Users: cfg.Users,
			RunID: cfg.RunID, ClientID: cfg.ClientID, Timeout: cfg.Timeout.String(),
		},
		WarmupSeconds: cfg.Warmup.Seconds(),
		Stopped:       r.stopped,
		Ops:           map[string]OpStats{},
	}
	if cfg.Duration > 0 {
		rep.Config.Duration = cfg.Duration.String()
	}
	if cfg.Scenario == ScenarioMixed {
		rep.Config.APIPerRefresh = cfg.APIPerRefresh
	}
	window := max(r.stopAt.Sub(r.measureStart), 0)
	rep.WindowSeconds = round(window.Seconds(), 3)

	total := newHistogram()
	var totalCount int64
	totalErrs := map[string]int64{}
	for o := range numOps {
		h := newHistogram()
		var count int64
		errs := map[string]int64{}
		for _, w := range workers {
			if w.hist[o] != nil {
				h.Merge(w.hist[o])
			}
			count += w.count[o]
			for k, n := range w.errs[o] {
				errs[k] += n
			}
		}
		if count == 0 {
			continue
		}
		rep.Ops[opNames[o]] = stats(h, count, errs, window)
		total.Merge(h)
		totalCount += count
		for k, n := range errs {
			totalErrs[k] += n
		}
	}
	rep.Total = stats(total, totalCount, totalErrs, window)
	rep.Notes = notes(rep)
	return rep
}

func stats(h *Histogram, count int64, errs map[string]int64, window time.Duration) OpStats {
	s := OpStats{Count: count, Errors: errs,
		MeanMS: ms(h.Mean()), P50MS: ms(h.Quantile(0.50)), P90MS: ms(h.Quantile(0.90)),
		P99MS: ms(h.Quantile(0.99)), MaxMS: ms(h.Max())}
	for _, n := range errs {
		s.ErrorCount += n
	}
	if window > 0 {
		s.RPS = round(float64(count)/window.Seconds(), 1)
	}
	return s
}

func notes(rep *Report) []string {
	var out []string
	has := func(prefix string) bool {
		for k := range rep.Total.Errors {
			if strings.HasPrefix(k, prefix) {
				return true
			}
		}
		return false
	}
	if has("429") {
		out = append(out, "429 too_many_requests: the server throttled the benchmark (per IP: logins 30/min, refreshes 600/min; per account: logins 100/h); benchmark a server started with --rate-limit=false")
	}
	if _, ok := rep.Ops["api"]; ok && has("401") {
		out = append(out, "401 from the API: its audience must be in the tokens; log in with a client whose audience is the API's (--client-id, see the README's Load testing)")
	}
	if has("connection refused") || has("no local port") {
		out = append(out, "transport errors: is the server up, and is the machine out of ephemeral ports (lower -c)?")
	}
	if rep.WindowSeconds == 0 {
		out = append(out, "nothing measured: the run stopped before the warm-up ended")
	}
	return out
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// WriteJSON writes the report as one indented JSON document.
func (rep *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(rep)
}

// WriteText writes the report as a table for people.
func (rep *Report) WriteText(w io.Writer) error {
	c := rep.Config
	var b strings.Builder
	fmt.Fprintf(&b, "latch-bench %s: %d workers, %d users, target %s", rep.Scenario, c.Concurrency, c.Users, c.Target)
	if c.API != "" {
		fmt.Fprintf(&b, ", api %s", c.API)
	}
	if c.APIPerRefresh > 0 {
		fmt.Fprintf(&b, ", %d API calls per refresh", c.APIPerRefresh)
	}
	fmt.Fprintf(&b, "\nmeasured %.1fs after a %s warm-up (stopped: %s)\n\n", rep.WindowSeconds, c.Warmup, rep.Stopped)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-8s\t%s\n", "op", "requests\terrors\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	row := func(name string, s OpStats) {
		fmt.Fprintf(tw, "%-8s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, s.Count, s.ErrorCount, s.RPS, s.P50MS, s.P90MS, s.P99MS, s.MaxMS)
	}
	names := rep.opNames()
	for _, name := range names {
		row(name, rep.Ops[name])
	}
	if len(names) != 1 {
		row("total", rep.Total)
	}
	tw.Flush()
	if rep.Total.ErrorCount > 0 {
		b.WriteString("\nerrors:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, name := range names {
			errs := rep.Ops[name].Errors
			for _, k := range slices.Sorted(maps.Keys(errs)) {
				fmt.Fprintf(tw, "  %s\t%s\t%d\n", name, k, errs[k])
			}
		}
		tw.Flush()
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// opNames lists the report's operations in a fixed order.
func (rep *Report) opNames() []string {
	var out []string
	for _, n := range opNames {
		if _, ok := rep.Ops[n]; ok {
			out = append(out, n)
		}
	}
	return out
}
