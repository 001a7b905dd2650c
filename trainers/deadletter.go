package trainers

import (
	"context"
	"errors"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/schemas"
)

// Headers of a dead-letter record.
const (
	HeaderReason       = "reason"        // schemas.Reason of the rejection
	HeaderError        = "error"         // the rejection's error (at most 1 KiB)
	HeaderTopic        = "topic"         // where the message was consumed
	HeaderPartition    = "partition"     // (decimal)
	HeaderOffset       = "offset"        // (decimal)
	HeaderOriginalSize = "original-size" // the payload's size in bytes (decimal)
	HeaderTruncated    = "truncated"     // "true" when the value is a prefix of the payload
)

const (
	// minDeadLetterBytes is the least Config.DeadLetterMaxBytes: room for
	// the key, the headers and some payload.
	minDeadLetterBytes = 4 << 10
	// maxErrorHeader bounds the error header.
	maxErrorHeader = 1 << 10
	// recordOverhead and headerOverhead are what Kafka's record framing
	// adds at most to a record (lengths, attributes, deltas) and to each
	// header (two lengths).
	recordOverhead, headerOverhead = 64, 10
)

// Position is where a message was consumed.
type Position struct {
	Topic     string
	Partition int
	Offset    int64
}

// deadLetterRecord is the dead-letter record of m, rejected for cause: a
// key naming topic/partition/offset, headers with the reason and the
// position, and m's payload truncated so that the record takes at most
// maxBytes. truncated says whether it was.
func deadLetterRecord(m message, reason string, cause error, maxBytes int) (rec kafka.Message, truncated bool) {
	msg := cause.Error()
	if len(msg) > maxErrorHeader {
		msg = msg[:maxErrorHeader]
	}
	rec = kafka.Message{
		Key: []byte(m.topic + "/" + strconv.Itoa(m.partition) + "/" + strconv.FormatInt(m.offset, 10)),
		Headers: []kafka.Header{
			{Key: HeaderReason, Value: []byte(reason)},
			{Key: HeaderError, Value: []byte(msg)},
			{Key: HeaderTopic, Value: []byte(m.topic)},
			{Key: HeaderPartition, Value: []byte(strconv.Itoa(m.partition))},
			{Key: HeaderOffset, Value: []byte(strconv.FormatInt(m.offset, 10))},
			{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(len(m.value)))},
		},
	}
	room := maxBytes - recordOverhead - len(rec.Key) - (len(HeaderTruncated) + len("true") + headerOverhead)
	for _, h := range rec.Headers {
		room -= len(h.Key) + len(h.Value) + headerOverhead
	}
	rec.Value = m.value
	if len(m.value) > room {
		rec.Value = m.value[:max(room, 0)]
		rec.Headers = append(rec.Headers, kafka.Header{Key: HeaderTruncated, Value: []byte("true")})
		return rec, true
	}
	return rec, false
}

// deadLetter sends a rejected message to the dead-letter topic with its
// reason and position, its payload truncated when the record would be
// too large. A failed write is retried with backoff (DeadLetterRetry);
// one that still fails is logged with the offset it skips and counted
// (never fatal: the message is skipped like any dead letter, and the
// messages after it are trained). Its offset advances with the step that
// follows, like any consumed message. It fails only when ctx ends.
func (t *Trainer) deadLetter(ctx context.Context, m message, cause error) error {
	reason := schemas.Reason(cause)
	t.metrics.deadLetters.WithLabelValues(reason).Inc()
	rec, truncated := deadLetterRecord(m, reason, cause, t.cfg.DeadLetterMaxBytes)
	if truncated {
		t.metrics.deadLetterTruncated.Inc()
	}
	t.mu.Lock()
	t.stats.DeadLetters++
	if truncated {
		t.stats.TruncatedDeadLetters++
	}
	t.mu.Unlock()
	t.cfg.Log.Warn("trainer: rejected message", "topic", m.topic, "partition", m.partition, "offset", m.offset,
		"bytes", len(m.value), "truncated", truncated, "reason", reason, "err", cause)
	attempts := 0
	_, err := retry(ctx, t.cfg.DeadLetterRetry, t.cfg.Log, "dead-letter write", func() (struct{}, error) {
		attempts++
		err := firstError(t.dead.WriteMessages(ctx, rec))
		if errors.Is(err, kafka.MessageSizeTooLarge) && t.cfg.DeadLetterMaxBytes > minDeadLetterBytes {
			// The topic's limit is below DeadLetterMaxBytes: keep what
			// says what the message was, and a little of it.
			rec, _ = deadLetterRecord(m, reason, cause, minDeadLetterBytes)
		}
		return struct{}{}, err
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	t.metrics.deadLetterFailures.Inc()
	t.mu.Lock()
	t.stats.DeadLetterFailures++
	t.stats.LastFailedDeadLetter = Position{Topic: m.topic, Partition: m.partition, Offset: m.offset}
	t.mu.Unlock()
	t.cfg.Log.Error("trainer: dead-letter write failed; the rejected message is skipped without a dead letter",
		"topic", m.topic, "partition", m.partition, "offset", m.offset, "reason", reason, "attempts", attempts, "err", err)
	return nil
}

// firstError is the first error of a kafka.WriteErrors (one per message
// written), or err itself.
func firstError(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return e
			}
		}
	}
	return err
}
