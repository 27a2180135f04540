package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/store/postgres/pgtest"
	"github.com/latchauth/latch/internal/store/storetest"
)

func newStore(t *testing.T) storetest.Store { return pgtest.New(t) }

func TestConformance(t *testing.T) { storetest.Run(t, newStore) }

func TestMigrateIsIdempotent(t *testing.T) {
	s := pgtest.New(t)
	applied, err := s.Migrate(context.Background())
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}
}

func TestOpenRejectsBadURLWithoutEchoingIt(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://u:s3cret@[::1/db")
	if err == nil {
		t.Fatal("Open accepted a malformed URL")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Fatalf("error %q repeats the password", got)
	}
}
