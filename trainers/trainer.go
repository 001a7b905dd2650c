package trainers

import (
	"context"
	"errors"
	"fmt"
	"image"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/engine"
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
	// TrainedIDs counts the distinct IDs inserted into the pool in this run.
	TrainedIDs int
}

// Trainer consumes samples.byid and samples.instance as a Kafka consumer
// group, runs FFC steps, publishes every center change on NATS and
// checkpoints to object storage before committing the offsets it covers.
type Trainer struct {
	cfg     Config
	eng     *engine.Engine
	pub     *broadcast.Publisher
	ckpt    *CheckpointStore
	dead    *kafka.Writer
	metrics *metrics

	mu      sync.Mutex
	stats   Stats
	trained map[uint64]bool

	ready     chan struct{}
	readyOnce sync.Once
	// offsets: the next offset to consume per topic and partition, for
	// every message already in a completed step (or dead-lettered).
	offsets Offsets
}

// New validates cfg and builds the engine, the publisher and the
// checkpoint store. Run restores the newest checkpoint.
func New(ctx context.Context, cfg Config) (*Trainer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("trainer: metrics: %w", err)
	}
	eng, err := engine.New(cfg.Backend, cfg.Engine)
	if err != nil {
		return nil, err
	}
	pub, err := broadcast.NewPublisher(ctx, cfg.JS, broadcast.PublisherOptions{Model: cfg.Model, Codec: broadcast.NewProtoCodec(cfg.Engine.Dim)})
	if err != nil {
		return nil, errors.Join(err, eng.Close())
	}
	t := &Trainer{
		cfg: cfg, eng: eng, pub: pub, metrics: m,
		ckpt:    &CheckpointStore{MC: cfg.S3, Bucket: cfg.Bucket, Prefix: "checkpoints/" + cfg.Model, Model: cfg.Model},
		dead:    &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.TopicDeadLetter, AllowAutoTopicCreation: true, BatchTimeout: 10 * time.Millisecond, RequiredAcks: kafka.RequireAll},
		trained: map[uint64]bool{},
		ready:   make(chan struct{}),
		offsets: Offsets{},
	}
	return t, nil
}

// Ready is closed once the trainer has restored its checkpoint and joined
// the consumer group.
func (t *Trainer) Ready() <-chan struct{} { return t.ready }

// Stats returns a snapshot of the counters.
func (t *Trainer) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.TrainedIDs = len(t.trained)
	return s
}

// TrainedIDs returns the IDs inserted into the pool in this run.
func (t *Trainer) TrainedIDs() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]uint64, 0, len(t.trained))
	for id := range t.trained {
		out = append(out, id)
	}
	return out
}

// Engine exposes the engine (for evaluation after a run).
func (t *Trainer) Engine() *engine.Engine { return t.eng }

// Close releases the engine and the dead-letter writer.
func (t *Trainer) Close() error {
	return errors.Join(t.dead.Close(), t.eng.Close())
}

// message is one consumed Kafka message.
type message struct {
	topic     string
	partition int
	offset    int64
	value     []byte
}

// Run restores the newest complete checkpoint, then consumes and trains
// until ctx ends or MaxSteps steps are done, then writes a final
// checkpoint and commits its offsets.
func (t *Trainer) Run(ctx context.Context) error {
	if err := t.restore(ctx); err != nil {
		return err
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: t.cfg.Group, Brokers: t.cfg.Brokers, Topics: []string{t.cfg.TopicByID, t.cfg.TopicInstance},
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: time.Second,
	})
	if err != nil {
		return fmt.Errorf("trainer: consumer group %s: %w", t.cfg.Group, err)
	}
	defer cg.Close()
	failures := 0
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The group keeps trying to join (with backoff); errors such as
			// "group coordinator not available" on a brand-new Kafka whose
			// offsets topic does not exist yet are transient.
			failures++
			if failures >= t.cfg.JoinAttempts {
				return fmt.Errorf("trainer: join group %s: %d attempts failed, last: %w", t.cfg.Group, failures, err)
			}
			t.cfg.Log.Warn("trainer: joining the consumer group failed; retrying", "group", t.cfg.Group, "attempt", failures, "err", err)
			continue
		}
		failures = 0
		done, err := t.runGeneration(ctx, gen)
		if err != nil || done {
			return err
		}
	}
}

// restore loads the newest complete checkpoint, if any.
func (t *Trainer) restore(ctx context.Context) error {
	man, err := t.ckpt.Latest(ctx)
	if err != nil {
		return fmt.Errorf("trainer: find checkpoint: %w", err)
	}
	if man == nil {
		t.cfg.Log.Info("trainer: no checkpoint; starting fresh", "model", t.cfg.Model)
		return nil
	}
	off, err := t.ckpt.Load(ctx, man, t.eng.StateParts())
	if err != nil {
		return fmt.Errorf("trainer: restore checkpoint at step %d: %w", man.GetStep(), err)
	}
	t.offsets = off
	t.mu.Lock()
	t.stats.StartStep = t.eng.StepCount()
	t.stats.PoolLen = t.eng.Pool().Len()
	t.mu.Unlock()
	t.cfg.Log.Info("trainer: restored checkpoint", "step", man.GetStep(), "pool", t.eng.Pool().Len(), "offsets", off)
	return nil
}

// runGeneration consumes the partitions assigned in one generation of the
// group. It returns done = true when the run should end.
func (t *Trainer) runGeneration(ctx context.Context, gen *kafka.Generation) (bool, error) {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	byID := make(chan message, 4*t.cfg.Engine.Batch)
	inst := make(chan message, 4*t.cfg.Engine.Batch)
	errc := make(chan error, 1)
	// The generation's context ends at a rebalance; so do the readers and
	// the assembly of the current batch. kafka-go ends a generation as soon
	// as a function started on it returns, so this one returns only when
	// the generation ends or when this function is done (after the final
	// checkpoint has committed its offsets).
	finished := make(chan struct{})
	defer close(finished)
	gen.Start(func(genCtx context.Context) {
		select {
		case <-genCtx.Done():
			cancel()
		case <-finished:
		}
	})
	var wg sync.WaitGroup
	for topic, assigned := range gen.Assignments {
		out := byID
		if topic == t.cfg.TopicInstance {
			out = inst
		}
		for _, a := range assigned {
			start := a.Offset
			if o, ok := t.offsets[topic][a.ID]; ok {
				start = o // the checkpoint (or this run) is ahead of the group's commit
			}
			wg.Add(1)
			go func(topic string, partition int, start int64) {
				defer wg.Done()
				if err := t.read(gctx, topic, partition, start, out); err != nil && gctx.Err() == nil {
					select {
					case errc <- err:
					default:
					}
					cancel()
				}
			}(topic, a.ID, start)
		}
	}
	defer func() { cancel(); wg.Wait() }()
	t.readyOnce.Do(func() { close(t.ready) })

	lastCkpt := time.Now()
	sinceCkpt := 0
	b := t.cfg.Engine.Batch
	// When the input stalls, checkpoint what is done so its offsets get
	// committed: producers hold back until the trainers' group commits.
	onIdle := func() error {
		if sinceCkpt == 0 {
			return nil
		}
		if err := t.checkpoint(context.WithoutCancel(ctx), gen); err != nil {
			return err
		}
		lastCkpt, sinceCkpt = time.Now(), 0
		return nil
	}
	for {
		if t.cfg.MaxSteps > 0 && t.Stats().Steps >= t.cfg.MaxSteps {
			return true, t.checkpoint(ctx, gen)
		}
		batch, err := t.assemble(gctx, byID, inst, b, onIdle)
		if errors.Is(err, errDeadLetter) || errors.Is(err, errFatal) {
			return true, err
		}
		if err != nil {
			select {
			case rerr := <-errc:
				return true, errors.Join(rerr, t.checkpoint(context.WithoutCancel(ctx), gen))
			default:
			}
			if ctx.Err() != nil {
				// Shutdown: checkpoint what is done and commit it.
				return true, t.checkpoint(context.WithoutCancel(ctx), gen)
			}
			return false, nil // the generation ended (rebalance): join again
		}
		if err := t.step(ctx, batch); err != nil {
			return true, err
		}
		sinceCkpt++
		if sinceCkpt >= t.cfg.CheckpointEvery || time.Since(lastCkpt) >= t.cfg.CheckpointInterval {
			// A checkpoint once begun is finished even during shutdown.
			if err := t.checkpoint(context.WithoutCancel(ctx), gen); err != nil {
				return true, err
			}
			lastCkpt, sinceCkpt = time.Now(), 0
		}
	}
}

// read fetches one partition from start into out.
func (t *Trainer) read(ctx context.Context, topic string, partition int, start int64, out chan<- message) error {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: t.cfg.Brokers, Topic: topic, Partition: partition, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: time.Second})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("trainer: seek %s/%d to %d: %w", topic, partition, start, err)
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("trainer: fetch %s/%d: %w", topic, partition, err)
		}
		select {
		case out <- message{topic: topic, partition: partition, offset: m.Offset, value: m.Value}:
		case <-ctx.Done():
			return nil
		}
	}
}

// batch is one assembled FFC batch.
type batch struct {
	x, y    []float32
	xl, yl  []int64
	msgs    []message
	pairs   int
	samples int
}

// assemble takes B valid id pairs and B valid instances; invalid messages
// are dead-lettered and their offsets marked consumed.
func (t *Trainer) assemble(ctx context.Context, byID, inst <-chan message, b int, onIdle func() error) (*batch, error) {
	in := t.eng.InLen()
	bt := &batch{x: make([]float32, 0, (b+b/2)*in), y: make([]float32, 0, (b+b/2)*in)}
	var hx, hy []float32
	var hxl, hyl []int64
	idle := time.NewTimer(t.cfg.IdleCheckpoint)
	defer idle.Stop()
	for bt.pairs < b || bt.samples < b {
		var m message
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-idle.C:
			if err := onIdle(); err != nil {
				return nil, fmt.Errorf("%w: %w", errFatal, err)
			}
			continue
		case m = <-byID: // nil once B pairs are in
		case m = <-instIf(inst, bt.samples < b):
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		idle.Reset(t.cfg.IdleCheckpoint)
		bt.msgs = append(bt.msgs, m)
		switch m.topic {
		case t.cfg.TopicByID:
			p, imgs, err := schemas.DecodeIDPairImages(m.value, t.cfg.Limits)
			if err != nil {
				if err := t.deadLetter(ctx, m, err); err != nil {
					return nil, err
				}
				continue
			}
			bt.x, bt.y = appendGray(bt.x, imgs[0]), appendGray(bt.y, imgs[1])
			bt.xl, bt.yl = append(bt.xl, int64(p.GetId())), append(bt.yl, int64(p.GetId()))
			bt.pairs++
		default:
			s, img, err := schemas.DecodeSampleImage(m.value, t.cfg.Limits)
			if err != nil {
				if err := t.deadLetter(ctx, m, err); err != nil {
					return nil, err
				}
				continue
			}
			if bt.samples < b/2 {
				hx, hxl = appendGray(hx, img), append(hxl, int64(s.GetId()))
			} else {
				hy, hyl = appendGray(hy, img), append(hyl, int64(s.GetId()))
			}
			bt.samples++
		}
		if bt.pairs >= b {
			byID = nil // stop reading pairs; keep reading instances
		}
	}
	bt.x, bt.y = append(bt.x, hx...), append(bt.y, hy...)
	bt.xl, bt.yl = append(bt.xl, hxl...), append(bt.yl, hyl...)
	return bt, nil
}

// instIf returns ch when on, else nil (a nil channel never delivers).
func instIf(ch <-chan message, on bool) <-chan message {
	if on {
		return ch
	}
	return nil
}

// appendGray appends a grayscale image scaled to (x/255 − 0.5)/0.5.
func appendGray(dst []float32, g *image.Gray) []float32 {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	for y := 0; y < h; y++ {
		row := g.Pix[y*g.Stride : y*g.Stride+w]
		for _, v := range row {
			dst = append(dst, (float32(v)/255-0.5)/0.5)
		}
	}
	return dst
}

// errDeadLetter marks a dead letter that could not be written: the trainer
// stops rather than skip a message nobody has kept.
var errDeadLetter = errors.New("dead-letter write failed")

// errFatal marks an assembly failure that must stop the trainer.
var errFatal = errors.New("trainer stopped")

// deadLetter sends a rejected message to the dead-letter topic with its
// reason. Its offset advances with the step that follows, like any
// consumed message.
func (t *Trainer) deadLetter(ctx context.Context, m message, cause error) error {
	reason := schemas.Reason(cause)
	t.metrics.deadLetters.WithLabelValues(reason).Inc()
	t.mu.Lock()
	t.stats.DeadLetters++
	t.mu.Unlock()
	t.cfg.Log.Warn("trainer: rejected message", "topic", m.topic, "partition", m.partition, "offset", m.offset, "reason", reason, "err", cause)
	err := t.dead.WriteMessages(ctx, kafka.Message{
		Key:   []byte(m.topic + "/" + strconv.Itoa(m.partition) + "/" + strconv.FormatInt(m.offset, 10)),
		Value: m.value,
		Headers: []kafka.Header{
			{Key: "reason", Value: []byte(reason)},
			{Key: "error", Value: []byte(cause.Error())},
			{Key: "topic", Value: []byte(m.topic)},
		},
	})
	if err != nil {
		return fmt.Errorf("trainer: %w: %s/%d@%d: %w", errDeadLetter, m.topic, m.partition, m.offset, err)
	}
	return nil
}

// step runs the engine on a batch, publishes the changes and advances the
// consumed offsets.
func (t *Trainer) step(ctx context.Context, bt *batch) error {
	t0 := time.Now()
	st, err := t.eng.StepFFC(bt.x, bt.xl, bt.y, bt.yl)
	skipped := errors.Is(err, engine.ErrSkipped)
	if err != nil && !skipped {
		return fmt.Errorf("trainer: step: %w", err)
	}
	dt := time.Since(t0)
	if !skipped {
		ups := make([]broadcast.Update, 0, len(st.Changes))
		d := t.cfg.Engine.Dim
		evictions := 0
		for _, c := range st.Changes {
			u := broadcast.Update{ID: uint64(c.Label), Slot: c.Slot, Row: int32(c.Row), Kind: c.Kind}
			if c.Kind == centers.Evicted {
				evictions++
			}
			if c.Kind != centers.Evicted {
				u.Vector = st.Features[c.Index*d : (c.Index+1)*d]
			}
			ups = append(ups, u)
		}
		// Not cancelled by shutdown: a step the engine has taken is
		// published whole (bounded by the publisher's ack timeout), so the
		// final checkpoint that follows covers it.
		if err := t.pub.PublishStep(context.WithoutCancel(ctx), int64(st.Step), ups); err != nil {
			return fmt.Errorf("trainer: %w", err)
		}
		t.metrics.steps.Inc()
		t.metrics.stepSeconds.Observe(dt.Seconds())
		t.metrics.loss.Set(st.Loss)
		t.metrics.poolLen.Set(float64(st.PoolLen))
		t.metrics.evictions.Add(float64(evictions))
		t.metrics.published.Add(float64(len(ups)))
		t.mu.Lock()
		t.stats.Steps++
		t.stats.Published += len(ups)
		t.stats.PoolLen, t.stats.LastLoss, t.stats.LastStepTime = st.PoolLen, st.Loss, dt
		for _, c := range st.Changes {
			if c.Kind == centers.Inserted {
				t.trained[uint64(c.Label)] = true
			}
		}
		t.mu.Unlock()
	} else {
		t.metrics.skipped.Inc()
		t.mu.Lock()
		t.stats.Skipped++
		t.mu.Unlock()
		t.cfg.Log.Warn("trainer: step skipped", "err", err)
	}
	t.metrics.samples.WithLabelValues(t.cfg.TopicByID).Add(float64(bt.pairs))
	t.metrics.samples.WithLabelValues(t.cfg.TopicInstance).Add(float64(bt.samples))
	t.mu.Lock()
	t.stats.Pairs += t.cfg.Engine.Batch
	t.stats.Instances += t.cfg.Engine.Batch
	t.mu.Unlock()
	for _, m := range bt.msgs {
		if t.offsets[m.topic] == nil {
			t.offsets[m.topic] = map[int]int64{}
		}
		if m.offset+1 > t.offsets[m.topic][m.partition] {
			t.offsets[m.topic][m.partition] = m.offset + 1
		}
	}
	return nil
}

// checkpoint writes the state with the offsets it covers, then commits
// those offsets to the group.
func (t *Trainer) checkpoint(ctx context.Context, gen *kafka.Generation) error {
	if len(t.offsets) == 0 {
		return nil
	}
	step := t.eng.StepCount()
	key, err := t.ckpt.Save(ctx, step, t.eng.StateParts(), t.offsets)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	t.metrics.ckptAge.SetToCurrentTime()
	t.mu.Lock()
	t.stats.Checkpoints++
	t.mu.Unlock()
	commit := map[string]map[int]int64{}
	for topic, parts := range t.offsets {
		commit[topic] = map[int]int64{}
		for p, o := range parts {
			commit[topic][p] = o
		}
	}
	if err := gen.CommitOffsets(commit); err != nil {
		// The checkpoint holds the offsets; the next commit catches up.
		t.cfg.Log.Warn("trainer: commit offsets after checkpoint", "step", step, "err", err)
	}
	t.cfg.Log.Info("trainer: checkpoint", "step", step, "manifest", key)
	return nil
}
