package trainers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/dataset/objstore"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// Stats is what a trainer has done in this run.
type Stats struct {
	Steps        int
	StartStep    int // the step restored from a checkpoint (0 when none)
	Pairs        int
	Instances    int
	DeadLetters  int
	Skipped      int
	Published    int
	PoolLen      int
	Checkpoints  int
	LastLoss     float64
	LastStepTime time.Duration
	// Inserted counts the insertions into the pool in this run (an ID
	// evicted and inserted again counts twice).
	Inserted int
	// The fresh lane: Fresh counts provisional centers published (new
	// IDs), Removed the REMOVE records applied and Forgotten the samples
	// of removed IDs consumed without training on them.
	Fresh, Removed, Forgotten int

	// Faults survived.
	TruncatedDeadLetters int // dead letters whose payload was truncated
	DeadLetterFailures   int // rejected messages skipped without a dead letter (its write failed)
	// LastFailedDeadLetter is the position of the last of those.
	LastFailedDeadLetter Position
	CheckpointFailures   int // checkpoints that failed (offsets held)
	PruneFailures        int // prunes of old checkpoints that failed
	FetchErrors          int // fetch errors of the partition readers (retried)
	Partitions           int // assigned in the current generation
}

// Trainer consumes samples.byid and samples.instance as a Kafka consumer
// group, runs FFC steps, publishes every center change on NATS and
// checkpoints to object storage before committing the offsets it covers.
// It is a stage (internal/stage): New, Run, Ready, Close.
type Trainer struct {
	stage.Lifecycle
	cfg       Config
	metrics   *metrics
	ckpt      *CheckpointStore
	transport *kafka.Transport // the dead-letter writer's connections
	dead      *kafka.Writer

	// Set by Run before Ready.
	set settings.Settings // derived, reconciled with the checkpoint
	eng *engine.Engine
	pub *publishing

	mu    sync.Mutex
	stats Stats

	// offsets: the next offset to consume per topic and partition, for
	// every message already in a completed step (or dead-lettered). Only
	// Run's goroutine touches it, and batch, the batch it assembles.
	offsets Offsets
	batch   *batch
	// ckptFailing: the last checkpoint failed (Run's goroutine only).
	ckptFailing bool
	// durable are the offsets of the last durable checkpoint (restored or
	// written), of step durableStep; commitPending says the group has not
	// taken them yet (Run's goroutine only).
	durable       Offsets
	durableStep   int
	commitPending bool
	// idleWarned: the warning for a generation without partitions was
	// given (Run's goroutine only).
	idleWarned bool
	// removed: the removed IDs and when (a checkpoint part); provisioned:
	// the IDs given a provisional center that no step has inserted into
	// the pool yet (Run's goroutine only).
	removed     map[uint64]int64
	provisioned map[uint64]bool

	health *stage.Health
	// fetchFailing counts the partition readers whose fetches fail (mu).
	fetchFailing int
	// lag feeds ffc_trainer_consumer_lag; lastDurable is when the last
	// durable checkpoint was written or restored (Unix nanoseconds; the
	// start of the run before there is one).
	lag         *lagTracker
	lastDurable *atomic.Int64
}

// New validates cfg; it connects to nothing until Run.
func New(cfg Config) (*Trainer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lastDurable := new(atomic.Int64)
	lastDurable.Store(time.Now().UnixNano())
	m, err := newMetrics(cfg.Registry, lastDurable)
	if err != nil {
		return nil, fmt.Errorf("trainer: metrics: %w", err)
	}
	// Metadata of the four topics only, refreshed often enough that the
	// wait for missing topics ends soon after they are created.
	tr := &kafka.Transport{ClientID: "ffc-trainer", MetadataTTL: 2 * time.Second, TLS: cfg.KafkaTLS, SASL: cfg.KafkaSASL,
		MetadataTopics: []string{cfg.TopicByID, cfg.TopicInstance, cfg.TopicDeadLetter, cfg.TopicFresh}}
	t := &Trainer{
		cfg: cfg, metrics: m, transport: tr,
		dead: &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.TopicDeadLetter, AllowAutoTopicCreation: true, Transport: tr,
			BatchTimeout: 10 * time.Millisecond, RequiredAcks: kafka.RequireAll, WriteTimeout: cfg.KafkaTimeout, ReadTimeout: cfg.KafkaTimeout,
			MaxAttempts: 1, BatchBytes: int64(max(cfg.DeadLetterMaxBytes, 1<<20))}, // deadLetter retries
		offsets: Offsets{}, removed: map[uint64]int64{}, provisioned: map[uint64]bool{},
		lag: newLagTracker(m.consumerLag), lastDurable: lastDurable,
		health: &stage.Health{Log: cfg.Log, OnChange: func(name string, ok bool) {
			v := 0.0
			if ok {
				v = 1
			}
			m.health.WithLabelValues(name).Set(v)
		}},
	}
	t.ckpt = &CheckpointStore{MC: cfg.S3, Bucket: cfg.Bucket, Prefix: "checkpoints/" + cfg.Model, Model: cfg.Model,
		Retry: cfg.StorageRetry, Log: cfg.Log, OnPruneError: t.pruneFailed}
	return t, nil
}

// Health is the trainer's live readiness (for /readyz). Its conditions
// include CondStorage, CondKafka, CondTopics and CondFetch (and the center
// publisher's), each set once the trainer has seen it hold or fail.
func (t *Trainer) Health() *stage.Health { return t.health }

// Ready (from stage.Lifecycle) is closed once the trainer has restored its
// checkpoint and joined the consumer group.

// Stats returns a snapshot of the counters.
func (t *Trainer) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// PoolIDs returns the IDs in the pool, most recent first: call it after
// Run has returned (nil when no engine was built).
func (t *Trainer) PoolIDs() []uint64 {
	t.mu.Lock()
	eng := t.eng
	t.mu.Unlock()
	if eng == nil {
		return nil
	}
	labels := eng.Pool().LRU().Order()
	out := make([]uint64, len(labels))
	for i, l := range labels {
		out[i] = uint64(l)
	}
	return out
}

// Settings are the run's settings, derived and reconciled with the
// restored checkpoint: set once Run has started (zero before).
func (t *Trainer) Settings() settings.Settings {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.set
}

// Engine exposes the engine (for evaluation after a run); nil before
// Ready and after Close.
func (t *Trainer) Engine() *engine.Engine {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.eng
}

// Close stops Run and releases the engine and the dead-letter writer.
func (t *Trainer) Close() error {
	if !t.Stop() {
		return nil
	}
	t.mu.Lock()
	eng := t.eng
	t.eng = nil
	t.mu.Unlock()
	errs := []error{t.dead.Close()}
	t.transport.CloseIdleConnections()
	if eng != nil {
		errs = append(errs, eng.Close())
	}
	return errors.Join(errs...)
}

// Run creates the checkpoint bucket and the centers stream when missing,
// restores the newest complete checkpoint, then consumes and trains until
// ctx ends or MaxSteps steps are done, then writes a final checkpoint and
// commits its offsets. It returns nil when ctx ends.
func (t *Trainer) Run(ctx context.Context) error {
	ctx, end, err := t.Begin(ctx)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	defer end()
	defer t.stopPublisher()
	if err := t.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return t.consume(ctx)
}

// start prepares the bucket, the publisher and the engine with the
// restored checkpoint.
func (t *Trainer) start(ctx context.Context) error {
	var man *checkpointManifest
	t.lastDurable.Store(time.Now().UnixNano())
	t.health.Set(CondStarted, false, "restoring the checkpoint and joining the group")
	if !t.cfg.ConsumeOnly {
		if err := t.ensureBucket(ctx); err != nil {
			return err
		}
		var err error
		if man, err = t.ckpt.Latest(ctx); err != nil {
			return fmt.Errorf("trainer: find checkpoint: %w", err)
		}
	}
	set, err := t.settingsFor(ctx, man)
	if err != nil {
		return err
	}
	if t.cfg.ConsumeOnly {
		t.mu.Lock()
		t.set = set
		t.mu.Unlock()
		return nil
	}
	opts := set.Engine(settings.Streaming, 0, t.cfg.Log)
	opts.KeepFeatures = true
	eng, err := engine.New(t.cfg.Backend, opts)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	t.mu.Lock()
	t.set, t.eng = set, eng
	t.mu.Unlock()
	if err := t.restore(ctx, man); err != nil {
		return err
	}
	return t.startPublisher(ctx, int64(eng.StepCount()))
}

// settingsFor reconciles the configured settings with those of the
// checkpoint man (nil: none) and derives them.
func (t *Trainer) settingsFor(ctx context.Context, man *checkpointManifest) (settings.Settings, error) {
	given := t.cfg.Settings
	if man != nil {
		saved, ok, err := t.ckpt.Settings(ctx, man)
		if err != nil {
			return given, fmt.Errorf("trainer: checkpoint at step %d: %w", man.GetStep(), err)
		}
		if ok {
			if given, err = settings.Resume(given, saved); err != nil {
				return given, fmt.Errorf("trainer: %w", err)
			}
		}
	}
	set, err := given.Derive(settings.Streaming, 0)
	if err != nil {
		return set, fmt.Errorf("trainer: %w", err)
	}
	return set, nil
}

// restore loads the checkpoint man, if any.
func (t *Trainer) restore(ctx context.Context, man *checkpointManifest) error {
	if man == nil {
		t.cfg.Log.Info("trainer: no checkpoint; starting fresh", "model", t.cfg.Model)
		return nil
	}
	off, err := t.ckpt.Load(ctx, man, t.eng.StateParts())
	if err != nil {
		return fmt.Errorf("trainer: restore checkpoint at step %d: %w", man.GetStep(), err)
	}
	if err := t.ckpt.LoadOther(ctx, man, t.removedPart()); err != nil {
		return fmt.Errorf("trainer: restore checkpoint at step %d: %w", man.GetStep(), err)
	}
	t.offsets = off
	if at := man.GetCreatedUnixNano(); at > 0 {
		t.lastDurable.Store(at)
	}
	// The group may lag the checkpoint (a commit lost before a crash):
	// commit its offsets once the input stalls, or with the next one.
	t.durable, t.durableStep, t.commitPending = off.clone(), int(man.GetStep()), true
	t.mu.Lock()
	t.stats.StartStep = t.eng.StepCount()
	t.stats.PoolLen = t.eng.Pool().Len()
	t.mu.Unlock()
	t.cfg.Log.Info("trainer: restored checkpoint", "step", man.GetStep(), "pool", t.eng.Pool().Len(), "batch", t.set.Batch, "offsets", off)
	return nil
}

// ensureBucket creates the checkpoint bucket when missing, retrying while
// object storage is unreachable for up to ConnectTimeout.
func (t *Trainer) ensureBucket(ctx context.Context) error {
	b := Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Elapsed: t.cfg.ConnectTimeout}
	_, err := retry(ctx, b, t.cfg.Log, "create the checkpoint bucket", func() (struct{}, error) {
		err := objstore.EnsureBucket(ctx, t.cfg.S3, t.cfg.Bucket)
		if err != nil {
			t.health.Set(CondStorage, false, err.Error())
		}
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("trainer: %w: bucket %s not reachable within %s: %w", ErrStorageUnreachable, t.cfg.Bucket, t.cfg.ConnectTimeout, err)
	}
	t.health.Set(CondStorage, true, "")
	return nil
}
