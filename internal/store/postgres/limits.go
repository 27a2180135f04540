package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchauth/latch/internal/session"
)

// Limits bound how long a caller waits on the database, so that a node at
// capacity or a frozen server answers fast instead of queueing requests
// until their clients give up.
type Limits struct {
	// AcquireWait bounds the wait for a pool connection; past it the call
	// fails with session.ErrBusy (wrapped with ErrUnavailable: 503 with
	// Retry-After). It bounds only the wait, not the statement.
	AcquireWait time.Duration
	// CallTimeout bounds each InTx transaction from the client side, BEGIN
	// to the last statement before COMMIT (COMMIT itself, which nobody but
	// the database may end once sent, has commitTimeout of its own):
	// statement_timeout ends a slow statement on the server, but a server
	// that is frozen or cut off answers nothing at all.
	// Statements outside InTx run on their caller's deadline (every HTTP
	// request has one) and statement_timeout.
	CallTimeout time.Duration
}

// Defaults of Limits.
const (
	// DefaultAcquireWait: a refresh holds a connection for about 2 ms,
	// so a wait of 250 ms is a hundred transactions deep on each
	// connection; a longer queue only adds latency the client times out
	// on.
	DefaultAcquireWait = 250 * time.Millisecond
	// DefaultCallTimeout is above the statement timeout, which answers a
	// slow statement first while the server is alive.
	DefaultCallTimeout = 2 * DefaultStatementTimeout
)

// acquireBound wraps the pool's tracer (nil: none) so that every
// connection acquisition waits at most wait: pgxpool hands the tracer's
// context to the acquisition alone, and runs the statement on its
// caller's, so the bound is on the wait and nothing else.
func acquireBound(inner pgx.QueryTracer, wait time.Duration) pgx.QueryTracer {
	t := &boundTracer{wait: wait}
	t.query = inner
	t.batch, _ = inner.(pgx.BatchTracer)
	return t
}

type boundTracer struct {
	wait  time.Duration
	query pgx.QueryTracer
	batch pgx.BatchTracer
}

type cancelKey struct{}

var (
	_ pgxpool.AcquireTracer = (*boundTracer)(nil)
	_ pgx.BatchTracer       = (*boundTracer)(nil)
)

func (t *boundTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	ctx, cancel := context.WithTimeoutCause(ctx, t.wait, errAcquireWait)
	return context.WithValue(ctx, cancelKey{}, cancel)
}

func (t *boundTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireEndData) {
	if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

func (t *boundTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if t.query == nil {
		return ctx
	}
	return t.query.TraceQueryStart(ctx, c, d)
}

func (t *boundTracer) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	if t.query != nil {
		t.query.TraceQueryEnd(ctx, c, d)
	}
}

func (t *boundTracer) TraceBatchStart(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if t.batch == nil {
		return ctx
	}
	return t.batch.TraceBatchStart(ctx, c, d)
}

func (t *boundTracer) TraceBatchQuery(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	if t.batch != nil {
		t.batch.TraceBatchQuery(ctx, c, d)
	}
}

func (t *boundTracer) TraceBatchEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	if t.batch != nil {
		t.batch.TraceBatchEnd(ctx, c, d)
	}
}

// boundBy is ctx with a deadline at most d away: ctx itself when its own
// deadline is no later (an HTTP request's RequestTimeout, 10 s, is never
// later than the default CallTimeout, 10 s, set after it), so that a
// refresh does not start and stop a timer that can never fire first (the
// refresh profile of 2026-12-02 had context.WithDeadlineCause at 2.9% of
// the server's CPU for the three timers a refresh then armed).
func boundBy(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && !dl.After(time.Now().Add(d)) {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// errAcquireWait is the cause of an acquisition's context past the wait.
var errAcquireWait = errors.New("postgres: no pool connection free within the acquire wait")

// acquireFailed translates a failed acquisition by ctx, the caller's
// context: its deadline expired before the acquisition's was the node's
// own bound (storage unavailable), otherwise a deadline is the acquire
// wait: the pool is busy.
func acquireFailed(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%w: %w: %w", session.ErrUnavailable, session.ErrBusy, err)
	}
	return translate(err)
}
