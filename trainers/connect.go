package trainers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// ErrKafkaUnreachable is wrapped by the error Run returns when Kafka could
// not be reached (no metadata, no group join) for Config.ConnectTimeout
// before the trainer first joined its group.
var ErrKafkaUnreachable = errors.New("kafka unreachable")

// ErrStorageUnreachable is what Run returns when object storage did not
// answer within Config.ConnectTimeout at start.
var ErrStorageUnreachable = errors.New("object storage unreachable")

// Health conditions a trainer sets (Trainer.Health).
const (
	// CondStorage: the last checkpoint reached object storage.
	CondStorage = "storage"
	// CondKafka: Kafka answers and the trainer is a member of its group.
	CondKafka = "kafka"
	// CondTopics: the topics it consumes exist.
	CondTopics = "kafka-topics"
	// CondFetch: every partition reader fetches without error.
	CondFetch = "kafka-fetch"
	// CondStarted: the checkpoint is restored and the group joined once.
	CondStarted = "started"
	// CondNATS: center changes are being published (set by the publisher).
	CondNATS = "nats"
)

// link is the trainer's view of its Kafka connection, kept by Run's
// goroutine: it bounds the wait for Kafka until the trainer first joined.
type link struct {
	joined      bool      // a generation has been joined once
	lastContact time.Time // the last metadata or join that succeeded
	lastErr     error
}

// deadline is when a trainer that never joined gives up on Kafka; zero
// once it has joined (no bound then).
func (t *Trainer) deadline(l *link) time.Time {
	if l.joined {
		return time.Time{}
	}
	return l.lastContact.Add(t.cfg.ConnectTimeout)
}

// unreachable is the error of a start that could not reach Kafka.
func (t *Trainer) unreachable(l *link) error {
	last := l.lastErr
	if last == nil {
		last = context.DeadlineExceeded
	}
	return fmt.Errorf("trainer: %w: no answer from %s for %v (connect timeout): %w",
		ErrKafkaUnreachable, strings.Join(t.cfg.Brokers, ","), t.cfg.ConnectTimeout, last)
}

// topics are the topics the trainer consumes: the id and instance
// streams and the fresh lane.
func (t *Trainer) topics() []string {
	return []string{t.cfg.TopicByID, t.cfg.TopicInstance, t.cfg.TopicFresh}
}

// waitTopics waits until the three topics exist with at least one partition,
// polling their metadata with backoff. The request does not auto-create a
// topic: their partition counts are the producers' to choose. A missing
// topic is waited for without bound, said once in the log and in Health
// (CondTopics); an unreachable Kafka is waited for until the deadline.
func (t *Trainer) waitTopics(ctx context.Context, l *link) error {
	cl := &kafka.Client{Addr: kafka.TCP(t.cfg.Brokers...), Timeout: t.cfg.KafkaTimeout, Transport: t.transport}
	topics := t.topics()
	p := newPacer(reconnect())
	for {
		mctx, cancel := ctx, context.CancelFunc(func() {})
		if dl := t.deadline(l); !dl.IsZero() {
			mctx, cancel = context.WithDeadline(ctx, dl)
		}
		res, err := cl.Metadata(mctx, &kafka.MetadataRequest{Topics: topics})
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			l.lastErr = err
			t.health.Set(CondKafka, false, err.Error())
			if dl := t.deadline(l); !dl.IsZero() && !time.Now().Before(dl) {
				return t.unreachable(l)
			}
		default:
			l.lastContact = time.Now()
			t.health.Set(CondKafka, true, "")
			missing := missingTopics(res, topics)
			if len(missing) == 0 {
				t.health.Set(CondTopics, true, "")
				return nil
			}
			t.health.Set(CondTopics, false, "waiting for topics "+strings.Join(missing, ", ")+" to be created")
		}
		if !p.wait(ctx) {
			return ctx.Err()
		}
	}
}

// missingTopics lists the topics of want that res does not show with a
// partition.
func missingTopics(res *kafka.MetadataResponse, want []string) []string {
	found := map[string]bool{}
	for _, tp := range res.Topics {
		if tp.Error == nil && len(tp.Partitions) > 0 {
			found[tp.Name] = true
		}
	}
	var missing []string
	for _, name := range want {
		if !found[name] {
			missing = append(missing, name)
		}
	}
	return missing
}

// newGroup is the consumer group over both topics; it rejoins when their
// partition counts change.
func (t *Trainer) newGroup() (*kafka.ConsumerGroup, error) {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: t.cfg.Group, Brokers: t.cfg.Brokers, Topics: t.topics(), Dialer: t.cfg.dialer(),
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: time.Second, Timeout: t.cfg.KafkaTimeout,
		WatchPartitionChanges: true, PartitionWatchInterval: t.cfg.PartitionWatchInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("trainer: consumer group %s: %w", t.cfg.Group, err)
	}
	return cg, nil
}

// join waits for the group's next generation. Failures (a broker down, a
// coordinator not yet elected) are retried by the group with backoff and
// reported in Health (CondKafka), without bound once the trainer has
// joined; before that, until the deadline.
func (t *Trainer) join(ctx context.Context, cg *kafka.ConsumerGroup, l *link) (*kafka.Generation, error) {
	for {
		jctx, cancel := ctx, context.CancelFunc(func() {})
		dl := t.deadline(l)
		if !dl.IsZero() {
			jctx, cancel = context.WithDeadline(ctx, dl)
		}
		gen, err := cg.Next(jctx)
		cancel()
		if err == nil {
			l.joined, l.lastContact = true, time.Now()
			t.health.Set(CondKafka, true, "")
			return gen, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !dl.IsZero() && !time.Now().Before(dl) {
			return nil, t.unreachable(l)
		}
		l.lastErr = err
		if errors.Is(err, kafka.RebalanceInProgress) {
			continue // members joining or leaving: the group's normal life
		}
		t.health.Set(CondKafka, false, "joining group "+t.cfg.Group+": "+err.Error())
	}
}

// assigned records the partitions of a new generation: a gauge, Stats,
// and a warning when there are none (more members than partitions: this
// one stands by until a rebalance gives it some).
func (t *Trainer) assigned(gen *kafka.Generation) {
	n := 0
	for _, ps := range gen.Assignments {
		n += len(ps)
	}
	t.metrics.partitions.Set(float64(n))
	t.mu.Lock()
	t.stats.Partitions = n
	t.mu.Unlock()
	switch {
	case n == 0 && !t.idleWarned:
		t.idleWarned = true
		t.cfg.Log.Warn("trainer: no partition assigned; standing by until a rebalance assigns some",
			"group", t.cfg.Group, "generation", gen.ID, "topics", t.topics())
	case n > 0:
		t.idleWarned = false
		t.cfg.Log.Info("trainer: partitions assigned", "group", t.cfg.Group, "generation", gen.ID, "partitions", n)
	}
}
