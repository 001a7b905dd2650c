package nn

import (
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// counting is a backend that adds up the floats it allocates.
type counting struct {
	kernels.Backend
	floats int
}

func (c *counting) Alloc(n int) (kernels.Buffer, error) {
	c.floats += n
	return c.Backend.Alloc(n)
}

// TestRingSameResults checks that nets whose short-lived buffers come from
// the ring give exactly the outputs and gradients of nets whose layers own
// theirs, for training and forward-only nets, with two residual blocks in
// a stage and with a smaller batch after a larger one; and that the ring
// saves memory.
func TestRingSameResults(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	base := IRResNetOptions{Dim: 6, MaxBatch: 5, Seed: 7, InSize: 8, Widths: []int{4, 6, 8}, Blocks: []int{2, 1, 1}}
	build := func(forwardOnly, own bool) (Net, int) {
		t.Helper()
		o := base
		o.ForwardOnly, o.ownBuffers = forwardOnly, own
		cb := &counting{Backend: newBackend(t)}
		net, err := NewIRResNet(cb, o)
		must(t, err)
		return net, cb.floats
	}
	ringNet, ringFloats := build(false, false)
	ownNet, ownFloats := build(false, true)
	ringFwd, ringFwdFloats := build(true, false)
	ownFwd, ownFwdFloats := build(true, true)
	if ringFloats >= ownFloats || ringFwdFloats >= ownFwdFloats {
		t.Errorf("floats allocated: training %d with the ring, %d without; forward-only %d with, %d without",
			ringFloats, ownFloats, ringFwdFloats, ownFwdFloats)
	}
	be := newBackend(t)
	for _, n := range []int{5, 3} {
		x := randn(r, n*ringNet.InLen(), 1)
		dy := randn(r, n*ringNet.Dim(), 1)
		outputs := map[string][]float32{}
		for name, net := range map[string]Net{"ring": ringNet, "own": ownNet, "ring forward-only": ringFwd, "own forward-only": ownFwd} {
			y, err := net.Forward(upload(t, be, x), n, true)
			must(t, err)
			outputs[name] = download(t, be, y, n*net.Dim())
		}
		for name, y := range outputs {
			if !equal32(y, outputs["own"]) {
				t.Errorf("batch %d: the %s net's output differs from the own-buffers training net's", n, name)
			}
		}
		for _, net := range []Net{ringNet, ownNet} {
			must(t, ZeroGrads(be, net.Params()))
			must(t, net.Backward(upload(t, be, dy)))
		}
		for i, p := range ringNet.Params() {
			q := ownNet.Params()[i]
			if !equal32(download(t, be, p.G, p.N), download(t, be, q.G, q.N)) {
				t.Errorf("batch %d: gradient of %s differs with the ring", n, p.Name)
			}
		}
	}
}
