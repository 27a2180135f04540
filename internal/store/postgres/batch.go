package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchauth/latch/internal/session"
)

// rotations coalesces concurrent RotateSession calls: while maxRunning
// statements are out, the calls that arrive queue, and the next statement
// carries all of them (up to maxBatch) as one UPDATE of several rows.
// Under load a refresh thus shares its round trip, its commit, its pool
// acquisition and its write system calls with the others, on the server
// and in PostgreSQL; at rest a call finds a free slot and goes alone,
// at once, with no wait for company.
//
// Each row is the single statement's, condition for condition (rotated
// rows are the same; storetest's RotateSessionIsRotate holds both), so one
// row's outcome never depends on another's. A batch is one transaction,
// but nothing ties its rows together: what one row misses falls back to
// the locked transaction alone.
type rotations struct {
	s          *Store
	maxRunning int
	maxBatch   int

	mu      sync.Mutex
	queue   []*rotationCall
	running int
	sending int // calls taken by the batches running
}

// maxRotationBatch is the most rotations one statement carries: enough
// for a node's requests in flight (admission's default is 4 a pool
// connection and core), few enough that the arrays stay small.
const maxRotationBatch = 64

type rotationCall struct {
	r *session.Rotation
	// deadline is when its caller stops waiting; gone, that it stopped.
	deadline time.Time
	gone     atomic.Bool
	done     chan struct{}
	out      session.Session
	err      error
}

// rotate queues r and waits for its batch, or for ctx: a caller that stops
// waiting leaves its row in the batch, which commits or not; its client
// has left, and the refresh protocol answers its retry (grace or
// lost-response successor), as when a single statement's commit outran
// the caller's cancellation.
func (b *rotations) rotate(ctx context.Context, r *session.Rotation) (session.Session, error) {
	c := &rotationCall{r: r, done: make(chan struct{})}
	c.deadline, _ = ctx.Deadline() // RotateSession bounded it
	b.mu.Lock()
	b.queue = append(b.queue, c)
	lead := b.running < b.maxRunning
	if lead {
		b.running++
	}
	b.mu.Unlock()
	if lead {
		// On a goroutine of its own, so that this caller, like every
		// other, stops waiting at its own deadline.
		go b.run()
	}
	select {
	case <-c.done:
		return c.out, c.err
	case <-ctx.Done():
		c.gone.Store(true) // a batch not yet sent leaves it out
		select {
		case <-c.done: // answered at the same moment: the answer stands
			return c.out, c.err
		default:
		}
		return session.Session{}, translate(context.Cause(ctx))
	}
}

// run sends the queue, then hands its slot on: to a new goroutine if
// calls queued meanwhile, or back.
func (b *rotations) run() {
	b.mu.Lock()
	n := min(len(b.queue), b.maxBatch)
	calls := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil
	}
	b.sending += n
	b.mu.Unlock()
	if len(calls) > 0 {
		b.send(calls)
	}
	b.mu.Lock()
	b.sending -= n
	more := len(b.queue) > 0
	if !more {
		b.running--
	}
	b.mu.Unlock()
	if more {
		go b.run()
	}
}

// send runs one batch and answers every call in it.
func (b *rotations) send(calls []*rotationCall) {
	// The batch belongs to no one caller: it ends when the last of them
	// stops waiting (each caller's deadline is at most CallTimeout away),
	// and the wait for a connection by AcquireWait (the pool's tracer).
	var last time.Time
	for _, c := range calls {
		if c.deadline.After(last) {
			last = c.deadline
		}
	}
	if last.IsZero() {
		last = time.Now().Add(b.s.limits.CallTimeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), last)
	defer cancel()
	b.s.rotateCalls(ctx, calls)
	for _, c := range calls {
		close(c.done)
	}
}

// RotateSessions applies each of rs as RotateSession would, two or more
// as one statement, and answers each in its place: the batches'
// statement, for storetest to hold row by row to rotate.
// Behind a transaction-mode pooler with settings, where rotations are
// not batched, each goes alone.
func (s *Store) RotateSessions(ctx context.Context, rs []session.Rotation) ([]session.Session, []error) {
	out, errs := make([]session.Session, len(rs)), make([]error, len(rs))
	if s.setup != "" {
		for i, r := range rs {
			out[i], errs[i] = s.RotateSession(ctx, r)
		}
		return out, errs
	}
	calls := make([]*rotationCall, len(rs))
	for i := range rs {
		calls[i] = &rotationCall{r: &rs[i]}
	}
	s.rotateCalls(ctx, calls)
	for i, c := range calls {
		out[i], errs[i] = c.out, c.err
	}
	return out, errs
}

// rotateCalls answers calls on one connection.
func (s *Store) rotateCalls(ctx context.Context, calls []*rotationCall) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		err = acquireFailed(ctx, err)
		for _, c := range calls {
			c.err = err
		}
		return
	}
	defer conn.Release()
	// The calls still awaited (checked once the connection is there, as
	// RotateSession does), each session once: a second refresh of a
	// session in the same batch (a concurrent refresh) takes the locked
	// transaction, where it waits for the first.
	live := make([]*rotationCall, 0, len(calls))
	seen := make(map[string]bool, len(calls))
	var alone []*rotationCall
	for _, c := range calls {
		if !c.waited() || seen[c.r.ID] {
			c.err = session.ErrNotFound
			continue
		}
		seen[c.r.ID] = true
		if !utf8.ValidString(c.r.UserAgent) || !utf8.ValidString(c.r.IP) {
			// PostgreSQL would refuse the whole batch for it.
			alone = append(alone, c)
			continue
		}
		live = append(live, c)
	}
	defer func() {
		for _, c := range alone {
			one(ctx, conn, c)
		}
	}()
	switch len(live) {
	case 0:
		return
	case 1:
		one(ctx, conn, live[0])
		return
	}
	if err := many(ctx, conn, live); err != nil && !errors.Is(err, session.ErrUnavailable) {
		// A row the database refused (such as a value it cannot store)
		// fails the statement, and must not fail the others: each goes
		// again on its own.
		for _, c := range live {
			if !c.waited() {
				c.out, c.err = session.Session{}, session.ErrNotFound
				continue
			}
			one(ctx, conn, c)
		}
	}
}

// waited reports whether c's caller still waits for its answer: it has
// not left RotateSession, its deadline has not passed, and its client
// awaits the answer (Rotation.Awaited).
func (c *rotationCall) waited() bool {
	switch {
	case c.gone.Load():
		return false
	case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
		return false
	}
	return c.r.Awaited == nil || c.r.Awaited()
}

func one(ctx context.Context, conn *pgxpool.Conn, c *rotationCall) {
	c.out, c.err = scanRotated(conn.QueryRow(ctx, rotateOne, rotationArgs(c.r)...), c.r)
}

// many runs live as one statement; on an error every call has it, and it
// is returned.
func many(ctx context.Context, conn *pgxpool.Conn, live []*rotationCall) error {
	n := len(live)
	var (
		ids, clients, jkts, ips, uas = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		gens                         = make([]int64, n)
		nows, idles                  = make([]time.Time, n), make([]time.Time, n)
	)
	for i, c := range live {
		r := c.r
		ids[i], gens[i], clients[i], jkts[i], nows[i], idles[i], ips[i], uas[i] = r.ID, int64(r.Gen), r.ClientID, r.DPoPJKT, r.Now, r.IdleExpiresAt, r.IP, r.UserAgent
	}
	byID := make(map[string]*rotationCall, n)
	for _, c := range live {
		byID[c.r.ID] = c
		c.err = session.ErrNotFound // until its row comes back
	}
	rows, err := conn.Query(ctx, rotateMany, ids, gens, clients, jkts, nows, idles, ips, uas)
	if err != nil {
		err = translate(err)
		for _, c := range live {
			c.err = err
		}
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id      string
			s       session.Session
			expires *time.Time
		)
		if err := rows.Scan(&id, &s.UserID, &s.Scope, &expires, &s.DPoPJKT); err != nil {
			rows.Close()
			break
		}
		c := byID[id]
		if c == nil {
			continue
		}
		s.ID, s.ClientID, s.Gen, s.ExpiresAt = c.r.ID, c.r.ClientID, c.r.Gen+1, fromNull(expires)
		c.out, c.err = s, nil
	}
	if err := rows.Err(); err != nil {
		// The statement failed: most likely as a whole, before anything
		// was applied (a refused value; the retry on one's own then
		// answers each), or on a broken connection, which may have
		// committed it all the same and is reported as unavailable, as
		// RotateSession's own statement would be.
		err = translate(err)
		for _, c := range live {
			c.out, c.err = session.Session{}, err
		}
		return err
	}
	return nil
}
