package trainers

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// message is one consumed Kafka message.
type message struct {
	topic     string
	partition int
	offset    int64
	value     []byte
	// hwm is the partition's high watermark when it was fetched.
	hwm int64
	// id is the sample's ID once decoded; skip marks a message consumed
	// without a row (rejected, a control record, a removed ID's sample).
	id   uint64
	skip bool
	// a1, a2: the pixels of a fresh-lane pair, decoded when it arrived.
	a1, a2 []byte
}

// consume waits for the topics, joins the consumer group and trains on
// each generation's partitions until ctx ends or the run is done. Only a
// Kafka never reached at start (ConnectTimeout) ends it with an error;
// later outages are waited out.
func (t *Trainer) consume(ctx context.Context) error {
	l := &link{lastContact: time.Now()}
	if err := t.waitTopics(ctx, l); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	cg, err := t.newGroup()
	if err != nil {
		return err
	}
	defer cg.Close()
	for {
		gen, err := t.join(ctx, cg, l)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.assigned(gen)
		done, err := t.runGeneration(ctx, gen)
		if err != nil || done {
			return err
		}
	}
}

// generation is what one generation of the group consumes: a reader per
// assigned partition feeding the two channels.
type generation struct {
	gen    *kafka.Generation
	ctx    context.Context // ends at a rebalance or when the run ends
	cancel context.CancelFunc
	byID   chan message
	inst   chan message
	fresh  chan message
	// held are the fresh lane's messages taken and not yet in a batch,
	// in arrival order (Run's goroutine only).
	held      []message
	finished  chan struct{} // closed when the generation's work is done
	wg        sync.WaitGroup
	lastCkpt  time.Time
	sinceCkpt int
}

// runGeneration consumes the partitions assigned in one generation of the
// group. It returns done = true when the run should end.
func (t *Trainer) runGeneration(ctx context.Context, kgen *kafka.Generation) (bool, error) {
	g := t.startGeneration(ctx, kgen)
	defer func() { g.cancel(); g.wg.Wait(); close(g.finished) }()
	t.SetReady()
	t.health.Set(CondStarted, true, "")
	for {
		if g.ctx.Err() != nil && ctx.Err() == nil {
			return false, nil // the generation ended (a rebalance, a broker lost): join again
		}
		if t.cfg.MaxSteps > 0 && t.Stats().Steps >= t.cfg.MaxSteps {
			return true, t.checkpoint(context.WithoutCancel(ctx), g)
		}
		done, err := t.trainOne(ctx, g)
		if done || err != nil {
			return done, err
		}
	}
}

// startGeneration starts a reader per assigned partition, from the
// offsets this run (or its checkpoint) reached, else from the group's.
func (t *Trainer) startGeneration(ctx context.Context, kgen *kafka.Generation) *generation {
	b := t.set.Batch
	g := &generation{gen: kgen, byID: make(chan message, 4*b), inst: make(chan message, 4*b), fresh: make(chan message, b),
		finished: make(chan struct{}), lastCkpt: time.Now()}
	g.ctx, g.cancel = context.WithCancel(ctx)
	// kafka-go ends a generation as soon as a function started on it
	// returns, so this one returns only when the generation ends (a
	// rebalance: it cancels the readers and the batch being assembled) or
	// when the generation's work is done — after a shutdown's final
	// checkpoint has committed its offsets, which needs the generation.
	kgen.Start(func(genCtx context.Context) {
		select {
		case <-genCtx.Done():
			g.cancel()
		case <-g.finished:
		}
	})
	parts := map[partKey]int64{}
	for topic, assigned := range kgen.Assignments {
		out := g.byID
		switch topic {
		case t.cfg.TopicInstance:
			out = g.inst
		case t.cfg.TopicFresh:
			out = g.fresh
		}
		for _, a := range assigned {
			start := a.Offset
			if o, ok := t.offsets[topic][a.ID]; ok {
				start = o // the checkpoint (or this run) is ahead of the group's commit
			}
			parts[partKey{topic, a.ID}] = start
			g.wg.Add(1)
			go func(topic string, partition int, start int64) {
				defer g.wg.Done()
				t.read(g.ctx, topic, partition, start, out)
			}(topic, a.ID, start)
		}
	}
	t.lag.assign(parts)
	t.startLag(g)
	return g
}

// trainOne assembles one batch and trains on it, checkpointing when due.
// It returns done = true when the run ends (shutdown, failure) and false
// with a nil error when the generation ended (a rebalance: join again).
func (t *Trainer) trainOne(ctx context.Context, g *generation) (bool, error) {
	// When the input stalls, checkpoint what is done so its offsets get
	// committed: producers hold back until the trainers' group commits. A
	// checkpoint that failed is tried again then too.
	onIdle := func() {
		switch {
		case g.sinceCkpt > 0 || t.ckptFailing:
			t.checkpointDue(context.WithoutCancel(ctx), g)
		case t.commitPending:
			t.commitDurable(g)
		}
	}
	bt, err := t.assemble(g.ctx, g, onIdle)
	if err != nil {
		if errors.Is(err, errFatal) {
			return true, err
		}
		if ctx.Err() != nil {
			// Shutdown: checkpoint what is done and commit it.
			return true, t.checkpoint(context.WithoutCancel(ctx), g)
		}
		return false, nil
	}
	if err := t.step(ctx, bt); err != nil {
		return true, err
	}
	g.sinceCkpt++
	if g.sinceCkpt >= t.set.CheckpointEvery || time.Since(g.lastCkpt) >= t.set.CheckpointInterval {
		// A checkpoint once begun is finished even during shutdown.
		t.checkpointDue(context.WithoutCancel(ctx), g)
	}
	return false, nil
}

// read fetches one partition from start into out until ctx ends. A fetch
// error never ends it: the reader retries with backoff, the error is
// counted and the reader's state changes are logged and set in Health
// (CondFetch).
func (t *Trainer) read(ctx context.Context, topic string, partition int, start int64, out chan<- message) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: t.cfg.Brokers, Dialer: t.cfg.dialer(), Topic: topic, Partition: partition, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: time.Second})
	defer r.Close()
	if err := r.SetOffset(start); err != nil { // a new reader accepts any offset
		t.cfg.Log.Error("trainer: seek", "topic", topic, "partition", partition, "offset", start, "err", err)
		return
	}
	failing := false
	defer func() {
		if failing {
			t.fetchState(topic, partition, nil)
		}
	}()
	p := newPacer(reconnect())
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.metrics.fetchErrors.Inc()
			if !failing {
				failing = true
				t.fetchState(topic, partition, err)
			}
			t.mu.Lock()
			t.stats.FetchErrors++
			t.mu.Unlock()
			if !p.wait(ctx) {
				return
			}
			continue
		}
		if failing {
			failing = false
			p.reset()
			t.fetchState(topic, partition, nil)
		}
		select {
		case out <- message{topic: topic, partition: partition, offset: m.Offset, value: m.Value, hwm: m.HighWaterMark}:
		case <-ctx.Done():
			return
		}
	}
}

// fetchState records that the reader of topic/partition started failing
// with err, or recovered (nil). CondFetch holds while no reader fails.
func (t *Trainer) fetchState(topic string, partition int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.fetchFailing++
		t.cfg.Log.Warn("trainer: fetch failing; retrying", "topic", topic, "partition", partition, "err", err)
		t.health.Set(CondFetch, false, err.Error())
		return
	}
	t.fetchFailing--
	if t.fetchFailing == 0 {
		t.health.Set(CondFetch, true, "")
	}
}
