package trainers

import (
	"context"
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
// are dead-lettered and their offsets marked consumed. onIdle runs when no
// message has arrived for IdleCheckpoint. The batch is reused: it is valid
// until the next call. It fails only when ctx ends.
func (t *Trainer) assemble(ctx context.Context, byID, inst <-chan message, onIdle func()) (*batch, error) {
	if t.batch == nil {
		t.batch = &batch{DualBatch: engine.NewDualBatch(t.set.Batch, t.set.InLen, true)}
	}
	bt := t.batch
	bt.Reset()
	bt.msgs = bt.msgs[:0]
	idle := time.NewTimer(t.cfg.IdleCheckpoint)
	defer idle.Stop()
	for !bt.Full() {
		var m message
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-idle.C:
			onIdle()
			idle.Reset(t.cfg.IdleCheckpoint)
			continue
		case m = <-when(byID, bt.NeedPairs()):
		case m = <-when(inst, bt.NeedInstances()):
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		idle.Reset(t.cfg.IdleCheckpoint)
		bt.msgs = append(bt.msgs, m)
		if err := t.add(bt, m); err != nil {
			if err := t.deadLetter(ctx, m, err); err != nil {
				return nil, err
			}
		}
	}
	return bt, nil
}

// add decodes m and adds it to the batch; an error is the reason to
// reject it. Its size is checked before any other work.
func (t *Trainer) add(bt *batch, m message) error {
	limit := t.cfg.Limits.MaxMessageBytes
	if limit <= 0 {
		limit = schemas.DefaultMaxMessageBytes
	}
	if len(m.value) > limit {
		return fmt.Errorf("trainer: %w: message of %d bytes > %d", schemas.ErrTooLarge, len(m.value), limit)
	}
	if m.topic == t.cfg.TopicByID {
		p, imgs, err := schemas.DecodeIDPairImages(m.value, t.cfg.Limits)
		if err != nil {
			return err
		}
		return bt.AddPair(int64(p.GetId()), nn.Pixels(imgs[0]), nn.Pixels(imgs[1]))
	}
	s, img, err := schemas.DecodeSampleImage(m.value, t.cfg.Limits)
	if err != nil {
		return err
	}
	return bt.AddInstance(int64(s.GetId()), nn.Pixels(img))
}

// when returns ch when on, else nil (a nil channel never delivers).
func when(ch <-chan message, on bool) <-chan message {
	if on {
		return ch
	}
	return nil
}
