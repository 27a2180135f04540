package cli

import (
	"flag"
	"slices"
	"testing"
)

func TestIDsAfterDashes(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("user", "", "")
	fs.Bool("all", false, "")
	const id = "-bcdefghijklmnopqrstuv" // a session id that begins with '-'
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"plain id", []string{"abcdefghijklmnopqrstuv"}, []string{"abcdefghijklmnopqrstuv"}},
		{"id with a dash", []string{id}, []string{"--", id}},
		{"after a bool flag", []string{"--all", id}, []string{"--all", "--", id}},
		{"a flag's value stays", []string{"--user", id}, []string{"--user", id}},
		{"explicit --", []string{"--", id}, []string{"--", id}},
		{"unknown flag stays a flag", []string{"--nope"}, []string{"--nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := idsAfterDashes(fs, tt.args); !slices.Equal(got, tt.want) {
				t.Fatalf("idsAfterDashes(%q) = %q, want %q", tt.args, got, tt.want)
			}
			// And the flag package then leaves the id an argument.
			if err := fs.Parse(idsAfterDashes(fs, tt.args)); err == nil && slices.Contains(tt.args, id) && tt.args[0] != "--user" && !slices.Contains(fs.Args(), id) {
				t.Fatalf("args after parsing %q: %q, want the id among them", tt.args, fs.Args())
			}
		})
	}
}
