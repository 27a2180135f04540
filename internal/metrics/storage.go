package metrics

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Tracer returns a pgx tracer (pgx.QueryTracer and pgx.BatchTracer) that
// times every statement into latch_storage_query_duration_seconds, labelled
// by the statement's first keyword, and every batch as "batch" (the
// pipelined transactions of the PostgreSQL store send BEGIN, the
// statement and deferred writes, or the writes and COMMIT, as one batch).
// Install it with postgres.WithTracer.
func (m *Metrics) Tracer() pgx.QueryTracer { return &tracer{m: m} }

type tracer struct{ m *Metrics }

type traceKey struct{}

type traceStart struct {
	op string
	at time.Time
}

var (
	_ pgx.QueryTracer = (*tracer)(nil)
	_ pgx.BatchTracer = (*tracer)(nil)
)

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, traceKey{}, traceStart{op: sqlOp(d.SQL), at: time.Now()})
}

func (t *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if s, ok := ctx.Value(traceKey{}).(traceStart); ok {
		t.m.ObserveStorage(s.op, time.Since(s.at))
	}
}

func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return context.WithValue(ctx, traceKey{}, traceStart{op: "batch", at: time.Now()})
}

func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *tracer) TraceBatchEnd(ctx context.Context, c *pgx.Conn, _ pgx.TraceBatchEndData) {
	t.TraceQueryEnd(ctx, c, pgx.TraceQueryEndData{})
}

// sqlOp is the lower-cased first keyword of a statement, from a fixed set
// (anything else is "other"), so the label stays bounded.
func sqlOp(q string) string {
	q = strings.TrimLeft(q, " \t\r\n(")
	end := strings.IndexAny(q, " \t\r\n(;")
	if end < 0 {
		end = len(q)
	}
	switch w := strings.ToLower(q[:end]); w {
	case "select", "insert", "update", "delete", "begin", "commit", "rollback", "with":
		return w
	}
	return "other"
}

// PoolStats is a connection pool's state at one moment.
type PoolStats struct {
	// Max is the most connections the pool opens.
	Max int64
	// Open is the connections open now (in use, idle or being opened).
	Open int64
	// InUse is the connections checked out now.
	InUse int64
	// Idle is the connections open and unused now.
	Idle int64
	// Acquires and AcquireTime count every connection checkout and the
	// time spent in them. Acquires < 0 means the pool does not count them
	// (database/sql), and both are left out.
	Acquires    int64
	AcquireTime time.Duration
	// Waits and WaitTime count the checkouts that found no idle connection
	// and had to wait, and how long they waited.
	Waits    int64
	WaitTime time.Duration
}

// PGXPoolStats reads a pgx pool.
func PGXPoolStats(p *pgxpool.Pool) func() PoolStats {
	return func() PoolStats {
		s := p.Stat()
		return PoolStats{
			Max: int64(s.MaxConns()), Open: int64(s.TotalConns()), InUse: int64(s.AcquiredConns()), Idle: int64(s.IdleConns()),
			Acquires: s.AcquireCount(), AcquireTime: s.AcquireDuration(),
			Waits: s.EmptyAcquireCount(), WaitTime: s.EmptyAcquireWaitTime(),
		}
	}
}

// SQLDBStats reads a database/sql pool's statistics.
func SQLDBStats(stats func() sql.DBStats) func() PoolStats {
	return func() PoolStats {
		s := stats()
		return PoolStats{
			Max: int64(s.MaxOpenConnections), Open: int64(s.OpenConnections), InUse: int64(s.InUse), Idle: int64(s.Idle),
			Acquires: -1, Waits: s.WaitCount, WaitTime: s.WaitDuration,
		}
	}
}

// RegisterPool exports the latch_storage_pool_* metrics of a pool, labelled
// pool=name ("postgres"; SQLite has "write", its single writer connection,
// and "read"), read at every scrape.
func (m *Metrics) RegisterPool(name string, stats func() PoolStats) {
	m.pools.mu.Lock()
	defer m.pools.mu.Unlock()
	m.pools.pools = append(m.pools.pools, pool{name: name, stats: stats})
}

var (
	poolMax      = prometheus.NewDesc("latch_storage_pool_max_connections", "The most connections the storage pool opens.", []string{"pool"}, nil)
	poolOpen     = prometheus.NewDesc("latch_storage_pool_open_connections", "Connections open (in use, idle or being opened).", []string{"pool"}, nil)
	poolInUse    = prometheus.NewDesc("latch_storage_pool_in_use_connections", "Connections checked out.", []string{"pool"}, nil)
	poolIdle     = prometheus.NewDesc("latch_storage_pool_idle_connections", "Connections open and unused.", []string{"pool"}, nil)
	poolAcquires = prometheus.NewDesc("latch_storage_pool_acquires_total", "Connection checkouts (PostgreSQL only).", []string{"pool"}, nil)
	poolAcqTime  = prometheus.NewDesc("latch_storage_pool_acquire_seconds_total", "Time spent checking connections out (PostgreSQL only).", []string{"pool"}, nil)
	poolWaits    = prometheus.NewDesc("latch_storage_pool_waits_total", "Checkouts that found no idle connection and waited.", []string{"pool"}, nil)
	poolWaitTime = prometheus.NewDesc("latch_storage_pool_wait_seconds_total", "Time spent waiting for a connection.", []string{"pool"}, nil)
)

// poolCollector reads every registered pool at scrape time.
type poolCollector struct {
	mu    sync.Mutex
	pools []pool
}

type pool struct {
	name  string
	stats func() PoolStats
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolMax, poolOpen, poolInUse, poolIdle, poolAcquires, poolAcqTime, poolWaits, poolWaitTime} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	pools := c.pools
	c.mu.Unlock()
	for _, p := range pools {
		p.collect(ch)
	}
}

func (p pool) collect(ch chan<- prometheus.Metric) {
	s := p.stats()
	g := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, p.name)
	}
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, p.name)
	}
	g(poolMax, float64(s.Max))
	g(poolOpen, float64(s.Open))
	g(poolInUse, float64(s.InUse))
	g(poolIdle, float64(s.Idle))
	if s.Acquires >= 0 {
		n(poolAcquires, float64(s.Acquires))
		n(poolAcqTime, s.AcquireTime.Seconds())
	}
	n(poolWaits, float64(s.Waits))
	n(poolWaitTime, s.WaitTime.Seconds())
}
