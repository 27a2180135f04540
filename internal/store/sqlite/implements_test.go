package sqlite_test

import (
	"github.com/latchauth/latch/internal/store/sqlite"
	"github.com/latchauth/latch/internal/token"
)

// The store is the issuer's key storage too; sqlite.go cannot say so without
// importing token, which links go-jose and net/http.
var (
	_ token.Store    = (*sqlite.Store)(nil)
	_ token.Resealer = (*sqlite.Store)(nil)
)
