package trainers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// batch is one assembled FFC batch with the messages it consumed
// (rejected ones included: their offsets advance with the step).
type batch struct {
	*engine.DualBatch
	msgs []message
}

// assemble takes B valid id pairs and B valid instances; invalid messages
// are dead-lettered and their offsets marked consumed. The fresh lane
// comes first: its messages are taken as soon as they arrive (a new ID's
// provisional center, a removal), held in order and put into batches
// before any other pair. onIdle runs when no message has arrived for
// IdleCheckpoint. The batch is reused: it is valid until the next call.
// It fails when ctx ends, or with errFatal (fenced).
func (t *Trainer) assemble(ctx context.Context, g *generation, onIdle func()) (*batch, error) {
	if t.batch == nil {
		t.batch = &batch{DualBatch: engine.NewDualBatch(t.set.Batch, t.set.InLen, true)}
	}
	bt := t.batch
	bt.Reset()
	bt.msgs = bt.msgs[:0]
	idle := time.NewTimer(t.cfg.IdleCheckpoint)
	defer idle.Stop()
	maxHeld := 4 * t.set.Batch
	for {
		if err := t.drainFresh(ctx, g, bt, maxHeld); err != nil {
			return nil, err
		}
		t.fillFromHeld(g, bt)
		if bt.Full() {
			return bt, nil
		}
		var m message
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-idle.C:
			onIdle()
			idle.Reset(t.cfg.IdleCheckpoint)
			continue
		case m = <-when(g.fresh, len(g.held) < maxHeld):
		case m = <-when(g.byID, bt.NeedPairs()):
		case m = <-when(g.inst, bt.NeedInstances()):
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		idle.Reset(t.cfg.IdleCheckpoint)
		if m.topic == t.cfg.TopicFresh {
			if err := t.holdFresh(ctx, g, bt, m); err != nil {
				return nil, err
			}
			continue
		}
		bt.msgs = append(bt.msgs, m)
		if err := t.reject(ctx, m, t.add(ctx, g, bt, &bt.msgs[len(bt.msgs)-1]), &bt.msgs[len(bt.msgs)-1].skip); err != nil {
			return nil, err
		}
	}
}

// reject handles the outcome err of adding m: nil, errSkip (consumed
// without a row), errFatal (returned), or a reason to dead-letter it.
// skip is set unless m was added.
func (t *Trainer) reject(ctx context.Context, m message, err error, skip *bool) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errFatal):
		return err
	}
	*skip = true
	if errors.Is(err, errSkip) {
		return nil
	}
	return t.deadLetter(ctx, m, err)
}

// add decodes m and adds it to the batch; an error is the reason to
// reject it, errSkip (consumed without a row) or errFatal. Its size is
// checked before any other work.
func (t *Trainer) add(ctx context.Context, g *generation, bt *batch, m *message) error {
	limit := t.cfg.Limits.MaxMessageBytes
	if limit <= 0 {
		limit = schemas.DefaultMaxMessageBytes
	}
	if len(m.value) > limit {
		return fmt.Errorf("trainer: %w: message of %d bytes > %d", schemas.ErrTooLarge, len(m.value), limit)
	}
	if m.topic != t.cfg.TopicInstance {
		return t.addPair(ctx, g, bt, m)
	}
	s, img, err := schemas.DecodeSampleImage(m.value, t.cfg.Limits)
	if err != nil {
		return err
	}
	if m.id = s.GetId(); t.isRemoved(m.id) {
		return t.forgotten()
	}
	return bt.AddInstance(int64(m.id), nn.Pixels(img))
}

// when returns ch when on, else nil (a nil channel never delivers).
func when(ch <-chan message, on bool) <-chan message {
	if on {
		return ch
	}
	return nil
}
