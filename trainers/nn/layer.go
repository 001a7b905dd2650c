package nn

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// Layer is one stage of a network. Lengths are per sample: a batch of n
// samples is n·InLen input and n·OutLen output elements (in the layer's
// layout, which for CNHW activations interleaves the samples).
type Layer interface {
	// Forward runs n samples of x and returns the layer's output buffer,
	// valid until the next Forward; its first n·OutLen elements hold the
	// result. train selects batch statistics in BatchNorm. x must stay
	// unchanged until Backward.
	Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error)
	// Backward takes dL/d(output) of the last Forward, which must have had
	// train = true, accumulates the parameter gradients and, if needDx,
	// returns dL/d(input) in a buffer owned by the layer (else nil).
	Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error)
	// Params are the learnable tensors, State the non-learnable ones.
	Params() []*Param
	State() []*Param
	InLen() int
	OutLen() int
}

// base is the bookkeeping every layer shares.
type base struct {
	be      kernels.Backend
	name    string
	max     int
	fwdOnly bool
	ring    *ring // the net's short-lived buffers, or nil
	inLen   int
	outLen  int

	x       kernels.Buffer // input of the last Forward
	n       int            // its batch size
	trained bool           // the last Forward had train = true
}

func newBase(be kernels.Backend, c Config, name string, inLen, outLen int) (base, error) {
	if err := c.validate(name); err != nil {
		return base{}, err
	}
	if be == nil {
		return base{}, fmt.Errorf("nn: %s: %w: nil backend", name, kernels.ErrBuffer)
	}
	if inLen < 1 || outLen < 1 {
		return base{}, fmt.Errorf("nn: %s: %w: sample lengths %d → %d", name, kernels.ErrShape, inLen, outLen)
	}
	return base{be: be, name: name, max: c.MaxBatch, fwdOnly: c.ForwardOnly, ring: c.ring, inLen: inLen, outLen: outLen}, nil
}

// InLen is the number of input floats per sample.
func (b *base) InLen() int { return b.inLen }

// OutLen is the number of output floats per sample.
func (b *base) OutLen() int { return b.outLen }

// State is empty unless a layer overrides it.
func (b *base) State() []*Param { return nil }

// Params is empty unless a layer overrides it.
func (b *base) Params() []*Param { return nil }

// alloc allocates a buffer of per·MaxBatch floats.
func (b *base) alloc(what string, per int) (kernels.Buffer, error) {
	buf, err := b.be.Alloc(per * b.max)
	if err != nil {
		return nil, fmt.Errorf("nn: %s: alloc %s: %w", b.name, what, err)
	}
	return buf, nil
}

// allocDx allocates the input gradient unless the layer is forward-only,
// from the net's ring if it has one.
func (b *base) allocDx() (kernels.Buffer, error) {
	if b.fwdOnly {
		return nil, nil
	}
	if b.ring != nil {
		return b.ring.take(b.name+" dx", b.inLen*b.max)
	}
	return b.alloc("dx", b.inLen)
}

// allocOutput allocates the output (OutLen floats per sample), from the
// net's ring if the layer is forward-only in a net that has one, and,
// unless the layer is forward-only, the input gradient.
func (b *base) allocOutput() (y, dx kernels.Buffer, err error) {
	if y, err = b.allocY(); err != nil {
		return nil, nil, err
	}
	if dx, err = b.allocDx(); err != nil {
		return nil, nil, err
	}
	return y, dx, nil
}

// allocY allocates the output, from the net's ring if the layer is
// forward-only in a net that has one.
func (b *base) allocY() (kernels.Buffer, error) {
	if b.fwdOnly && b.ring != nil {
		return b.ring.take(b.name+" output", b.outLen*b.max)
	}
	return b.alloc("output", b.outLen)
}

// begin validates a Forward and records its input.
func (b *base) begin(x kernels.Buffer, n int, train bool) error {
	b.x, b.n, b.trained = nil, 0, false
	if err := checkBatch(b.name+": forward", x, n, b.max, b.inLen); err != nil {
		return err
	}
	b.x, b.n, b.trained = x, n, train
	return nil
}

// checkBatch validates a batch of n samples of per floats in x.
func checkBatch(op string, x kernels.Buffer, n, maxBatch, per int) error {
	switch {
	case x == nil:
		return fmt.Errorf("nn: %s: %w: nil input", op, kernels.ErrBuffer)
	case n < 1:
		return fmt.Errorf("nn: %s: %w: batch of %d samples", op, kernels.ErrShape, n)
	case n > maxBatch:
		return fmt.Errorf("nn: %s: %w: batch of %d samples exceeds MaxBatch %d", op, kernels.ErrShape, n, maxBatch)
	case x.Len() < n*per:
		return fmt.Errorf("nn: %s: %w: buffer of %d floats for %d samples of %d", op, kernels.ErrShape, x.Len(), n, per)
	}
	return nil
}

// beginBackward validates a Backward.
func (b *base) beginBackward(dy kernels.Buffer) error {
	switch {
	case b.fwdOnly:
		return fmt.Errorf("nn: %s: backward: %w: forward-only layer", b.name, ErrState)
	case b.x == nil:
		return fmt.Errorf("nn: %s: backward: %w: no successful Forward before", b.name, ErrState)
	case !b.trained:
		return fmt.Errorf("nn: %s: backward: %w: the last Forward had train = false", b.name, ErrState)
	case dy == nil:
		return fmt.Errorf("nn: %s: backward: %w: nil gradient", b.name, kernels.ErrBuffer)
	case dy.Len() < b.n*b.outLen:
		return fmt.Errorf("nn: %s: backward: %w: gradient of %d floats for %d samples of %d", b.name, kernels.ErrShape, dy.Len(), b.n, b.outLen)
	}
	return nil
}

// wrap prefixes a backend error with the layer and the operation.
func (b *base) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("nn: %s: %s: %w", b.name, op, err)
}

// chanShape is the per-channel view of n samples of c channels of spatial
// positions each in the given layout.
func chanShape(layout kernels.Layout, n, c, spatial int) kernels.ChanShape {
	if layout == kernels.CNHW {
		return kernels.ChanShape{Outer: 1, C: c, Inner: n * spatial}
	}
	return kernels.ChanShape{Outer: n, C: c, Inner: spatial}
}

// workspace is a scratch buffer shared by the convolutions of a network:
// layers reserve a size while they are built, and the network allocates
// the largest once.
type workspace struct {
	be   kernels.Backend
	size int
	buf  kernels.Buffer
}

func (w *workspace) reserve(n int) { w.size = max(w.size, n) }

func (w *workspace) alloc() error {
	if w.buf != nil && w.buf.Len() >= w.size {
		return nil
	}
	buf, err := w.be.Alloc(w.size)
	if err != nil {
		return fmt.Errorf("nn: alloc workspace of %d floats: %w", w.size, err)
	}
	w.buf = buf
	return nil
}
