// Command latch-bench load-tests a running Latch and measures the
// trade-offs of docs/tradeoffs.md. It is a separate binary so that the
// server ships no load generator.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/latchauth/latch/internal/benchcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := benchcli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, benchcli.ErrUsage) {
			fmt.Fprintln(os.Stderr, "latch-bench:", err)
		}
		os.Exit(benchcli.ExitCode(err))
	}
}
