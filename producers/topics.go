package producers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// ensureTopics creates the three topics when missing (an existing topic
// is used as it is) and waits until the cluster reports their partitions.
func (p *Producer) ensureTopics(ctx context.Context) error {
	c := p.cfg
	want := []kafka.TopicConfig{
		{Topic: c.TopicByID, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor},
		{Topic: c.TopicInstance, NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor},
		{Topic: c.TopicDeadLetter, NumPartitions: c.DeadLetterPartitions, ReplicationFactor: c.ReplicationFactor},
	}
	res, err := p.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: want})
	if err != nil {
		return fmt.Errorf("producers: create topics: %w", err)
	}
	for _, t := range want {
		terr := res.Errors[t.Topic]
		switch {
		case terr == nil:
			p.log.Info("created topic", "topic", t.Topic, "partitions", t.NumPartitions, "replication", t.ReplicationFactor)
		case errors.Is(terr, kafka.TopicAlreadyExists):
			p.log.Debug("topic exists", "topic", t.Topic)
		default:
			return fmt.Errorf("producers: create topic %s: %w", t.Topic, terr)
		}
	}
	names := []string{c.TopicByID, c.TopicInstance, c.TopicDeadLetter}
	var last error
	for deadline := time.Now().Add(30 * time.Second); ; {
		md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil {
			last = nil
			for _, t := range md.Topics {
				if t.Error != nil {
					last = fmt.Errorf("%s: %w", t.Name, t.Error)
				} else if len(t.Partitions) == 0 {
					last = fmt.Errorf("%s: no partitions yet", t.Name)
				}
			}
			if last == nil && len(md.Topics) == len(names) {
				return nil
			}
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("producers: topics not ready: %w", last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
