package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A transaction-mode connection pooler (PgBouncer with pool_mode =
// transaction) gives a client a server connection for one transaction at
// a time, so nothing may outlive a transaction on the server:
//
//   - no named prepared statements (pgx's default caches one per query
//     on each connection): the pooled mode uses QueryExecModeExec, the
//     extended protocol with the unnamed statement, still one round trip
//     per statement;
//   - no session settings: PgBouncer forwards only a few startup
//     parameters (application_name, client_encoding, DateStyle, TimeZone,
//     standard_conforming_strings) and refuses the others, so every other
//     setting of the URL (search_path, statement_timeout,
//     idle_in_transaction_session_timeout, …) is applied inside each
//     transaction with set_config(…, true), which ends with it.
//
// The URL parameter pooler=transaction selects this mode; it is not sent
// to the server.
const poolerParam = "pooler"

// forwarded are the startup parameters PgBouncer keeps per client and
// sets on whichever server connection serves it (its "tracked" parameters).
var forwarded = []string{"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}

// pooler configures cfg for the pooler the URL names (deleting the
// parameter) and returns whether there is one and the statement that
// applies the session settings inside a transaction ("" when none).
func pooler(cfg *pgxpool.Config) (on bool, setup string, err error) {
	rp := cfg.ConnConfig.RuntimeParams
	mode, ok := rp[poolerParam]
	delete(rp, poolerParam)
	if !ok {
		return false, "", nil
	}
	if mode != "transaction" {
		return false, "", fmt.Errorf("postgres: the database URL is not valid: %s is transaction (PgBouncer's pool_mode = transaction) or absent, not %q", poolerParam, mode)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	var names []string
	for k := range rp {
		if !slices.Contains(forwarded, strings.ToLower(k)) {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return true, "", nil
	}
	slices.Sort(names)
	calls := make([]string, len(names))
	for i, k := range names {
		// Literals, not parameters: the statement also runs inside the
		// simple-protocol BEGIN of pgx.TxOptions.BeginQuery.
		calls[i] = "set_config(" + quote(k) + ", " + quote(rp[k]) + ", true)"
		delete(rp, k)
	}
	return true, "SELECT " + strings.Join(calls, ", "), nil
}

// TransactionPooled reports whether the URL said pooler=transaction:
// then no two statements outside one transaction are sure to share a
// server session, so anything session-scoped (LISTEN, advisory locks held
// across transactions, temporary tables) needs its own direct connection
// or must not be used.
func (s *Store) TransactionPooled() bool { return s.txPooled }

// quote is a SQL string literal (standard_conforming_strings is on, so
// only the quote itself is doubled).
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// dbtx is what the store's statements outside InTx run on: the pool, or
// behind a transaction-mode pooler with session settings, pooled.
type dbtx interface {
	querier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// pooled runs each statement in its own transaction that first applies the
// session settings: BEGIN, the settings, the statement and COMMIT go out
// in one batch, so a lone statement still costs one round trip.
type pooled struct {
	pool  *pgxpool.Pool
	setup string
}

func (p *pooled) batch(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	return inSetupTx(ctx, p.pool, p.setup, sql, args)
}

// inSetupTx sends BEGIN, the settings, sql and COMMIT in one batch on b (the
// pool, or a connection already taken) and reads the first two; the caller
// reads sql's result, then finish (pooledRow and pooledRows do).
func inSetupTx(ctx context.Context, b interface {
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}, setup, sql string, args []any) (pgx.BatchResults, error) {
	batch := &pgx.Batch{}
	batch.Queue("BEGIN")
	batch.Queue(setup)
	batch.Queue(sql, args...)
	batch.Queue("COMMIT")
	br := b.SendBatch(ctx, batch)
	for range 2 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, err
		}
	}
	return br, nil
}

// finish reads COMMIT's result and closes the batch; err is the
// statement's error, which wins.
func finish(br pgx.BatchResults, err error) error {
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

func (p *pooled) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := p.batch(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	return tag, finish(br, err)
}

func (p *pooled) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	br, err := p.batch(ctx, sql, args)
	return &pooledRow{br: br, err: err}
}

func (p *pooled) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	br, err := p.batch(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, finish(br, err)
	}
	return &pooledRows{Rows: rows, br: br}, nil
}

// Begin starts a transaction whose first statement applies the settings;
// both go in BEGIN's round trip.
func (p *pooled) Begin(ctx context.Context) (pgx.Tx, error) {
	return p.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: "BEGIN; " + p.setup})
}

type pooledRow struct {
	br  pgx.BatchResults
	err error
}

func (r *pooledRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return finish(r.br, r.br.QueryRow().Scan(dest...))
}

// pooledRows reads COMMIT once the rows are done: when Next runs out or
// Close is called, whichever comes first.
type pooledRows struct {
	pgx.Rows
	br   pgx.BatchResults
	done bool
	err  error
}

func (r *pooledRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *pooledRows) Close() {
	if r.done {
		return
	}
	r.done = true
	r.Rows.Close()
	r.err = finish(r.br, r.Rows.Err())
}

func (r *pooledRows) Err() error {
	if r.done {
		return r.err
	}
	return r.Rows.Err()
}

// opening is how many statements a txn's first batch sends before its
// own: BEGIN, and the settings behind a transaction-mode pooler.
func (t *txn) opening(begin bool) int {
	switch {
	case !begin:
		return 0
	case t.setup != "":
		return 2
	}
	return 1
}
