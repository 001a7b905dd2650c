package trainers

import (
	"context"
	"errors"
	"fmt"
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
}

// consume joins the consumer group and trains on each generation's
// partitions until ctx ends or the run is done.
func (t *Trainer) consume(ctx context.Context) error {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: t.cfg.Group, Brokers: t.cfg.Brokers, Topics: []string{t.cfg.TopicByID, t.cfg.TopicInstance},
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: time.Second, Timeout: t.cfg.KafkaTimeout,
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

// generation is what one generation of the group consumes: a reader per
// assigned partition feeding the two channels.
type generation struct {
	gen       *kafka.Generation
	ctx       context.Context // ends at a rebalance or when the run ends
	cancel    context.CancelFunc
	byID      chan message
	inst      chan message
	errc      chan error
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
	for {
		if t.cfg.MaxSteps > 0 && t.Stats().Steps >= t.cfg.MaxSteps {
			return true, t.checkpoint(ctx, g)
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
	g := &generation{gen: kgen, byID: make(chan message, 4*b), inst: make(chan message, 4*b), errc: make(chan error, 1),
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
	for topic, assigned := range kgen.Assignments {
		out := g.byID
		if topic == t.cfg.TopicInstance {
			out = g.inst
		}
		for _, a := range assigned {
			start := a.Offset
			if o, ok := t.offsets[topic][a.ID]; ok {
				start = o // the checkpoint (or this run) is ahead of the group's commit
			}
			g.wg.Add(1)
			go func(topic string, partition int, start int64) {
				defer g.wg.Done()
				if err := t.read(g.ctx, topic, partition, start, out); err != nil && g.ctx.Err() == nil {
					select {
					case g.errc <- err:
					default:
					}
					g.cancel()
				}
			}(topic, a.ID, start)
		}
	}
	return g
}

// trainOne assembles one batch and trains on it, checkpointing when due.
// It returns done = true when the run ends (shutdown, failure) and false
// with a nil error when the generation ended (a rebalance: join again).
func (t *Trainer) trainOne(ctx context.Context, g *generation) (bool, error) {
	// When the input stalls, checkpoint what is done so its offsets get
	// committed: producers hold back until the trainers' group commits.
	onIdle := func() error {
		if g.sinceCkpt == 0 {
			return nil
		}
		return t.checkpoint(context.WithoutCancel(ctx), g)
	}
	bt, err := t.assemble(g.ctx, g.byID, g.inst, onIdle)
	if errors.Is(err, errDeadLetter) || errors.Is(err, errFatal) {
		return true, err
	}
	if err != nil {
		select {
		case rerr := <-g.errc:
			return true, errors.Join(rerr, t.checkpoint(context.WithoutCancel(ctx), g))
		default:
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
		if err := t.checkpoint(context.WithoutCancel(ctx), g); err != nil {
			return true, err
		}
	}
	return false, nil
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
