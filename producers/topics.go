package producers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"
)

// ensureTopics creates the four topics (id, instance, fresh, dead
// letter) when missing (an existing topic
// is used as it is) and waits until the cluster reports their partitions.
// An unreachable broker, a timeout or a transient broker error (a busy
// host, a controller not yet elected) is retried with exponential backoff
// for up to ConnectTimeout (then ErrKafkaUnreachable); an error the broker
// calls permanent (a bad topic configuration) is not.
func (p *Producer) ensureTopics(ctx context.Context) error {
	service := "Kafka at " + strings.Join(p.cfg.Brokers, ",")
	return p.connect(ctx, service, ErrKafkaUnreachable, CondKafka, func(ctx context.Context) error {
		err := p.createTopics(ctx)
		if err == nil {
			err = p.topicsReady(ctx)
		}
		// kafka-go reports a broker it cannot dial as BrokerNotAvailable.
		var kerr kafka.Error
		if errors.As(err, &kerr) && !kerr.Temporary() && kerr != kafka.BrokerNotAvailable {
			return backoff.Permanent(err)
		}
		return err
	})
}

// createTopics asks for the four topics; existing ones are fine. The
// notification topic (NotifyTopic) is the object store's: not created.
func (p *Producer) createTopics(ctx context.Context) error {
	c := p.cfg
	want := []kafka.TopicConfig{
		{Topic: c.TopicByID, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor},
		{Topic: c.TopicInstance, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor},
		{Topic: c.TopicFresh, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor},
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
	names := []string{p.cfg.TopicByID, p.cfg.TopicInstance, p.cfg.TopicFresh, p.cfg.TopicDeadLetter}
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
