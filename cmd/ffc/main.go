// Command ffc is the one binary of FFC stream: it trains embedding models
// over millions of identities with the FFC method (a dynamic class pool
// instead of an N×D classifier), streaming samples from object storage
// through Kafka to trainers and class centers out on NATS.
//
// Every setting is a flag; each flag can also come from the environment
// (FFC_<FLAG>) or a YAML file (--config), in that order of precedence.
// Without service addresses, commands start embedded in-process servers.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(os.Stdout, os.Stderr)
	err := root.ExecuteContext(ctx)
	code := exitCode(ctx, err)
	switch code {
	case 0:
		return
	case exitInterrupted:
		fmt.Fprintln(os.Stderr, "ffc: interrupted")
	default:
		fmt.Fprintln(os.Stderr, "ffc:", err)
	}
	stop()
	os.Exit(code)
}

// exitInterrupted is the exit status of a command interrupted before it
// did anything worth a clean stop (128 + SIGINT, as shells report it).
const exitInterrupted = 130

// exitCode is the exit status of a command that returned err, ctx being
// the context ended by SIGINT and SIGTERM: 0 for success and for the clean
// shutdown of a healthy run (the commands return nil then), 130 for a
// plain interruption (only the context's error), 1 for any other error —
// a stage that failed, a service not reached within --connect-timeout, or
// an interruption while a service could not be reached (errNotReady).
func exitCode(ctx context.Context, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled) && ctx.Err() != nil && !errors.Is(err, errNotReady):
		return exitInterrupted
	}
	return 1
}
