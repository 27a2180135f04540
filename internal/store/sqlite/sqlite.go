// Package sqlite implements Latch's storage on SQLite through a pure-Go
// driver (modernc.org/sqlite, no cgo), in WAL mode.
//
// SQLite has one writer at a time. The store keeps that explicit: every
// transaction runs on a single-connection writer pool and begins IMMEDIATE,
// so it holds the database's write lock from its first statement; that lock
// is the row lock that serialises refreshes. Reads outside transactions use a
// separate pool and never wait for writers (WAL).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/migrations"
)

// The store also implements token.Store and token.Resealer; that is
// asserted in a test, since importing token would link go-jose and net/http.
var _ session.Store = (*Store)(nil)

// Store is a SQLite database. It is safe for concurrent use.
type Store struct {
	w      *sql.DB // one connection; all transactions
	r      *sql.DB // readers
	limits Limits
}

// Limits bound how long a caller waits on the database, so that a node at
// capacity answers fast instead of queueing requests until their clients
// give up.
type Limits struct {
	// AcquireWait bounds the wait for the single writer connection; past
	// it InTx fails with session.ErrBusy (wrapped with ErrUnavailable: 503
	// with Retry-After).
	AcquireWait time.Duration
	// CallTimeout bounds each InTx transaction, the wait included. Reads
	// run on their caller's deadline (every HTTP request has one).
	CallTimeout time.Duration
}

// Defaults of Limits: a transaction holds the writer for well under a
// millisecond, so 250 ms is hundreds deep; a longer queue only adds
// latency the client times out on.
const (
	DefaultAcquireWait = 250 * time.Millisecond
	DefaultCallTimeout = 10 * time.Second
)

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

// MaxConns is the number of connections the store holds: the writer and
// the readers.
func (s *Store) MaxConns() int { return 1 + maxReaders }

const maxReaders = 4

// ErrNoDatabase is returned by Open with [MustExist] when the file does
// not exist.
var ErrNoDatabase = errors.New("sqlite: no database file")

// Option configures [Open].
type Option func(*options)

type options struct {
	mustExist bool
	limits    Limits
}

// MustExist makes Open refuse to create the database file: it opens an
// existing file read-write (SQLite's mode=rw, sqlite.org/uri.html section
// 3.3) and returns an error wrapping [ErrNoDatabase] otherwise, so that a
// mistyped path does not become an empty database.
func MustExist() Option { return func(o *options) { o.mustExist = true } }

// Open opens (creating if needed, unless [MustExist]) the database file at
// path. It does not migrate; call Migrate.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	if path == "" || strings.HasPrefix(path, ":memory:") {
		return nil, errors.New("sqlite: a file path is required (in-memory databases are not shared between connections)")
	}
	o := options{limits: Limits{AcquireWait: DefaultAcquireWait, CallTimeout: DefaultCallTimeout}}
	for _, f := range opts {
		f(&o)
	}
	q := url.Values{}
	// secure_delete: deleted rows are overwritten with zeros, so an erased
	// account's email and sessions do not linger in free space of the
	// file (sqlite.org/pragma.html#pragma_secure_delete).
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(ON)", "synchronous(NORMAL)", "secure_delete(ON)"} {
		q.Add("_pragma", p)
	}
	if o.mustExist {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s", ErrNoDatabase, path)
		}
		// Also the driver's own open: the file may vanish after the
		// check, and SQLite must not create it then either.
		q.Set("mode", "rw")
	} else {
		// SQLite creates a database file with mode 0644 and gives its -wal
		// and -shm files the database file's mode: create it 0600 first,
		// so other local users cannot read sessions, the audit trail or
		// sealed keys. An existing file keeps the mode its operator gave
		// it.
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		f.Close()
	}
	// The name is the path of an SQLite URI (sqlite.org/uri.html section
	// 3.1): an unescaped '?' or '#' would end it and turn the rest of the
	// file name into driver and SQLite parameters, so escape them (and '%').
	dsn := "file:" + uriPath.Replace(path) + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(maxReaders)
	s := &Store{w: w, r: r, limits: o.limits}
	if err := w.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

var uriPath = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// Close closes the database.
func (s *Store) Close() error { return errors.Join(s.r.Close(), s.w.Close()) }

// Stats returns the statistics of the writer pool (one connection, every
// transaction) and of the reader pool, for metrics.
func (s *Store) Stats() (writer, reader sql.DBStats) { return s.w.Stats(), s.r.Stats() }

// Ping checks that the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Migrate applies the embedded migrations that have not run yet and returns
// the versions it applied.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return nil, fmt.Errorf("sqlite: migrate: %w", err)
	}
	names, err := fs.Glob(migrations.SQLite, "sqlite/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var applied []string
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "sqlite/"), ".sql")
		body, err := migrations.SQLite.ReadFile(name)
		if err != nil {
			return applied, err
		}
		err = s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil || n > 0 {
				return err
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", version, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, micros(time.Now())); err != nil {
				return err
			}
			applied = append(applied, version)
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("sqlite: migrate: %w", err)
		}
	}
	return applied, nil
}

func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.limits.CallTimeout)
	defer cancel()
	conn, err := s.writer(ctx)
	if err != nil {
		return err
	}
	defer conn.Close() // back to the pool
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return translate(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return translate(tx.Commit())
}

// writer takes the writer connection, waiting at most AcquireWait.
func (s *Store) writer(ctx context.Context) (*sql.Conn, error) {
	wctx, cancel := context.WithTimeout(ctx, s.limits.AcquireWait)
	defer cancel()
	conn, err := s.w.Conn(wctx)
	switch {
	case err == nil:
		return conn, nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return nil, fmt.Errorf("%w: %w: sqlite: the writer was not free within %s", session.ErrUnavailable, session.ErrBusy, s.limits.AcquireWait)
	}
	return nil, translate(err)
}

// InTx implements session.Store.
func (s *Store) InTx(ctx context.Context, fn func(session.Tx) error) error {
	var t *txn
	err := s.tx(ctx, func(tx *sql.Tx) error {
		t = &txn{tx: tx}
		return fn(t)
	})
	if err == nil && t != nil && t.erased {
		// The deleted user's rows were overwritten in the database, but
		// the WAL still holds the old pages until a checkpoint resets it:
		// copy it back and truncate it now. Best effort (a long reader
		// can hold it up); the next checkpoint does it anyway.
		s.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	return err
}

// translate maps driver errors to the domain's sentinels.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return session.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_INTERRUPT: // the driver interrupts a statement whose context ended
			return fmt.Errorf("%w: %w", session.ErrUnavailable, err)
		}
	}
	// A context that ended (a deadline, or a caller that left: the session
	// service tells the two apart) is no answer from the database, as on
	// PostgreSQL, rather than an internal error.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", session.ErrUnavailable, err)
	}
	return err
}

func isUnique(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// Times are stored as Unix microseconds; NULL for the zero time.
func micros(t time.Time) int64 { return t.UnixMicro() }

func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

type rowScanner interface{ Scan(dest ...any) error }

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ---- sessions ----

const sessionCols = `id, user_id, client_id, scope, created_at, last_used_at, user_agent, ip, expires_at, idle_expires_at, gen, parent_gen, handed_at, rotated_at, revoked_at, revoke_reason, rotated_ip, rotated_user_agent, dpop_jkt`

func scanSession(r rowScanner) (session.Session, error) {
	var (
		s                                        session.Session
		created, lastUsed, idle, handed, rotated int64
		expires, revoked                         sql.NullInt64
		gen, parent                              int64
	)
	err := r.Scan(&s.ID, &s.UserID, &s.ClientID, &s.Scope, &created, &lastUsed, &s.UserAgent, &s.IP, &expires, &idle, &gen, &parent, &handed, &rotated, &revoked, &s.RevokeReason, &s.RotatedIP, &s.RotatedUserAgent, &s.DPoPJKT)
	if err != nil {
		return session.Session{}, translate(err)
	}
	s.CreatedAt, s.LastUsedAt, s.IdleExpiresAt = fromMicros(created), fromMicros(lastUsed), fromMicros(idle)
	s.HandedAt, s.RotatedAt = fromMicros(handed), fromMicros(rotated)
	s.ExpiresAt, s.RevokedAt = fromNull(expires), fromNull(revoked)
	s.Gen, s.ParentGen = uint64(gen), uint64(parent)
	return s, nil
}

func getSession(ctx context.Context, q querier, id string) (session.Session, error) {
	return scanSession(q.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id))
}

// Session implements session.Store.
func (s *Store) Session(ctx context.Context, id string) (session.Session, error) {
	return getSession(ctx, s.r, id)
}

// UserSessions implements session.Store.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]session.Session, error) {
	return collect(ctx, s.r, scanSession, `SELECT `+sessionCols+` FROM sessions WHERE user_id = ? ORDER BY created_at DESC, id`, userID)
}

// DeleteStale implements session.Store.
func (s *Store) DeleteStale(ctx context.Context, cutoff, now time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		c := micros(cutoff)
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE (revoked_at IS NOT NULL AND revoked_at < ?) OR (expires_at IS NOT NULL AND expires_at < ?) OR idle_expires_at < ?`, c, c, c)
		if err != nil {
			return translate(err)
		}
		n, _ = res.RowsAffected()
		if _, err = tx.ExecContext(ctx, `DELETE FROM revocations WHERE until < ?`, micros(now)); err != nil {
			return translate(err)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM message_tokens WHERE expires_at < ?`, micros(now))
		return translate(err)
	})
	return n, err
}

// ---- users ----

const userCols = `id, email, password_hash, created_at, password_changed_at, disabled_at, email_verified_at, user_metadata, app_metadata`

func scanUser(r rowScanner) (session.User, error) {
	var (
		u                  session.User
		created, changed   int64
		disabled, verified sql.NullInt64
		meta, appMeta      string
	)
	if err := r.Scan(&u.ID, &u.Email, &u.PasswordHash, &created, &changed, &disabled, &verified, &meta, &appMeta); err != nil {
		return session.User{}, translate(err)
	}
	u.CreatedAt, u.PasswordChangedAt, u.DisabledAt = fromMicros(created), fromMicros(changed), fromNull(disabled)
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
	where, args := []string{"1 = 1"}, []any{}
	if q.EmailPrefix != "" {
		// substr, not LIKE: a prefix holding % or _ means itself, and
		// SQLite's LIKE folds case.
		where, args = append(where, "substr(email, 1, ?) = ?"), append(args, utf8.RuneCountInString(q.EmailPrefix), q.EmailPrefix)
	}
	if q.After != nil {
		where, args = append(where, "(created_at > ? OR (created_at = ? AND id > ?))"), append(args, micros(q.After.CreatedAt), micros(q.After.CreatedAt), q.After.ID)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	return collect(ctx, s.r, scanUser, `SELECT `+userCols+` FROM users WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at, id LIMIT ?`, append(args, limit)...)
}

// User implements session.Store.
func (s *Store) User(ctx context.Context, id string) (session.User, error) {
	return scanUser(s.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
}

// UserByEmail implements session.Store.
func (s *Store) UserByEmail(ctx context.Context, email string) (session.User, error) {
	return scanUser(s.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE email = ?`, email))
}

// Users implements session.Store.
func (s *Store) Users(ctx context.Context) ([]session.User, error) {
	return collect(ctx, s.r, scanUser, `SELECT `+userCols+` FROM users ORDER BY created_at, id`)
}

// ---- clients ----

const clientCols = `id, name, secret_hash, audience, access_ttl_us, grants, scopes, created_at, web, origins, claims, dpop_required`

func scanClient(r rowScanner) (session.Client, error) {
	var (
		c              session.Client
		ttl, created   int64
		grants, scopes string
		audiences      string
		origins        string
		claims         string
	)
	if err := r.Scan(&c.ID, &c.Name, &c.SecretHash, &audiences, &ttl, &grants, &scopes, &created, &c.Web, &origins, &claims, &c.DPoPRequired); err != nil {
		return session.Client{}, translate(err)
	}
	c.AccessTTL = time.Duration(ttl) * time.Microsecond
	// Audiences share the one audience column, space-separated (an
	// audience has no spaces), so a row written before they were a list
	// reads as a list of one.
	c.Audiences = strings.Fields(audiences)
	c.Grants, c.Scopes = strings.Fields(grants), strings.Fields(scopes)
	c.Origins = strings.Fields(origins)
	c.CreatedAt = fromMicros(created)
	c.Claims = strings.Fields(claims)
	return c, nil
}

// Client implements session.Store.
func (s *Store) Client(ctx context.Context, id string) (session.Client, error) {
	return scanClient(s.r.QueryRowContext(ctx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
}

// Clients implements session.Store.
func (s *Store) Clients(ctx context.Context) ([]session.Client, error) {
	return collect(ctx, s.r, scanClient, `SELECT `+clientCols+` FROM clients ORDER BY id`)
}

// ---- transaction ----

type txn struct {
	tx *sql.Tx
	// erased is set by DeleteUser: InTx then empties the WAL.
	erased bool
}

func (t *txn) InsertUser(ctx context.Context, u session.User) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Email, u.PasswordHash, micros(u.CreatedAt), micros(u.PasswordChangedAt), nullMicros(u.DisabledAt), nullMicros(u.EmailVerifiedAt), metadata(u), appMetadata(u))
	if isUnique(err) {
		return session.ErrEmailTaken
	}
	return translate(err)
}

func (t *txn) LockUser(ctx context.Context, id string) (session.User, error) {
	// The transaction began IMMEDIATE and so already holds the write lock.
	return scanUser(t.tx.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
}

func (t *txn) UpdateUser(ctx context.Context, u session.User) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE users SET email = ?, password_hash = ?, password_changed_at = ?, disabled_at = ?, email_verified_at = ?, user_metadata = ?, app_metadata = ? WHERE id = ?`,
		u.Email, u.PasswordHash, micros(u.PasswordChangedAt), nullMicros(u.DisabledAt), nullMicros(u.EmailVerifiedAt), metadata(u), appMetadata(u), u.ID)
	if isUnique(err) {
		return session.ErrEmailTaken
	}
	return oneRow(res, err)
}

func (t *txn) InsertSession(ctx context.Context, s session.Session) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.UserID, s.ClientID, s.Scope, micros(s.CreatedAt), micros(s.LastUsedAt), s.UserAgent, s.IP,
		nullMicros(s.ExpiresAt), micros(s.IdleExpiresAt), int64(s.Gen), int64(s.ParentGen), micros(s.HandedAt), micros(s.RotatedAt),
		nullMicros(s.RevokedAt), s.RevokeReason, s.RotatedIP, s.RotatedUserAgent, s.DPoPJKT)
	return translate(err)
}

func (t *txn) LockSession(ctx context.Context, id string) (session.Session, error) {
	// The transaction began IMMEDIATE and so already holds the write lock.
	return getSession(ctx, t.tx, id)
}

func (t *txn) UpdateSession(ctx context.Context, s session.Session) error {
	res, err := t.tx.ExecContext(ctx, `UPDATE sessions SET last_used_at = ?, user_agent = ?, ip = ?, idle_expires_at = ?, gen = ?, parent_gen = ?, handed_at = ?, rotated_at = ?, rotated_ip = ?, rotated_user_agent = ? WHERE id = ?`,
		micros(s.LastUsedAt), s.UserAgent, s.IP, micros(s.IdleExpiresAt), int64(s.Gen), int64(s.ParentGen), micros(s.HandedAt), micros(s.RotatedAt), s.RotatedIP, s.RotatedUserAgent, s.ID)
	return oneRow(res, err)
}

// RotateSession implements session.Rotator: the rotation table's common
// row as one UPDATE on the writer connection, which runs it as a
// transaction of its own, so it serialises with every other write.
func (s *Store) RotateSession(ctx context.Context, r session.Rotation) (session.Session, error) {
	var next session.Session
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// BEGIN IMMEDIATE holds the write lock: the client may have left
		// while this waited for it.
		if r.Awaited != nil && !r.Awaited() {
			return session.ErrNotFound
		}
		now := micros(r.Now)
		row := tx.QueryRowContext(ctx, `UPDATE sessions SET parent_gen = gen, gen = gen + 1, rotated_at = ?5, handed_at = max(handed_at, ?5), last_used_at = ?5,
  idle_expires_at = ?6, ip = ?7, rotated_ip = ?7, user_agent = ?8, rotated_user_agent = ?8
WHERE id = ?1 AND gen = ?2 AND client_id = ?3 AND dpop_jkt IN ('', ?4)
  AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?5) AND idle_expires_at > ?5
RETURNING id, user_id, client_id, scope, expires_at, gen, dpop_jkt`,
			r.ID, int64(r.Gen), r.ClientID, r.DPoPJKT, now, micros(r.IdleExpiresAt), r.IP, r.UserAgent)
		var (
			expires sql.NullInt64
			gen     int64
		)
		if err := row.Scan(&next.ID, &next.UserID, &next.ClientID, &next.Scope, &expires, &gen, &next.DPoPJKT); err != nil {
			return translate(err)
		}
		next.ExpiresAt, next.Gen = fromNull(expires), uint64(gen)
		return nil
	})
	if err != nil {
		return session.Session{}, err
	}
	return next, nil
}

func (t *txn) RevokeSessions(ctx context.Context, r session.Revocation) ([]string, error) {
	q := `UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE revoked_at IS NULL AND `
	args := []any{micros(r.At), r.Reason}
	switch r.Scope {
	case session.ScopeOne:
		q += `id = ?`
		args = append(args, r.SessionID)
		if r.UserID != "" {
			q += ` AND user_id = ?`
			args = append(args, r.UserID)
		}
	case session.ScopeOthers:
		q += `user_id = ? AND id <> ?`
		args = append(args, r.UserID, r.SessionID)
	case session.ScopeAll:
		switch {
		case r.UserID != "" && r.ClientID != "":
			q += `user_id = ? AND client_id = ?`
			args = append(args, r.UserID, r.ClientID)
		case r.ClientID != "":
			q += `client_id = ?`
			args = append(args, r.ClientID)
		default:
			q += `user_id = ?`
			args = append(args, r.UserID)
		}
	default:
		return nil, fmt.Errorf("sqlite: unknown revocation scope %q", r.Scope)
	}
	rows, err := t.tx.QueryContext(ctx, q+` RETURNING id`, args...)
	if err != nil {
		return nil, translate(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, translate(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, translate(err)
	}
	for _, id := range ids {
		if _, err := t.tx.ExecContext(ctx, `INSERT INTO revocations (session_id, revoked_at, until) VALUES (?, ?, ?)`, id, micros(r.At), micros(r.Until)); err != nil {
			return nil, translate(err)
		}
	}
	return ids, nil
}

func (t *txn) AppendAudit(ctx context.Context, e audit.Event) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO audit_events (at, type, user_id, session_id, client_id, ip, user_agent, detail, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		micros(e.At), e.Type, e.UserID, e.SessionID, e.ClientID, e.IP, e.UserAgent, e.Detail, e.Actor)
	return translate(err)
}

func (t *txn) DeleteClient(ctx context.Context, id string) error {
	return oneRow(t.tx.ExecContext(ctx, `DELETE FROM clients WHERE id = ?`, id))
}

func (t *txn) PutClient(ctx context.Context, c session.Client) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO clients (`+clientCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, secret_hash = excluded.secret_hash, audience = excluded.audience,
		access_ttl_us = excluded.access_ttl_us, grants = excluded.grants, scopes = excluded.scopes,
		web = excluded.web, origins = excluded.origins, claims = excluded.claims, dpop_required = excluded.dpop_required`,
		c.ID, c.Name, c.SecretHash, strings.Join(c.Audiences, " "), c.AccessTTL.Microseconds(), strings.Join(c.Grants, " "), strings.Join(c.Scopes, " "), micros(c.CreatedAt), c.Web, strings.Join(c.Origins, " "), strings.Join(c.Claims, " "), c.DPoPRequired)
	return translate(err)
}

func (t *txn) LockClient(ctx context.Context, id string) (session.Client, error) {
	// The transaction began IMMEDIATE and so already holds the write lock.
	return scanClient(t.tx.QueryRowContext(ctx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
}

func oneRow(res sql.Result, err error) error {
	if err != nil {
		return translate(err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return translate(err)
	} else if n != 1 {
		return session.ErrNotFound
	}
	return nil
}

// AuditEvents returns the audit events q selects, newest first.
func (s *Store) AuditEvents(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	where, args := []string{"1 = 1"}, []any{}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, micros(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, micros(q.Until))
	}
	if q.Type != "" {
		where, args = append(where, "type = ?"), append(args, q.Type)
	}
	if q.UserID != "" {
		where, args = append(where, "user_id = ?"), append(args, q.UserID)
	}
	if q.BeforeID > 0 {
		where, args = append(where, "id < ?"), append(args, q.BeforeID)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, at, type, user_id, session_id, client_id, ip, user_agent, detail, actor FROM audit_events WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Type, &e.UserID, &e.SessionID, &e.ClientID, &e.IP, &e.UserAgent, &e.Detail, &e.Actor); err != nil {
			return nil, translate(err)
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	return out, translate(rows.Err())
}

// DeleteAudit implements session.Store.
func (s *Store) DeleteAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM audit_events WHERE at < ?`, micros(before))
	if err != nil {
		return 0, translate(err)
	}
	return res.RowsAffected()
}

// Revocations implements session.Store. SQLite has one writer, so entries
// commit in seq order and seq alone is a safe cursor: Txn is Seq.
func (s *Store) Revocations(ctx context.Context, after session.FeedCursor, limit int) ([]session.FeedEntry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, session_id, revoked_at, until FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?`, max(after.Txn, after.Seq), limit)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []session.FeedEntry
	for rows.Next() {
		var r session.FeedEntry
		var at, until int64
		if err := rows.Scan(&r.Seq, &r.SessionID, &at, &until); err != nil {
			return nil, translate(err)
		}
		r.Txn = r.Seq
		r.RevokedAt, r.Until = fromMicros(at), fromMicros(until)
		out = append(out, r)
	}
	return out, translate(rows.Err())
}

// ---- account lifecycle: message tokens and the outbox ----

const tokenCols = `hash, user_id, purpose, email, created_at, expires_at, session_id`

func scanToken(r rowScanner) (session.MessageToken, error) {
	var (
		t                session.MessageToken
		created, expires int64
	)
	if err := r.Scan(&t.Hash, &t.UserID, &t.Purpose, &t.Email, &created, &expires, &t.SessionID); err != nil {
		return session.MessageToken{}, translate(err)
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	return t, nil
}

// MessageToken implements session.Store.
func (s *Store) MessageToken(ctx context.Context, hash []byte) (session.MessageToken, error) {
	return scanToken(s.r.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM message_tokens WHERE hash = ?`, hash))
}

func (t *txn) PutMessageToken(ctx context.Context, m session.MessageToken) error {
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM message_tokens WHERE user_id = ? AND purpose = ?`, m.UserID, m.Purpose); err != nil {
		return translate(err)
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO message_tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		m.Hash, m.UserID, m.Purpose, m.Email, micros(m.CreatedAt), micros(m.ExpiresAt), m.SessionID)
	return translate(err)
}

func (t *txn) TakeMessageToken(ctx context.Context, hash []byte) (session.MessageToken, error) {
	return scanToken(t.tx.QueryRowContext(ctx, `DELETE FROM message_tokens WHERE hash = ? RETURNING `+tokenCols, hash))
}

func (t *txn) DeleteMessageTokens(ctx context.Context, userID string) error {
	_, err := t.tx.ExecContext(ctx, `DELETE FROM message_tokens WHERE user_id = ?`, userID)
	return translate(err)
}

func (t *txn) EnqueueMessage(ctx context.Context, m session.Message) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO outbox (id, user_id, body, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)`,
		m.ID, m.UserID, m.Body, micros(m.CreatedAt), micros(m.CreatedAt))
	return translate(err)
}

func (t *txn) DeleteUser(ctx context.Context, id string) error {
	// Audit rows stay, keyed by the user id alone: the IP, user agent and
	// free-text detail (which may quote them) go.
	if _, err := t.tx.ExecContext(ctx, `UPDATE audit_events SET ip = '', user_agent = '', detail = '' WHERE user_id = ?`, id); err != nil {
		return translate(err)
	}
	// Sessions, message tokens and queued messages go by ON DELETE CASCADE.
	t.erased = true
	return oneRow(t.tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id))
}

// ClaimMessages claims up to limit outbox messages due at now, for lease:
// until then no other sender takes them. A claim that runs out (its sender
// died) makes the message due again.
func (s *Store) ClaimMessages(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]session.Message, error) {
	var out []session.Message
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `UPDATE outbox SET claimed_until = ?, attempts = attempts + 1
			WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY next_attempt_at LIMIT ?)
			RETURNING id, user_id, body, created_at, attempts`, micros(now.Add(lease)), micros(now), micros(now), limit)
		if err != nil {
			return translate(err)
		}
		defer rows.Close()
		for rows.Next() {
			var m session.Message
			var created int64
			if err := rows.Scan(&m.ID, &m.UserID, &m.Body, &created, &m.Attempts); err != nil {
				return translate(err)
			}
			m.CreatedAt = fromMicros(created)
			out = append(out, m)
		}
		return translate(rows.Err())
	})
	return out, err
}

// MessageSent deletes a delivered message.
func (s *Store) MessageSent(ctx context.Context, id string) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM outbox WHERE id = ?`, id)
	return translate(err)
}

// MessageFailed releases a claimed message for another attempt at retry.
func (s *Store) MessageFailed(ctx context.Context, id string, retry time.Time, reason string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE outbox SET claimed_until = NULL, next_attempt_at = ?, last_error = ? WHERE id = ?`, micros(retry), reason, id)
	return translate(err)
}

// NextMessageDue implements mail.Outbox: when the earliest message not
// due at now (a retry, or a claim still running) will be.
func (s *Store) NextMessageDue(ctx context.Context, now time.Time) (time.Time, bool, error) {
	var at sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT min(max(next_attempt_at, COALESCE(claimed_until, next_attempt_at))) FROM outbox
		WHERE next_attempt_at > ? OR claimed_until > ?`, micros(now), micros(now)).Scan(&at)
	if err != nil || !at.Valid {
		return time.Time{}, false, translate(err)
	}
	return fromMicros(at.Int64), true, nil
}

// PendingMessages counts the messages in the outbox.
func (s *Store) PendingMessages(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
	return n, translate(err)
}

// collect runs a query and scans each row with scan.
func collect[T any](ctx context.Context, db *sql.DB, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
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
