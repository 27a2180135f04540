// Package migrations embeds the SQL schema migrations of each store.
//
// Files are named NNNN_description.sql and applied in lexical order, each in
// its own transaction; the store records the applied versions.
package migrations

import "embed"

// SQLite holds the SQLite migrations under sqlite/.
//
//go:embed sqlite/*.sql
var SQLite embed.FS

// Postgres holds the PostgreSQL migrations under postgres/.
//
//go:embed postgres/*.sql
var Postgres embed.FS
