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
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "ffc: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "ffc:", err)
		os.Exit(1)
	}
}
