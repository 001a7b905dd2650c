package nn

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// ringSlots is the number of buffers a net's ring cycles through. A
// buffer taken from the ring is overwritten by the buffer taken ringSlots
// later, so a value must be dead once ringSlots−1 others have been written
// after it. The longest-lived short value is an IRBlock's input in
// Forward, read by the block's Add after its path's six outputs and
// before the block's own is written, and an IRBlock's output gradient in
// Backward, read by the Add after the path's six input gradients are
// written and while the block's own is: 7 writes, so 8 slots (with 7 the
// Add would write in place over the value it reads, which Add allows; 6
// breaks, and TestRingSameResults catches it), given that
// the block takes its output after its path's and its input gradient
// before them (NewIRBlock), which puts the values in the ring in the
// order they are written.
const ringSlots = 8

// ring holds the buffers of values that live only from one layer to the
// next: the outputs of a forward-only net (no Backward needs them) and
// the input gradients of a training net (each is consumed by the layer
// before it). Layers take their buffer from the ring when they are built,
// in the order the values are written (see ringSlots), instead of
// allocating one each: a net's memory for these values is ringSlots of
// the largest one instead of the sum over its layers.
type ring struct {
	be    kernels.Backend
	size  int // floats per slot
	slots [ringSlots]kernels.Buffer
	next  int
}

// newRing returns a ring whose slots hold per·maxBatch floats; a slot is
// allocated when first taken.
func newRing(be kernels.Backend, per, maxBatch int) *ring {
	return &ring{be: be, size: per * maxBatch}
}

// take returns a view of n floats of the next slot.
func (r *ring) take(what string, n int) (kernels.Buffer, error) {
	if n > r.size {
		return nil, fmt.Errorf("nn: ring: %w: %s of %d floats exceeds the slots' %d", kernels.ErrShape, what, n, r.size)
	}
	i := r.next % ringSlots
	r.next++
	if r.slots[i] == nil {
		b, err := r.be.Alloc(r.size)
		if err != nil {
			return nil, fmt.Errorf("nn: ring: alloc slot of %d floats: %w", r.size, err)
		}
		r.slots[i] = b
	}
	v, err := r.be.View(r.slots[i], 0, n)
	if err != nil {
		return nil, fmt.Errorf("nn: ring: %s: %w", what, err)
	}
	return v, nil
}
