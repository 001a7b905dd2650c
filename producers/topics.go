package producers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"
)

// ensureTopics creates the three topics when missing (an existing topic
// is used as it is) and waits until the cluster reports their partitions.
// Timeouts and transient broker errors (a busy host, a controller not yet
// elected) are retried with exponential backoff for up to four
// KafkaTimeouts; an error the broker calls permanent (a bad topic
// configuration) is not.
func (p *Producer) ensureTopics(ctx context.Context) error {
	attempt := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		err := p.createTopics(ctx)
		if err == nil {
			err = p.topicsReady(ctx)
		}
		if err != nil && ctx.Err() == nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && !kerr.Temporary() {
				return struct{}{}, backoff.Permanent(err)
			}
			p.log.Warn("topics not ready yet; retrying", "attempt", attempt, "err", err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 200 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 5 * time.Second,
	}), backoff.WithMaxElapsedTime(4*p.cfg.KafkaTimeout))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("producers: topics not ready after %d attempts: %w", attempt, err)
	}
	return nil
}

// createTopics asks for the three topics; existing ones are fine.
func (p *Producer) createTopics(ctx context.Context) error {
	c := p.cfg
	want := []kafka.TopicConfig{
		{Topic: c.TopicByID, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor},
		{Topic: c.TopicInstance, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor},
		{Topic: c.TopicDeadLetter, NumPartitions: c.DeadLetterPartitions, ReplicationFactor: c.ReplicationFactor},
	}
	res, err := p.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: want})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, t := range want {
		terr := res.Errors[t.Topic]
		switch {
		case terr == nil:
			p.log.Info("created topic", "topic", t.Topic, "partitions", t.NumPartitions, "replication", t.ReplicationFactor)
		case errors.Is(terr, kafka.TopicAlreadyExists):
			p.log.Debug("topic exists", "topic", t.Topic)
		default:
			return fmt.Errorf("create topic %s: %w", t.Topic, terr)
		}
	}
	return nil
}

// topicsReady checks that the metadata lists every topic with partitions.
func (p *Producer) topicsReady(ctx context.Context) error {
	names := []string{p.cfg.TopicByID, p.cfg.TopicInstance, p.cfg.TopicDeadLetter}
	md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("%s: %w", t.Name, t.Error)
		}
		if len(t.Partitions) == 0 {
			return fmt.Errorf("%s: no partitions yet", t.Name)
		}
	}
	if len(md.Topics) != len(names) {
		return fmt.Errorf("metadata lists %d of the %d topics", len(md.Topics), len(names))
	}
	return nil
}
