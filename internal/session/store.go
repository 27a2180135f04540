package session

import (
	"context"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// Storage, by concern. The service needs each of these; Store is their sum,
// what New takes. The SQLite and PostgreSQL stores implement all of them
// with the same behaviour (storetest is the conformance suite). Storage that
// other packages need is declared there: the signing keys and secrets in
// package token (token.Store, token.Resealer), the revocation feed's reads
// in package feed (feed.Source), the outbox's in package mail
// (mail.Outbox).

// Transactor runs work in one storage transaction.
type Transactor interface {
	// InTx runs fn in one transaction, committing if fn returns nil and
	// rolling back otherwise. Once fn has returned nil, ctx's cancellation
	// no longer reaches the commit (PostgreSQL commits on a context the
	// caller cannot cancel, with a deadline; SQLite's database/sql rolls
	// back, and says so, if ctx is done before Commit starts): a nil error
	// is returned for every transaction that committed, so its outcome is
	// reported (Observer, OnCommit hooks, logs) even for a caller that left.
	InTx(ctx context.Context, fn func(Tx) error) error
}

// Tx is the work a store does inside one transaction, by concern.
type Tx interface {
	UserTx
	SessionTx
	ClientTx
	AuditTx
	MessageTx
}

// UserTx changes accounts inside a transaction.
type UserTx interface {
	InsertUser(ctx context.Context, u User) error
	// LockUser reads a user and locks the row until the transaction ends;
	// every change to a user is made on a copy read this way, so two
	// changes never overwrite each other with stale columns.
	LockUser(ctx context.Context, id string) (User, error)
	// UpdateUser writes u's email, password, disabled, verified and
	// metadata columns; ErrEmailTaken if another user holds the email.
	UpdateUser(ctx context.Context, u User) error
	// DeleteUser deletes the user with everything keyed to them (sessions,
	// message tokens, queued messages) and blanks the IP and user agent of
	// their audit events, which keep only the user id; ErrNotFound if there
	// is none. Revoke the user's sessions first, in the same transaction,
	// so the revocation feed hears of them.
	DeleteUser(ctx context.Context, id string) error
}

// SessionTx changes sessions and their refresh state inside a transaction.
// LockSession takes a row lock (or the database's write lock) held until
// the transaction ends.
type SessionTx interface {
	InsertSession(ctx context.Context, s Session) error
	LockSession(ctx context.Context, id string) (Session, error)
	UpdateSession(ctx context.Context, s Session) error
	// RevokeSessions revokes the active sessions that r selects, appends a
	// revocation-feed entry for each, and returns their ids.
	RevokeSessions(ctx context.Context, r Revocation) ([]string, error)
}

// Rotator is a store that writes the rotation table's common row in one
// statement (Rotation, rotation.go). Refresh uses it when the store has it,
// and the locked transaction for everything else. Both Latch stores have it
// (storetest holds them to rotate, row by row); a wrapping store that does
// not pass it on sends every refresh through InTx.
type Rotator interface {
	// RotateSession applies r in one statement if, and only if, the row
	// holds every condition of r, and returns what the refresh mints from,
	// as written: the session's ID, UserID, ClientID, Scope, ExpiresAt, Gen
	// and DPoPJKT (RotatedFields; the rest is zero). It returns
	// ErrNotFound, and changes nothing, when the row is missing or any
	// condition fails.
	RotateSession(ctx context.Context, r Rotation) (Session, error)
}

// ClientTx changes registered clients inside a transaction.
type ClientTx interface {
	PutClient(ctx context.Context, c Client) error
	// LockClient reads a client and locks its row until the transaction
	// ends (SQLite: the transaction already holds the write lock).
	LockClient(ctx context.Context, id string) (Client, error)
	// DeleteClient deletes a client; ErrNotFound if there is none.
	DeleteClient(ctx context.Context, id string) error
}

// MessageTx keeps the one-time tokens of account email (verification,
// reset) and queues the messages that carry them, with the change that
// made them.
type MessageTx interface {
	// PutMessageToken stores t, deleting the user's other tokens of the
	// same purpose: a newer token voids the older.
	PutMessageToken(ctx context.Context, t MessageToken) error
	// TakeMessageToken deletes the token whose hash is hash and returns
	// it; ErrNotFound if there is none. A token is taken once.
	TakeMessageToken(ctx context.Context, hash []byte) (MessageToken, error)
	// DeleteMessageTokens deletes every message token of the user.
	DeleteMessageTokens(ctx context.Context, userID string) error
	// EnqueueMessage writes m to the outbox; the sender delivers it after
	// the transaction commits (its reads are mail.Outbox).
	EnqueueMessage(ctx context.Context, m Message) error
}

// AuditTx records audit events with the change they describe.
type AuditTx interface {
	AppendAudit(ctx context.Context, e audit.Event) error
}

// UserStore reads accounts.
type UserStore interface {
	User(ctx context.Context, id string) (User, error)
	UserByEmail(ctx context.Context, email string) (User, error)
	Users(ctx context.Context) ([]User, error)
	// ListUsers returns one page of users in (CreatedAt, ID) order, after
	// q.After: a keyset cursor on immutable columns, so a walk never
	// repeats a user nor skips one that existed throughout, whatever is
	// inserted meanwhile.
	ListUsers(ctx context.Context, q UserQuery) ([]User, error)
}

// SessionStore reads sessions.
type SessionStore interface {
	Session(ctx context.Context, id string) (Session, error)
	// UserSessions returns the user's sessions that have not been deleted,
	// newest first.
	UserSessions(ctx context.Context, userID string) ([]Session, error)
}

// ClientStore reads registered clients.
type ClientStore interface {
	Client(ctx context.Context, id string) (Client, error)
	Clients(ctx context.Context) ([]Client, error)
}

// MessageTokenStore reads message tokens outside a transaction.
type MessageTokenStore interface {
	// MessageToken returns the message token whose hash is hash, without
	// taking it; ErrNotFound if there is none.
	MessageToken(ctx context.Context, hash []byte) (MessageToken, error)
}

// AuditStore reads the audit trail and applies its retention.
type AuditStore interface {
	// AuditEvents returns the events q selects, newest first (by
	// Event.ID, descending; q.BeforeID continues a walk).
	AuditEvents(ctx context.Context, q audit.Query) ([]audit.Event, error)
	// DeleteAudit deletes audit events older than before.
	DeleteAudit(ctx context.Context, before time.Time) (int64, error)
}

// Sweeper deletes what has expired.
type Sweeper interface {
	// DeleteStale deletes sessions revoked or expired before cutoff, feed
	// entries whose until is before now and message tokens expired before
	// now; it returns the sessions deleted.
	DeleteStale(ctx context.Context, cutoff, now time.Time) (int64, error)
}

// Store is the storage the service needs: every concern above.
type Store interface {
	Transactor
	UserStore
	SessionStore
	ClientStore
	MessageTokenStore
	AuditStore
	Sweeper
}

// UserQuery selects a page of users.
type UserQuery struct {
	// EmailPrefix keeps users whose (normalised) email starts with it.
	EmailPrefix string
	// After continues a walk: only users after this position.
	After *UserCursor
	Limit int
}

// UserCursor is a position in the user list: the last user seen.
type UserCursor struct {
	CreatedAt time.Time
	ID        string
}
