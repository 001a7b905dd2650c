package trainers

import (
	"context"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/schemas"
)

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
