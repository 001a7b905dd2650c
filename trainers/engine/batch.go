package engine

import (
	"fmt"

	"github.com/ffc-stream/ffc/trainers/nn"
)

// DualBatch assembles the inputs of one FFC step; it is the one place
// that is done, for offline and streaming training alike. With the dual
// loader, x = [a1; h1] and y = [a2; h2]: (a1, a2) are B id pairs (two
// images of one ID) and h1, h2 the two halves of 2·⌊B/2⌋ instances.
// Without it (instances only), x and y are B instances each. Pixels are
// scaled by nn.AppendScaled.
type DualBatch struct {
	b, inLen int
	dual     bool
	idOnly   bool // the id loader alone: B pairs, no instances

	x, y     []float32
	xl, yl   []int64
	hx, hy   []float32 // instance halves, appended after the pairs
	hxl, hyl []int64

	pairs, instances int
}

// NewDualBatch returns an empty batch of b for inputs of inLen pixels.
func NewDualBatch(b, inLen int, dual bool) *DualBatch {
	half := b / 2
	return &DualBatch{b: b, inLen: inLen, dual: dual,
		x: make([]float32, 0, (b+half)*inLen), y: make([]float32, 0, (b+half)*inLen),
		hx: make([]float32, 0, half*inLen), hy: make([]float32, 0, half*inLen)}
}

// NewIDBatch returns an empty batch of b id pairs and no instances
// (x = a1, y = a2): the id loader alone, for the loaders' ablation.
func NewIDBatch(b, inLen int) *DualBatch {
	d := NewDualBatch(b, inLen, true)
	d.idOnly = true
	return d
}

// Reset empties the batch, keeping its memory.
func (d *DualBatch) Reset() {
	d.x, d.y, d.hx, d.hy = d.x[:0], d.y[:0], d.hx[:0], d.hy[:0]
	d.xl, d.yl, d.hxl, d.hyl = d.xl[:0], d.yl[:0], d.hxl[:0], d.hyl[:0]
	d.pairs, d.instances = 0, 0
}

// wantInstances is the number of instances a full batch holds.
func (d *DualBatch) wantInstances() int {
	if d.idOnly {
		return 0
	}
	if d.dual {
		return 2 * (d.b / 2)
	}
	return 2 * d.b
}

// NeedPairs reports whether the batch takes more id pairs.
func (d *DualBatch) NeedPairs() bool { return d.dual && d.pairs < d.b }

// NeedInstances reports whether the batch takes more instances.
func (d *DualBatch) NeedInstances() bool { return d.instances < d.wantInstances() }

// Full reports whether the batch is complete.
func (d *DualBatch) Full() bool { return !d.NeedPairs() && !d.NeedInstances() }

// Pairs and Instances count what the batch holds.
func (d *DualBatch) Pairs() int { return d.pairs }

// Instances counts the instances the batch holds.
func (d *DualBatch) Instances() int { return d.instances }

func (d *DualBatch) check(what string, pix []byte) error {
	if len(pix) != d.inLen {
		return fmt.Errorf("engine: batch: %s of %d pixels, want %d", what, len(pix), d.inLen)
	}
	return nil
}

// AddPair adds two images of one identity: a1 to x, a2 to y.
func (d *DualBatch) AddPair(label int64, a1, a2 []byte) error {
	if !d.NeedPairs() {
		return fmt.Errorf("engine: batch: an id pair past the %d the batch takes", d.pairs)
	}
	if err := d.check("id pair image", a1); err != nil {
		return err
	}
	if err := d.check("id pair image", a2); err != nil {
		return err
	}
	d.x, d.y = nn.AppendScaled(d.x, a1), nn.AppendScaled(d.y, a2)
	d.xl, d.yl = append(d.xl, label), append(d.yl, label)
	d.pairs++
	return nil
}

// AddInstance adds one image: the first half of the instances go to x,
// the rest to y.
func (d *DualBatch) AddInstance(label int64, pix []byte) error {
	if !d.NeedInstances() {
		return fmt.Errorf("engine: batch: an instance past the %d the batch takes", d.instances)
	}
	if err := d.check("instance", pix); err != nil {
		return err
	}
	if d.instances < d.wantInstances()/2 {
		d.hx, d.hxl = nn.AppendScaled(d.hx, pix), append(d.hxl, label)
	} else {
		d.hy, d.hyl = nn.AppendScaled(d.hy, pix), append(d.hyl, label)
	}
	d.instances++
	return nil
}

// Inputs returns x, its labels, y and its labels of a full batch, for
// Engine.StepFFC. The slices stay valid until Reset.
func (d *DualBatch) Inputs() (x []float32, xl []int64, y []float32, yl []int64, err error) {
	if !d.Full() {
		return nil, nil, nil, nil, fmt.Errorf("engine: batch: %d of %d pairs, %d of %d instances", d.pairs, d.b, d.instances, d.wantInstances())
	}
	x, y = append(d.x, d.hx...), append(d.y, d.hy...)
	xl, yl = append(d.xl, d.hxl...), append(d.yl, d.hyl...)
	return x, xl, y, yl, nil
}
