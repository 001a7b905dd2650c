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
	ends      endpoints
	stackDir  string
	checkOnly bool
	timeout   time.Duration
	pipe      pipelineOptions
}

func newDemoCmd(a *app) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole streaming pipeline on the embedded default: S3 → Kafka → FFC trainer → centers on NATS",
		Long: `demo is the main job, on one machine with nothing to install. It starts the
embedded stack — a NATS server with JetStream, a Kafka-protocol broker and an
S3 server, in-process on loopback — unless addresses are given, checks each
service with the clients the pipeline uses, and then runs the pipeline:

  1. data: the CI glyph set (a CJK character is an identity, each of 12
     Debian font packages gives an image of it), built into --data-dir and
     reused by the next run; synthetic identities where the font packages
     cannot be fetched (it says so);
  2. the train classes go to s3://ffc-data/ids/<id>/<image>.png, except
     --new-ids classes held back;
  3. a producer emits samples.byid (id pairs) and samples.instance with
     flow control; the trainer consumes both, runs FFC steps, publishes every
     center change on NATS and checkpoints to S3 before committing offsets;
     a subscriber keeps a replica of all centers;
  4. part-way (--new-at) the held-back classes are uploaded and announced:
     their centers arrive on NATS while training runs;
  5. a summary: steps, samples/s, pool occupancy, centers published, top-1
     of held-out fonts against the replica's centers (also for the new IDs)
     and the freshness of the new IDs.

--duration bounds the training (default 4 minutes, about five in all on a
2-core machine); --follow keeps it running until Ctrl-C, which shuts down
cleanly (a final checkpoint, offsets committed). --check-only stops after the
service checks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), a, f) },
	}
	fs := cmd.Flags()
	f.ends.addFlags(fs)
	fs.StringVar(&f.pipe.dataDir, "data-dir", ".ffc-demo", "folder for the demo's data set (and font cache), reused by the next run")
	fs.StringVar(&f.stackDir, "stack-dir", "", "folder for the embedded servers' data (default: in memory, fresh each run)")
	fs.BoolVar(&f.checkOnly, "check-only", false, "only start (or reach) the services and check them")
	fs.BoolVar(&f.pipe.follow, "follow", false, "keep the pipeline running until Ctrl-C instead of stopping after --duration")
	fs.DurationVar(&f.pipe.duration, "duration", 4*time.Minute, "how long to train before the summary")
	fs.IntVar(&f.pipe.newIDs, "new-ids", 20, "classes held back and streamed in part-way")
	fs.Float64Var(&f.pipe.newAt, "new-at", 0.4, "when to stream the new IDs in, as a fraction of --duration")
	fs.IntVar(&f.pipe.batch, "batch", 32, "trainer batch B (B id pairs + B instances per step)")
	fs.IntVar(&f.pipe.dim, "dim", 128, "embedding dimension D")
	fs.IntVar(&f.pipe.pool, "pool", 512, "FFC pool slots Q")
	fs.StringVar(&f.pipe.backbone, "backbone", "irresnet", "backbone: irresnet (the yardstick) or mlp (fast)")
	fs.BoolVar(&f.pipe.synthOnly, "synthetic", false, "use synthetic identities instead of the glyph set")
	fs.IntVar(&f.pipe.synthIDs, "synthetic-ids", 2000, "number of synthetic identities (with --synthetic, or when the fonts cannot be fetched)")
	addThreadsFlag(fs, &f.pipe.threads)
	f.pipe.dev.addFlags(fs)
	fs.IntVar(&f.pipe.ckptEvery, "checkpoint-every", 4, "trainer checkpoint (and offset commit) every N steps")
	fs.IntVar(&f.pipe.maxLead, "max-lead", 0, "producer flow control: messages per topic ahead of the trainer's commits (0: 2·batch·checkpoint-every)")
	fs.DurationVar(&f.timeout, "timeout", 3*time.Minute, "give up on the service checks after this long")
	return cmd
}

func runDemo(ctx context.Context, a *app, f *demoFlags) (err error) {
	if err := f.pipe.dev.check(); err != nil {
		return err
	}
	start := time.Now()
	r, err := f.ends.resolve(f.stackDir, a.log)
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
	fmt.Fprintf(out, "ffc demo (%s)\n", mode)
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
	if f.checkOnly {
		return nil
	}
	if f.pipe.follow {
		fmt.Fprintln(out, "demo: --follow: running until Ctrl-C")
	}
	if err := runPipeline(ctx, a, r, f.pipe); err != nil {
		return err
	}
	if ctx.Err() != nil {
		fmt.Fprintln(out, "demo: interrupted; shut down cleanly")
	}
	return nil
}
