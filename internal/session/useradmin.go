package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/password"
)

// MaxAppMetadata bounds a user's app_metadata (compacted JSON): 4 KiB, so
// that every key of it mapped into an access token keeps the token under
// bearer's default 8 KiB cap.
const MaxAppMetadata = 4 << 10

// ErrAppMetadata reports app_metadata that is not a JSON object or is
// larger than MaxAppMetadata; the error says which.
var ErrAppMetadata = errors.New("session: invalid app_metadata")

// CheckAppMetadata returns raw compacted if it is a JSON object of at most
// MaxAppMetadata bytes; "{}" and "null" clear it (""). Compacting first
// means the limit counts what is stored and put in tokens, not white space.
func CheckAppMetadata(raw []byte) (string, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", fmt.Errorf("%w: not valid JSON", ErrAppMetadata)
	}
	b := buf.Bytes()
	switch {
	case !utf8.Valid(b):
		// json.Compact lets some invalid UTF-8 through; in a mapped claim
		// it would make every access token of the user one that a
		// verifier (RFC 8259 section 8.1) rejects.
		return "", fmt.Errorf("%w: not valid UTF-8", ErrAppMetadata)
	case string(b) == "null" || string(b) == "{}":
		return "", nil
	case len(b) == 0 || b[0] != '{':
		return "", fmt.Errorf("%w: must be a JSON object", ErrAppMetadata)
	case len(b) > MaxAppMetadata:
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrAppMetadata, len(b), MaxAppMetadata)
	}
	return string(b), nil
}

// CreateUserRequest is an admin's creation of an account.
type CreateUserRequest struct {
	Email string
	// Password, if set, must meet password.CheckPolicy; without one the
	// user cannot log in with a password until one is set (a password
	// reset).
	Password string
	// AppMetadata, if set, is checked by CheckAppMetadata.
	AppMetadata []byte
}

// CreateUser creates an account for an admin, without logging anyone in;
// it is audited user.created with the admin (m.Actor).
func (s *Service) CreateUser(ctx context.Context, req CreateUserRequest, m Meta) (User, error) {
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		return User{}, err
	}
	var meta string
	if req.AppMetadata != nil {
		if meta, err = CheckAppMetadata(req.AppMetadata); err != nil {
			return User{}, err
		}
	}
	hash := ""
	if req.Password != "" {
		if err := password.CheckPolicy(req.Password, email); err != nil {
			return User{}, err
		}
		if hash, err = s.hasher.Hash(ctx, email, req.Password); err != nil {
			return User{}, err
		}
	}
	now := s.now()
	u := User{ID: NewID(), Email: email, PasswordHash: hash, CreatedAt: now, PasswordChangedAt: now, AppMetadata: meta}
	err = s.inTx(ctx, func(tx Tx) error {
		if err := tx.InsertUser(ctx, u); err != nil {
			return err
		}
		detail := "with a password"
		if hash == "" {
			detail = "without a password"
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.UserCreated, UserID: u.ID, Detail: detail}, m))
	})
	if err != nil {
		return User{}, fmt.Errorf("session: create user: %w", err)
	}
	return u, nil
}

// UserUpdate changes some of an account's admin-held state; nil fields
// stay.
type UserUpdate struct {
	// AppMetadata replaces the user's app_metadata (CheckAppMetadata).
	AppMetadata []byte
	// Disabled disables (ending every session, as DisableUser) or enables
	// the user.
	Disabled *bool
}

// UpdateUser applies u in one transaction and returns the user as stored.
// New app_metadata reaches access tokens at the session's next refresh
// (or login); the tokens already out keep their claims until they expire.
func (s *Service) UpdateUser(ctx context.Context, id string, u UserUpdate, m Meta) (User, error) {
	var meta string
	if u.AppMetadata != nil {
		var err error
		if meta, err = CheckAppMetadata(u.AppMetadata); err != nil {
			return User{}, err
		}
	}
	now := s.now()
	var out User
	err := s.inTx(ctx, func(tx Tx) error {
		cur, err := tx.LockUser(ctx, id)
		if err != nil {
			return err
		}
		out = cur
		var events []audit.Event
		if u.AppMetadata != nil && meta != cur.AppMetadata {
			out.AppMetadata = meta
			events = append(events, audit.Event{At: now, Type: audit.UserUpdated, UserID: id, Detail: fmt.Sprintf("app_metadata set (%d bytes)", len(meta))})
		}
		if u.Disabled != nil && *u.Disabled && cur.DisabledAt.IsZero() {
			out.DisabledAt = now
		}
		if u.Disabled != nil && !*u.Disabled && !cur.DisabledAt.IsZero() {
			out.DisabledAt = time.Time{}
			events = append(events, audit.Event{At: now, Type: audit.UserEnabled, UserID: id})
		}
		if out != cur {
			if err := tx.UpdateUser(ctx, out); err != nil {
				return err
			}
		}
		if u.Disabled != nil && *u.Disabled {
			// As DisableUser: sessions end again on a repeat, in case one
			// began before the disable committed.
			ids, err := tx.RevokeSessions(ctx, s.revocation(Revocation{UserID: id, Scope: ScopeAll, Reason: ReasonUserDisabled}, now))
			if err != nil {
				return err
			}
			if cur.DisabledAt.IsZero() || len(ids) > 0 {
				events = append(events, audit.Event{At: now, Type: audit.UserDisabled, UserID: id, Detail: fmt.Sprintf("%d sessions ended", len(ids))})
			}
		}
		for _, e := range events {
			if err := tx.AppendAudit(ctx, s.audit(e, m)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return User{}, fmt.Errorf("session: update user: %w", err)
	}
	return out, nil
}

// ListUsers returns a page of at most q.Limit users in creation order and
// the cursor of the next page (nil on the last). The email prefix is
// lower-cased, as stored addresses are (NormalizeEmail).
func (s *Service) ListUsers(ctx context.Context, q UserQuery) ([]User, *UserCursor, error) {
	if q.Limit <= 0 {
		return nil, nil, errors.New("session: list users: a positive limit is required")
	}
	q.EmailPrefix = strings.ToLower(strings.TrimSpace(q.EmailPrefix))
	want := q.Limit
	q.Limit++ // one more tells whether there is a next page
	users, err := s.store.ListUsers(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("session: list users: %w", err)
	}
	if len(users) <= want {
		return users, nil, nil
	}
	users = users[:want]
	last := users[want-1]
	return users, &UserCursor{CreatedAt: last.CreatedAt, ID: last.ID}, nil
}
