package postgres_test

import (
	"github.com/latchauth/latch/internal/store/postgres"
	"github.com/latchauth/latch/internal/token"
)

// The store is the issuer's key storage too; postgres.go cannot say so without
// importing token, which links go-jose and net/http.
var (
	_ token.Store    = (*postgres.Store)(nil)
	_ token.Resealer = (*postgres.Store)(nil)
)
