package broadcast

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/schemas"
)

// flush publishes ups as one fenced step: BEGIN, the updates, COMMIT.
func (p *Publisher) flush(ctx context.Context, ups []Update) error {
	step := ups[len(ups)-1].Step
	if err := p.record(ctx, PhaseBegin, step, nil); err != nil {
		return err
	}
	p.mu.Lock()
	epoch := p.epoch
	p.mu.Unlock()
	ids := make([]uint64, 0, len(ups))
	futures := make([]jetstream.PubAckFuture, 0, len(ups))
	for _, u := range ups {
		u.Epoch = epoch
		b, err := p.opts.Codec.EncodeUpdate(u)
		if err != nil {
			return fmt.Errorf("publish step %d: id %d: %w", u.Step, u.ID, err)
		}
		subj := p.subjectOf(u)
		if u.Kind != Evict {
			ids = append(ids, u.ID)
		}
		f, err := p.js.PublishAsync(subj, b)
		if err != nil {
			return fmt.Errorf("publish step %d: %s: %w", u.Step, subj, err)
		}
		futures = append(futures, f)
	}
	if err := p.awaitAcks(ctx, step, futures); err != nil {
		return err
	}
	if err := p.record(ctx, PhaseCommit, step, ids); err != nil {
		return err
	}
	// Healthy before the waiters of Flush hear of it: a caller that has
	// seen its changes committed must not read the failure of an earlier
	// attempt.
	p.opts.Health.Set("nats", true, "")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Published += int64(len(ups))
	p.stats.Flushes++
	p.stats.Committed = Version{Epoch: epoch, Step: step}
	p.flushed = p.taken
	close(p.progress)
	p.progress = make(chan struct{})
	return nil
}

// awaitAcks waits for JetStream to acknowledge every future.
func (p *Publisher) awaitAcks(ctx context.Context, step int64, futures []jetstream.PubAckFuture) error {
	timeout := time.NewTimer(p.opts.AckTimeout)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish step %d: %s not acknowledged: %w", step, f.Msg().Subject, err)
		case <-timeout.C:
			return fmt.Errorf("publish step %d: no acknowledgement within %s", step, p.opts.AckTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// record publishes a step record on the step subject, expecting the
// subject's last record to be this publisher's previous one. When another
// publisher's record is there, this one is fenced. A record of this run
// that landed although its acknowledgement was lost counts as written.
func (p *Publisher) record(ctx context.Context, phase Phase, step int64, ids []uint64) error {
	p.mu.Lock()
	epoch, seq, stream := p.epoch, p.lastSeq, p.stream
	p.mu.Unlock()
	c := Commit{Model: p.opts.Model, Step: step, IDs: ids, Time: time.Now(), Run: p.run, Epoch: epoch, Phase: phase}
	b, err := p.opts.Codec.EncodeCommit(c)
	if err != nil {
		return fmt.Errorf("step record: %w", err)
	}
	subj := schemas.StepSubject(p.opts.Model)
	actx, cancel := context.WithTimeout(ctx, p.opts.AckTimeout)
	defer cancel()
	ack, err := p.js.Publish(actx, subj, b, jetstream.WithExpectLastSequencePerSubject(seq))
	if err == nil {
		p.mu.Lock()
		p.lastSeq = ack.Sequence
		p.mu.Unlock()
		return nil
	}
	if !wrongLastSequence(err) {
		return fmt.Errorf("step record %s of step %d: %w", phase, step, err)
	}
	last, gerr := stream.GetLastMsgForSubject(actx, subj)
	if gerr != nil {
		return fmt.Errorf("step record %s of step %d: read the last record: %w", phase, step, gerr)
	}
	lc, derr := p.opts.Codec.DecodeCommit(last.Data)
	if errors.Is(derr, schemas.ErrUnsigned) || errors.Is(derr, schemas.ErrBadSignature) {
		// Not signed by this job's key (the codec verifies): a forged
		// record fences nothing. Write ours over it.
		p.opts.Log.Warn("publisher: a step record not signed by this job's key follows ours; writing over it", "seq", last.Sequence, "err", derr)
		p.mu.Lock()
		p.lastSeq = last.Sequence
		p.stats.Forged++
		p.mu.Unlock()
		return p.record(ctx, phase, step, ids)
	}
	if derr == nil && lc.Run == p.run && lc.Epoch == epoch {
		// Ours: an earlier attempt landed and its acknowledgement was lost.
		p.mu.Lock()
		p.lastSeq = last.Sequence
		p.mu.Unlock()
		if lc.Phase == phase && lc.Step == step {
			return nil
		}
		return p.record(ctx, phase, step, ids)
	}
	return fmt.Errorf("%w: epoch %d (run %s) superseded by epoch %d (run %s)", ErrFenced, epoch, p.run, lc.Epoch, lc.Run)
}

// wrongLastSequence reports JetStream's refusal of an expected last
// subject sequence.
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
