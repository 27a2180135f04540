package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latchauth/latch/internal/session"
)

// TestTranslate: what reaches the API as 503 (retry later) is only a
// database that cannot be reached or asked to back off; a bug such as a
// scan into the wrong type is a 500, and translating twice (as a commit
// path does) changes nothing.
func TestTranslate(t *testing.T) {
	opErr := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	tests := []struct {
		name        string
		err         error
		unavailable bool
		notFound    bool
	}{
		{"no rows", pgx.ErrNoRows, false, true},
		{"connection exception", &pgconn.PgError{Code: "08006"}, true, false},
		{"statement timeout", &pgconn.PgError{Code: "57014"}, true, false},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, true, false},
		{"read-only standby", &pgconn.PgError{Code: "25006"}, true, false},
		{"syntax error", &pgconn.PgError{Code: "42601"}, false, false},
		{"check violation", &pgconn.PgError{Code: "23514"}, false, false},
		{"broken connection", fmt.Errorf("write failed: %w", opErr), true, false},
		{"context cancelled", context.Canceled, true, false},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), true, false},
		{"scan bug", errors.New("can't scan into dest[0] (col: n): cannot scan text (OID 25) in text format into *int"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			once := translate(tt.err)
			if got := errors.Is(once, session.ErrUnavailable); got != tt.unavailable {
				t.Errorf("translate(%v) = %v: unavailable %v, want %v", tt.err, once, got, tt.unavailable)
			}
			if got := errors.Is(once, session.ErrNotFound); got != tt.notFound {
				t.Errorf("translate(%v) = %v: not found %v, want %v", tt.err, once, got, tt.notFound)
			}
			twice := translate(once)
			if twice.Error() != once.Error() {
				t.Errorf("translate twice = %q, once = %q", twice, once)
			}
			if n := strings.Count(twice.Error(), "storage unavailable"); n > 1 {
				t.Errorf("%q repeats the prefix", twice)
			}
		})
	}
}
