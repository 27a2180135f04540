// Package postgres implements Latch's storage on PostgreSQL through pgx, for
// production and for many Latch processes sharing one database.
//
// Every decision that must hold across processes is taken by the database:
// a refresh locks its session row (SELECT … FOR UPDATE) and the transaction
// that holds the lock is the only one that may rotate it. Nothing here
// retries or sleeps while holding a connection; a failure is reported as
// session.ErrUnavailable and the caller (or its client) tries again.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/signingkey"
	"github.com/latchauth/latch/migrations"
)

// The store also implements token.Store and token.Resealer; that is
// asserted in a test, since importing token would link go-jose and net/http.
var _ session.Store = (*Store)(nil)

// Defaults applied unless the URL sets them (pgx passes unknown URL
// parameters to the server as run-time parameters, so an operator can write
// ?statement_timeout=2s or ?pool_max_conns=20).
const (
	// DefaultStatementTimeout bounds every statement, so a stuck query ends
	// as an error rather than holding a row lock and a connection.
	DefaultStatementTimeout = 5 * time.Second
	// idleInTxTimeout ends a transaction whose client went silent while
	// holding locks (a process paused or partitioned mid-refresh).
	idleInTxTimeout = 10 * time.Second
)

// Store is a PostgreSQL database. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// db runs the statements outside InTx: the pool, or pooled behind a
	// transaction-mode pooler (pooler.go).
	db dbtx
	// setup applies the session settings inside a transaction behind a
	// transaction-mode pooler; "" otherwise.
	setup    string
	txPooled bool
	limits   Limits
	// rotations batches RotateSession (batch.go); nil: each call alone.
	rotations *rotations
}

// Open connects to the database at url (postgres://…). It does not migrate;
// call Migrate. Open does not fail when the server is down: the pool
// connects on demand, so a node starts and reports not-ready until the
// database answers.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included: only the
		// part after the quoted URL is shown.
		return nil, fmt.Errorf("postgres: the database URL is not valid: %s", urlProblem(err))
	}
	rp := cfg.ConnConfig.RuntimeParams
	setDefault := func(k, v string) {
		if _, ok := rp[k]; !ok {
			rp[k] = v
		}
	}
	setDefault("application_name", "latch")
	setDefault("statement_timeout", fmt.Sprint(DefaultStatementTimeout.Milliseconds()))
	setDefault("idle_in_transaction_session_timeout", fmt.Sprint(idleInTxTimeout.Milliseconds()))
	setDefault("timezone", "UTC")
	if !strings.Contains(url, "pool_max_conns") {
		// A refresh holds a connection for a few round trips; twice the
		// cores per node keeps the database busy without queueing there.
		cfg.MaxConns = int32(max(8, 4*runtime.NumCPU()))
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	txPooled, setup, err := pooler(cfg)
	if err != nil {
		return nil, err
	}
	o := options{cfg: cfg, limits: Limits{AcquireWait: DefaultAcquireWait, CallTimeout: DefaultCallTimeout}}
	for _, f := range opts {
		f(&o)
	}
	// Every acquisition, in InTx and in the pool's own Query, Exec and
	// Begin, waits at most AcquireWait (limits.go).
	cfg.ConnConfig.Tracer = acquireBound(cfg.ConnConfig.Tracer, o.limits.AcquireWait)
	cfg.HealthCheckPeriod = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, db: pool, setup: setup, txPooled: txPooled, limits: o.limits}
	if n := o.batches; n >= 0 && setup == "" {
		// Behind a transaction-mode pooler with settings, each statement
		// is a transaction of its own (inSetupTx): those go alone.
		if n == 0 {
			n = max(2, int(cfg.MaxConns)/4)
		}
		s.rotations = &rotations{s: s, maxRunning: n, maxBatch: maxRotationBatch}
	}
	if setup != "" {
		s.db = &pooled{pool: pool, setup: setup}
	}
	return s, nil
}

// Option adjusts the pool configuration or the store's limits.
type Option func(*options)

type options struct {
	cfg     *pgxpool.Config
	limits  Limits
	batches int
}

// WithRotationBatches sets how many batched rotation statements may be
// out at once (batch.go): 0, the default, is a quarter of the pool and at
// least 2; a negative n sends every RotateSession alone.
func WithRotationBatches(n int) Option {
	return func(o *options) { o.batches = n }
}

// WithTracer traces every statement and batch (tests count round trips;
// metrics can time queries).
func WithTracer(t pgx.QueryTracer) Option {
	return func(o *options) { o.cfg.ConnConfig.Tracer = t }
}

// WithLimits sets the store's admission bounds; a zero field keeps its
// default.
func WithLimits(l Limits) Option {
	return func(o *options) {
		if l.AcquireWait > 0 {
			o.limits.AcquireWait = l.AcquireWait
		}
		if l.CallTimeout > 0 {
			o.limits.CallTimeout = l.CallTimeout
		}
	}
}

// MaxConns is the pool's size.
func (s *Store) MaxConns() int { return int(s.pool.Config().MaxConns) }

// Close closes the pool.
func (s *Store) Close() error { s.pool.Close(); return nil }

// Ping checks that the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return translate(s.pool.QueryRow(ctx, "SELECT 1").Scan(&one))
}

// Pool is the connection pool, for metrics and for tests that inspect the
// tables.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// migrateLock is the advisory-lock key that serialises migrations when
// several nodes start at once ("latch" in ASCII).
const migrateLock = 0x6c61746368

// Migrate applies the embedded migrations that have not run yet and returns
// the versions it applied. Nodes starting together take turns.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	names, err := fs.Glob(migrations.Postgres, "postgres/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var applied []string
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "postgres/"), ".sql")
		body, err := migrations.Postgres.ReadFile(name)
		if err != nil {
			return applied, err
		}
		err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL)`); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil || n > 0 {
				return err
			}
			// No arguments: the simple protocol runs the whole file.
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", version, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, version); err != nil {
				return err
			}
			applied = append(applied, version)
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("postgres: migrate: %w", translate(err))
		}
	}
	if err := s.healFeedXIDs(ctx); err != nil {
		return applied, err
	}
	return applied, nil
}

// healFeedXIDs moves feed entries whose transaction id this server has not
// handed out yet to the front of the feed (xid 0). Only a dump restored
// into another cluster (whose transaction counter is behind the one that
// wrote them) has such rows, and left alone they would sort after every
// new revocation's entry, so a reader past them would skip the new ones
// until the counter caught up. Every row this cluster wrote is below the
// snapshot's xmax, so on a live database this changes nothing. Nodes read
// the feed from the start when they start, so it runs at every start.
func (s *Store) healFeedXIDs(ctx context.Context) error {
	_, err := s.db.Exec(ctx, `UPDATE revocations SET xid = '0' WHERE xid >= pg_snapshot_xmax(pg_current_snapshot())`)
	if err != nil {
		return fmt.Errorf("postgres: migrate: feed cursors: %w", translate(err))
	}
	return nil
}

// InTx implements session.Store. The transaction is pipelined: BEGIN goes
// out with the first statement, and writes whose only answer is "done" go
// out with COMMIT. A refresh is therefore two round trips to the database,
// BEGIN + SELECT … FOR UPDATE, then UPDATE + COMMIT, and holds its row lock
// for one round trip plus the decision in Go.
func (s *Store) InTx(ctx context.Context, fn func(session.Tx) error) error {
	ctx, cancel := boundBy(ctx, s.limits.CallTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return acquireFailed(ctx, err)
	}
	// The pool closes, rather than reuses, a connection released inside a
	// transaction, so a failed ROLLBACK leaves nothing behind.
	defer conn.Release()
	t := &txn{conn: conn, setup: s.setup}
	if err := fn(t); err != nil {
		t.rollback(ctx)
		return err
	}
	// COMMIT (with the writes pipelined into it) runs on a context the
	// caller cannot cancel and that no caller's deadline (the request's,
	// CallTimeout) ends, bounded by commitTimeout: a cancellation that
	// reached PostgreSQL during COMMIT could leave it applied while the
	// caller heard "context canceled", so a committed reuse revocation went
	// unreported (no metric, log or webhook). The caller's cancellation
	// still ends everything before it, which rolls back. A commit that
	// fails on a broken connection may still have been applied; the
	// refresh protocol makes that safe: the client retries with its old
	// token and the grace rule answers with the token this commit stored.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer ccancel()
	if err := t.commit(cctx); err != nil {
		t.rollback(ctx)
		return err
	}
	return nil
}

// commitTimeout bounds a COMMIT that the caller can no longer cancel: the
// statement timeout, which a COMMIT's deferred checks also obey, plus a
// round trip.
const commitTimeout = DefaultStatementTimeout + time.Second

func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return translate(err)
	}
	if err := fn(tx); err != nil {
		// A failed rollback (the connection is gone) also ends the
		// transaction on the server; the fn error is the one that matters.
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return translate(tx.Commit(ctx))
}

// urlProblem is what is wrong with a database URL that pgx refused, from
// its error but without the URL it quotes, with the accepted values where
// pgx does not list them.
func urlProblem(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "`: "); strings.HasPrefix(msg, "cannot parse `") && i > 0 {
		msg = msg[i+len("`: "):]
	} else {
		msg = "it does not parse"
	}
	if strings.Contains(msg, "://") || strings.Contains(msg, "@") {
		return "it does not parse" // never echo a URL or its user info
	}
	if strings.Contains(msg, "sslmode is invalid") {
		msg += "; sslmode is one of disable, allow, prefer, require, verify-ca, verify-full"
	}
	return msg
}

// translate maps driver errors to the domain's sentinels. A failure to
// reach or hear from the server (a refused or broken connection, a
// timeout, a cancelled context) means the database is unavailable (503,
// retry later); an error the server answered with that is not one of the
// transient classes, and any other error (a scan into the wrong type: a
// bug), is an internal error (500), so clients do not retry a bug. It is
// idempotent: an error already translated passes through unchanged, so a
// path that translates twice does not stack prefixes.
func translate(err error) error {
	if err == nil || translated(err) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return session.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch class := pe.Code[:2]; {
		case class == "08", // connection exception
			class == "53",      // insufficient resources
			class == "57",      // operator intervention: query_canceled (statement timeout), admin_shutdown (pg_terminate_backend), cannot_connect_now
			class == "58",      // system error
			pe.Code == "40001", // serialization_failure
			pe.Code == "40P01", // deadlock_detected
			pe.Code == "55P03", // lock_not_available
			pe.Code == "25P03", // idle_in_transaction_session_timeout
			pe.Code == "25006": // read_only_sql_transaction (a failover left us on a standby)
			return fmt.Errorf("%w: %w", session.ErrUnavailable, err)
		}
		return &internalError{err}
	}
	if unreachable(err) {
		return fmt.Errorf("%w: %w", session.ErrUnavailable, err)
	}
	return &internalError{err}
}

// internalError is a database error that is neither a domain answer nor a
// transient failure: the API answers it 500.
type internalError struct{ err error }

func (e *internalError) Error() string { return "postgres: " + e.err.Error() }
func (e *internalError) Unwrap() error { return e.err }

// translated reports an error that already carries a domain sentinel.
func translated(err error) bool {
	var ie *internalError
	if errors.As(err, &ie) {
		return true
	}
	for _, s := range []error{session.ErrUnavailable, session.ErrNotFound, session.ErrEmailTaken, session.ErrConflict, signingkey.ErrConflict} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// unreachable reports an error of the way to the server rather than of the
// server's answer: no connection, a connection that broke or timed out, a
// closed pool, a cancelled or expired context.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, puddle.ErrClosedPool) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Times go in as timestamptz (microseconds) and come out in UTC; the zero
// time is NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func utc(t time.Time) time.Time { return t.UTC() }

func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// collect runs a query and scans every row with scan.
func collect[T any](ctx context.Context, q querier, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, translate(rows.Err())
}

// ---- sessions ----

const sessionCols = `id, user_id, client_id, scope, created_at, last_used_at, user_agent, ip, expires_at, idle_expires_at, gen, parent_gen, handed_at, rotated_at, revoked_at, revoke_reason, rotated_ip, rotated_user_agent, dpop_jkt`

func scanSession(r pgx.Row) (session.Session, error) {
	var (
		s                session.Session
		expires, revoked *time.Time
		gen, parent      int64
	)
	err := r.Scan(&s.ID, &s.UserID, &s.ClientID, &s.Scope, &s.CreatedAt, &s.LastUsedAt, &s.UserAgent, &s.IP, &expires, &s.IdleExpiresAt, &gen, &parent, &s.HandedAt, &s.RotatedAt, &revoked, &s.RevokeReason, &s.RotatedIP, &s.RotatedUserAgent, &s.DPoPJKT)
	if err != nil {
		return session.Session{}, translate(err)
	}
	s.CreatedAt, s.LastUsedAt, s.IdleExpiresAt = utc(s.CreatedAt), utc(s.LastUsedAt), utc(s.IdleExpiresAt)
	s.HandedAt, s.RotatedAt = utc(s.HandedAt), utc(s.RotatedAt)
	s.ExpiresAt, s.RevokedAt = fromNull(expires), fromNull(revoked)
	s.Gen, s.ParentGen = uint64(gen), uint64(parent)
	return s, nil
}

// Session implements session.Store.
func (s *Store) Session(ctx context.Context, id string) (session.Session, error) {
	return scanSession(s.db.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id))
}

// UserSessions implements session.Store.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]session.Session, error) {
	return collect(ctx, s.db, scanSession, `SELECT `+sessionCols+` FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id`, userID)
}

// DeleteStale implements session.Store. It walks the sessions table's
// heap in ranges of sweepPages pages (a TID range scan: ctid between two
// block numbers), deleting the stale rows of each range in one short
// statement, so a sweep of a large backlog never holds locks long, reads
// each page once and reads them in order: the whole sweep is O(rows) and
// sequential. (A batch that searched the table from its start each time,
// as idle_expires_at has no index, read the rows before it again, dead ones
// included: O(rows²/batch). Walking the primary key instead reads the heap
// in the random order of the ids.) Rows added past the last page while the
// sweep runs are new, so not stale; a row that an update moved into a
// range already swept was live a moment ago; the next sweep finds either.
func (s *Store) DeleteStale(ctx context.Context, cutoff, now time.Time) (int64, error) {
	var pages int64
	if err := s.db.QueryRow(ctx, `SELECT pg_relation_size('sessions') / current_setting('block_size')::bigint`).Scan(&pages); err != nil {
		return 0, translate(err)
	}
	var total int64
	for from := int64(0); from < pages; from += sweepPages {
		tag, err := s.db.Exec(ctx, `DELETE FROM sessions
			WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid
			AND (revoked_at < $3 OR expires_at < $3 OR idle_expires_at < $3)`, from, from+sweepPages, cutoff)
		if err != nil {
			return total, translate(err)
		}
		total += tag.RowsAffected()
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM revocations WHERE until < $1`, now); err != nil {
		return total, translate(err)
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM message_tokens WHERE expires_at < $1`, now); err != nil {
		return total, translate(err)
	}
	return total, nil
}

// sweepPages is how many pages of the sessions table one sweep statement
// reads: 4 MiB, some 15,000 rows.
const sweepPages = 512

// Revocations implements session.Store. The cursor is (xid, seq), and only
// entries below the statement snapshot's xmin are read: every transaction
// with a lower id has ended, so no entry can still commit behind the
// cursor, whatever order transactions commit in. A transaction held open
// delays the entries after it; it never makes a reader skip one.
func (s *Store) Revocations(ctx context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error) {
	return collect(ctx, s.db, func(r pgx.Row) (session.FeedEntry, error) {
		var e session.FeedEntry
		err := r.Scan(&e.Txn, &e.Seq, &e.SessionID, &e.RevokedAt, &e.Until)
		e.RevokedAt, e.Until = utc(e.RevokedAt), utc(e.Until)
		return e, translate(err)
	}, `SELECT xid::text::bigint, seq, session_id, revoked_at, until FROM revocations
		WHERE (xid, seq) > ($1::bigint::text::xid8, $2::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY xid, seq LIMIT $3`, after.Txn, after.Seq, limit)
}

// The LISTEN/NOTIFY channels. A transaction notifies inside itself
// (pg_notify, sent with its commit's batch, so no round trip of its own);
// PostgreSQL delivers the notification to every listening node once, and
// only if, it commits.
const (
	// feedChannel: the transaction revoked sessions; the payload is its
	// transaction id, the feed cursor's Txn of its entries.
	feedChannel = "latch_revocations"
	// clientsChannel: the transaction created, changed or deleted the
	// client whose id is the payload.
	clientsChannel = "latch_clients"
	// keysChannel: the transaction changed the signing keys.
	keysChannel = "latch_keys"
)

// Changes is what Listen tells of other nodes' (and other processes')
// commits. Every field may be nil. Each call is a hint to read storage
// again: a notification is lost while no connection listens, which
// Connected says.
type Changes struct {
	// Connected is called with true once LISTEN is on, after each
	// (re)connect (whatever was notified while nobody listened is lost:
	// read everything again), and with false when the connection is lost.
	// Until the first true, and after a false, nothing is heard.
	Connected func(up bool)
	// Revoked: a transaction that revoked sessions committed; txn is its
	// transaction id (the feed cursor's Txn of its entries), 0 if unknown.
	Revoked func(txn int64)
	// Client: a transaction that created, changed or deleted client id
	// committed.
	Client func(id string)
	// Keys: a transaction that changed the signing keys committed.
	Keys func()
}

// Listen tells c of every commit it hears, on any node, until ctx is done
// (LISTEN/NOTIFY). It holds one connection of its own, outside the pool,
// and reconnects after a failure. Behind a transaction-mode pooler it
// listens to nothing (a LISTEN would land on a server session another
// client gets next) and never calls Connected(true): its callers poll.
func (s *Store) Listen(ctx context.Context, c Changes, log *slog.Logger) {
	if s.txPooled {
		log.Info("no LISTEN behind a transaction-mode pooler (pooler=transaction): polling only (the revocation feed every --feed-poll-interval, cached clients after 10s, signing keys every minute)")
		<-ctx.Done()
		return
	}
	const minBackoff, maxBackoff = 250 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		listening, err := s.listen(ctx, c)
		if listening && c.Connected != nil {
			c.Connected(false)
		}
		if ctx.Err() != nil {
			return
		}
		if listening {
			backoff = minBackoff
		}
		log.Warn("LISTEN connection lost; polling until it is back", "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen runs one LISTEN connection until it fails; listening reports
// whether LISTEN succeeded (and Connected(true) was called).
func (s *Store) listen(ctx context.Context, c Changes) (listening bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return false, fmt.Errorf("postgres: listen: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{feedChannel, clientsChannel, keysChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return false, fmt.Errorf("postgres: listen %s: %w", ch, err)
		}
	}
	if c.Connected != nil {
		c.Connected(true)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("postgres: listen: %w", err)
		}
		switch n.Channel {
		case feedChannel:
			if c.Revoked != nil {
				txn, _ := strconv.ParseInt(n.Payload, 10, 64) // 0 from an older node's empty payload
				c.Revoked(txn)
			}
		case clientsChannel:
			if c.Client != nil {
				c.Client(n.Payload)
			}
		case keysChannel:
			if c.Keys != nil {
				c.Keys()
			}
		}
	}
}

// AuditEvents returns the audit events q selects, newest first.
func (s *Store) AuditEvents(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	where, args := []string{"true"}, []any{}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if !q.Since.IsZero() {
		add("at >= $%d", q.Since)
	}
	if !q.Until.IsZero() {
		add("at < $%d", q.Until)
	}
	if q.Type != "" {
		add("type = $%d", q.Type)
	}
	if q.UserID != "" {
		add("user_id = $%d", q.UserID)
	}
	if q.BeforeID > 0 {
		add("id < $%d", q.BeforeID)
	}
	limit := "ALL"
	if q.Limit > 0 {
		limit = fmt.Sprint(q.Limit)
	}
	return collect(ctx, s.db, func(r pgx.Row) (audit.Event, error) {
		var e audit.Event
		err := r.Scan(&e.ID, &e.At, &e.Type, &e.UserID, &e.SessionID, &e.ClientID, &e.IP, &e.UserAgent, &e.Detail, &e.Actor)
		e.At = utc(e.At)
		return e, translate(err)
	}, `SELECT id, at, type, user_id, session_id, client_id, ip, user_agent, detail, actor FROM audit_events WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT `+limit, args...)
}

// DeleteAudit implements session.Store.
func (s *Store) DeleteAudit(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM audit_events WHERE at < $1`, before)
	if err != nil {
		return 0, translate(err)
	}
	return tag.RowsAffected(), nil
}

// ---- users ----

const userCols = `id, email, password_hash, created_at, password_changed_at, disabled_at, email_verified_at, user_metadata, app_metadata`

func scanUser(r pgx.Row) (session.User, error) {
	var (
		u                  session.User
		disabled, verified *time.Time
		meta, appMeta      string
	)
	if err := r.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.CreatedAt, &u.PasswordChangedAt, &disabled, &verified, &meta, &appMeta); err != nil {
		return session.User{}, translate(err)
	}
	u.CreatedAt, u.PasswordChangedAt, u.DisabledAt = utc(u.CreatedAt), utc(u.PasswordChangedAt), fromNull(disabled)
	u.EmailVerifiedAt = fromNull(verified)
	if meta != "{}" {
		u.Metadata = meta // "" stands for {}, so that a User compares with ==
	}
	if appMeta != "{}" {
		u.AppMetadata = appMeta
	}
	return u, nil
}

func metadata(u session.User) string {
	if len(u.Metadata) == 0 {
		return "{}"
	}
	return u.Metadata
}

// appMetadata is the stored form of u's app_metadata: "{}" for none, which
// reads back as "".
func appMetadata(u session.User) string {
	if len(u.AppMetadata) == 0 {
		return "{}"
	}
	return string(u.AppMetadata)
}

// ListUsers implements session.Store.
func (s *Store) ListUsers(ctx context.Context, q session.UserQuery) ([]session.User, error) {
	where, args := []string{"true"}, []any{}
	if q.EmailPrefix != "" {
		// starts_with, not LIKE: a prefix holding % or _ means itself.
		args = append(args, q.EmailPrefix)
		where = append(where, fmt.Sprintf("starts_with(email, $%d)", len(args)))
	}
	if q.After != nil {
		args = append(args, q.After.CreatedAt, q.After.ID)
		where = append(where, fmt.Sprintf("(created_at, id) > ($%d, $%d)", len(args)-1, len(args)))
	}
	limit := "ALL"
	if q.Limit > 0 {
		limit = fmt.Sprint(q.Limit)
	}
	return collect(ctx, s.db, scanUser, `SELECT `+userCols+` FROM users WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at, id LIMIT `+limit, args...)
}

// User implements session.Store.
func (s *Store) User(ctx context.Context, id string) (session.User, error) {
	return scanUser(s.db.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

// UserByEmail implements session.Store.
func (s *Store) UserByEmail(ctx context.Context, email string) (session.User, error) {
	return scanUser(s.db.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE email = $1`, email))
}

// Users implements session.Store.
func (s *Store) Users(ctx context.Context) ([]session.User, error) {
	return collect(ctx, s.db, scanUser, `SELECT `+userCols+` FROM users ORDER BY created_at, id`)
}

// ---- clients ----

const clientCols = `id, name, secret_hash, audience, access_ttl_us, grants, scopes, created_at, web, origins, claims, dpop_required`

func scanClient(r pgx.Row) (session.Client, error) {
	var (
		c              session.Client
		ttl            int64
		grants, scopes string
		audiences      string
		origins        string
		claims         string
	)
	if err := r.Scan(&c.ID, &c.Name, &c.SecretHash, &audiences, &ttl, &grants, &scopes, &c.CreatedAt, &c.Web, &origins, &claims, &c.DPoPRequired); err != nil {
		return session.Client{}, translate(err)
	}
	c.AccessTTL = time.Duration(ttl) * time.Microsecond
	// Audiences share the one audience column, space-separated (an
	// audience has no spaces), so a row written before they were a list
	// reads as a list of one.
	c.Audiences = strings.Fields(audiences)
	c.Grants, c.Scopes = strings.Fields(grants), strings.Fields(scopes)
	c.Origins = strings.Fields(origins)
	c.CreatedAt = utc(c.CreatedAt)
	c.Claims = strings.Fields(claims)
	return c, nil
}

// Client implements session.Store.
func (s *Store) Client(ctx context.Context, id string) (session.Client, error) {
	return scanClient(s.db.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id))
}

// Clients implements session.Store.
func (s *Store) Clients(ctx context.Context) ([]session.Client, error) {
	return collect(ctx, s.db, scanClient, `SELECT `+clientCols+` FROM clients ORDER BY id`)
}

// ---- transaction ----

// txn is a pipelined transaction on one connection (see InTx).
type txn struct {
	conn  *pgxpool.Conn
	begun bool
	setup string // Store.setup, sent after BEGIN
	// deferred writes, sent with the next statement that needs an answer
	// or with COMMIT; each check sees its own result.
	deferred []deferredExec
}

type deferredExec struct {
	sql   string
	args  []any
	check func(pgconn.CommandTag, error) error
}

// send queues BEGIN (once), the deferred writes and then q in one batch,
// reads the results of all but q's, and returns the batch for the caller
// to read q's result and close.
func (t *txn) send(ctx context.Context, sql string, args ...any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	begin := !t.begun
	if begin {
		b.Queue("BEGIN")
		if t.setup != "" {
			b.Queue(t.setup)
		}
	}
	for _, d := range t.deferred {
		b.Queue(d.sql, d.args...)
	}
	b.Queue(sql, args...)
	pending := t.deferred
	t.deferred, t.begun = nil, true
	br := t.conn.SendBatch(ctx, b)
	for range t.opening(begin) {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, translate(err)
		}
	}
	for _, d := range pending {
		if err := d.check(br.Exec()); err != nil {
			br.Close()
			return nil, err
		}
	}
	return br, nil
}

// exec runs a statement now.
func (t *txn) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := t.send(ctx, sql, args...)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// later queues a write for the next round trip.
func (t *txn) later(check func(pgconn.CommandTag, error) error, sql string, args ...any) {
	t.deferred = append(t.deferred, deferredExec{sql: sql, args: args, check: check})
}

func anyTag(_ pgconn.CommandTag, err error) error { return translate(err) }

// queryRow runs a single-row query now and scans it with scan.
func queryRow[T any](ctx context.Context, t *txn, scan func(pgx.Row) (T, error), sql string, args ...any) (T, error) {
	br, err := t.send(ctx, sql, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := scan(br.QueryRow())
	if cerr := br.Close(); err == nil && cerr != nil {
		err = translate(cerr)
	}
	return v, err
}

func (t *txn) commit(ctx context.Context) error {
	if !t.begun && len(t.deferred) == 0 {
		return nil
	}
	_, err := t.exec(ctx, "COMMIT")
	return translate(err)
}

func (t *txn) rollback(ctx context.Context) {
	if t.begun && t.conn.Conn().PgConn().TxStatus() != 'I' {
		t.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	}
}

func (t *txn) InsertUser(ctx context.Context, u session.User) error {
	_, err := t.exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		u.ID, u.Email, u.PasswordHash, u.CreatedAt, u.PasswordChangedAt, nullTime(u.DisabledAt), nullTime(u.EmailVerifiedAt), metadata(u), appMetadata(u))
	if isUnique(err) {
		return session.ErrEmailTaken
	}
	return translate(err)
}

func (t *txn) LockUser(ctx context.Context, id string) (session.User, error) {
	return queryRow(ctx, t, scanUser, `SELECT `+userCols+` FROM users WHERE id = $1 FOR UPDATE`, id)
}

func (t *txn) UpdateUser(ctx context.Context, u session.User) error {
	// Runs on a row this transaction locked, so it cannot miss.
	t.later(func(tag pgconn.CommandTag, err error) error {
		if isUnique(err) {
			return session.ErrEmailTaken
		}
		return oneRow(tag, err)
	}, `UPDATE users SET email = $1, password_hash = $2, password_changed_at = $3, disabled_at = $4, email_verified_at = $5, user_metadata = $6, app_metadata = $8 WHERE id = $7`,
		u.Email, u.PasswordHash, u.PasswordChangedAt, nullTime(u.DisabledAt), nullTime(u.EmailVerifiedAt), metadata(u), u.ID, appMetadata(u))
	return nil
}

func (t *txn) InsertSession(ctx context.Context, s session.Session) error {
	t.later(anyTag, `INSERT INTO sessions (`+sessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		s.ID, s.UserID, s.ClientID, s.Scope, s.CreatedAt, s.LastUsedAt, s.UserAgent, s.IP,
		nullTime(s.ExpiresAt), s.IdleExpiresAt, int64(s.Gen), int64(s.ParentGen), s.HandedAt, s.RotatedAt,
		nullTime(s.RevokedAt), s.RevokeReason, s.RotatedIP, s.RotatedUserAgent, s.DPoPJKT)
	return nil
}

// LockSession takes the session's row lock: a concurrent refresh of the same
// session waits here until this transaction ends, then reads what it wrote.
func (t *txn) LockSession(ctx context.Context, id string) (session.Session, error) {
	return queryRow(ctx, t, scanSession, `SELECT `+sessionCols+` FROM sessions WHERE id = $1 FOR UPDATE`, id)
}

func (t *txn) UpdateSession(ctx context.Context, s session.Session) error {
	// Runs on a row this transaction locked, so it cannot miss; it goes out
	// with COMMIT.
	t.later(oneRow, `UPDATE sessions SET last_used_at = $1, user_agent = $2, ip = $3, idle_expires_at = $4, gen = $5, parent_gen = $6, handed_at = $7, rotated_at = $8, rotated_ip = $9, rotated_user_agent = $10 WHERE id = $11`,
		s.LastUsedAt, s.UserAgent, s.IP, s.IdleExpiresAt, int64(s.Gen), int64(s.ParentGen), s.HandedAt, s.RotatedAt, s.RotatedIP, s.RotatedUserAgent, s.ID)
	return nil
}

// RotateSession implements session.Rotator: the rotation table's common
// row as one UPDATE, its own transaction, so a refresh is one round trip
// instead of two. It never waits for the row lock: a row that another
// transaction holds (a concurrent refresh of the same session, a
// revocation) is skipped (SKIP LOCKED) and so matches nothing, and the
// refresh falls back to the transaction, which waits on the caller's
// context and reads the time once it holds the lock. A request whose client
// leaves therefore never commits a rotation after a wait (the false logout
// of docs/design.md "Abandoned and late requests"). The row it does lock is
// the latest version, and in READ COMMITTED the UPDATE evaluates its WHERE
// on that version (PostgreSQL documentation, "Transaction Isolation",
// 13.2.1): a generation moved on, or a session revoked, since the
// statement's snapshot matches nothing either.
func (s *Store) RotateSession(ctx context.Context, r session.Rotation) (session.Session, error) {
	ctx, cancel := boundBy(ctx, s.limits.CallTimeout)
	defer cancel()
	if s.rotations != nil {
		return s.rotations.rotate(ctx, &r)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return session.Session{}, acquireFailed(ctx, err)
	}
	defer conn.Release()
	if r.Awaited != nil && !r.Awaited() {
		return session.Session{}, session.ErrNotFound // the transaction answers ErrStale
	}
	// The statement is the commit, yet unlike InTx's COMMIT it runs on the
	// caller's context: a client that leaves, or a request timeout while
	// the database stalls, ends it, which most likely rolls it back. Should
	// PostgreSQL have applied it all the same, the refresh is reported as
	// failed (unavailable, or client_gone) while the row moved on, which
	// the protocol makes safe: the retry with the same token is a grace
	// answer or a lost-response successor. (InTx's COMMIT may carry a reuse
	// revocation, which must never go unreported; a rotation carries
	// nothing to report.) A batch (batch.go) belongs to no one caller and
	// runs on its own context; a caller that leaves is reported failed as
	// soon as it does, and its row commits or not with the batch, the same
	// case.
	//
	// This path is taken behind a transaction-mode pooler with settings,
	// and with WithRotationBatches(-1).
	if s.setup == "" {
		c := rotationCall{r: &r}
		one(ctx, conn, &c)
		return c.out, c.err
	}
	// Behind a transaction-mode pooler the settings hold only inside a
	// transaction: BEGIN, the settings, the UPDATE and COMMIT still go in
	// one round trip.
	br, err := inSetupTx(ctx, conn, s.setup, rotateOne, rotationArgs(&r))
	return scanRotated(&pooledRow{br: br, err: err}, &r)
}

// rotateOne is RotateSession's statement.
const rotateOne = `UPDATE sessions SET parent_gen = gen, gen = gen + 1, rotated_at = $5, handed_at = GREATEST(handed_at, $5), last_used_at = $5,
  idle_expires_at = $6, ip = $7, rotated_ip = $7, user_agent = $8, rotated_user_agent = $8
WHERE id = (SELECT id FROM sessions WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED) AND gen = $2 AND client_id = $3 AND dpop_jkt IN ('', $4)
  AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5) AND idle_expires_at > $5
RETURNING ` + rotatedCols

// rotateMany is rotateOne for several sessions at once (batch.go): row by
// row the same SET and the same conditions, the parameters arrays of
// rotateOne's, one element a session. The batch never holds one session
// twice.
const rotateMany = `UPDATE sessions s SET parent_gen = s.gen, gen = s.gen + 1, rotated_at = v.now, handed_at = GREATEST(s.handed_at, v.now), last_used_at = v.now,
  idle_expires_at = v.idle, ip = v.ip, rotated_ip = v.ip, user_agent = v.ua, rotated_user_agent = v.ua
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[]) AS v(id, gen, client_id, jkt, now, idle, ip, ua)
WHERE s.id = v.id AND s.id IN (SELECT id FROM sessions WHERE id = ANY($1) FOR NO KEY UPDATE SKIP LOCKED) AND s.gen = v.gen AND s.client_id = v.client_id
  AND s.dpop_jkt IN ('', v.jkt) AND s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > v.now) AND s.idle_expires_at > v.now
RETURNING s.id, s.user_id, s.scope, s.expires_at, s.dpop_jkt`

// rotationArgs are rotateOne's parameters.
func rotationArgs(r *session.Rotation) []any {
	return []any{r.ID, int64(r.Gen), r.ClientID, r.DPoPJKT, r.Now, r.IdleExpiresAt, r.IP, r.UserAgent}
}

// rotatedCols are the columns RotateSession returns: of
// session.RotatedFields those its WHERE does not fix. id and client_id
// are the request's (id = $1, client_id = $3), and gen is the presented
// one plus one (gen = $2, SET gen = gen + 1); each column scanned costs
// a refresh CPU (docs/performance.md).
const rotatedCols = `user_id, scope, expires_at, dpop_jkt`

func scanRotated(row pgx.Row, r *session.Rotation) (session.Session, error) {
	var (
		s       = session.Session{ID: r.ID, ClientID: r.ClientID, Gen: r.Gen + 1}
		expires *time.Time
	)
	if err := row.Scan(&s.UserID, &s.Scope, &expires, &s.DPoPJKT); err != nil {
		return session.Session{}, translate(err)
	}
	s.ExpiresAt = fromNull(expires)
	return s, nil
}

func oneRow(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() != 1 {
		return session.ErrNotFound
	}
	return nil
}

func (t *txn) RevokeSessions(ctx context.Context, r session.Revocation) ([]string, error) {
	where := `revoked_at IS NULL AND `
	args := []any{r.At, r.Reason, r.Until}
	switch r.Scope {
	case session.ScopeOne:
		where += `id = $4`
		args = append(args, r.SessionID)
		if r.UserID != "" {
			where += ` AND user_id = $5`
			args = append(args, r.UserID)
		}
	case session.ScopeOthers:
		where += `user_id = $4 AND id <> $5`
		args = append(args, r.UserID, r.SessionID)
	case session.ScopeAll:
		switch {
		case r.UserID != "" && r.ClientID != "":
			where += `user_id = $4 AND client_id = $5`
			args = append(args, r.UserID, r.ClientID)
		case r.ClientID != "":
			where += `client_id = $4`
			args = append(args, r.ClientID)
		default:
			where += `user_id = $4`
			args = append(args, r.UserID)
		}
	default:
		return nil, fmt.Errorf("postgres: unknown revocation scope %q", r.Scope)
	}
	// One statement revokes the sessions and appends their feed entries.
	br, err := t.send(ctx, `WITH revoked AS (
		UPDATE sessions SET revoked_at = $1::timestamptz, revoke_reason = $2 WHERE `+where+` RETURNING id
	), fed AS (
		INSERT INTO revocations (session_id, revoked_at, until) SELECT id, $1::timestamptz, $3::timestamptz FROM revoked ORDER BY id
	)
	SELECT id FROM revoked ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	var ids []string
	if err == nil {
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && len(ids) > 0 {
		// Delivered at commit, and only then, to every node's listener: sent
		// with the commit's batch, it costs no round trip.
		t.later(anyTag, `SELECT pg_notify($1, pg_current_xact_id()::text)`, feedChannel)
	}
	return ids, translate(err)
}

func (t *txn) AppendAudit(ctx context.Context, e audit.Event) error {
	t.later(anyTag, `INSERT INTO audit_events (at, type, user_id, session_id, client_id, ip, user_agent, detail, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		e.At, e.Type, e.UserID, e.SessionID, e.ClientID, e.IP, e.UserAgent, e.Detail, e.Actor)
	return nil
}

func (t *txn) DeleteClient(ctx context.Context, id string) error {
	if err := oneRow(t.exec(ctx, `DELETE FROM clients WHERE id = $1`, id)); err != nil {
		return err
	}
	t.notifyClient(id)
	return nil
}

// notifyClient tells every node's client cache, at commit, that client id
// changed (Listen); it goes out with the commit's batch.
func (t *txn) notifyClient(id string) {
	t.later(anyTag, `SELECT pg_notify($1, $2)`, clientsChannel, id)
}

func (t *txn) PutClient(ctx context.Context, c session.Client) error {
	_, err := t.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, secret_hash = excluded.secret_hash, audience = excluded.audience,
		access_ttl_us = excluded.access_ttl_us, grants = excluded.grants, scopes = excluded.scopes,
		web = excluded.web, origins = excluded.origins, claims = excluded.claims, dpop_required = excluded.dpop_required`,
		c.ID, c.Name, c.SecretHash, strings.Join(c.Audiences, " "), c.AccessTTL.Microseconds(), strings.Join(c.Grants, " "), strings.Join(c.Scopes, " "), c.CreatedAt, c.Web, strings.Join(c.Origins, " "), strings.Join(c.Claims, " "), c.DPoPRequired)
	if err != nil {
		return translate(err)
	}
	t.notifyClient(c.ID)
	return nil
}

func (t *txn) LockClient(ctx context.Context, id string) (session.Client, error) {
	return queryRow(ctx, t, scanClient, `SELECT `+clientCols+` FROM clients WHERE id = $1 FOR UPDATE`, id)
}

// ---- account lifecycle: message tokens and the outbox ----

const tokenCols = `hash, user_id, purpose, email, created_at, expires_at, session_id`

func scanToken(r pgx.Row) (session.MessageToken, error) {
	var t session.MessageToken
	if err := r.Scan(&t.Hash, &t.UserID, &t.Purpose, &t.Email, &t.CreatedAt, &t.ExpiresAt, &t.SessionID); err != nil {
		return session.MessageToken{}, translate(err)
	}
	t.CreatedAt, t.ExpiresAt = utc(t.CreatedAt), utc(t.ExpiresAt)
	return t, nil
}

// MessageToken implements session.Store.
func (s *Store) MessageToken(ctx context.Context, hash []byte) (session.MessageToken, error) {
	return scanToken(s.db.QueryRow(ctx, `SELECT `+tokenCols+` FROM message_tokens WHERE hash = $1`, hash))
}

func (t *txn) PutMessageToken(ctx context.Context, m session.MessageToken) error {
	t.later(anyTag, `DELETE FROM message_tokens WHERE user_id = $1 AND purpose = $2`, m.UserID, m.Purpose)
	t.later(anyTag, `INSERT INTO message_tokens (`+tokenCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		m.Hash, m.UserID, m.Purpose, m.Email, m.CreatedAt, m.ExpiresAt, m.SessionID)
	return nil
}

func (t *txn) TakeMessageToken(ctx context.Context, hash []byte) (session.MessageToken, error) {
	// DELETE takes the row lock: of two requests with one token, the
	// second waits, then finds nothing.
	return queryRow(ctx, t, scanToken, `DELETE FROM message_tokens WHERE hash = $1 RETURNING `+tokenCols, hash)
}

func (t *txn) DeleteMessageTokens(ctx context.Context, userID string) error {
	t.later(anyTag, `DELETE FROM message_tokens WHERE user_id = $1`, userID)
	return nil
}

func (t *txn) EnqueueMessage(ctx context.Context, m session.Message) error {
	t.later(anyTag, `INSERT INTO outbox (id, user_id, body, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4)`,
		m.ID, m.UserID, m.Body, m.CreatedAt)
	return nil
}

func (t *txn) DeleteUser(ctx context.Context, id string) error {
	// Audit rows stay, keyed by the user id alone: the IP, user agent and
	// free-text detail (which may quote them) go.
	t.later(anyTag, `UPDATE audit_events SET ip = '', user_agent = '', detail = '' WHERE user_id = $1`, id)
	// Sessions, message tokens and queued messages go by ON DELETE CASCADE.
	return oneRow(t.exec(ctx, `DELETE FROM users WHERE id = $1`, id))
}

// ClaimMessages claims up to limit outbox messages due at now, for lease:
// until then no other sender takes them (SKIP LOCKED lets senders on other
// nodes pass over rows being claimed). A claim that runs out (its sender
// died) makes the message due again.
func (s *Store) ClaimMessages(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]session.Message, error) {
	return collect(ctx, s.db, func(r pgx.Row) (session.Message, error) {
		var m session.Message
		err := r.Scan(&m.ID, &m.UserID, &m.Body, &m.CreatedAt, &m.Attempts)
		m.CreatedAt = utc(m.CreatedAt)
		return m, translate(err)
	}, `UPDATE outbox SET claimed_until = $2, attempts = attempts + 1
		WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
			ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING id, user_id, body, created_at, attempts`, now, now.Add(lease), limit)
}

// MessageSent deletes a delivered message.
func (s *Store) MessageSent(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM outbox WHERE id = $1`, id)
	return translate(err)
}

// MessageFailed releases a claimed message for another attempt at retry.
func (s *Store) MessageFailed(ctx context.Context, id string, retry time.Time, reason string) error {
	_, err := s.db.Exec(ctx, `UPDATE outbox SET claimed_until = NULL, next_attempt_at = $2, last_error = $3 WHERE id = $1`, id, retry, reason)
	return translate(err)
}

// NextMessageDue implements mail.Outbox: when the earliest message not
// due at now (a retry, or a claim still running) will be.
func (s *Store) NextMessageDue(ctx context.Context, now time.Time) (time.Time, bool, error) {
	var at *time.Time
	err := s.db.QueryRow(ctx, `SELECT min(GREATEST(next_attempt_at, COALESCE(claimed_until, next_attempt_at))) FROM outbox
		WHERE next_attempt_at > $1 OR claimed_until > $1`, now).Scan(&at)
	if err != nil || at == nil {
		return time.Time{}, false, translate(err)
	}
	return utc(*at), true, nil
}

// PendingMessages counts the messages in the outbox.
func (s *Store) PendingMessages(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
	return n, translate(err)
}
