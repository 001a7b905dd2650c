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

// errDeadLetter marks a dead letter that could not be written: the trainer
// stops rather than skip a message nobody has kept.
var errDeadLetter = errors.New("dead-letter write failed")

// errFatal marks an assembly failure that must stop the trainer.
var errFatal = errors.New("trainer stopped")

// assemble takes B valid id pairs and B valid instances; invalid messages
// are dead-lettered and their offsets marked consumed. onIdle runs when no
// message has arrived for IdleCheckpoint. The batch is reused: it is valid
// until the next call.
func (t *Trainer) assemble(ctx context.Context, byID, inst <-chan message, onIdle func() error) (*batch, error) {
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
			if err := onIdle(); err != nil {
				return nil, fmt.Errorf("%w: %w", errFatal, err)
			}
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
// reject it.
func (t *Trainer) add(bt *batch, m message) error {
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
