package pgtest

import (
	"context"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Tracer counts round trips to PostgreSQL (a lone statement or a batch)
// and the SQL statements sent, BEGIN and COMMIT included, by their first
// word. Pass it to postgres.WithTracer; tests that promise a number of
// round trips per operation assert on what Reset returns.
type Tracer struct {
	mu         sync.Mutex
	atCommit   func()
	trips      int
	statements []string
}

// SetAtCommit sets a function called as a lone COMMIT or a batch holding
// one goes out (before it is sent), on the goroutine sending it: a test
// cancels the caller's context there to cancel "during COMMIT". nil
// removes it. Safe while other goroutines (the feed's polls) trace.
func (tr *Tracer) SetAtCommit(fn func()) {
	tr.mu.Lock()
	tr.atCommit = fn
	tr.mu.Unlock()
}

func (tr *Tracer) commitHook() func() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.atCommit
}

// TraceQueryStart counts a lone statement as one round trip.
func (tr *Tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	tr.mu.Lock()
	tr.trips++
	tr.statements = append(tr.statements, strings.Fields(d.SQL)[0])
	tr.mu.Unlock()
	if fn := tr.commitHook(); fn != nil && isCommit(d.SQL) {
		fn()
	}
	return ctx
}

func isCommit(sql string) bool { return strings.EqualFold(strings.TrimSpace(sql), "COMMIT") }

// TraceQueryEnd is part of pgx.QueryTracer.
func (tr *Tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart counts a batch as one round trip.
func (tr *Tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	tr.mu.Lock()
	tr.trips++
	tr.mu.Unlock()
	if fn := tr.commitHook(); fn != nil && d.Batch != nil {
		for _, q := range d.Batch.QueuedQueries {
			if isCommit(q.SQL) {
				fn()
				break
			}
		}
	}
	return ctx
}

// TraceBatchQuery records a statement of a batch.
func (tr *Tracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	tr.mu.Lock()
	tr.statements = append(tr.statements, strings.Fields(d.SQL)[0])
	tr.mu.Unlock()
}

// TraceBatchEnd is part of pgx.BatchTracer.
func (tr *Tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// Reset returns the round trips and statements counted since the last
// Reset and starts counting afresh.
func (tr *Tracer) Reset() (trips int, statements []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	trips, statements = tr.trips, tr.statements
	tr.trips, tr.statements = 0, nil
	return trips, statements
}
