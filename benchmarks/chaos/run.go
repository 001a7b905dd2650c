package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// names are the run's bucket, model, group and topics, each with a
// random suffix so that runs on long-lived services do not mix.
type names struct {
	suffix, bucket, model, group, byID, instance, dead, fresh string
}

func newNames() names {
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return names{suffix: s, bucket: "ffc-chaos-" + s, model: "chaos-" + s, group: "chaos-trainer-" + s,
		byID: "chaos." + s + ".byid", instance: "chaos." + s + ".instance", dead: "chaos." + s + ".deadletter",
		fresh: "chaos." + s + ".fresh"}
}

// producerSource names the producer in its messages.
const producerSource = "chaos-producer"

// runner is one run.
type runner struct {
	o     options
	log   *slog.Logger
	seed  uint64
	work  string
	bin   string
	svc   services
	ends  endpoints
	names names

	mc      *minio.Client
	mcTr    *http.Transport
	nc      *nats.Conn
	js      jetstream.JetStream
	kafka   *kafkaAdmin
	data    *dataset
	sub     *subscriber
	subDone chan error
	stopSub context.CancelFunc

	exits             *exitLog
	producer, trainer *child

	injected []injection
	// scraped holds, per producer process, the last acknowledged sample
	// messages and messages given up its /metrics reported.
	scraped map[int][2]int64
	report  *Report
}

// run runs the suite once and returns its report; the error is for
// failures of the harness itself (the report is then partial or nil).
func run(ctx context.Context, o options, log *slog.Logger) (rep *Report, err error) {
	r := &runner{o: o, log: log, seed: o.seed, names: newNames(), exits: newExitLog(), scraped: map[int][2]int64{}}
	if r.seed == 0 {
		r.seed = uint64(time.Now().UnixNano())
	}
	r.report = &Report{Stack: o.stack, Seed: r.seed, Scheduled: o.duration}
	began := time.Now()
	defer func() { r.report.Ran = time.Since(began) }()
	closeAll, err := r.setup(ctx)
	defer func() { err = errors.Join(err, closeAll()) }()
	if err != nil {
		return r.report, err
	}
	defer r.stopAll()
	if err := r.startPipeline(ctx); err != nil {
		return r.report, err
	}
	r.faultLoop(ctx)
	r.finish(ctx)
	return r.report, nil
}

// setup prepares the work folder, the binary, the services and the
// clients, and uploads the data. closeAll undoes it, also after an error.
func (r *runner) setup(ctx context.Context) (closeAll func() error, err error) {
	var closers []func() error
	closeAll = func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	if r.work = r.o.workDir; r.work == "" {
		if r.work, err = os.MkdirTemp("", "ffc-chaos-*"); err != nil {
			return closeAll, fmt.Errorf("work folder: %w", err)
		}
		if !r.o.keep {
			closers = append(closers, func() error { return os.RemoveAll(r.work) })
		}
	}
	if err := os.MkdirAll(filepath.Join(r.work, "logs"), 0o755); err != nil {
		return closeAll, fmt.Errorf("work folder: %w", err)
	}
	r.report.WorkDir = r.work
	root, err := repoRoot()
	if err != nil {
		return closeAll, err
	}
	if r.bin, err = r.build(ctx, root); err != nil {
		return closeAll, err
	}
	if r.o.stack == "embedded" {
		r.svc, err = startEmbedded(r.work, r.log)
	} else {
		r.svc, err = startReal(ctx, root, r.work, r.o.services, r.log)
	}
	if err != nil {
		return closeAll, err
	}
	closers = append(closers, r.svc.close)
	r.ends = r.svc.endpoints()
	r.report.Services = fmt.Sprintf("Kafka %s, NATS %s, S3 %s", strings.Join(r.ends.brokers, ","), r.ends.natsURL, r.ends.s3)
	closeClients, err := r.connect(ctx)
	closers = append(closers, closeClients)
	if err != nil {
		return closeAll, err
	}
	if r.data, err = upload(ctx, r.mc, r.names.bucket, r.o.ids, r.seed); err != nil {
		return closeAll, err
	}
	r.report.Data = fmt.Sprintf("%d IDs, %d images (32×32) in bucket %s", len(r.data.ids), r.data.numImages(), r.names.bucket)
	return closeAll, nil
}

// connect opens the harness's own clients and creates the bucket; the
// returned function closes them (and on shared services deletes what
// the run created, unless --keep).
func (r *runner) connect(ctx context.Context) (func() error, error) {
	var closers []func()
	closeAll := func() error {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		return nil
	}
	var err error
	r.mcTr = &http.Transport{MaxIdleConnsPerHost: 16}
	if r.mc, err = minio.New(r.ends.s3, &minio.Options{Creds: credentials.NewStaticV4(r.ends.accessKey, r.ends.secretKey, ""), Transport: r.mcTr}); err != nil {
		return closeAll, fmt.Errorf("s3 client: %w", err)
	}
	closers = append(closers, r.mcTr.CloseIdleConnections)
	if r.nc, err = nats.Connect(r.ends.natsURL, nats.Name("ffc-chaos"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond)); err != nil {
		return closeAll, fmt.Errorf("nats: %w", err)
	}
	closers = append(closers, r.nc.Close)
	if r.js, err = jetstream.New(r.nc); err != nil {
		return closeAll, fmt.Errorf("jetstream: %w", err)
	}
	if r.kafka, err = newKafkaAdmin(r.ends.brokers, r.log); err != nil {
		return closeAll, err
	}
	closers = append(closers, r.kafka.close)
	if err := r.mc.MakeBucket(ctx, r.names.bucket, minio.MakeBucketOptions{}); err != nil {
		return closeAll, fmt.Errorf("make bucket %s: %w", r.names.bucket, err)
	}
	if r.o.stack == "real" && r.o.services == "shared" && !r.o.keep {
		closers = append(closers, r.cleanupShared)
	}
	return closeAll, nil
}

// repoRoot finds the module root (the folder with go.mod above the
// working directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/ffc-stream/ffc\n") {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("not inside the ffc module (no go.mod of github.com/ffc-stream/ffc above the working folder)")
		}
		dir = up
	}
}

// build builds the ffc binary into the work folder (or uses --ffc-bin).
func (r *runner) build(ctx context.Context, root string) (string, error) {
	if r.o.ffcBin != "" {
		r.report.Binary = r.o.ffcBin
		return r.o.ffcBin, nil
	}
	bin := filepath.Join(r.work, "ffc")
	args := []string{"build", "-o", bin}
	if r.o.race {
		args = append(args, "-race")
	}
	if r.o.tags != "" {
		args = append(args, "-tags", r.o.tags)
	}
	args = append(args, "./cmd/ffc")
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	r.report.Binary = fmt.Sprintf("go %s (%s)", strings.Join(args, " "), time.Since(t0).Round(time.Second))
	return bin, nil
}

// startPipeline starts the producer, the subscriber and the trainer, and
// waits for the first step commit.
func (r *runner) startPipeline(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	e := r.ends
	svc := []string{"--log-format", "json", "--log-level", "info", "--stats-interval", "0",
		"--kafka-brokers", strings.Join(e.brokers, ","), "--s3-endpoint", e.s3,
		"--bucket", r.names.bucket, "--topic-byid", r.names.byID, "--topic-instance", r.names.instance, "--topic-deadletter", r.names.dead,
		"--topic-fresh", r.names.fresh,
		"--batch", strconv.Itoa(r.o.batch), "--checkpoint-every", strconv.Itoa(r.o.ckptEvery)}
	spec := func(name string, port int, args ...string) childSpec {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		return childSpec{name: name, bin: r.bin, args: append(append(args, svc...), "--metrics-addr", addr), metricsAddr: addr,
			env:    []string{"FFC_S3_ACCESS_KEY=" + e.accessKey, "FFC_S3_SECRET_KEY=" + e.secretKey},
			logDir: filepath.Join(r.work, "logs"), log: r.log, maxUnexpected: r.o.maxUnexpectedExits, exits: r.exits}
	}
	r.producer = newChild(spec("producer", ports[0], "produce", "--trainer-group", r.names.group,
		"--partitions", strconv.Itoa(r.o.partitions), "--poll-interval", "200ms", "--source", producerSource))
	r.trainer = newChild(spec("trainer", ports[1], "train", "--nats-url", e.natsURL, "--model", r.names.model, "--group", r.names.group,
		"--backbone", "mlp", "--dim", strconv.Itoa(r.o.dim), "--pool", strconv.Itoa(r.o.pool),
		"--checkpoint-interval", "5s", "--threads", "1", "--lr", "0.05"))
	if err := r.producer.Start(); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, r.o.readyTimeout)
	defer cancel()
	if err := r.producer.WaitReady(rctx); err != nil {
		return err
	}
	r.sub = newSubscriber(r.names.model, r.o.dim)
	r.subDone = make(chan error, 1)
	sctx, stopSub := context.WithCancel(context.WithoutCancel(ctx))
	go func() { r.subDone <- r.sub.run(sctx, r.js) }()
	r.stopSub = stopSub
	if err := r.trainer.Start(); err != nil {
		return err
	}
	if err := r.trainer.WaitReady(rctx); err != nil {
		return err
	}
	if _, _, err := r.sub.waitRecovered(rctx, time.Time{}, nil, 0); err != nil {
		return fmt.Errorf("no step commit from the trainer (logs in %s): %w", filepath.Join(r.work, "logs"), err)
	}
	return nil
}
