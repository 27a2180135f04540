// Command latch is the Latch authentication server and its admin CLI.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/latchauth/latch/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if err != cli.ErrUsage {
			fmt.Fprintln(os.Stderr, "latch:", err)
		}
		os.Exit(cli.ExitCode(err))
	}
}
