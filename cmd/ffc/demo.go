package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/smoke"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type demoFlags struct {
	ends      endpoints
	stackDir  string
	secure    bool
	secureDir string
	checkOnly bool
	timeout   time.Duration
	json      bool
	// metricsAddr serves /metrics and the live dashboard (empty: off).
	metricsAddr string
	pipe        pipelineOptions
	// removeMaterial removes a temporary --secure material folder.
	removeMaterial func()
}

const demoLong = `demo is the main job, on one machine with nothing to install. It starts the
embedded stack — a NATS server with JetStream, a Kafka-protocol broker and an
S3 server, in-process on loopback — unless addresses are given, checks each
service with the clients the pipeline uses, and then runs the pipeline:

  1. data: the CI glyph set (a CJK character is an identity, each of 12
     Debian font packages gives an image of it), built into --data-dir and
     reused by the next run; synthetic identities where the font packages
     cannot be fetched (it says so);
  2. the train classes go to s3://ffc-demo-<run>/ids/<id>/<image>.png,
     except --new-ids classes held back;
  3. a producer emits samples.byid (id pairs) and samples.instance with
     flow control; the trainer consumes both, runs FFC steps, publishes every
     center change on NATS and checkpoints to S3 before committing offsets;
     a subscriber keeps a replica of all centers;
  4. part-way (--new-at) the held-back classes are uploaded and announced:
     their centers arrive on NATS while training runs;
  5. a summary: steps, samples/s, pool occupancy, centers published, dead
     letters, top-1 of held-out fonts against the replica's centers (also
     for the new IDs), the same images scored by the trained network, the
     untrained network of the same seed and raw pixels, and the freshness
     of the new IDs; with --json, as one JSON document on stdout (progress
     goes to stderr);
  6. the run's bucket, topics, trainer group and centers stream are
     deleted (--keep keeps them).

A live dashboard is served on --metrics-addr (its URL is in the first
lines).

--duration bounds the training (default 2 minutes, under three in all on an
idle 2-core machine), or --steps does in trainer steps (the same work on a busy
machine as on an idle one); --follow keeps it running until Ctrl-C, which shuts down
cleanly (the producer first, then the trainer's final checkpoint and offset
commit, then the subscriber, then the embedded servers; the summary is still
printed). --check-only stops after the service checks.
The training settings (--batch, --dim, --pool, --lr, ...) are those of
'ffc train'; the demo's defaults train a smaller model.`

func newDemoCmd(a *app) *cobra.Command {
	f := &demoFlags{pipe: pipelineOptions{set: settings.Defaults(settings.Demo)}}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole streaming pipeline on the embedded default: S3 → Kafka → FFC trainer → centers on NATS",
		Long:  demoLong,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), a, f) },
	}
	fs := cmd.Flags()
	f.ends.addFlags(fs)
	settings.AddFlags(fs, settings.Demo, &f.pipe.set)
	fs.StringVar(&f.pipe.dataDir, "data-dir", dataSetsDir, "folder for the demo's data set (and font cache), reused by the next run")
	fs.StringVar(&f.stackDir, "stack-dir", "", "folder for the embedded servers' data (default: in memory, fresh each run)")
	fs.BoolVar(&f.secure, "secure", false, "run the embedded stack in secure mode: TLS everywhere, SASL/SCRAM and ACLs on Kafka, nkey users with subject permissions on NATS, and each part of the pipeline with its own role's credentials (see README, Security)")
	fs.StringVar(&f.secureDir, "secure-dir", "", "with --secure: folder for the CA, certificates and secrets (kept; default: a temporary folder removed at exit)")
	fs.BoolVar(&f.checkOnly, "check-only", false, "only start (or reach) the services and check them")
	fs.BoolVar(&f.json, "json", false, "write the summary (or, with --check-only, the checks) as JSON on stdout; progress goes to stderr")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:0", "serve the live dashboard on http://<addr>/ and Prometheus metrics on /metrics while the pipeline runs (port 0: a free one, printed at start; empty: not served)")
	fs.BoolVar(&f.pipe.keep, "keep", false, "keep the run's bucket, topics, trainer group and centers stream (deleted at the end by default)")
	fs.BoolVar(&f.pipe.follow, "follow", false, "keep the pipeline running until Ctrl-C instead of stopping after --duration")
	fs.DurationVar(&f.pipe.duration, "duration", 2*time.Minute, "how long to train before the summary")
	fs.IntVar(&f.pipe.steps, "steps", 0, "train this many steps before the summary instead of --duration (--new-at is then a fraction of them)")
	fs.IntVar(&f.pipe.newIDs, "new-ids", 20, "classes held back and streamed in part-way")
	fs.IntVar(&f.pipe.removeIDs, "remove-ids", 2, "once every new ID has its center, remove this many of them as 'ffc ids remove' does (objects, pool, tombstone on NATS)")
	fs.StringVar(&f.pipe.notifyTopic, "s3-notify-topic", "", "Kafka topic of the object store's bucket notifications (e.g. MinIO's Kafka target; services.sh sets one up): new IDs are seen as soon as announced; polling goes on as the fallback (env FFC_S3_NOTIFY_TOPIC)")
	fs.StringVar(&f.pipe.notifyARN, "s3-notify-arn", "", "with --s3-notify-topic: the notification target ARN the producer configures on the run's bucket (env FFC_S3_NOTIFY_ARN)")
	fs.Float64Var(&f.pipe.newAt, "new-at", 0.4, "when to stream the new IDs in, as a fraction of --duration")
	fs.BoolVar(&f.pipe.synthOnly, "synthetic", false, "use synthetic identities instead of the glyph set")
	fs.IntVar(&f.pipe.synthIDs, "synthetic-ids", 2000, "number of synthetic identities (with --synthetic, or when the fonts cannot be fetched)")
	addThreadsFlag(fs, &f.pipe.threads)
	f.pipe.dev.addFlags(fs)
	fs.DurationVar(&f.timeout, "timeout", 3*time.Minute, "give up on the service checks after this long")
	return cmd
}

// checkResult is one service check, as --json writes it.
type checkResult struct {
	Service string  `json:"service"`
	OK      bool    `json:"ok"`
	Report  string  `json:"report,omitempty"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

func runDemo(ctx context.Context, a *app, f *demoFlags) (err error) {
	if err := f.validate(); err != nil {
		return err
	}
	out := a.stdout
	if f.json {
		out = a.stderr
	}
	f.intro(out)
	// Ctrl-C (the end of ctx) stops the stages in order, the embedded
	// servers last, so the trainer's final checkpoint still reaches them:
	// the stages do not run under ctx.
	g := stage.NewGroup(context.WithoutCancel(ctx), a.log)
	defer func() { err = errors.Join(err, g.Close()) }()
	if err := f.ends.resolve(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if n := f.ends.NATS.sec; f.ends.Kafka.sec.SASL != "" || n.NKeyFile != "" || n.CredsFile != "" || n.User != "" {
		return errSecureAddrs // one role's credentials cannot run every part
	}
	roles, err := demoEndpoints(ctx, g, f, out, a)
	if err != nil {
		return err
	}
	if roles.material != nil {
		defer f.removeMaterial()
	}
	if err := startDashboard(ctx, g, a, f, out); err != nil {
		return err
	}
	var checks []checkResult
	if roles.material == nil {
		checks, err = checkServices(ctx, roles.trainer, f.timeout, out)
	} else {
		fmt.Fprintln(out, "demo: --secure: service checks skipped (they need admin rights); every part checks its own connections")
	}
	if f.checkOnly || err != nil {
		if f.json {
			err = errors.Join(err, writeJSONTo(a.stdout, map[string]any{"checks": checks, "compute": computeOf(f.pipe.dev, f.pipe.threads)}))
		}
		return err
	}
	if f.pipe.follow {
		fmt.Fprintln(out, "demo: --follow: running until Ctrl-C")
	}
	sum, err := runPipeline(ctx, g, a, out, roles, f.pipe)
	if err != nil {
		return err
	}
	sum.Checks, sum.Compute = checks, computeOf(f.pipe.dev, f.pipe.threads)
	if f.json {
		return writeJSONTo(a.stdout, sum)
	}
	sum.print(out)
	if ctx.Err() != nil {
		fmt.Fprintln(out, "demo: interrupted; shut down cleanly")
	}
	return nil
}

// demoEndpoints starts the embedded stage for the services without an
// address and prints where each service is.
func demoEndpoints(ctx context.Context, g *stage.Group, f *demoFlags, out io.Writer, a *app) (demoRoles, error) {
	ends, mode := f.ends, "no embedded servers: all addresses given"
	var material *security.Material
	if f.secure {
		if len(ends.KafkaBrokers) > 0 || ends.NATSURL != "" || ends.S3Endpoint != "" {
			return demoRoles{}, errSecureAddrs
		}
		m, done, err := secureMaterial(f.secureDir)
		if err != nil {
			return demoRoles{}, err
		}
		material, f.removeMaterial = &m, done
	}
	if ends.missing(true) {
		st := ends.embeddedStack(f.stackDir, true, a.log, secureStack(material))
		g.Go("embedded", st)
		if err := g.WaitReady(ctx, "embedded"); err != nil {
			return demoRoles{}, fmt.Errorf("demo: %w", err)
		}
		ends, mode = ends.with(st), "embedded: "+strings.Join(st.Embedded(), ", ")
	}
	if material != nil {
		mode += "; secure: TLS, SASL/SCRAM + ACLs, NATS nkeys + permissions, one role per part"
	}
	fmt.Fprintf(out, "ffc demo (%s)\n", mode)
	fmt.Fprintf(out, "  kafka  %s\n  nats   %s\n  s3     %s\n", strings.Join(ends.KafkaBrokers, ","), ends.NATSURL, ends.S3Endpoint)
	if material == nil {
		return plainRoles(ends), nil
	}
	return secureRoles(ends, *material)
}

// checkServices checks each service with the clients the pipeline uses.
func checkServices(ctx context.Context, ends endpoints, timeout time.Duration, out io.Writer) ([]checkResult, error) {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	checks := []struct {
		name string
		run  func() (fmt.Stringer, error)
	}{
		{"kafka", func() (fmt.Stringer, error) { return smoke.Kafka(cctx, ends.KafkaBrokers, smoke.KafkaOptions{}) }},
		{"nats", func() (fmt.Stringer, error) { return smoke.NATS(cctx, ends.NATSURL, smoke.NATSOptions{}) }},
		{"s3", func() (fmt.Stringer, error) {
			return smoke.S3(cctx, smoke.S3Target{Endpoint: ends.S3Endpoint, AccessKey: ends.S3.accessKey, SecretKey: ends.S3.secretKey, Secure: ends.S3.tls.On()}, smoke.S3Options{})
		}},
	}
	var res []checkResult
	for _, c := range checks {
		t0 := time.Now()
		rep, err := c.run()
		r := checkResult{Service: c.name, OK: err == nil, Seconds: time.Since(t0).Seconds()}
		if err != nil {
			r.Error = err.Error()
			res = append(res, r)
			fmt.Fprintf(out, "FAIL %-5s %v\n", c.name, err)
			return res, fmt.Errorf("demo: %s check failed: %w", c.name, err)
		}
		r.Report = rep.String()
		res = append(res, r)
		fmt.Fprintf(out, "ok   %-5s %s (%s)\n", c.name, rep, time.Since(t0).Round(time.Millisecond))
	}
	fmt.Fprintf(out, "demo: all checks passed in %s\n", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// startDashboard serves the pipeline's metrics and the live dashboard on
// --metrics-addr (not with --check-only) and prints the page's address.
func startDashboard(ctx context.Context, g *stage.Group, a *app, f *demoFlags, out io.Writer) error {
	if f.metricsAddr == "" || f.checkOnly {
		return nil
	}
	f.pipe.reg = prometheus.NewRegistry()
	url, err := serveMetrics(ctx, g, f.metricsAddr, f.pipe.reg, a)
	if err != nil {
		return fmt.Errorf("demo: --metrics-addr: %w", err)
	}
	fmt.Fprintf(out, "demo: live dashboard on %s (Prometheus metrics on %smetrics)\n", url, url)
	return nil
}
