// Package tradeoffs measures what Latch's design costs and saves against a
// running server, for docs/tradeoffs.md: the cost of a refresh, the cost of
// the alternative (a session lookup on every API request, in PostgreSQL and
// in Redis), and how long a logout takes to reach a resource server with
// and without the revocation feed. It then puts the numbers into the
// per-TTL table and the charts the doc shows. It is the engine of
// `latch-bench tradeoffs`.
package tradeoffs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/chart"
	"github.com/latchauth/latch/internal/loadgen"
)

// Config describes a tradeoffs run.
type Config struct {
	// Target is Latch's base URL. Issuer is the tokens' iss when it is not
	// Target (Latch behind a proxy); default Target.
	Target, Issuer string
	// Postgres and Redis, when set, are measured as the per-request
	// session store of the alternative design. Postgres must be Latch's
	// own database (the lookup reads its sessions table).
	Postgres, Redis string
	// Concurrency and Duration shape each measurement (default 16, 5s).
	Concurrency int
	Duration    time.Duration
	// Interval is how often one client calls the API (default 10s), which
	// turns an access-token lifetime into API requests per refresh.
	Interval time.Duration
	// TTLs are the access-token lifetimes to tabulate (default 1m, 15m,
	// 1h, 24h).
	TTLs []time.Duration
	// Audience is the audience of the client's tokens (default "app").
	Audience string
	// FeedClientID and FeedSecret are a confidential client's credentials;
	// with them the logout delay through the feed is measured.
	FeedClientID, FeedSecret string
	// Trials is the number of logout-delay trials (default 50).
	Trials int
	// ChartDir, when set, receives the SVG charts.
	ChartDir string
	// RefreshStatements is the database statements per refresh, as
	// TestRefreshStatementCount shows (1: the conditional UPDATE of the
	// current token; the rare other cases take 5).
	RefreshStatements int
}

// Latency is a measured operation.
type Latency struct {
	Count int64   `json:"count"`
	RPS   float64 `json:"rps"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
}

// Row is one access-token lifetime's consequences per 1,000 API requests.
type Row struct {
	TTL           string  `json:"ttl"`
	APIPerRefresh float64 `json:"api_requests_per_refresh"`
	Refreshes     float64 `json:"refreshes_per_1000_api"`
	Statements    float64 `json:"db_statements_per_1000_api"`
	// CostMillis is the server capacity the refreshes use: each costs
	// 1/throughput of the measured saturated refresh rate (HTTP, signing
	// and both statements included).
	CostMillis       float64 `json:"refresh_capacity_ms_per_1000_api"`
	LogoutNoFeedP50S float64 `json:"logout_delay_without_feed_p50_s"`
	LogoutNoFeedP99S float64 `json:"logout_delay_without_feed_p99_s"`
	LookupStatements float64 `json:"lookup_statements_per_1000_api"`
	// Lookup*Millis is the same for 1,000 lookups at their measured
	// saturated rate (the database or Redis work alone, no HTTP).
	LookupPostgresMillis float64 `json:"lookup_postgres_capacity_ms_per_1000_api,omitempty"`
	LookupRedisMillis    float64 `json:"lookup_redis_capacity_ms_per_1000_api,omitempty"`
}

// Result is a run's measurements and the table built from them.
type Result struct {
	Refresh        Latency  `json:"refresh"`
	LookupPostgres *Latency `json:"lookup_postgres,omitempty"`
	LookupRedis    *Latency `json:"lookup_redis,omitempty"`
	// LogoutFeed is the measured logout → rejection delay through the
	// feed; nil without feed credentials.
	LogoutFeed *Latency `json:"logout_delay_feed,omitempty"`
	Interval   string   `json:"api_interval"`
	Rows       []Row    `json:"rows"`
	Charts     []string `json:"charts,omitempty"`
}

func (c *Config) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if len(c.TTLs) == 0 {
		c.TTLs = []time.Duration{time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour}
	}
	if c.Audience == "" {
		c.Audience = "app"
	}
	if c.Trials <= 0 {
		c.Trials = 50
	}
	if c.RefreshStatements <= 0 {
		c.RefreshStatements = 1
	}
}

// Run measures and tabulates. Progress lines go to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Result, error) {
	cfg.defaults()
	res := &Result{Interval: cfg.Interval.String()}

	fmt.Fprintf(log, "measuring refresh (%d clients, %s)…\n", cfg.Concurrency, cfg.Duration)
	rep, err := loadgen.Run(ctx, loadgen.Config{Scenario: loadgen.ScenarioRefresh, Target: cfg.Target,
		Concurrency: cfg.Concurrency, Duration: cfg.Duration, Warmup: time.Second})
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	op := rep.Ops[loadgen.ScenarioRefresh]
	if op.Count == 0 || op.ErrorCount > op.Count/100 {
		return nil, fmt.Errorf("refresh: %d of %d requests failed (%v); run the server with --rate-limit=false", op.ErrorCount, op.Count, op.Errors)
	}
	res.Refresh = Latency{Count: op.Count, RPS: op.RPS, P50MS: op.P50MS, P99MS: op.P99MS}

	if cfg.Postgres != "" || cfg.Redis != "" {
		ids, err := sessionIDs(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if cfg.Postgres != "" {
			fmt.Fprintf(log, "measuring a session lookup per request in PostgreSQL…\n")
			if res.LookupPostgres, err = lookupPostgres(ctx, cfg, ids); err != nil {
				return nil, err
			}
		}
		if cfg.Redis != "" {
			fmt.Fprintf(log, "measuring a session lookup per request in Redis…\n")
			if res.LookupRedis, err = lookupRedis(ctx, cfg, ids); err != nil {
				return nil, err
			}
		}
	}
	if cfg.FeedClientID != "" {
		fmt.Fprintf(log, "measuring logout → rejection through the feed (%d trials)…\n", cfg.Trials)
		if res.LogoutFeed, err = logoutDelay(ctx, cfg); err != nil {
			return nil, err
		}
	}
	res.Rows = table(cfg, res)
	if cfg.ChartDir != "" {
		if res.Charts, err = charts(cfg, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// table turns the measurements into per-TTL numbers. A client calling the
// API every Interval refreshes once per access-token lifetime, so it makes
// TTL/Interval API requests per refresh; the alternative design makes one
// session lookup per API request whatever the TTL. Without the feed a
// logout reaches a resource server only when the token expires: the
// remaining lifetime at logout is uniform on [0, TTL].
func table(cfg Config, res *Result) []Row {
	var rows []Row
	for _, ttl := range cfg.TTLs {
		per := math.Max(1, float64(ttl)/float64(cfg.Interval))
		refreshes := 1000 / per
		r := Row{
			TTL: ttl.String(), APIPerRefresh: round(per), Refreshes: round(refreshes),
			Statements:       round(refreshes * float64(cfg.RefreshStatements)),
			CostMillis:       round(refreshes * 1000 / res.Refresh.RPS),
			LogoutNoFeedP50S: round(ttl.Seconds() / 2), LogoutNoFeedP99S: round(ttl.Seconds() * 0.99),
			LookupStatements: 1000,
		}
		if res.LookupPostgres != nil {
			r.LookupPostgresMillis = round(1000 * 1000 / res.LookupPostgres.RPS)
		}
		if res.LookupRedis != nil {
			r.LookupRedisMillis = round(1000 * 1000 / res.LookupRedis.RPS)
		}
		rows = append(rows, r)
	}
	return rows
}

func round(v float64) float64 {
	if v >= 100 {
		return math.Round(v)
	}
	return math.Round(v*1000) / 1000
}

// sessionIDs logs a few users in and returns their session ids, the keys a
// per-request lookup would use.
func sessionIDs(ctx context.Context, cfg Config) ([]string, error) {
	var ids []string
	run := fmt.Sprintf("tradeoffs-%d", time.Now().UnixNano())
	for i := range 64 {
		tok, err := signup(ctx, cfg.Target, fmt.Sprintf("bench-%s-%d@bench.invalid", run, i))
		if err != nil {
			return nil, err
		}
		ids = append(ids, tok.SessionID)
	}
	return ids, nil
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
}

var client = &http.Client{Timeout: 10 * time.Second}

func signup(ctx context.Context, target, email string) (tokens, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "password": loadgen.DefaultPassword})
	req, _ := http.NewRequestWithContext(ctx, "POST", target+"/v1/signup", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	var t tokens
	return t, do(req, http.StatusCreated, &t)
}

func do(req *http.Request, want int, v any) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}

// measure runs op from Concurrency goroutines for Duration.
func measure(ctx context.Context, cfg Config, op func(ctx context.Context, i int) error) (*Latency, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		mu    sync.Mutex
		all   []time.Duration
		fails atomic.Int64
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for w := range cfg.Concurrency {
		wg.Go(func() {
			var mine []time.Duration
			for i := w; ctx.Err() == nil; i += cfg.Concurrency {
				t0 := time.Now()
				if err := op(ctx, i); err != nil {
					if ctx.Err() == nil {
						fails.Add(1)
						mu.Lock()
						first = cmpOr(first, err)
						mu.Unlock()
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if fails.Load() > int64(len(all))/100 {
		return nil, fmt.Errorf("%d operations failed: %w", fails.Load(), first)
	}
	slices.Sort(all)
	if len(all) == 0 {
		return nil, errors.New("no operation completed")
	}
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	return &Latency{Count: int64(len(all)), RPS: math.Round(float64(len(all)) / elapsed.Seconds()), P50MS: q(0.5), P99MS: q(0.99)}, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// lookupPostgres is what a resource server without Latch's design does
// per request: read the session row and check it is live.
func lookupPostgres(ctx context.Context, cfg Config, ids []string) (*Latency, error) {
	pool, err := pgxpool.New(ctx, cfg.Postgres)
	if err != nil {
		return nil, fmt.Errorf("--postgres: %w", err)
	}
	defer pool.Close()
	return measure(ctx, cfg, func(ctx context.Context, i int) error {
		var live bool
		return pool.QueryRow(ctx, `SELECT revoked_at IS NULL AND idle_expires_at > now() FROM sessions WHERE id = $1`, ids[i%len(ids)]).Scan(&live)
	})
}

// lookupRedis is the same with sessions cached in Redis: one GET per
// request.
func lookupRedis(ctx context.Context, cfg Config, ids []string) (*Latency, error) {
	opt, err := redis.ParseURL(cfg.Redis)
	if err != nil {
		return nil, errors.New("--redis: not a redis:// URL")
	}
	opt.PoolSize = cfg.Concurrency
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = "latch:bench:session:" + id
		v, _ := json.Marshal(map[string]any{"sid": id, "revoked": false, "idle_expires_at": time.Now().Add(time.Hour).Unix()})
		if err := rdb.Set(ctx, keys[i], v, 10*time.Minute).Err(); err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
	}
	defer rdb.Del(context.WithoutCancel(ctx), keys...)
	return measure(ctx, cfg, func(ctx context.Context, i int) error {
		return rdb.Get(ctx, keys[i%len(keys)]).Err()
	})
}

// logoutDelay logs in, checks the token verifies, logs out, and times how
// long the verifier, fed by the revocation feed, takes to reject it.
func logoutDelay(ctx context.Context, cfg Config) (*Latency, error) {
	bc := bearer.Config{Issuer: cfg.Target, Audience: cfg.Audience, Algorithms: []string{"EdDSA", "ES256", "RS256"},
		CacheSize: -1, Revocations: &bearer.FeedConfig{ClientID: cfg.FeedClientID, ClientSecret: cfg.FeedSecret}}
	if cfg.Issuer != "" && cfg.Issuer != cfg.Target {
		bc.Issuer, bc.JWKSURL = cfg.Issuer, cfg.Target+"/.well-known/jwks.json"
		bc.Revocations.URL = cfg.Target + "/v1/revocations"
	}
	v, err := bearer.New(ctx, bc)
	if err != nil {
		return nil, fmt.Errorf("feed verifier: %w", err)
	}
	defer v.Close()
	run := fmt.Sprintf("logout-%d", time.Now().UnixNano())
	var delays []time.Duration
	for i := range cfg.Trials {
		tok, err := signup(ctx, cfg.Target, fmt.Sprintf("bench-%s-%d@bench.invalid", run, i))
		if err != nil {
			return nil, err
		}
		if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
			return nil, fmt.Errorf("a fresh token does not verify (is --audience %q right?): %w", cfg.Audience, err)
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", cfg.Target+"/v1/logout", strings.NewReader(`{"scope":"current"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		start := time.Now()
		if err := do(req, http.StatusOK, nil); err != nil {
			return nil, err
		}
		for {
			if _, err := v.Verify(ctx, tok.AccessToken); errors.Is(err, bearer.ErrRevoked) {
				break
			}
			if time.Since(start) > 10*time.Second {
				return nil, errors.New("a logged-out session's token still verified after 10 s")
			}
			time.Sleep(200 * time.Microsecond)
		}
		delays = append(delays, time.Since(start))
	}
	slices.Sort(delays)
	q := func(p float64) float64 { return float64(delays[int(p*float64(len(delays)-1))].Microseconds()) / 1000 }
	return &Latency{Count: int64(len(delays)), P50MS: q(0.5), P99MS: q(0.99)}, nil
}

// charts writes the doc's two figures.
func charts(cfg Config, res *Result) ([]string, error) {
	if err := os.MkdirAll(cfg.ChartDir, 0o755); err != nil {
		return nil, err
	}
	work := chart.Chart{Title: fmt.Sprintf("Database statements per 1,000 API requests (one client call every %s)", cfg.Interval), Log: true}
	for _, r := range res.Rows {
		work.Bars = append(work.Bars, chart.Bar{Label: "Latch, access TTL " + r.TTL, Value: r.Statements, Note: "statements"})
	}
	if res.LookupPostgres != nil {
		work.Bars = append(work.Bars, chart.Bar{Label: "lookup per request, PostgreSQL", Value: 1000, Note: fmt.Sprintf("statements (p50 %.2f ms each)", res.LookupPostgres.P50MS), Accent: true})
	}
	if res.LookupRedis != nil {
		work.Bars = append(work.Bars, chart.Bar{Label: "lookup per request, Redis", Value: 1000, Note: fmt.Sprintf("GETs (p50 %.2f ms each)", res.LookupRedis.P50MS), Accent: true})
	}
	delay := chart.Chart{Title: "Logout → rejection at a resource server (p50, seconds)", Log: true}
	if res.LogoutFeed != nil {
		delay.Bars = append(delay.Bars, chart.Bar{Label: "with the revocation feed", Value: res.LogoutFeed.P50MS / 1000, Note: fmt.Sprintf("s (p99 %.3f s), any TTL", res.LogoutFeed.P99MS/1000), Accent: true})
	}
	for _, r := range res.Rows {
		delay.Bars = append(delay.Bars, chart.Bar{Label: "without the feed, TTL " + r.TTL, Value: r.LogoutNoFeedP50S, Note: fmt.Sprintf("s (p99 %.0f s)", r.LogoutNoFeedP99S)})
	}
	var out []string
	for name, c := range map[string]chart.Chart{"tradeoffs-db-work.svg": work, "tradeoffs-logout-delay.svg": delay} {
		p := filepath.Join(cfg.ChartDir, name)
		if err := os.WriteFile(p, c.SVG(), 0o644); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// WriteText prints the result as the doc's tables.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "refresh (HTTP, end to end): %.0f/s, p50 %.2f ms, p99 %.2f ms over %d requests\n", r.Refresh.RPS, r.Refresh.P50MS, r.Refresh.P99MS, r.Refresh.Count)
	if l := r.LookupPostgres; l != nil {
		fmt.Fprintf(w, "session lookup, PostgreSQL: %.0f/s, p50 %.3f ms, p99 %.3f ms\n", l.RPS, l.P50MS, l.P99MS)
	}
	if l := r.LookupRedis; l != nil {
		fmt.Fprintf(w, "session lookup, Redis: %.0f/s, p50 %.3f ms, p99 %.3f ms\n", l.RPS, l.P50MS, l.P99MS)
	}
	if l := r.LogoutFeed; l != nil {
		fmt.Fprintf(w, "logout → rejection through the feed: p50 %.2f ms, p99 %.2f ms over %d trials\n", l.P50MS, l.P99MS, l.Count)
	}
	fmt.Fprintf(w, "\nper 1,000 API requests, one call per client every %s:\n", r.Interval)
	fmt.Fprintf(w, "| access TTL | API requests per refresh | refreshes | DB statements | refresh capacity used (ms) | lookup design: statements | lookup capacity PG (ms) | lookup capacity Redis (ms) | logout delay without feed p50 / p99 |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "| %s | %g | %g | %g | %g | %g | %g | %g | %gs / %gs |\n", row.TTL, row.APIPerRefresh, row.Refreshes, row.Statements, row.CostMillis,
			row.LookupStatements, row.LookupPostgresMillis, row.LookupRedisMillis, row.LogoutNoFeedP50S, row.LogoutNoFeedP99S)
	}
	for _, c := range r.Charts {
		fmt.Fprintf(w, "chart: %s\n", c)
	}
}
