package trainers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// The fresh lane (Config.TopicFresh). Producers write the first pairs of
// a newly announced ID there, outside the id and instance streams' lead,
// and a REMOVE record when an ID is removed. The trainer takes fresh
// messages before any other while a batch needs pairs, and:
//
//   - a fresh pair of an ID not in the pool gets a provisional center at
//     once, between steps: the gallery network in eval mode on its first
//     image (engine.Provisional), published at the last completed step.
//     The pair then joins the batch like any pair, and the step inserts
//     its gallery feature into the pool as FFC does (the provisional
//     center is never in the pool): a new ID's center is on NATS after at
//     most the step running when it arrived, whatever the backlog.
//   - a REMOVE record takes the ID out of the pool (its rows zeroed, its
//     slot freed), publishes a tombstone and records the removal (a
//     checkpoint part, removedFile): no later step trains on a sample of
//     the ID — samples already in the batch being assembled are taken
//     out — until a fresh pair announced after the removal (the ID added
//     again).

// removedFile is the checkpoint part listing the removed IDs with the
// time of their removal.
const removedFile = "removed.json"

var (
	// errSkip: the message is consumed without a row and without a dead
	// letter (a control record, a sample of a removed ID).
	errSkip = errors.New("trainer: consumed without a row")
	// errFatal wraps an error that must stop the trainer (fenced).
	errFatal = errors.New("trainer: fatal")
)

// freshStep is the step a change made between steps is published at: the
// last completed one.
func (t *Trainer) freshStep() int64 { return int64(max(t.eng.StepCount()-1, 0)) }

// drainFresh takes the fresh lane's waiting messages, up to maxHeld held.
func (t *Trainer) drainFresh(ctx context.Context, g *generation, bt *batch, maxHeld int) error {
	for len(g.held) < maxHeld {
		select {
		case m := <-g.fresh:
			if err := t.holdFresh(ctx, g, bt, m); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

// holdFresh takes a fresh-lane message at once — a new ID's provisional
// center, a removal — and holds it, in order, until a batch takes it
// (fillFromHeld): its offset advances with that batch's step, after
// those of the fresh messages before it.
func (t *Trainer) holdFresh(ctx context.Context, g *generation, bt *batch, m message) error {
	var a1, a2 []byte
	err := t.decodePair(ctx, g, bt, &m, &a1, &a2)
	if err := t.reject(ctx, m, err, &m.skip); err != nil {
		return err
	}
	m.a1, m.a2 = a1, a2
	g.held = append(g.held, m)
	return nil
}

// fillFromHeld moves held fresh messages into the batch, in order, while
// it needs pairs (messages without a row go along freely).
func (t *Trainer) fillFromHeld(g *generation, bt *batch) {
	for len(g.held) > 0 && (g.held[0].skip || bt.NeedPairs()) {
		m := g.held[0]
		g.held[0] = message{}
		g.held = g.held[1:]
		if !m.skip {
			if err := bt.AddPair(int64(m.id), m.a1, m.a2); err != nil {
				t.cfg.Log.Error("trainer: fresh pair not added", "id", m.id, "offset", m.offset, "err", err)
				m.skip = true
			}
		}
		m.a1, m.a2 = nil, nil
		bt.msgs = append(bt.msgs, m)
	}
	if len(g.held) == 0 {
		g.held = nil
	}
}

// addPair decodes an id-stream pair and adds it to the batch.
func (t *Trainer) addPair(ctx context.Context, g *generation, bt *batch, m *message) error {
	var a1, a2 []byte
	if err := t.decodePair(ctx, g, bt, m, &a1, &a2); err != nil {
		return err
	}
	return bt.AddPair(int64(m.id), a1, a2)
}

// decodePair decodes an IDPair message (of the id stream or the fresh
// lane) into the pixels of its images, handling REMOVE records (errSkip),
// removed IDs (errSkip) and provisional centers (fresh lane).
func (t *Trainer) decodePair(ctx context.Context, g *generation, bt *batch, m *message, a1, a2 *[]byte) error {
	p, imgs, err := schemas.DecodeIDPairImages(m.value, t.cfg.Limits)
	if err != nil {
		return err
	}
	m.id = p.GetId()
	announced := p.GetAnnouncedUnixNano()
	if p.GetOp() == ffcpb.IDPair_REMOVE {
		m.skip = true // not one of the ID's samples for purge
		if err := t.forget(ctx, g, bt, m.id, announced); err != nil {
			return fmt.Errorf("%w: %w", errFatal, err)
		}
		return errSkip
	}
	if at, gone := t.removed[m.id]; gone {
		if m.topic != t.cfg.TopicFresh || announced <= at {
			return t.forgotten()
		}
		delete(t.removed, m.id) // announced again after its removal
		t.cfg.Log.Info("trainer: removed id added again", "id", m.id)
	}
	*a1, *a2 = nn.Pixels(imgs[0]), nn.Pixels(imgs[1])
	if m.topic == t.cfg.TopicFresh && !t.cfg.ConsumeOnly {
		if err := t.provisional(ctx, m.id, *a1, announced); err != nil {
			return fmt.Errorf("%w: %w", errFatal, err)
		}
	}
	return nil
}

// forgotten counts a sample of a removed ID, consumed without a row.
func (t *Trainer) forgotten() error {
	t.metrics.forgotten.Inc()
	t.mu.Lock()
	t.stats.Forgotten++
	t.mu.Unlock()
	return errSkip
}

// provisional publishes the provisional center of id when it is not in
// the pool and has none since the last step.
func (t *Trainer) provisional(ctx context.Context, id uint64, pix []byte, announced int64) error {
	if t.provisioned[id] || t.eng.Pool().LRU().View(int64(id)) >= 0 {
		return nil
	}
	changes, feats, err := t.eng.Provisional(nn.AppendScaled(nil, pix), []int64{int64(id)})
	if err != nil || len(changes) == 0 {
		if err != nil {
			t.cfg.Log.Warn("trainer: provisional center failed; the ID gets its center at its step", "id", id, "err", err)
		}
		return nil
	}
	ups, _, err := broadcast.UpdatesOf(changes, feats, t.set.Dim)
	if err != nil {
		return err
	}
	if err := t.publishChanges(ctx, t.freshStep(), ups); err != nil {
		return err
	}
	t.provisioned[id] = true
	t.metrics.fresh.Inc()
	t.mu.Lock()
	t.stats.Fresh++
	t.mu.Unlock()
	if announced > 0 {
		t.pub.observe(time.Unix(0, announced))
	}
	return nil
}

// forget applies a REMOVE record: the ID leaves the pool and the batch
// being assembled, a tombstone is published, and the removal recorded.
func (t *Trainer) forget(ctx context.Context, g *generation, bt *batch, id uint64, at int64) error {
	if cur, ok := t.removed[id]; !ok || at > cur {
		t.removed[id] = at
	}
	delete(t.provisioned, id)
	if !t.cfg.ConsumeOnly {
		if _, _, err := t.eng.Remove(int64(id)); err != nil {
			return err
		}
		tomb := []broadcast.Update{{ID: id, Kind: broadcast.Tombstone}}
		if err := t.publishChanges(ctx, t.freshStep(), tomb); err != nil {
			return err
		}
	}
	t.purge(bt, id)
	for i := range g.held {
		if h := &g.held[i]; !h.skip && h.id == id {
			h.skip, h.a1, h.a2 = true, nil, nil
			_ = t.forgotten()
		}
	}
	t.metrics.removed.Inc()
	t.mu.Lock()
	t.stats.Removed++
	t.mu.Unlock()
	t.cfg.Log.Info("trainer: id removed", "id", id)
	return nil
}

// purge takes the rows of id out of the batch being assembled: the batch
// is rebuilt from its messages (decoded again) without them.
func (t *Trainer) purge(bt *batch, id uint64) {
	if !slices.ContainsFunc(bt.msgs, func(m message) bool { return !m.skip && m.id == id }) {
		return
	}
	bt.Reset()
	for i := range bt.msgs {
		m := &bt.msgs[i]
		if m.skip {
			continue
		}
		if m.id == id {
			m.skip = true
			_ = t.forgotten()
			continue
		}
		if err := t.rows(bt, *m); err != nil {
			// It decoded before: only a bug gets here. Keep the offset
			// accounted for, without the row.
			t.cfg.Log.Error("trainer: re-adding a message after a removal", "topic", m.topic, "offset", m.offset, "err", err)
			m.skip = true
		}
	}
}

// rows adds a message that was added before to the batch again, without
// side effects.
func (t *Trainer) rows(bt *batch, m message) error {
	if m.topic == t.cfg.TopicInstance {
		s, img, err := schemas.DecodeSampleImage(m.value, t.cfg.Limits)
		if err != nil {
			return err
		}
		return bt.AddInstance(int64(s.GetId()), nn.Pixels(img))
	}
	p, imgs, err := schemas.DecodeIDPairImages(m.value, t.cfg.Limits)
	if err != nil {
		return err
	}
	return bt.AddPair(int64(p.GetId()), nn.Pixels(imgs[0]), nn.Pixels(imgs[1]))
}

// removedPart is the checkpoint part of the removed IDs: a JSON object
// of decimal ID → removal time (Unix nanoseconds).
func (t *Trainer) removedPart() engine.StatePart {
	return engine.StatePart{
		Name: removedFile,
		Save: func(w io.Writer) error {
			m := make(map[string]int64, len(t.removed))
			for id, at := range t.removed {
				m[strconv.FormatUint(id, 10)] = at
			}
			return json.NewEncoder(w).Encode(m)
		},
		Load: func(r io.Reader) error {
			var m map[string]int64
			if err := json.NewDecoder(r).Decode(&m); err != nil {
				return fmt.Errorf("removed IDs: %w", err)
			}
			removed := make(map[uint64]int64, len(m))
			for k, at := range m {
				id, err := strconv.ParseUint(k, 10, 64)
				if err != nil {
					return fmt.Errorf("removed IDs: %q: %w", k, err)
				}
				removed[id] = at
			}
			t.removed = removed
			return nil
		},
	}
}

// RemovedIDs returns the IDs removed (and not added again), ascending:
// call it after Run has returned.
func (t *Trainer) RemovedIDs() []uint64 {
	return slices.Sorted(maps.Keys(t.removed))
}

// isRemoved reports whether id was removed (and not added again).
func (t *Trainer) isRemoved(id uint64) bool {
	_, gone := t.removed[id]
	return gone
}
