package producers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"
)

// Retries of the messages Kafka refused.
const (
	retryMinBackoff = 100 * time.Millisecond
	retryMaxBackoff = 5 * time.Second
	// outageSummaryEvery is how often a summary is logged while Kafka
	// refuses writes or cannot be reached at start.
	outageSummaryEvery = 30 * time.Second
)

// outbox holds the messages Kafka refused (a batch the async writer gave
// up on, a hand-over that failed) until they are written: the retry loop
// writes them again, with bounded exponential backoff and jitter, for as
// long as the producer runs. From the first refusal until the outbox has
// drained after a write succeeds, Kafka is down: the gates hold (the
// streams and the fresh lane read nothing from S3), the Kafka health
// condition fails and a summary is logged every outageSummaryEvery, not
// a line per message.
// The messages stay in flight in their gates meanwhile.
type outbox struct {
	mu       sync.Mutex
	pending  []kafka.Message
	retrying int // messages taken by a retry and not yet settled or put back
	since    time.Time
	logged   time.Time // last summary
	lastErr  error
	wake     chan struct{} // a token when pending grows

	down    atomic.Bool
	outages atomic.Int64
	rounds  atomic.Int64 // retry writes
	npend   atomic.Int64 // len(pending) + retrying, for Stats and the gauge
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

// completed is the writer's Completion.
func (p *Producer) completed(msgs []kafka.Message, err error) {
	if err != nil {
		p.refused(msgs, err, 0)
		return
	}
	p.settle(msgs, nil)
	p.writeOK()
}

// refused takes back messages Kafka did not take; fromRetry of them were
// taken by a retry (and are no longer being retried). They wait in the
// outbox, except those Kafka rejects for what they are (too large,
// invalid), which are given up. A context error (Run ending, the final
// flush's deadline) queues them without declaring an outage.
func (p *Producer) refused(msgs []kafka.Message, err error, fromRetry int) {
	o := p.out
	if rejectedForGood(err) {
		o.mu.Lock()
		o.retrying -= fromRetry
		o.npend.Add(-int64(fromRetry))
		o.mu.Unlock()
		p.settle(msgs, err)
		return
	}
	o.mu.Lock()
	o.retrying -= fromRetry
	for _, m := range msgs {
		m.Partition, m.Offset = 0, 0
		o.pending = append(o.pending, m)
	}
	o.npend.Add(int64(len(msgs) - fromRetry))
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		o.lastErr = err
		if !o.down.Load() {
			// The gates first: once Stats says Down, nothing is admitted.
			p.holdAll(true)
			o.down.Store(true)
			o.outages.Add(1)
			o.since, o.logged = time.Now(), time.Now()
			p.setCond(CondKafka, false, "Kafka refuses writes; streams held, refused messages kept for retry: "+err.Error())
		}
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// writeOK ends an outage once nothing waits for a retry.
func (p *Producer) writeOK() {
	o := p.out
	if !o.down.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down.Load() || len(o.pending) > 0 || o.retrying > 0 {
		return
	}
	o.down.Store(false)
	p.holdAll(false)
	p.setCond(CondKafka, true, "")
	p.log.Info("Kafka takes writes again; streams resumed", "outage", time.Since(o.since).Round(time.Millisecond),
		"retried_byid", p.gByID.retried.Load(), "retried_instance", p.gInst.retried.Load(), "retried_fresh", p.gFresh.retried.Load())
}

// take moves the pending messages to a retry.
func (o *outbox) take() []kafka.Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs := o.pending
	o.pending = nil
	o.retrying += len(msgs)
	return msgs
}

// summary logs, at most every outageSummaryEvery, that Kafka still
// refuses writes.
func (p *Producer) summary() {
	o := p.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down.Load() || time.Since(o.logged) < outageSummaryEvery {
		return
	}
	o.logged = time.Now()
	p.log.Warn("Kafka still refuses writes; streams held", "for", time.Since(o.since).Round(time.Second),
		"pending", len(o.pending)+o.retrying, "retries", o.rounds.Load(), "err", o.lastErr)
}

// settle accounts for messages acknowledged (err nil) or given up.
func (p *Producer) settle(msgs []kafka.Message, err error) {
	count := map[string]int{}
	for _, m := range msgs {
		count[m.Topic]++
	}
	for topic, n := range count {
		if g := p.gateOf(topic); g != nil {
			g.done(n, err == nil)
		}
		if err != nil {
			p.met.failures.WithLabelValues(topic).Add(float64(n))
			p.log.Error("messages given up", "topic", topic, "messages", n, "err", err)
		} else {
			p.met.samples.WithLabelValues(topic).Add(float64(n))
		}
	}
}

// rejectedForGood reports errors that no retry can mend: Kafka refuses
// the message itself.
func rejectedForGood(err error) bool {
	var tooLarge kafka.MessageTooLargeError
	return errors.As(err, &tooLarge) || errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge) ||
		errors.Is(err, kafka.InvalidMessageSize) || errors.Is(err, kafka.InvalidRecord)
}

func retryBackoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: retryMinBackoff, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: retryMaxBackoff}
	b.Reset()
	return b
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runRetry writes the refused messages again until ctx ends.
func (p *Producer) runRetry(ctx context.Context) {
	b := retryBackoff()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.out.wake:
		}
		for p.out.npend.Load() > 0 {
			if !sleep(ctx, b.NextBackOff()) {
				return
			}
			if msgs := p.out.take(); len(msgs) > 0 && p.rewrite(ctx, msgs) == nil {
				b.Reset()
			}
			p.summary()
		}
	}
}

// rewrite writes msgs again with the synchronous writer and settles those
// Kafka acknowledged; the others go back to the outbox.
func (p *Producer) rewrite(ctx context.Context, msgs []kafka.Message) error {
	p.out.rounds.Add(1)
	count := map[string]int{}
	for _, m := range msgs {
		count[m.Topic]++
	}
	for topic, n := range count {
		if g := p.gateOf(topic); g != nil {
			g.retried.Add(int64(n))
		}
		p.met.retried.WithLabelValues(topic).Add(float64(n))
	}
	err := p.retryWriter.WriteMessages(ctx, msgs...)
	ok, failed := msgs, []kafka.Message(nil)
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
	case errors.As(err, &werrs) && len(werrs) == len(msgs):
		ok = nil
		for i, m := range msgs {
			if werrs[i] == nil {
				ok = append(ok, m)
			} else {
				failed, err = append(failed, m), werrs[i]
			}
		}
	default:
		ok, failed = nil, msgs
	}
	p.out.mu.Lock()
	p.out.retrying -= len(ok)
	p.out.mu.Unlock()
	p.out.npend.Add(-int64(len(ok)))
	p.settle(ok, nil)
	if len(failed) > 0 {
		p.refused(failed, err, len(failed))
		return err
	}
	p.writeOK()
	return nil
}

// flush makes the last attempts, for at most KafkaTimeout, to write what
// Kafka refused, when Run ends. What it cannot write is given up: counted
// as failed and logged once per topic.
func (p *Producer) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.KafkaTimeout)
	defer cancel()
	b := retryBackoff()
	for p.out.npend.Load() > 0 && ctx.Err() == nil {
		if msgs := p.out.take(); len(msgs) > 0 && p.rewrite(ctx, msgs) == nil {
			continue
		}
		sleep(ctx, b.NextBackOff())
	}
	msgs := p.out.take()
	if len(msgs) == 0 {
		return
	}
	p.out.mu.Lock()
	p.out.retrying -= len(msgs)
	err := p.out.lastErr
	p.out.mu.Unlock()
	p.out.npend.Add(-int64(len(msgs)))
	p.settle(msgs, fmt.Errorf("not written by the end of Run (Kafka refused them: %w)", err))
}
