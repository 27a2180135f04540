package session_test

import (
	"errors"
	"testing"

	"github.com/latchauth/latch/internal/session"
)

// TestCheckAppMetadata: app_metadata is stored only as a compact JSON
// object of valid UTF-8. json.Compact passes invalid UTF-8 inside strings
// through; a mapped claim carrying it would make every access token of the
// user one that bearer (RFC 8259 section 8.1: UTF-8) rejects.
func TestCheckAppMetadata(t *testing.T) {
	tests := []struct {
		raw     string
		want    string
		wantErr bool
	}{
		{`{ "role" : "editor" }`, `{"role":"editor"}`, false},
		{`{}`, "", false},
		{`null`, "", false},
		{`["a"]`, "", true},
		{`{"role":`, "", true},
		{"{\"role\":\"\xff\"}", "", true},
		{"{\"r\xc3\":1}", "", true},
		{`{"role":"é"}`, `{"role":"é"}`, false},
	}
	for _, tt := range tests {
		got, err := session.CheckAppMetadata([]byte(tt.raw))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("CheckAppMetadata(%q) = %q, %v; want %q, error %v", tt.raw, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, session.ErrAppMetadata) {
			t.Errorf("CheckAppMetadata(%q): error %v is not ErrAppMetadata", tt.raw, err)
		}
	}
}
