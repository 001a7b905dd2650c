package trainers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/trainers/engine"
)

// step runs the engine on a batch, publishes the changes and advances the
// consumed offsets.
func (t *Trainer) step(ctx context.Context, bt *batch) error {
	if err := t.train(ctx, bt); err != nil {
		return err
	}
	t.metrics.samples.WithLabelValues(t.cfg.TopicByID).Add(float64(bt.Pairs()))
	t.metrics.samples.WithLabelValues(t.cfg.TopicInstance).Add(float64(bt.Instances()))
	t.mu.Lock()
	t.stats.Pairs += bt.Pairs()
	t.stats.Instances += bt.Instances()
	t.mu.Unlock()
	t.advance(bt.msgs)
	for id := range t.provisioned { // those the step inserted
		if t.cfg.ConsumeOnly || t.eng.Pool().LRU().View(int64(id)) >= 0 {
			delete(t.provisioned, id)
		}
	}
	return nil
}

// train runs the engine step on bt and publishes its changes; with
// ConsumeOnly it only counts the batch. A step abandoned for a non-finite
// loss or gradient is counted, not an error.
func (t *Trainer) train(ctx context.Context, bt *batch) error {
	if t.cfg.ConsumeOnly {
		t.mu.Lock()
		t.stats.Steps++
		t.mu.Unlock()
		return nil
	}
	x, xl, y, yl, err := bt.Inputs()
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	t0 := time.Now()
	st, err := t.eng.StepFFC(x, xl, y, yl)
	switch {
	case errors.Is(err, engine.ErrSkipped):
		t.metrics.skipped.Inc()
		t.mu.Lock()
		t.stats.Skipped++
		t.mu.Unlock()
		t.cfg.Log.Warn("trainer: step skipped", "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("trainer: step: %w", err)
	}
	return t.publish(ctx, st, time.Since(t0))
}

// publish broadcasts a step's center changes and counts the step.
func (t *Trainer) publish(ctx context.Context, st engine.StepStats, took time.Duration) error {
	ups, evictions, err := broadcast.UpdatesOf(st.Changes, st.Features, t.set.Dim)
	if err != nil {
		return fmt.Errorf("trainer: step %d: %w", st.Step, err)
	}
	if err := t.publishChanges(ctx, int64(st.Step), ups); err != nil {
		return err
	}
	t.metrics.steps.Inc()
	t.metrics.stepSeconds.Observe(took.Seconds())
	t.metrics.loss.Set(st.Loss)
	t.metrics.poolLen.Set(float64(st.PoolLen))
	t.metrics.evictions.Add(float64(evictions))
	t.metrics.published.Add(float64(len(ups)))
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Steps++
	t.stats.Published += len(ups)
	t.stats.PoolLen, t.stats.LastLoss, t.stats.LastStepTime = st.PoolLen, st.Loss, took
	t.stats.Inserted += countInserted(st.Changes)
	return nil
}

// advance marks the messages of a completed step consumed and updates
// the lag of their partitions.
func (t *Trainer) advance(msgs []message) {
	hwm := map[partKey]int64{}
	for _, m := range msgs {
		if t.offsets[m.topic] == nil {
			t.offsets[m.topic] = map[int]int64{}
		}
		if m.offset+1 > t.offsets[m.topic][m.partition] {
			t.offsets[m.topic][m.partition] = m.offset + 1
		}
		k := partKey{m.topic, m.partition}
		hwm[k] = max(hwm[k], m.hwm)
	}
	for k, h := range hwm {
		t.lag.consumed(k, t.offsets[k.topic][k.partition], h)
	}
}
