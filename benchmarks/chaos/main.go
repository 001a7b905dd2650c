// Command chaos is the chaos suite of the FFC stream. It runs the pipeline
// as it is deployed — ffc produce and ffc train as child processes of one
// ffc binary built for the run (so a SIGKILL is real), an independent
// subscriber of the centers in this process — and injects faults while it
// runs, then audits what came out:
//
//	go run ./benchmarks/chaos                      # full run, embedded stack (≥ 10 min)
//	go run ./benchmarks/chaos --stack real         # full run, real Kafka/NATS/MinIO of its own
//	make chaos                                     # the same, with the build tags of make build
//
// Faults (counts are flags; the full run's defaults): --trainer-kills 20
// and --producer-kills 3 SIGKILLs (each child is restarted after the
// kill); --kafka-faults, --nats-faults and --s3-faults 2 each; and
// --bad-per-kind 50 bad messages of each of six kinds written straight to
// both sample topics, in --bad-bursts bursts. The faults are spread over
// --duration at times drawn from --seed; the only timer of the run is that
// schedule (and the --outage an outage lasts). Every other wait is on an
// event: a child's /readyz, a subscriber counter, a Kafka offset.
//
// Services. --stack embedded runs them in this process
// (internal/embedded): NATS and Kafka (kfake) are shut down and restarted
// on their ports and data folders (restarts, as on real services; a kfake
// outage by control functions that close every request's connection left
// clients hanging after it, which real Kafka does not do), and S3
// (gofakes3, behind a proxy of this program) answers 503
// ServiceUnavailable for the outage. --stack real runs Apache Kafka, NATS
// and MinIO through deploy/local/services.sh, and each fault is a
// restart: services.sh down NAME, --outage, services.sh up NAME. With
// --services private (the default) they are an instance of their own, on
// free ports under the work folder, purged at the end, so the restarts
// disturb no one; --services shared uses and restarts those of
// FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT.
//
// Bad messages, each built from a valid message of the run's data:
// oversized (over schemas' 1 MiB message limit: an extra field; written
// gzip-compressed, so Kafka's own limit admits it), truncated protobuf
// (cut in half), unknown schema version (2), NaN/Inf payload (a float32
// 32×32 tensor of NaN and ±Inf where the PNG belongs: 8-bit PNGs cannot
// hold NaN), non-image bytes, and a PNG of the wrong size (16×16).
//
// The audit, after the run: the producer is stopped (SIGTERM), the trainer
// drains what it can (the committed offsets stop moving with less than a
// batch left), valid filler messages complete its last batch, and the
// group's committed offsets must reach the topics' end offsets; the
// trainer is stopped (SIGTERM) and every offset of both sample topics must
// be accounted for: a valid message below the committed offset and below
// the newest checkpoint's offset (trained in a checkpointed step), or one
// on the dead-letter topic (key topic/partition/offset) with a reason.
// Every injected bad message must be dead-lettered with a reason. The
// producer's acknowledged messages (its /metrics, scraped before each
// kill) must all be in Kafka, and it must report 0 messages given up.
// Every ID that had a center must still have one in a fresh `ffc centers
// get`. The subscriber (a JetStream ordered consumer on
// centers.<model>.>) counts every update whose version (epoch, step) is
// below one it saw before for the ID. A child that exits without being
// killed is an unexpected exit (it is restarted, with backoff; after
// --max-unexpected-exits the run stops early). Recovery time after a fault
// is from its end until the subscriber has seen a step commit and a
// center update stored after it.
//
// It prints a table (--json: the report as JSON) and exits 1 when a check
// fails. TestChaosShort runs a short version in `make test`.
//
// One concern per file: main.go (flags, entry), run.go (setup, the
// binary, the children), faults.go (the schedule, injection, recovery),
// services.go (the stacks and how they break), procs.go (supervised
// children), subscriber.go (the centers subscriber), data.go (data set,
// valid messages), bad.go (bad messages), kafka.go (offsets, reads,
// writes), audit.go (drain, dead letters, checkpoints), finish.go (stop,
// accounting, IDs), report.go (the report).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options configure one run.
type options struct {
	stack    string // embedded or real
	services string // real stack: private or shared
	duration time.Duration
	seed     uint64

	trainerKills, producerKills       int
	kafkaFaults, natsFaults, s3Faults int
	badPerKind, badBursts             int
	outage                            time.Duration

	ids, batch, dim, pool, ckptEvery, partitions int

	readyTimeout, recoveryTimeout, drainTimeout time.Duration
	maxUnexpectedExits                          int
	// stopWhenStuck ends the schedule at the first fault not recovered
	// from.
	stopWhenStuck bool

	ffcBin, tags string
	race         bool
	workDir      string
	keep         bool
	logLevel     slog.Level
	json         bool
}

// fullOptions are the defaults of the full run (the flags' defaults).
func fullOptions() options {
	return options{
		stack: "embedded", services: "private", duration: 10 * time.Minute, seed: 0,
		trainerKills: 20, producerKills: 3, kafkaFaults: 2, natsFaults: 2, s3Faults: 2,
		badPerKind: 50, badBursts: 10, outage: 10 * time.Second,
		ids: 300, batch: 16, dim: 64, pool: 128, ckptEvery: 5, partitions: 4,
		readyTimeout: 2 * time.Minute, recoveryTimeout: 3 * time.Minute, drainTimeout: 5 * time.Minute,
		maxUnexpectedExits: 20, stopWhenStuck: true, logLevel: slog.LevelWarn,
	}
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	rep, err := run(ctx, o, log)
	if rep != nil {
		if o.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(rep); jerr != nil {
				err = errors.Join(err, jerr)
			}
		} else {
			rep.print(os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if f := rep.Failures(); len(f) > 0 {
		fmt.Fprintf(os.Stderr, "chaos: %d check(s) failed:\n", len(f))
		for _, s := range f {
			fmt.Fprintln(os.Stderr, "  -", s)
		}
		os.Exit(1)
	}
}

// parseFlags reads the command line.
func parseFlags(args []string) (options, error) {
	o := fullOptions()
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.StringVar(&o.stack, "stack", o.stack, "embedded (servers in this process) or real (Kafka, NATS, MinIO through deploy/local/services.sh)")
	fs.StringVar(&o.services, "services", o.services, "real stack: private (an instance of its own on free ports, purged at the end) or shared (the FFC_* services, restarted)")
	fs.DurationVar(&o.duration, "duration", o.duration, "time over which the faults are spread (the run lasts longer: recoveries, drain, audit)")
	fs.Uint64Var(&o.seed, "seed", o.seed, "seed of the fault schedule and the data (0: from the clock; the report prints it)")
	fs.IntVar(&o.trainerKills, "trainer-kills", o.trainerKills, "SIGKILLs of the trainer")
	fs.IntVar(&o.producerKills, "producer-kills", o.producerKills, "SIGKILLs of the producer")
	fs.IntVar(&o.kafkaFaults, "kafka-faults", o.kafkaFaults, "Kafka restarts (real) or outages (embedded)")
	fs.IntVar(&o.natsFaults, "nats-faults", o.natsFaults, "NATS restarts")
	fs.IntVar(&o.s3Faults, "s3-faults", o.s3Faults, "MinIO restarts (real) or S3 503 outages (embedded)")
	fs.IntVar(&o.badPerKind, "bad-per-kind", o.badPerKind, "bad messages of each kind written to each sample topic")
	fs.IntVar(&o.badBursts, "bad-bursts", o.badBursts, "bursts the bad messages are written in")
	fs.DurationVar(&o.outage, "outage", o.outage, "how long a service stays down or failing")
	fs.IntVar(&o.ids, "ids", o.ids, "synthetic identities uploaded (3 to 5 32×32 images each)")
	fs.IntVar(&o.batch, "batch", o.batch, "trainer batch B (B id pairs + B instances per step)")
	fs.IntVar(&o.dim, "dim", o.dim, "embedding dimension")
	fs.IntVar(&o.pool, "pool", o.pool, "FFC pool slots (fewer than --ids: evictions happen)")
	fs.IntVar(&o.ckptEvery, "checkpoint-every", o.ckptEvery, "trainer checkpoint every N steps")
	fs.IntVar(&o.partitions, "partitions", o.partitions, "partitions of the sample topics")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", o.readyTimeout, "hang guard: a child not ready after this long is reported")
	fs.DurationVar(&o.recoveryTimeout, "recovery-timeout", o.recoveryTimeout, "hang guard: a fault not recovered from after this long is reported as such")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", o.drainTimeout, "hang guard: give up draining the topics after this long")
	fs.IntVar(&o.maxUnexpectedExits, "max-unexpected-exits", o.maxUnexpectedExits, "stop the run early after this many unexpected exits of the children")
	fs.BoolVar(&o.stopWhenStuck, "stop-when-stuck", o.stopWhenStuck, "end the schedule at the first fault not recovered from within --recovery-timeout (false: inject the rest anyway)")
	fs.StringVar(&o.ffcBin, "ffc-bin", "", "use this ffc binary instead of building one")
	fs.StringVar(&o.tags, "tags", "", "build tags for the ffc binary (make chaos passes those of make build)")
	fs.BoolVar(&o.race, "race", false, "build the ffc binary with the race detector")
	fs.StringVar(&o.workDir, "work-dir", "", "folder for the binary, the children's logs and private services (default: a temporary folder, removed unless --keep)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder, and the bucket, topics and stream on shared services")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON instead of the table")
	level := fs.String("log-level", "warn", "log level of this program on stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("--log-level: %w", err)
	}
	return o, o.check()
}

// check refuses options the run cannot honour.
func (o options) check() error {
	switch {
	case o.stack != "embedded" && o.stack != "real":
		return fmt.Errorf("--stack %q: want embedded or real", o.stack)
	case o.services != "private" && o.services != "shared":
		return fmt.Errorf("--services %q: want private or shared", o.services)
	case o.duration <= 0 || o.outage < 0:
		return errors.New("--duration must be positive and --outage not negative")
	case min(o.trainerKills, o.producerKills, o.kafkaFaults, o.natsFaults, o.s3Faults, o.badPerKind) < 0:
		return errors.New("fault counts must not be negative")
	case o.badBursts < 1:
		return errors.New("--bad-bursts must be at least 1")
	case o.ids < 2 || o.batch < 2 || o.batch%2 != 0 || o.dim < 1 || o.ckptEvery < 1 || o.partitions < 1:
		return errors.New("--ids ≥ 2, an even --batch ≥ 2, --dim, --checkpoint-every and --partitions ≥ 1")
	case o.pool < o.batch+o.batch/2:
		return fmt.Errorf("--pool %d: want at least 1.5 × --batch", o.pool)
	case o.maxUnexpectedExits < 1:
		return errors.New("--max-unexpected-exits must be at least 1")
	}
	return nil
}
