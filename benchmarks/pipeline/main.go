// Command pipeline measures the streaming path of SPEC section 3 — object
// storage → producer → Kafka → trainer → NATS — and prints markdown tables:
//
//	go run ./benchmarks/pipeline                    # several minutes on 2 cores (embedded stack; the fresh phase trains IR-ResNet)
//	go run ./benchmarks/pipeline --duration 10s --ids 200 --new-ids 10
//	go run ./benchmarks/pipeline --phases fresh --fresh-leads 256,4096 --new-ids 50
//
// It runs on the embedded stack (internal/embedded: in-process NATS, kfake,
// gofakes3, run as a stage) and, when FFC_KAFKA_BROKERS, FFC_NATS_URL and
// FFC_S3_ENDPOINT (with FFC_S3_ACCESS_KEY, FFC_S3_SECRET_KEY) are set, on
// those real services too (deploy/local/services.sh up; eval
// "$(deploy/local/services.sh env)"). --stacks picks them, and may add
// embedded-secure: the embedded servers in secure mode (embedded.Secure,
// with internal/security material generated in a temporary folder for the
// run), TLS on every connection, Kafka SASL/SCRAM-SHA-512 with the ACLs of
// each phase's names provisioned as admin, NATS nkey users with subject
// permissions; the producer, the trainer and the fresh phase's replica
// connect as their roles (producer, trainer, subscriber), the benchmark's
// own clients as admin. With embedded in the same run (--stacks
// embedded,embedded-secure) the report gives each phase's secure/plaintext
// ratio of its rate. Every name it creates (bucket, topics, groups, NATS
// stream) carries a random suffix and reaches the pipeline only through
// the producers.Config and trainers.Config fields; on real services they
// are deleted at the end unless --keep.
//
// It drives the real stages and nothing of its own: producers.Producer,
// trainers.Trainer and broadcast.Replica, each run by an internal/stage
// Group (one per phase, under the stack's group) that starts them, waits
// until they are ready, stops them in order and closes them. Phases, each
// on its own topics and consumer group, with the bucket holding --ids
// synthetic identities of 2 to 8 32×32 PNGs:
//
//   - s3get: concurrent GETs of the bucket's images (2 × --concurrency
//     workers, as the producer's two streams), for 5 s: the producer
//     fetches every image of every message from object storage, so this
//     bounds what it can emit (an id pair takes two GETs, an instance one).
//   - disabled: the engine step DISABLED. The producer feeds the real
//     trainer with ConsumeOnly: consumption (the consumer group, a reader
//     per assigned partition), validation and decoding of every message
//     (dead letters for invalid ones), batch assembly of B id pairs + B
//     instances into the input rows and offset commits every --ckpt-every
//     batches; no engine step, no centers, no checkpoint.
//   - consume: the same ConsumeOnly trainer alone (no producer) over
//     --consume-msgs id pairs and as many instances written straight to
//     fresh topics (the bucket's images, encoded with the schemas
//     encoders): what Kafka plus consumption sustain. The write rate of
//     that fill is reported too.
//   - enabled: the producer feeds the real trainer (FFC step, mlp backbone,
//     centers published on NATS, checkpoints to object storage and offset
//     commits every --ckpt-every steps).
//   - fresh: freshness through the fresh lane, once per lead of
//     --fresh-leads (each on its own topics, group and model): producer
//     (MaxLead = the lead, the fresh lane on its own topic; on real
//     services bucket notifications when FFC_S3_NOTIFY_TOPIC is set) +
//     trainer (--fresh-backbone, D = --dim, B = --fresh-batch, the pool
//     derived as ffc demo does, checkpoint every --fresh-ckpt-every steps),
//     and a broadcast.Replica. Once the producer's lag has reached 90 % of
//     the lead (the backlog a new ID would otherwise wait behind),
//     --new-ids new IDs are uploaded and announced one at a time while
//     training runs; freshness is the time from the announcement to the
//     new ID's center in the replica (p50, p99, max; target p99 ≤ 2 s).
//
// samples/s counts messages consumed into batches (an id pair and an
// instance are one sample each, as the trainer's ffc_trainer_samples_total
// does: trainers.Stats Pairs + Instances); images/s counts the images in
// them (two per pair). Consumer lag (Σ over partitions of end − committed
// offset, as the producer measures it for flow control) is sampled every
// second from the producer's Stats.
//
// One concern per file: main.go (flags, entry), stack.go (a stack's
// services, names, cleanup), secure.go (the secure stack: material, each
// role's connections, ACLs), data.go (the bucket's images, the consume
// phase's topics), stages.go (building the producer and trainer, the
// phase's stage group), sample.go (the per-second series, the measured
// window), report.go (tables, summary, bottleneck), ratio.go (secure
// against plaintext), machine.go (host description) and one phases_*.go
// per kind of phase.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// SPEC targets.
const (
	targetSamplesPerSec = 20_000
	targetFreshP99      = 2 * time.Second
)

type options struct {
	duration, warmup time.Duration
	ids, newIDs      int
	batch, dim, pool int
	hidden           []int
	lead             int
	ckptEvery        int
	freshLeads       []int
	freshBackbone    string
	freshBatch       int
	freshPool        int // derived from freshBatch, as ffc demo (for the report)
	freshCkptEvery   int
	freshBacklog     time.Duration
	partitions       int
	concurrency      int
	pollInterval     time.Duration
	freshTimeout     time.Duration
	consumeMsgs      int
	threads          int
	stacks, phases   []string
	keep             bool
	out              string
	cpuProfile       string
	logLevel         slog.Level
}

// rawFlags are the flags that need parsing after flag.Parse.
type rawFlags struct {
	hidden, stacks, phases, level, freshLeads string
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fatal(err)
	}
	stop, err := startProfile(o.cpuProfile)
	if err != nil {
		fatal(err)
	}
	err = run(context.Background(), o, os.Args[1:])
	stop()
	if err != nil {
		fatal(err)
	}
}

// parseFlags reads the command line into options and checks them.
func parseFlags() (options, error) {
	var o options
	var raw rawFlags
	defineFlags(&o, &raw)
	flag.Parse()
	return o.finish(raw)
}

func defineFlags(o *options, raw *rawFlags) {
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "measured time of each throughput phase (after --warmup)")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time after the first consumed message before measuring")
	flag.IntVar(&o.ids, "ids", 500, "synthetic identities in object storage (2 to 8 images each)")
	flag.IntVar(&o.newIDs, "new-ids", 50, "new IDs uploaded and announced one at a time in the fresh phase, per lead")
	flag.IntVar(&o.batch, "batch", 64, "batch B: B id pairs + B instances per batch (and per FFC step)")
	flag.IntVar(&o.dim, "dim", 128, "embedding dimension D (enabled and fresh phases)")
	flag.IntVar(&o.pool, "pool", 0, "FFC pool slots (0: 3·batch, as ffc train)")
	flag.StringVar(&raw.hidden, "hidden", "512", "hidden widths of the mlp backbone, comma-separated (empty: none, as ffc train --backbone mlp)")
	flag.IntVar(&o.lead, "lead", producers.DefaultMaxLead, "producer MaxLead (messages per topic ahead of the group's commits) in the throughput phases")
	flag.StringVar(&raw.freshLeads, "fresh-leads", "256,4096", "fresh phase: producer MaxLead (the backlog), comma-separated; one run per lead, each on its own topics, group and model")
	flag.StringVar(&o.freshBackbone, "fresh-backbone", "irresnet", "fresh phase: trainer backbone (irresnet or mlp; mlp takes --hidden)")
	flag.IntVar(&o.freshBatch, "fresh-batch", 32, "fresh phase: batch B (the pool is derived from it, 3·B, as ffc demo)")
	flag.DurationVar(&o.freshBacklog, "fresh-backlog-wait", 3*time.Minute, "fresh phase: wait at most this long for the producer's lag to reach 90% of the lead before announcing (past it the run is measured anyway and flagged)")
	flag.IntVar(&o.ckptEvery, "ckpt-every", settings.DefaultStreamingCheckpointEvery, "throughput phases: trainer checkpoint (and offset commit) every N steps, as trainers' default; the ConsumeOnly trainer commits every N batches")
	flag.IntVar(&o.freshCkptEvery, "fresh-ckpt-every", 4, "fresh phase: trainer checkpoint (and offset commit) every N steps, as ffc demo")
	flag.IntVar(&o.partitions, "partitions", producers.DefaultPartitions, "partitions of the id and instance topics")
	flag.IntVar(&o.concurrency, "concurrency", producers.DefaultConcurrency, "producer S3 fetch workers per stream")
	flag.DurationVar(&o.pollInterval, "poll-interval", 200*time.Millisecond, "producer polling of announce/ for new IDs")
	flag.DurationVar(&o.freshTimeout, "fresh-timeout", 30*time.Second, "fresh phase: give up on a new ID's center this long after its announcement")
	flag.IntVar(&o.threads, "threads", 0, "compute threads of the trainer (0: all cores)")
	flag.StringVar(&raw.stacks, "stacks", "auto", "stacks, comma-separated: embedded, embedded-secure (the embedded servers with TLS, authentication and each part's role; the report compares it with embedded), real; both: embedded,real; auto: embedded, and real when FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT are set")
	flag.IntVar(&o.consumeMsgs, "consume-msgs", 20000, "id pairs (and as many instances) written for the consume phase")
	flag.StringVar(&raw.phases, "phases", "s3get,disabled,consume,enabled,fresh", "phases to run")
	flag.BoolVar(&o.keep, "keep", false, "keep the bucket, topics and NATS streams created on real services")
	flag.StringVar(&o.out, "out", "", "also write the report to this file (e.g. benchmarks/pipeline/RESULTS.md)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (this process: producer, trainer and, embedded, the servers) here")
	flag.StringVar(&raw.level, "log-level", "error", "log level of the producer and trainer on stderr")
}

// finish parses the raw flags, fills the derived defaults (from
// trainers/settings, as ffc train and ffc demo) and checks the stacks.
func (o options) finish(raw rawFlags) (options, error) {
	var err error
	if o.hidden, err = parseInts(raw.hidden); err != nil {
		return o, fmt.Errorf("--hidden: %w", err)
	}
	if err := o.logLevel.UnmarshalText([]byte(raw.level)); err != nil {
		return o, fmt.Errorf("--log-level: %w", err)
	}
	if o.pool == 0 {
		o.pool = settings.DefaultPool(o.batch, 0)
	}
	if o.freshLeads, err = parseInts(raw.freshLeads); err != nil {
		return o, fmt.Errorf("--fresh-leads: %w", err)
	}
	if len(o.freshLeads) == 0 {
		return o, errors.New("--fresh-leads: none given")
	}
	if _, err := o.settings(o.ckptEvery).Derive(settings.Streaming, 0); err != nil {
		return o, fmt.Errorf("trainer settings: %w", err)
	}
	fs, err := o.freshSettings().Derive(settings.Streaming, 0)
	if err != nil {
		return o, fmt.Errorf("fresh phase: trainer settings: %w", err)
	}
	o.freshPool = fs.Pool
	o.phases = splitList(raw.phases)
	for _, ph := range o.phases {
		if phaseFuncs[ph] == nil {
			return o, fmt.Errorf("--phases: unknown phase %q", ph)
		}
	}
	o.stacks, err = pickStacks(raw.stacks)
	return o, err
}

// pickStacks resolves --stacks.
func pickStacks(stacks string) ([]string, error) {
	real := os.Getenv("FFC_KAFKA_BROKERS") != "" && os.Getenv("FFC_NATS_URL") != "" && os.Getenv("FFC_S3_ENDPOINT") != ""
	var out []string
	switch stacks {
	case "auto":
		out = []string{"embedded"}
		if real {
			out = append(out, "real")
		}
	case "both":
		out = []string{"embedded", "real"}
	default:
		out = splitList(stacks)
	}
	for _, s := range out {
		if s == "real" && !real {
			return nil, errors.New("--stacks real: FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT must be set")
		}
		if s != "real" && s != "embedded" && s != secureStack {
			return nil, fmt.Errorf("--stacks: unknown stack %q", s)
		}
	}
	return out, nil
}

// startProfile starts the CPU profile when path is set; the returned
// function stops it (and is safe to call when none runs).
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			slog.Error("pipeline: close CPU profile", "err", err)
		}
	}, nil
}

func fatal(err error) {
	slog.New(slog.NewTextHandler(os.Stderr, nil)).Error("pipeline failed", "err", err)
	os.Exit(1)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want positive integers", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// run benchmarks every stack and prints the report (and writes it to
// --out).
func run(ctx context.Context, o options, args []string) error {
	rep := &report{w: os.Stdout}
	began := time.Now()
	rep.header(o, args)
	var all []result
	for _, name := range o.stacks {
		res, err := runStack(ctx, o, name, rep)
		all = append(all, res...)
		if err != nil {
			return fmt.Errorf("%s stack: %w", name, err)
		}
	}
	rep.summary(all, began)
	if o.out != "" {
		if err := os.WriteFile(o.out, rep.buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}
