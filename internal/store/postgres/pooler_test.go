package postgres

import (
	"maps"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pooler=transaction keeps only the startup parameters PgBouncer forwards
// and turns the rest into one set_config statement, quoting values.
func TestPoolerMovesSessionSettings(t *testing.T) {
	tests := []struct {
		query    string
		setup    string
		startup  map[string]string
		execMode bool
	}{
		{"", "", map[string]string{"search_path": "s"}, false},
		{"&pooler=transaction", `SELECT set_config('search_path', 's', true)`, map[string]string{}, true},
		{"&pooler=transaction&application_name=a&TimeZone=UTC", `SELECT set_config('search_path', 's', true)`,
			map[string]string{"application_name": "a", "TimeZone": "UTC"}, true},
		{"&pooler=transaction&statement_timeout=2000&lock_timeout=it%27s", `SELECT set_config('lock_timeout', 'it''s', true), set_config('search_path', 's', true), set_config('statement_timeout', '2000', true)`,
			map[string]string{}, true},
	}
	for _, tt := range tests {
		cfg, err := pgxpool.ParseConfig("postgres://u@127.0.0.1/db?search_path=s" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		on, setup, err := pooler(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tt.query, err)
		}
		if on != tt.execMode {
			t.Errorf("%s: pooler on %v; want %v", tt.query, on, tt.execMode)
		}
		if setup != tt.setup {
			t.Errorf("%s: setup %q; want %q", tt.query, setup, tt.setup)
		}
		if got := cfg.ConnConfig.RuntimeParams; !maps.Equal(got, tt.startup) {
			t.Errorf("%s: startup parameters %v; want %v", tt.query, got, tt.startup)
		}
		if exec := cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeExec; exec != tt.execMode {
			t.Errorf("%s: QueryExecModeExec %v; want %v", tt.query, exec, tt.execMode)
		}
	}
}
