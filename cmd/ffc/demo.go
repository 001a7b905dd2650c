package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/smoke"
)

type demoFlags struct {
	ends    endpoints
	dataDir string
	follow  bool
	timeout time.Duration
}

func newDemoCmd(a *app) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the main job on the embedded default (today: start the stack and check it end to end)",
		Long: `demo starts the embedded stack — a NATS server with JetStream, a
Kafka-protocol broker and an S3 server, in-process on loopback — unless
addresses are given, and checks each service end to end with the clients the
pipeline uses: a keyed 8-partition Kafka topic consumed by a consumer group
that resumes from committed offsets, a JetStream stream with
last-value-per-subject retention and a KV bucket, and S3 put/list/get/delete.

The streaming FFC pipeline (producer, trainer, centers) will run here once
it exists; until then demo proves the stack it runs on.

With --follow the servers keep running, with their addresses printed, until
Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), a, f) },
	}
	f.ends.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "folder for the embedded servers' data, reused by the next run (default: in memory / temporary)")
	cmd.Flags().BoolVar(&f.follow, "follow", false, "keep the servers running after the checks until Ctrl-C")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 3*time.Minute, "give up on the checks after this long")
	return cmd
}

func runDemo(ctx context.Context, a *app, f *demoFlags) (err error) {
	start := time.Now()
	r, err := f.ends.resolve(f.dataDir, a.log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	out := a.stdout
	mode := "embedded: " + strings.Join(r.Embedded, ", ")
	if len(r.Embedded) == 0 {
		mode = "no embedded servers: all addresses given"
	}
	fmt.Fprintf(out, "ffc demo — stack check (%s)\n", mode)
	fmt.Fprintf(out, "  kafka  %s\n  nats   %s\n  s3     %s\n", strings.Join(r.KafkaBrokers, ","), r.NATSURL, r.S3Endpoint)

	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	checks := []struct {
		name string
		run  func() (fmt.Stringer, error)
	}{
		{"kafka", func() (fmt.Stringer, error) { return smoke.Kafka(cctx, r.KafkaBrokers, smoke.KafkaOptions{}) }},
		{"nats", func() (fmt.Stringer, error) { return smoke.NATS(cctx, r.NATSURL, smoke.NATSOptions{}) }},
		{"s3", func() (fmt.Stringer, error) {
			return smoke.S3(cctx, smoke.S3Target{Endpoint: r.S3Endpoint, AccessKey: r.S3AccessKey, SecretKey: r.S3SecretKey, Secure: r.S3Secure}, smoke.S3Options{})
		}},
	}
	for _, c := range checks {
		t0 := time.Now()
		rep, err := c.run()
		if err != nil {
			fmt.Fprintf(out, "FAIL %-5s %v\n", c.name, err)
			return fmt.Errorf("demo: %s check failed: %w", c.name, err)
		}
		fmt.Fprintf(out, "ok   %-5s %s (%s)\n", c.name, rep, time.Since(t0).Round(time.Millisecond))
	}
	fmt.Fprintf(out, "demo: all checks passed in %s\n", time.Since(start).Round(time.Millisecond))
	if f.follow {
		fmt.Fprintln(out, "demo: servers running; Ctrl-C to stop")
		<-ctx.Done()
		fmt.Fprintln(out, "demo: shutting down")
	}
	return nil
}
