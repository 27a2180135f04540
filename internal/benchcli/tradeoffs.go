package benchcli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/tradeoffs"
)

const tradeoffsUsage = `Usage: latch-bench tradeoffs [flags]

Measures, against a running Latch started with --rate-limit=false, what the
access/refresh design costs and saves: a refresh end to end; a session lookup
per API request in PostgreSQL (--postgres, Latch's own database) and Redis
(--redis), the design Latch avoids; and logout → rejection at a resource
server through the revocation feed (--feed-client-id/--feed-secret, a
confidential client). Prints the per-TTL table of docs/tradeoffs.md and, with
--chart-dir, writes its SVG charts.

Flags:
`

func runTradeoffs(ctx context.Context, args []string, s io2) error {
	fs := newFlags("tradeoffs", s)
	var cfg tradeoffs.Config
	fs.StringVar(&cfg.Target, "target", defaultTarget, "Latch's base URL")
	fs.StringVar(&cfg.Issuer, "issuer", "", "the tokens' iss when it is not --target (Latch behind a proxy)")
	fs.StringVar(&cfg.Postgres, "postgres", "", "Latch's PostgreSQL URL, to time a session lookup per request")
	fs.StringVar(&cfg.Redis, "redis", "", "redis://HOST:PORT/DB, to time a session lookup per request in Redis")
	fs.IntVar(&cfg.Concurrency, "concurrency", 16, "concurrent clients in each measurement")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each measurement")
	fs.DurationVar(&cfg.Interval, "interval", 10*time.Second, "how often one client calls the API")
	ttls := fs.String("ttls", "1m,15m,1h,24h", "access-token lifetimes to tabulate")
	fs.StringVar(&cfg.Audience, "audience", "app", "aud of the tokens the built-in client gets")
	fs.StringVar(&cfg.FeedClientID, "feed-client-id", "", "confidential client for the revocation feed")
	fs.StringVar(&cfg.FeedSecret, "feed-secret", "", "its secret")
	fs.IntVar(&cfg.Trials, "trials", 50, "logout-delay trials")
	fs.StringVar(&cfg.ChartDir, "chart-dir", "", "write the SVG charts here")
	asJSON := fs.Bool("json", false, "print JSON instead of the tables")
	fs.Usage = func() {
		fmt.Fprint(s.stderr, tradeoffsUsage)
		fs.PrintDefaults()
	}
	rest, _, err := parseBench(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: tradeoffs takes no arguments, got %q", ErrUsage, rest)
	}
	for _, f := range strings.Split(*ttls, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return fmt.Errorf("%w: --ttls: %q is not a positive duration", ErrUsage, f)
		}
		cfg.TTLs = append(cfg.TTLs, d)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute) // bounded, whatever the flags
	defer cancel()
	res, err := tradeoffs.Run(ctx, cfg, s.stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(s.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.WriteText(s.stdout)
	return nil
}
