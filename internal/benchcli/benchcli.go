// Package benchcli implements the latch-bench command: load tests and the
// trade-off measurements against a running Latch. It lives apart from the
// server's command so that the server binary carries no load generator.
package benchcli

import (
	"context"
	"errors"
	"flag"
	"io"
)

// ErrUsage reports a command line that could not be parsed; the usage text
// has been printed already.
var ErrUsage = errors.New("usage")

// errHelpShown ends a command whose -h output was printed; Run returns nil.
var errHelpShown = errors.New("help shown")

// Defaults that match `latch serve` with no flags.
const (
	defaultTarget   = "http://127.0.0.1:8080"
	defaultClientID = "app"
)

// ExitCode is the process exit status for an error returned by Run.
func ExitCode(err error) int {
	if errors.Is(err, ErrUsage) {
		return 2
	}
	return 1
}

type io2 struct {
	stdout, stderr io.Writer
}

// Run runs the latch-bench command line args.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := io2{stdout, stderr}
	if len(args) > 0 && args[0] == "help" {
		args = []string{"-h"}
	}
	var err error
	if len(args) > 0 && args[0] == "tradeoffs" {
		err = runTradeoffs(ctx, args[1:], s)
	} else {
		err = runBench(ctx, args, s)
	}
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func newFlags(name string, s io2) *flag.FlagSet {
	fs := flag.NewFlagSet("latch-bench "+name, flag.ContinueOnError)
	fs.SetOutput(s.stderr)
	return fs
}
