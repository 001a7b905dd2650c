package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/objstore"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// pipelineOptions configure the pipeline part of the demo.
type pipelineOptions struct {
	set       settings.Settings // as given; derived once the data set is open
	duration  time.Duration
	steps     int // stop after this many trainer steps instead (0: --duration)
	follow    bool
	newIDs    int
	newAt     float64
	synthOnly bool
	dataDir   string
	threads   int
	synthIDs  int
	dev       deviceFlags
	// The object store's bucket notifications (empty: polling only).
	notifyTopic, notifyARN string
	// removeIDs: new IDs removed once every new ID has its center.
	removeIDs int
	// keep: leave the run's bucket, topics, group and stream in place.
	keep bool
	// reg receives the producer's and the trainer's metrics (served on
	// --metrics-addr with the dashboard); nil: a registry of the run's own.
	reg *prometheus.Registry
}

// demoRun names what one demo run owns: every run has its own bucket,
// topics, group and model, so runs against long-lived servers do not see
// each other's data, offsets or checkpoints.
type demoRun struct {
	id, bucket, model       string
	byID, inst, dead, group string
	freshT                  string // the fresh lane's topic
	o                       pipelineOptions
	out                     io.Writer
	log                     *slog.Logger
	mc                      *minio.Client
	ends                    endpoints
	roles                   demoRoles
	data                    *demoSet
	prod                    *producers.Producer
	rep                     *broadcast.Replica
	tr                      *trainers.Trainer
	be                      kernels.Backend // the trainer's; the summary's baselines use it too
	fresh                   *idTimer        // new IDs: announcement → center
	removed                 *idTimer        // removed IDs: removal → gone
	start                   time.Time
}

func newDemoRun(o pipelineOptions, out io.Writer, log *slog.Logger, roles demoRoles, data *demoSet) *demoRun {
	id := time.Now().UTC().Format("20060102-150405")
	return &demoRun{id: id, bucket: "ffc-demo-" + id, model: "demo-" + id,
		byID: "demo-" + id + ".byid", inst: "demo-" + id + ".instance", dead: "demo-" + id + ".deadletter", freshT: "demo-" + id + ".fresh", group: "demo-trainer-" + id,
		o: o, out: out, log: log, ends: roles.trainer, roles: roles, data: data, fresh: newFreshness(), removed: newRemovals()}
}

// runPipeline runs producer → Kafka → trainer → NATS → replica as stages
// of g on the given endpoints, prints what happens and returns the
// summary.
func runPipeline(ctx context.Context, g *stage.Group, a *app, out io.Writer, roles demoRoles, o pipelineOptions) (sum *demoSummary, err error) {
	data, err := openDemoSet(ctx, out, a.log, o)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	if o.set, err = o.set.Derive(settings.Demo, len(engine.TrainIndex(data).Labels)); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	r := newDemoRun(o, out, a.log, roles, data)
	fmt.Fprintf(out, "demo: data: %s — %d classes, %d images; %d classes held back to stream in later\n", data.what, len(data.ids), data.Len(), len(data.back))
	if err := r.provision(ctx); err != nil {
		return nil, err
	}
	if err := r.upload(ctx, false); err != nil {
		return nil, err
	}
	cl, err := r.connect()
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer cl.Close()
	be, err := newBackend(a.log, o.threads, o.dev)
	if err != nil {
		return nil, err
	}
	defer be.Close()
	// The stages hold the backend and the connections: closed first.
	defer func() { err = errors.Join(err, g.Close()) }()
	if err := r.startStages(ctx, g, a, cl, be); err != nil {
		return nil, err
	}
	err = r.follow(ctx, g)
	// The producer first, then the trainer (final checkpoint and commit),
	// then the subscriber, once it has applied the trainer's last step.
	serr := g.StopStages("producer", "trainer")
	// After Ctrl-C too: the summary of what ran.
	sctx := context.WithoutCancel(ctx)
	if err == nil && serr == nil {
		r.settle(sctx)
	}
	if serr := errors.Join(serr, g.StopStages("replica")); serr != nil || err != nil {
		return nil, errors.Join(err, serr)
	}
	sum, err = r.summary(sctx)
	if err == nil {
		r.cleanup(sctx, cl)
	}
	return sum, err
}

// upload puts the train-split images of the classes held back (back) or
// of the others into the run's bucket; held-out fonts and open-set classes
// stay local for evaluation.
func (r *demoRun) upload(ctx context.Context, back bool) error {
	u := r.roles.uploader
	s3o := objstore.S3Options{Endpoint: u.S3Endpoint, AccessKey: u.S3.accessKey, SecretKey: u.S3.secretKey, Secure: u.S3.tls.On(), CAFile: u.S3.tls.CAFile, Bucket: r.bucket, Logger: r.log}
	s3o.Select = func(m dataset.Meta) bool { return m.Split == dataset.SplitTrain && r.data.back[m.Class] == back }
	up, err := objstore.Upload(ctx, r.data.Dir(), s3o)
	if err != nil {
		return fmt.Errorf("demo: upload: %w", err)
	}
	if !back {
		fmt.Fprintf(r.out, "demo: run %s: model %s, topics %s and %s\n", r.id, r.model, r.byID, r.inst)
		fmt.Fprintf(r.out, "demo: uploaded %d train-split images to s3://%s/ids/ in %s (%.0f objects/s); held-out fonts and open-set classes stay local for evaluation\n", up.Uploaded, r.bucket, up.Elapsed.Round(time.Millisecond), up.ObjectsPerSec)
	}
	return nil
}

// startStages starts the replica, the producer (its topics must exist
// before the trainer joins the group) and the trainer.
func (r *demoRun) startStages(ctx context.Context, g *stage.Group, a *app, cl *demoClients, be kernels.Backend) error {
	s := r.o.set
	r.mc, r.be = cl.uploader, be
	reg := r.o.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	ktls, ksasl, err := r.roles.producer.Kafka.sec.Client()
	if err != nil {
		return err
	}
	ttls, tsasl, err := r.roles.trainer.Kafka.sec.Client()
	if err != nil {
		return err
	}
	// Signed centers: a key pair of the run's own; the subscriber verifies.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	codec := broadcast.NewProtoCodec(s.Dim).WithVerifier(pub)
	if r.rep, err = broadcast.NewReplica(cl.subscriber, broadcast.ReplicaOptions{Model: r.model, Codec: codec, Dim: s.Dim, Log: a.log}); err != nil {
		return err
	}
	if r.prod, err = producers.New(producers.Config{Brokers: r.ends.KafkaBrokers, KafkaTLS: ktls, KafkaSASL: ksasl, S3: cl.producer, Bucket: r.bucket, MaxLead: s.MaxLead,
		TopicByID: r.byID, TopicInstance: r.inst, TopicDeadLetter: r.dead, TopicFresh: r.freshT, TrainerGroup: r.group,
		NotifyTopic: r.o.notifyTopic, NotifyARN: r.o.notifyARN,
		KafkaTimeout: r.ends.KafkaTimeout, ConnectTimeout: r.ends.ConnectTimeout, Log: a.log, Seed: 1, Registry: reg}); err != nil {
		return err
	}
	if r.tr, err = trainers.New(trainers.Config{SigningKey: priv, Brokers: r.ends.KafkaBrokers, KafkaTLS: ttls, KafkaSASL: tsasl, Model: r.model, Settings: s, Backend: be, S3: cl.trainer.mc, Bucket: r.bucket, JS: cl.trainer.js,
		TopicByID: r.byID, TopicInstance: r.inst, TopicDeadLetter: r.dead, TopicFresh: r.freshT, Group: r.group, MaxSteps: r.o.steps, KafkaTimeout: r.ends.KafkaTimeout, ConnectTimeout: r.ends.ConnectTimeout,
		Log: a.log.With("component", "trainer"), Registry: reg}); err != nil {
		return err
	}
	g.Go("replica", r.rep)
	g.Go("producer", r.prod)
	if err := g.WaitReady(ctx, "producer"); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	ps := r.prod.Stats()
	fmt.Fprintf(r.out, "demo: producer: %d IDs, %d images in the catalog; emitting samples.byid (id pairs) and samples.instance\n", ps.IDs, ps.Images)
	g.Go("trainer", r.tr)
	fmt.Fprintf(r.out, "demo: trainer: FFC, %s backbone, D=%d, batch %d id pairs + %d instances, pool %d slots; centers on NATS centers.%s.<id>\n", s.Backbone, s.Dim, s.Batch, s.Batch, s.Pool, r.model)
	return nil
}

// follow runs the pipeline until --duration (or, with --follow, Ctrl-C),
// a stage failure or the end of ctx: it streams the held-back IDs in at
// --new-at, reports progress and records each new ID's first center.
func (r *demoRun) follow(ctx context.Context, g *stage.Group) error {
	r.start = time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	streamed, removed := false, false
	for !r.done() {
		select {
		case <-ctx.Done():
			return nil
		case <-g.Failed():
			return g.Err()
		case <-g.Done("trainer"): // --steps reached
			return g.Err()
		case <-poll.C:
			r.fresh.check(r.rep, r.out)
			r.removed.check(r.rep, r.out)
		case <-tick.C:
			r.progress()
		}
		if !streamed && r.newIDsDue() {
			streamed = true
			if err := r.streamNewIDs(ctx); err != nil {
				return err
			}
		}
		if streamed && !removed && r.o.removeIDs > 0 && r.allCentered() {
			removed = true
			if err := r.removeNewIDs(ctx, r.o.removeIDs); err != nil {
				return err
			}
		}
	}
	return nil
}

// settleTimeout bounds the wait for the replica to apply the trainer's
// last step at the end of a run.
const settleTimeout = 30 * time.Second

// settle waits until the replica has applied the last step the trainer
// published, so that the summary counts every center.
func (r *demoRun) settle(ctx context.Context) {
	st := r.tr.Stats()
	last := int64(st.StartStep + st.Steps - 1)
	sctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if err := r.rep.WaitStep(sctx, last); err != nil && ctx.Err() == nil {
		r.log.Warn("demo: the replica is behind the trainer; the summary counts what it has", "err", err)
	}
}

// done reports whether the run has trained --steps steps (with --steps)
// or for --duration (without --follow).
func (r *demoRun) done() bool {
	if r.o.steps > 0 {
		return r.tr.Stats().Steps >= r.o.steps
	}
	return !r.o.follow && time.Since(r.start) >= r.o.duration
}

// allCentered reports whether every new ID streamed in has its center.
func (r *demoRun) allCentered() bool {
	_, all := r.fresh.done()
	return all
}

// newIDsDue reports whether --new-at of the run (of --steps, or of
// --duration) has passed.
func (r *demoRun) newIDsDue() bool {
	if r.o.steps > 0 {
		return float64(r.tr.Stats().Steps) >= r.o.newAt*float64(r.o.steps)
	}
	return time.Since(r.start) >= time.Duration(float64(r.o.duration)*r.o.newAt)
}

// streamNewIDs uploads and announces the held-back IDs.
func (r *demoRun) streamNewIDs(ctx context.Context) error {
	if err := r.upload(ctx, true); err != nil {
		return err
	}
	for c := range r.data.back {
		if err := producers.Announce(ctx, r.mc, r.bucket, r.data.ids[c]); err != nil {
			return fmt.Errorf("demo: announce: %w", err)
		}
		r.fresh.asked(r.data.ids[c])
	}
	fmt.Fprintf(r.out, "demo: streamed %d new IDs in (uploaded to S3 and announced)\n", len(r.data.back))
	return nil
}

// progress prints one progress line.
func (r *demoRun) progress() {
	st, rs, ps := r.tr.Stats(), r.rep.Stats(), r.prod.Stats()
	fmt.Fprintf(r.out, "demo: %3.0fs  step %d  loss %.2f  %s/step  pool %d/%d  centers %d (replica)  produced %d pairs, %d instances (lag %d/%d)\n",
		time.Since(r.start).Seconds(), st.Steps, st.LastLoss, st.LastStepTime.Round(time.Millisecond), st.PoolLen, r.o.set.Pool, rs.IDs,
		ps.ByID.Produced, ps.Instance.Produced, ps.ByID.Lag, ps.Instance.Lag)
}
