// Command pipeline measures the streaming path of SPEC section 3 — object
// storage → producer → Kafka → trainer → NATS — and prints markdown tables:
//
//	go run ./benchmarks/pipeline                    # ~2–3 min on 2 cores (embedded stack)
//	go run ./benchmarks/pipeline --duration 10s --ids 200 --new-ids 10
//
// It runs on the embedded stack (in-process NATS, kfake, gofakes3) and,
// when FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT (with
// FFC_S3_ACCESS_KEY, FFC_S3_SECRET_KEY) are set, on those real services too
// (deploy/local/services.sh up; eval "$(deploy/local/services.sh env)").
// --stacks picks them. Every name it creates (bucket, topics, groups, NATS
// stream) carries a random suffix; on real services they are deleted at the
// end unless --keep.
//
// Phases, each on its own topics and consumer group, with a producer
// (producers.Producer, in process) fed by --ids synthetic identities of 2 to
// 8 32×32 PNGs uploaded to the bucket:
//
//   - s3get: concurrent GETs of the bucket's images (2 × --concurrency
//     workers, as the producer's two streams), for 5 s: the producer
//     fetches every image of every message from object storage, so this
//     bounds what it can emit (an id pair takes two GETs, an instance one).
//   - disabled: the engine step DISABLED. A consumer that does what the
//     trainer's consumption does — a Kafka consumer group, one reader per
//     assigned partition, batches of B id pairs + B instances, every
//     message decoded and validated (schemas.DecodeIDPairImages,
//     schemas.DecodeSampleImage: protobuf, PNG decode, size checks) and
//     converted to the float input rows, offsets committed every
//     --ckpt-every batches — but no step and no checkpoint.
//   - consume: the same consumer alone (no producer) over --consume-msgs id
//     pairs and as many instances written straight to fresh topics (the
//     bucket's images, encoded as the producer does): what Kafka plus
//     consumption sustain. The write rate of that fill is reported too.
//   - enabled: the real trainers.Trainer (FFC step, mlp backbone, centers
//     published on NATS, checkpoints to object storage every --ckpt-every
//     steps).
//   - fresh: producer (a small lead, --fresh-lead) + trainer + a
//     broadcast.Replica. --new-ids new IDs are uploaded and announced one at
//     a time; freshness is the time from the new ID's first image landing in
//     object storage to its center in the replica (p50, p99, max).
//
// samples/s counts messages consumed into batches (an id pair and an
// instance are one sample each, as the trainer's ffc_trainer_samples_total
// does); images/s counts the images in them (two per pair). Consumer lag
// (Σ over partitions of end − committed offset, as the producer measures it
// for flow control) is sampled every second.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/dataset/objstore"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
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
	lead, freshLead  int
	ckptEvery        int
	freshCkptEvery   int
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

func main() {
	var o options
	var hidden, stacks, phases, level string
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "measured time of each throughput phase (after --warmup)")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "time after the first consumed message before measuring")
	flag.IntVar(&o.ids, "ids", 500, "synthetic identities in object storage (2 to 8 images each)")
	flag.IntVar(&o.newIDs, "new-ids", 20, "new IDs uploaded and announced one at a time in the fresh phase")
	flag.IntVar(&o.batch, "batch", 64, "batch B: B id pairs + B instances per batch (and per FFC step)")
	flag.IntVar(&o.dim, "dim", 128, "embedding dimension D (enabled and fresh phases)")
	flag.IntVar(&o.pool, "pool", 0, "FFC pool slots (0: 3·batch, as ffc train)")
	flag.StringVar(&hidden, "hidden", "512", "hidden widths of the mlp backbone, comma-separated (empty: none, as ffc train --backbone mlp)")
	flag.IntVar(&o.lead, "lead", producers.DefaultMaxLead, "producer MaxLead (messages per topic ahead of the group's commits) in the throughput phases")
	flag.IntVar(&o.freshLead, "fresh-lead", 0, "producer MaxLead in the fresh phase (0: 2·batch·fresh-ckpt-every, as ffc demo)")
	flag.IntVar(&o.ckptEvery, "ckpt-every", 50, "throughput phases: trainer checkpoint (and offset commit) every N steps, as trainers' default; the disabled consumer commits every N batches")
	flag.IntVar(&o.freshCkptEvery, "fresh-ckpt-every", 4, "fresh phase: trainer checkpoint (and offset commit) every N steps, as ffc demo")
	flag.IntVar(&o.partitions, "partitions", producers.DefaultPartitions, "partitions of the id and instance topics")
	flag.IntVar(&o.concurrency, "concurrency", producers.DefaultConcurrency, "producer S3 fetch workers per stream")
	flag.DurationVar(&o.pollInterval, "poll-interval", 200*time.Millisecond, "producer polling of announce/ for new IDs")
	flag.DurationVar(&o.freshTimeout, "fresh-timeout", 30*time.Second, "give up on a new ID's center after this long")
	flag.IntVar(&o.threads, "threads", 0, "compute threads of the trainer (0: all cores)")
	flag.StringVar(&stacks, "stacks", "auto", "embedded, real, or both (auto: embedded, and real when FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT are set)")
	flag.IntVar(&o.consumeMsgs, "consume-msgs", 20000, "id pairs (and as many instances) written for the consume phase")
	flag.StringVar(&phases, "phases", "s3get,disabled,consume,enabled,fresh", "phases to run")
	flag.BoolVar(&o.keep, "keep", false, "keep the bucket, topics and NATS streams created on real services")
	flag.StringVar(&o.out, "out", "", "also write the report to this file (e.g. benchmarks/pipeline/RESULTS.md)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (this process: producer, consumer, trainer and, embedded, the servers) here")
	flag.StringVar(&level, "log-level", "error", "log level of the producer and trainer on stderr")
	flag.Parse()
	var err error
	if o.hidden, err = parseInts(hidden); err != nil {
		fatal(fmt.Errorf("--hidden: %w", err))
	}
	if err := o.logLevel.UnmarshalText([]byte(level)); err != nil {
		fatal(fmt.Errorf("--log-level: %w", err))
	}
	if o.pool == 0 {
		o.pool = 3 * o.batch
	}
	if o.freshLead == 0 {
		o.freshLead = 2 * o.batch * o.freshCkptEvery
	}
	o.phases = splitList(phases)
	real := os.Getenv("FFC_KAFKA_BROKERS") != "" && os.Getenv("FFC_NATS_URL") != "" && os.Getenv("FFC_S3_ENDPOINT") != ""
	switch stacks {
	case "auto":
		o.stacks = []string{"embedded"}
		if real {
			o.stacks = append(o.stacks, "real")
		}
	case "both":
		o.stacks = []string{"embedded", "real"}
	default:
		o.stacks = splitList(stacks)
	}
	for _, s := range o.stacks {
		if s == "real" && !real {
			fatal(errors.New("--stacks real: FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT must be set"))
		}
		if s != "real" && s != "embedded" {
			fatal(fmt.Errorf("--stacks: unknown stack %q", s))
		}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), o, os.Args[1:]); err != nil {
		pprof.StopCPUProfile()
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "pipeline:", err)
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

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// report prints to stdout and keeps a copy for --out.
type report struct {
	buf bytes.Buffer
	w   io.Writer
}

func (r *report) printf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.buf.WriteString(s)
	_, _ = io.WriteString(r.w, s)
}

func run(ctx context.Context, o options, args []string) error {
	rep := &report{w: os.Stdout}
	began := time.Now()
	rep.printf("# Pipeline throughput, lag and freshness\n\n")
	rep.printf("Command: `go run ./benchmarks/pipeline %s`\n\n", strings.Join(args, " "))
	rep.printf("Machine: %s; load average %s at the start\n\n", machine(), loadavg())
	rep.printf("Date: %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	rep.printf("Settings: %d IDs (2–8 PNGs of 32×32 each), batch B = %d (B id pairs + B instances), %d partitions per topic, %d producer fetch workers per stream; producer lead %d and checkpoint/commit every %d steps (fresh phase: lead %d, checkpoint every %d steps); trainer: mlp backbone (hidden %v), D = %d, pool %d, %s; throughput measured over %s after %s of warm-up\n\n",
		o.ids, o.batch, o.partitions, o.concurrency, o.lead, o.ckptEvery, o.freshLead, o.freshCkptEvery, o.hidden, o.dim, o.pool, threadsOf(o.threads), o.duration, o.warmup)
	var all []result
	for _, name := range o.stacks {
		res, err := runStack(ctx, o, name, rep)
		all = append(all, res...)
		if err != nil {
			return fmt.Errorf("%s stack: %w", name, err)
		}
	}
	rep.printf("## Summary\n\n")
	rep.printf("| stack | phase | samples/s | images/s | notes |\n|---|---|---:|---:|---|\n")
	for _, r := range all {
		sps, ips := "—", "—"
		if r.phase == "s3get" {
			r.phase = "S3 GET"
		}
		if r.samplesPerSec > 0 {
			sps, ips = fmt.Sprintf("%.0f", r.samplesPerSec), fmt.Sprintf("%.0f", r.imagesPerSec)
		}
		rep.printf("| %s | %s | %s | %s | %s |\n", r.stack, r.phase, sps, ips, r.note)
	}
	rep.printf("\nTargets (SPEC): ≥ %d samples/s with the step disabled (32×32 images, this 2-core machine); freshness p99 ≤ %s on the embedded stack.\n",
		targetSamplesPerSec, targetFreshP99)
	for _, r := range all {
		switch {
		case r.phase == "disabled" && r.samplesPerSec > 0:
			rep.printf("- %s, step disabled: %.0f samples/s: %s.\n", r.stack, r.samplesPerSec, met(r.samplesPerSec >= targetSamplesPerSec))
		case r.phase == "fresh" && r.p99 > 0:
			rep.printf("- %s, freshness p99 %s: %s.\n", r.stack, r.p99.Round(time.Millisecond), met(r.p99 <= targetFreshP99 && r.timeouts == 0))
		}
	}
	rep.printf("\nLoad average %s at the end; the whole run took %s.\n", loadavg(), time.Since(began).Round(time.Second))
	if o.out != "" {
		if err := os.WriteFile(o.out, rep.buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func threadsOf(n int) string {
	if n == 0 {
		return "all cores"
	}
	return fmt.Sprintf("%d threads", n)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// result is one phase's outcome.
type result struct {
	stack, phase  string
	samplesPerSec float64
	imagesPerSec  float64
	note          string
	p50, p99      time.Duration
	timeouts      int
}

// endpoints are one stack's addresses.
type endpoints struct {
	brokers         []string
	natsURL, s3     string
	accessKey, skey string
}

// bench is one stack's run.
type bench struct {
	o      options
	name   string
	ep     endpoints
	sfx    string
	bucket string
	mc     *minio.Client
	nc     *nats.Conn
	js     jetstream.JetStream
	be     kernels.Backend
	gen    *synth.Generator
	log    *slog.Logger
	rep    *report
	topics []string
	groups []string
	models []string
}

const idBase = 1_000_000 // storage IDs idBase + i

func runStack(ctx context.Context, o options, name string, rep *report) (res []result, err error) {
	b := &bench{o: o, name: name, rep: rep,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))}
	var sfx [4]byte
	_, _ = rand.Read(sfx[:])
	b.sfx = hex.EncodeToString(sfx[:])
	b.bucket = "ffc-bench-" + b.sfx
	switch name {
	case "embedded":
		st, err := embedded.Start(embedded.StackOptions{})
		if err != nil {
			return nil, err
		}
		defer st.Close()
		ak, sk := st.S3.Credentials()
		b.ep = endpoints{brokers: st.Kafka.Brokers(), natsURL: st.NATS.URL(), s3: st.S3.Endpoint(), accessKey: ak, skey: sk}
	case "real":
		b.ep = endpoints{brokers: splitList(os.Getenv("FFC_KAFKA_BROKERS")), natsURL: os.Getenv("FFC_NATS_URL"),
			s3: os.Getenv("FFC_S3_ENDPOINT"), accessKey: os.Getenv("FFC_S3_ACCESS_KEY"), skey: os.Getenv("FFC_S3_SECRET_KEY")}
	}
	if b.mc, err = minio.New(b.ep.s3, &minio.Options{Creds: credentials.NewStaticV4(b.ep.accessKey, b.ep.skey, "")}); err != nil {
		return nil, err
	}
	if b.nc, err = nats.Connect(b.ep.natsURL); err != nil {
		return nil, err
	}
	defer b.nc.Close()
	if b.js, err = jetstream.New(b.nc); err != nil {
		return nil, err
	}
	if b.be, err = cpu.New(cpu.Options{Threads: o.threads}); err != nil {
		return nil, err
	}
	defer b.be.Close()
	if b.gen, err = synth.New(synth.Options{Seed: 11, IDs: uint64(o.ids + o.newIDs), Alpha: 1.2, Min: 2, Max: 8}); err != nil {
		return nil, err
	}
	if err := b.mc.MakeBucket(ctx, b.bucket, minio.MakeBucketOptions{}); err != nil {
		return nil, fmt.Errorf("make bucket %s: %w", b.bucket, err)
	}
	if name == "real" && !o.keep {
		defer b.cleanup()
	}
	rep.printf("## %s stack\n\n", name)
	rep.printf("Kafka %s, NATS %s, S3 %s; backend %s\n\n", strings.Join(b.ep.brokers, ","), b.ep.natsURL, b.ep.s3, b.be.Name())
	t0 := time.Now()
	n, err := b.upload(ctx, 0, o.ids)
	if err != nil {
		return nil, err
	}
	el := time.Since(t0)
	rep.printf("Uploaded %d images of %d IDs in %s (%.0f objects/s).\n\n", n, o.ids, el.Round(time.Millisecond), float64(n)/el.Seconds())

	for _, ph := range o.phases {
		var r result
		switch ph {
		case "s3get":
			r, err = b.phaseS3Get(ctx)
		case "disabled":
			r, err = b.phaseDisabled(ctx)
		case "consume":
			r, err = b.phaseConsume(ctx)
		case "enabled":
			r, err = b.phaseEnabled(ctx)
		case "fresh":
			r, err = b.phaseFresh(ctx)
		default:
			return res, fmt.Errorf("unknown phase %q", ph)
		}
		if err != nil {
			return res, fmt.Errorf("%s phase: %w", ph, err)
		}
		r.stack, r.phase = name, ph
		res = append(res, r)
	}
	return res, nil
}

// upload writes the images of synthetic identities [from, to) as
// ids/<idBase+i>/<k>.png with 8 workers and returns how many.
func (b *bench) upload(ctx context.Context, from, to int) (int, error) {
	type job struct{ i, k int }
	jobs := make(chan job)
	var n atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := b.putImage(ctx, j.i, j.k); err != nil {
					select {
					case errc <- err:
					default:
					}
					continue
				}
				n.Add(1)
			}
		}()
	}
	for i := from; i < to; i++ {
		for k := range b.gen.InstancesOf(uint64(i)) {
			jobs <- job{i, k}
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return int(n.Load()), err
	default:
	}
	return int(n.Load()), nil
}

func (b *bench) putImage(ctx context.Context, i, k int) error {
	pix, err := b.gen.Image(uint64(i), k)
	if err != nil {
		return err
	}
	png, err := objstore.EncodePNG(pix, 32)
	if err != nil {
		return err
	}
	_, err = b.mc.PutObject(ctx, b.bucket, objstore.ImageKey(idBase+uint64(i), k), bytes.NewReader(png), int64(len(png)),
		minio.PutObjectOptions{ContentType: "image/png", DisableContentSha256: true})
	return err
}

// phaseTopics are one phase's topic and group names.
type phaseTopics struct {
	byID, instance, dead, group, model string
}

func (b *bench) names(phase string) phaseTopics {
	p := "bench." + b.sfx + "." + phase
	t := phaseTopics{byID: p + ".byid", instance: p + ".instance", dead: p + ".deadletter", group: "bench-" + b.sfx + "-" + phase, model: "bench-" + b.sfx + "-" + phase}
	b.topics = append(b.topics, t.byID, t.instance, t.dead)
	b.groups = append(b.groups, t.group)
	return t
}

// startProducer runs a producer on the phase's topics until ctx ends.
func (b *bench) startProducer(ctx context.Context, t phaseTopics, lead int) (*producers.Producer, <-chan error, error) {
	p, err := producers.New(producers.Config{
		Brokers: b.ep.brokers, S3: b.mc, Bucket: b.bucket,
		TopicByID: t.byID, TopicInstance: t.instance, TopicDeadLetter: t.dead, Partitions: b.o.partitions,
		TrainerGroup: t.group, MaxLead: lead, Concurrency: b.o.concurrency, PollInterval: b.o.pollInterval,
		Seed: 1, Log: b.log.With("component", "producer"),
	})
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
		return p, done, nil
	case err := <-done:
		return nil, nil, fmt.Errorf("producer: %w", err)
	case <-time.After(60 * time.Second):
		return nil, nil, errors.New("producer not ready after 60 s")
	}
}

// sample is one row of the time series.
type sample struct {
	t                       time.Duration
	pairs, instances        int64 // produced
	consumed                int64
	lagByID, lagInst        int64
	heldByID, heldInstances bool
}

// sampler records the producer's counters and lag and the consumed count
// every second.
type sampler struct {
	mu   sync.Mutex
	rows []sample
	stop chan struct{}
	done chan struct{}
}

func startSampler(p *producers.Producer, consumed func() int64) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			st := p.Stats()
			s.mu.Lock()
			s.rows = append(s.rows, sample{t: time.Since(start), pairs: st.ByID.Produced, instances: st.Instance.Produced, consumed: consumed(),
				lagByID: st.ByID.Lag, lagInst: st.Instance.Lag, heldByID: st.ByID.Blocking, heldInstances: st.Instance.Blocking})
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) finish() []sample {
	close(s.stop)
	<-s.done
	return s.rows
}

func (b *bench) printSeries(rows []sample) {
	b.rep.printf("| t (s) | produced pairs/s | produced instances/s | consumed samples/s | lag byid | lag instance | held by flow control |\n|---:|---:|---:|---:|---:|---:|---|\n")
	var prev sample
	for _, r := range rows {
		dt := (r.t - prev.t).Seconds()
		var held []string
		if r.heldByID {
			held = append(held, "byid")
		}
		if r.heldInstances {
			held = append(held, "instance")
		}
		b.rep.printf("| %.0f | %.0f | %.0f | %.0f | %d | %d | %s |\n", r.t.Seconds(), float64(r.pairs-prev.pairs)/dt, float64(r.instances-prev.instances)/dt,
			float64(r.consumed-prev.consumed)/dt, r.lagByID, r.lagInst, strings.Join(held, ", "))
		prev = r
	}
	b.rep.printf("\n")
}

// measure waits for the first consumed sample and the warm-up, then
// counts for the duration. count returns (pairs, instances).
func (b *bench) measure(ctx context.Context, count func() (int64, int64), errc <-chan error) (pairs, inst int64, el time.Duration, err error) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		if p, i := count(); p+i > 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, errors.New("nothing consumed after 90 s")
		}
		select {
		case err := <-errc:
			return 0, 0, 0, err
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case err := <-errc:
		return 0, 0, 0, err
	case <-time.After(b.o.warmup):
	}
	p0, i0 := count()
	t0 := time.Now()
	select {
	case err := <-errc:
		return 0, 0, 0, err
	case <-time.After(b.o.duration):
	case <-ctx.Done():
		return 0, 0, 0, ctx.Err()
	}
	p1, i1 := count()
	return p1 - p0, i1 - i0, time.Since(t0), nil
}

func rates(pairs, inst int64, el time.Duration) (samples, images float64) {
	s := el.Seconds()
	return float64(pairs+inst) / s, float64(2*pairs+inst) / s
}

// phaseDisabled: producer → Kafka → a consumer that decodes and validates
// like the trainer, without the step.
func (b *bench) phaseDisabled(ctx context.Context) (result, error) {
	t := b.names("disabled")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, pdone, err := b.startProducer(ctx, t, b.o.lead)
	if err != nil {
		return result{}, err
	}
	c := &consumer{brokers: b.ep.brokers, group: t.group, byID: t.byID, instance: t.instance, batch: b.o.batch, commitEvery: b.o.ckptEvery}
	cdone := make(chan error, 1)
	go func() { cdone <- c.run(ctx) }()
	s := startSampler(p, c.consumed)
	errc := mergeErrs(ctx, pdone, cdone)
	pairs, inst, el, err := b.measure(ctx, func() (int64, int64) { return c.pairs.Load(), c.instances.Load() }, errc)
	rows := s.finish()
	ps := p.Stats()
	cancel()
	<-pdone
	<-cdone
	if err != nil {
		return result{}, err
	}
	sps, ips := rates(pairs, inst, el)
	b.rep.printf("### Step disabled: producer → Kafka → decode/validate consumer\n\n")
	b.printSeries(rows)
	b.rep.printf("Consumed %.0f samples/s (%.0f images/s) over %s: %d id pairs + %d instances in %d batches; %d invalid. The producer wrote %d id pairs and %d instances, held by flow control %s (byid) and %s (instance) in all.\n\n",
		sps, ips, el.Round(time.Millisecond), pairs, inst, (pairs+inst)/int64(2*b.o.batch), c.invalid.Load(),
		ps.ByID.Produced, ps.Instance.Produced, ps.ByID.Blocked.Round(time.Millisecond), ps.Instance.Blocked.Round(time.Millisecond))
	return result{samplesPerSec: sps, imagesPerSec: ips, note: bottleneck(rows)}, nil
}

// bottleneck says which side held the throughput, from the second half of
// the series. The lag is end − committed offset, so it includes what was
// consumed since the last commit: a consumer-bound pipeline is one whose
// producer spent most samples held by flow control at the lead.
func bottleneck(rows []sample) string {
	if len(rows) < 4 {
		return ""
	}
	tail := rows[len(rows)/2-1:]
	a, z := tail[0], tail[len(tail)-1]
	dt := (z.t - a.t).Seconds()
	pairs, inst := float64(z.pairs-a.pairs)/dt, float64(z.instances-a.instances)/dt
	held := 0
	for _, r := range tail[1:] {
		if r.heldByID || r.heldInstances {
			held++
		}
	}
	rates := fmt.Sprintf("produced %.0f pairs/s and %.0f instances/s", pairs, inst)
	switch {
	case 2*held > len(tail)-1:
		return "consumer-bound: the producer was held by flow control at most samples; " + rates
	case pairs < inst:
		return "producer-bound on id pairs (2 S3 GETs each; a batch takes pairs and instances in equal numbers); " + rates
	default:
		return "producer-bound; " + rates
	}
}

func mergeErrs(ctx context.Context, chans ...<-chan error) <-chan error {
	out := make(chan error, len(chans))
	for _, ch := range chans {
		go func() {
			select {
			case err := <-ch:
				if err == nil && ctx.Err() == nil {
					err = errors.New("stopped early")
				}
				if ctx.Err() == nil {
					out <- err
				}
			case <-ctx.Done():
			}
		}()
	}
	return out
}

// phaseS3Get: concurrent GETs of the bucket's images for 5 s.
func (b *bench) phaseS3Get(ctx context.Context) (result, error) {
	var keys []string
	for i := range b.o.ids {
		for k := range b.gen.InstancesOf(uint64(i)) {
			keys = append(keys, objstore.ImageKey(idBase+uint64(i), k))
		}
	}
	workers := 2 * b.o.concurrency
	d := min(5*time.Second, b.o.duration)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n, bytesRead atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += workers {
				obj, err := b.mc.GetObject(ctx, b.bucket, keys[(i*7919)%len(keys)], minio.GetObjectOptions{})
				if err == nil {
					var data []byte
					data, err = readAll(obj)
					obj.Close()
					bytesRead.Add(int64(len(data)))
				}
				if err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
					}
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	if e := firstErr.Load(); e != nil {
		return result{}, *e
	}
	rate := float64(n.Load()) / el.Seconds()
	b.rep.printf("### Object storage: GETs of the images (%d workers)\n\n", workers)
	b.rep.printf("%.0f GETs/s (%d in %s, %.0f bytes each on average). The producer GETs every image of every message: at this rate it could emit at most %.0f samples/s (id pairs and instances in equal numbers: 3 GETs per 2 samples).\n\n",
		rate, n.Load(), el.Round(time.Millisecond), float64(bytesRead.Load())/float64(max(n.Load(), 1)), rate/1.5)
	return result{note: fmt.Sprintf("%.0f GETs/s with %d workers → at most %.0f samples/s from the producer", rate, workers, rate/1.5)}, nil
}

// compact shortens kafka-go's per-message write errors to a count and
// the first.
func compact(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return fmt.Errorf("%d of %d messages not written, e.g.: %w", we.Count(), len(we), e)
			}
		}
	}
	return err
}

func readAll(obj *minio.Object) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(obj)
	return buf.Bytes(), err
}

// phaseConsume: consumer-only throughput over topics filled directly.
func (b *bench) phaseConsume(ctx context.Context) (result, error) {
	t := b.names("consume")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wrote, wel, err := b.fill(ctx, t, b.o.consumeMsgs)
	if err != nil {
		return result{}, err
	}
	c := &consumer{brokers: b.ep.brokers, group: t.group, byID: t.byID, instance: t.instance, batch: b.o.batch, commitEvery: b.o.ckptEvery}
	cdone := make(chan error, 1)
	t0 := time.Now()
	go func() { cdone <- c.run(ctx) }()
	// The rate is taken from the first consumed batch to the last.
	var first time.Time
	var firstN int64
	last, lastN := time.Now(), int64(0)
	total := int64(2 * (b.o.consumeMsgs / b.o.batch) * b.o.batch)
	for lastN < total && time.Since(t0) < 90*time.Second+b.o.duration {
		select {
		case err := <-cdone:
			return result{}, err
		case <-time.After(20 * time.Millisecond):
		}
		n := c.consumed()
		if n > lastN {
			if first.IsZero() {
				first, firstN = time.Now(), n
			}
			last, lastN = time.Now(), n
		}
		if !first.IsZero() && time.Since(last) > 3*time.Second {
			break
		}
	}
	cancel()
	<-cdone
	if first.IsZero() || !last.After(first) {
		return result{}, errors.New("the consumer consumed nothing")
	}
	el := last.Sub(first)
	sps := float64(lastN-firstN) / el.Seconds()
	b.rep.printf("### Consume only: Kafka → decode/validate consumer, no producer\n\n")
	b.rep.printf("Filled the topics with %d id pairs + %d instances in %s (one kafka-go writer per topic: %.0f messages/s). Consumed %d of them (whole batches) in %s after joining the group (%s): %.0f samples/s (%.0f images/s) from the first batch to the last; %d invalid.\n\n",
		wrote/2, wrote/2, wel.Round(time.Millisecond), float64(wrote)/wel.Seconds(), lastN, last.Sub(t0).Round(time.Millisecond), first.Sub(t0).Round(time.Millisecond), sps, 1.5*sps, c.invalid.Load())
	return result{samplesPerSec: sps, imagesPerSec: 1.5 * sps, note: fmt.Sprintf("consumption alone (id pairs = instances); topic fill %.0f messages/s", float64(wrote)/wel.Seconds())}, nil
}

// fill writes n id pairs and n instances of the bucket's images (encoded as
// the producer encodes them) to the phase's topics.
func (b *bench) fill(ctx context.Context, t phaseTopics, n int) (int, time.Duration, error) {
	cl := &kafka.Client{Addr: kafka.TCP(b.ep.brokers...), Timeout: 30 * time.Second}
	var topics []kafka.TopicConfig
	for _, name := range []string{t.byID, t.instance} {
		topics = append(topics, kafka.TopicConfig{Topic: name, NumPartitions: b.o.partitions, ReplicationFactor: 1})
	}
	if _, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics}); err != nil {
		return 0, 0, err
	}
	// The PNGs of the first IDs, encoded once.
	ids := min(b.o.ids, 200)
	pngs := make([][][]byte, ids)
	for i := range ids {
		for k := range b.gen.InstancesOf(uint64(i)) {
			pix, err := b.gen.Image(uint64(i), k)
			if err != nil {
				return 0, 0, err
			}
			png, err := objstore.EncodePNG(pix, 32)
			if err != nil {
				return 0, 0, err
			}
			pngs[i] = append(pngs[i], png)
		}
	}
	pairs := make([]kafka.Message, 0, n)
	inst := make([]kafka.Message, 0, n)
	for j := range n {
		i := j % ids
		id := idBase + uint64(i)
		imgs := pngs[i]
		a, c := j%len(imgs), (j+1)%len(imgs)
		v, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: id, Sequence: uint64(j), Source: "bench-fill",
			First:  &ffcpb.Image{Key: objstore.ImageKey(id, a), Png: imgs[a]},
			Second: &ffcpb.Image{Key: objstore.ImageKey(id, c), Png: imgs[c]}})
		if err != nil {
			return 0, 0, err
		}
		pairs = append(pairs, kafka.Message{Key: []byte(strconv.FormatUint(id, 10)), Value: v})
		key := objstore.ImageKey(id, a)
		v, err = schemas.EncodeSample(&ffcpb.Sample{Id: id, ImageKey: key, ImagePng: imgs[a], Sequence: uint64(j), Source: "bench-fill"})
		if err != nil {
			return 0, 0, err
		}
		inst = append(inst, kafka.Message{Key: []byte(key), Value: v})
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for k, job := range []struct {
		topic string
		msgs  []kafka.Message
	}{{t.byID, pairs}, {t.instance, inst}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &kafka.Writer{Addr: kafka.TCP(b.ep.brokers...), Topic: job.topic, Balancer: &kafka.Murmur2Balancer{},
				RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchTimeout: 5 * time.Millisecond}
			defer w.Close()
			for i := 0; i < len(job.msgs) && errs[k] == nil; i += 5000 {
				errs[k] = compact(w.WriteMessages(ctx, job.msgs[i:min(i+5000, len(job.msgs))]...))
			}
		}()
	}
	wg.Wait()
	return 2 * n, time.Since(t0), errors.Join(errs...)
}

// trainer starts a real trainer on the phase's topics.
func (b *bench) trainer(ctx context.Context, t phaseTopics, ckptEvery int, reg *prometheus.Registry) (*trainers.Trainer, <-chan error, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	b.models = append(b.models, t.model)
	tr, err := trainers.New(ctx, trainers.Config{
		Brokers: b.ep.brokers, Group: t.group, TopicByID: t.byID, TopicInstance: t.instance, TopicDeadLetter: t.dead,
		Model: t.model, Backend: b.be, S3: b.mc, Bucket: b.bucket, JS: b.js,
		Engine: engine.Options{Backbone: "mlp", InLen: 32 * 32, Hidden: b.o.hidden, Dim: b.o.dim, Batch: b.o.batch, Pool: b.o.pool,
			Margin:   kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4},
			SGD:      nn.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true},
			Schedule: nn.Schedule{Kind: "step", BaseLR: 0.1, TotalSteps: 1 << 30}, Seed: 1},
		CheckpointEvery: ckptEvery, CheckpointInterval: time.Minute,
		Log: b.log.With("component", "trainer"), Registry: reg,
	})
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	return tr, done, nil
}

// phaseEnabled: producer → Kafka → the real trainer.
func (b *bench) phaseEnabled(ctx context.Context) (result, error) {
	t := b.names("enabled")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, pdone, err := b.startProducer(ctx, t, b.o.lead)
	if err != nil {
		return result{}, err
	}
	reg := prometheus.NewRegistry()
	tr, tdone, err := b.trainer(ctx, t, b.o.ckptEvery, reg)
	if err != nil {
		return result{}, err
	}
	defer tr.Close()
	count := func() (int64, int64) { st := tr.Stats(); return int64(st.Pairs), int64(st.Instances) }
	s := startSampler(p, func() int64 { a, b := count(); return a + b })
	errc := mergeErrs(ctx, pdone, tdone)
	// measure calls count last at the start and at the end of the window.
	var snaps [2][2]float64
	pairs, inst, el, err := b.measure(ctx, func() (int64, int64) {
		snaps[0] = snaps[1]
		snaps[1][0], snaps[1][1] = histogram(reg, "ffc_trainer_step_seconds")
		return count()
	}, errc)
	sum0, n0, sum1, n1 := snaps[0][0], snaps[0][1], snaps[1][0], snaps[1][1]
	rows := s.finish()
	st := tr.Stats()
	cancel()
	<-pdone
	<-tdone
	if err != nil {
		return result{}, err
	}
	sps, ips := rates(pairs, inst, el)
	b.rep.printf("### Step enabled: producer → Kafka → trainers.Trainer (FFC step, centers on NATS, checkpoints)\n\n")
	b.printSeries(rows)
	stepsPerSec := float64(pairs) / float64(b.o.batch) / el.Seconds()
	stepTime := time.Duration(0)
	if n1 > n0 {
		stepTime = time.Duration((sum1 - sum0) / (n1 - n0) * float64(time.Second))
	}
	share := (sum1 - sum0) / el.Seconds()
	b.rep.printf("Consumed %.0f samples/s (%.0f images/s) over %s: %.1f steps/s, engine step %s on average, so the engine step took %.0f%% of the time (the rest: assembling batches, publishing centers, checkpoints); %d steps, %d checkpoints, %d centers published (%.0f per step), %d dead letters in the run.\n\n",
		sps, ips, el.Round(time.Millisecond), stepsPerSec, stepTime.Round(time.Microsecond), 100*share, st.Steps, st.Checkpoints, st.Published, float64(st.Published)/float64(max(st.Steps, 1)), st.DeadLetters)
	return result{samplesPerSec: sps, imagesPerSec: ips, note: fmt.Sprintf("%.1f steps/s, engine step %s (%.0f%% of the time); %s", stepsPerSec, stepTime.Round(time.Microsecond), 100*share, bottleneck(rows))}, nil
}

// phaseFresh: new IDs uploaded and announced one at a time while the
// pipeline runs; the time until each has a center in the replica.
func (b *bench) phaseFresh(ctx context.Context) (result, error) {
	t := b.names("fresh")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, pdone, err := b.startProducer(ctx, t, b.o.freshLead)
	if err != nil {
		return result{}, err
	}
	tr, tdone, err := b.trainer(ctx, t, b.o.freshCkptEvery, nil)
	if err != nil {
		return result{}, err
	}
	defer tr.Close()
	rp, err := broadcast.NewReplica(b.js, broadcast.ReplicaOptions{Model: t.model, Codec: broadcast.NewProtoCodec(b.o.dim), Dim: b.o.dim})
	if err != nil {
		return result{}, err
	}
	rdone := make(chan error, 1)
	go func() { rdone <- rp.Run(ctx) }()
	errc := mergeErrs(ctx, pdone, tdone, rdone)
	// Warm up: the trainer has stepped and checkpointed at least once.
	deadline := time.Now().Add(90 * time.Second)
	for tr.Stats().Checkpoints == 0 || rp.Stats().LastStep < 0 {
		if time.Now().After(deadline) {
			return result{}, errors.New("the trainer did not start within 90 s")
		}
		select {
		case err := <-errc:
			return result{}, err
		case <-time.After(50 * time.Millisecond):
		}
	}
	s := startSampler(p, func() int64 { st := tr.Stats(); return int64(st.Pairs + st.Instances) })
	type fresh struct {
		id                  uint64
		images              int
		fromFirst, fromAnn  time.Duration
		timedOut            bool
		stepBefore, stepGot int64
	}
	var got []fresh
	for i := range b.o.newIDs {
		idx := b.o.ids + i
		f := fresh{id: idBase + uint64(idx), images: b.gen.InstancesOf(uint64(idx)), stepBefore: rp.Stats().LastStep}
		if err := b.putImage(ctx, idx, 0); err != nil {
			return result{}, err
		}
		landed := time.Now()
		for k := 1; k < f.images; k++ {
			if err := b.putImage(ctx, idx, k); err != nil {
				return result{}, err
			}
		}
		if err := producers.Announce(ctx, b.mc, b.bucket, f.id); err != nil {
			return result{}, err
		}
		announced := time.Now()
		for {
			if c, ok := rp.Get(f.id); ok {
				f.fromFirst, f.fromAnn, f.stepGot = time.Since(landed), time.Since(announced), c.Step
				break
			}
			if time.Since(landed) > b.o.freshTimeout {
				f.timedOut = true
				break
			}
			select {
			case err := <-errc:
				return result{}, err
			case <-time.After(2 * time.Millisecond):
			}
		}
		got = append(got, f)
	}
	rows := s.finish()
	st := tr.Stats()
	cancel()
	<-pdone
	<-tdone
	<-rdone
	b.rep.printf("### Freshness: new ID's first image in object storage → its center in a NATS replica\n\n")
	b.rep.printf("Producer lead %d, announce/ polled every %s, trainer checkpoint every %d steps; %d new IDs uploaded (all images, then the announcement) one at a time, each after the previous one's center arrived.\n\n",
		b.o.freshLead, b.o.pollInterval, b.o.freshCkptEvery, b.o.newIDs)
	var lat, ann []time.Duration
	timeouts := 0
	b.rep.printf("| new ID | images | first image → center | announcement → center | replica step before → center's step |\n|---:|---:|---:|---:|---|\n")
	for _, f := range got {
		if f.timedOut {
			timeouts++
			b.rep.printf("| %d | %d | timed out (> %s) | — | %d → — |\n", f.id, f.images, b.o.freshTimeout, f.stepBefore)
			continue
		}
		lat, ann = append(lat, f.fromFirst), append(ann, f.fromAnn)
		b.rep.printf("| %d | %d | %s | %s | %d → %d |\n", f.id, f.images, f.fromFirst.Round(time.Millisecond), f.fromAnn.Round(time.Millisecond), f.stepBefore, f.stepGot)
	}
	b.rep.printf("\n")
	b.printSeries(rows)
	r := result{timeouts: timeouts}
	if len(lat) > 0 {
		r.p50, r.p99 = quantile(lat, 0.5), quantile(lat, 0.99)
		r.note = fmt.Sprintf("freshness p50 %s, p99 %s, max %s (announcement → center p50 %s, p99 %s); %d of %d got a center",
			r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), quantile(lat, 1).Round(time.Millisecond),
			quantile(ann, 0.5).Round(time.Millisecond), quantile(ann, 0.99).Round(time.Millisecond), len(lat), len(got))
	} else {
		r.note = fmt.Sprintf("none of the %d new IDs got a center", len(got))
	}
	b.rep.printf("Freshness: %s. Trainer: %d steps, %d checkpoints in the phase.\n\n", r.note, st.Steps, st.Checkpoints)
	return r, nil
}

// histogram returns the sum and count of a histogram in reg.
func histogram(reg *prometheus.Registry, name string) (sum, count float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				sum += h.GetSampleSum()
				count += float64(h.GetSampleCount())
			}
		}
	}
	return sum, count
}

// quantile is the nearest-rank quantile q of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// cleanup deletes what this run created on real services.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(b.ep.brokers...), Timeout: 30 * time.Second}
	if r, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: b.topics}); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline: cleanup: delete topics:", err)
	} else {
		for topic, err := range r.Errors {
			if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
				fmt.Fprintf(os.Stderr, "pipeline: cleanup: delete topic %s: %v\n", topic, err)
			}
		}
	}
	if r, err := cl.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: b.groups}); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline: cleanup: delete groups:", err)
	} else {
		for g, err := range r.Errors {
			if err != nil && !errors.Is(err, kafka.GroupIdNotFound) {
				fmt.Fprintf(os.Stderr, "pipeline: cleanup: delete group %s: %v\n", g, err)
			}
		}
	}
	for _, m := range b.models {
		if err := b.js.DeleteStream(ctx, broadcast.StreamName(m)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			fmt.Fprintln(os.Stderr, "pipeline: cleanup: delete stream:", err)
		}
	}
	objs := b.mc.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Recursive: true})
	for e := range b.mc.RemoveObjects(ctx, b.bucket, objs, minio.RemoveObjectsOptions{}) {
		fmt.Fprintln(os.Stderr, "pipeline: cleanup: remove object:", e.Err)
	}
	if err := b.mc.RemoveBucket(ctx, b.bucket); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline: cleanup: remove bucket:", err)
	}
}

// consumer does what the trainer's consumption does, without the step:
// a consumer group, a reader per assigned partition, batches of B id
// pairs and B instances, every message decoded, validated and turned into
// input rows, offsets committed every commitEvery batches.
type consumer struct {
	brokers               []string
	group, byID, instance string
	batch, commitEvery    int
	pairs, instances      atomic.Int64 // in complete batches
	decoded, invalid      atomic.Int64
	offsets               map[string]map[int]int64
	sinkX, sinkY          []float32
	sinceCommit           int
}

// consumed counts the messages in complete batches.
func (c *consumer) consumed() int64 { return c.pairs.Load() + c.instances.Load() }

type message struct {
	topic     string
	partition int
	offset    int64
	value     []byte
}

func (c *consumer) run(ctx context.Context) error {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: c.group, Brokers: c.brokers, Topics: []string{c.byID, c.instance},
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: time.Second,
	})
	if err != nil {
		return err
	}
	defer cg.Close()
	c.offsets = map[string]map[int]int64{}
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := c.generation(ctx, gen); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (c *consumer) generation(ctx context.Context, gen *kafka.Generation) error {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	gen.Start(func(genCtx context.Context) {
		select {
		case <-genCtx.Done():
			cancel()
		case <-finished:
		}
	})
	byID := make(chan message, 4*c.batch)
	inst := make(chan message, 4*c.batch)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for topic, assigned := range gen.Assignments {
		out := byID
		if topic == c.instance {
			out = inst
		}
		for _, a := range assigned {
			start := a.Offset
			if o, ok := c.offsets[topic][a.ID]; ok {
				start = o
			}
			wg.Add(1)
			go func(topic string, partition int, start int64) {
				defer wg.Done()
				r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.brokers, Topic: topic, Partition: partition, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: time.Second})
				defer r.Close()
				if err := r.SetOffset(start); err != nil {
					return
				}
				for {
					m, err := r.FetchMessage(gctx)
					if err != nil {
						return
					}
					select {
					case out <- message{topic: topic, partition: partition, offset: m.Offset, value: m.Value}:
					case <-gctx.Done():
						return
					}
				}
			}(topic, a.ID, start)
		}
	}
	commit := func() {
		cp := map[string]map[int]int64{}
		for t, ps := range c.offsets {
			cp[t] = map[int]int64{}
			for p, o := range ps {
				cp[t][p] = o
			}
		}
		_ = gen.CommitOffsets(cp)
		c.sinceCommit = 0
	}
	for {
		msgs, err := c.assemble(gctx, byID, inst)
		if err != nil {
			if c.sinceCommit > 0 && ctx.Err() == nil {
				commit()
			}
			return nil // rebalance or shutdown
		}
		for _, m := range msgs {
			if c.offsets[m.topic] == nil {
				c.offsets[m.topic] = map[int]int64{}
			}
			if m.offset+1 > c.offsets[m.topic][m.partition] {
				c.offsets[m.topic][m.partition] = m.offset + 1
			}
		}
		c.pairs.Add(int64(c.batch))
		c.instances.Add(int64(c.batch))
		c.sinceCommit++
		if c.sinceCommit >= c.commitEvery {
			commit()
		}
	}
}

// assemble takes B valid id pairs and B valid instances, as the trainer
// does (invalid ones are counted and skipped), building the input rows.
func (c *consumer) assemble(ctx context.Context, byID, inst <-chan message) ([]message, error) {
	const in = 32 * 32
	b := c.batch
	if cap(c.sinkX) < (b+b/2)*in {
		c.sinkX, c.sinkY = make([]float32, 0, (b+b/2)*in), make([]float32, 0, (b+b/2)*in)
	}
	x, y := c.sinkX[:0], c.sinkY[:0]
	var msgs []message
	pairs, samples := 0, 0
	for pairs < b || samples < b {
		var m message
		var ic <-chan message
		if samples < b {
			ic = inst
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case m = <-byID:
		case m = <-ic:
		}
		msgs = append(msgs, m)
		c.decoded.Add(1)
		if m.topic == c.byID {
			_, imgs, err := schemas.DecodeIDPairImages(m.value, schemas.Limits{})
			if err != nil {
				c.invalid.Add(1)
				continue
			}
			x, y = appendGray(x, imgs[0]), appendGray(y, imgs[1])
			pairs++
			if pairs >= b {
				byID = nil
			}
			continue
		}
		_, img, err := schemas.DecodeSampleImage(m.value, schemas.Limits{})
		if err != nil {
			c.invalid.Add(1)
			continue
		}
		if samples < b/2 {
			x = appendGray(x, img)
		} else {
			y = appendGray(y, img)
		}
		samples++
	}
	c.sinkX, c.sinkY = x, y
	return msgs, nil
}

// appendGray appends an image scaled to (x/255 − 0.5)/0.5, as the trainer.
func appendGray(dst []float32, g *image.Gray) []float32 {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	for y := 0; y < h; y++ {
		for _, v := range g.Pix[y*g.Stride : y*g.Stride+w] {
			dst = append(dst, (float32(v)/255-0.5)/0.5)
		}
	}
	return dst
}

// machine describes the host.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				mem = fmt.Sprintf(", %.0f GiB RAM", kb/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d cores (GOMAXPROCS %d), %s%s; %s %s/%s", runtime.NumCPU(), runtime.GOMAXPROCS(0), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
