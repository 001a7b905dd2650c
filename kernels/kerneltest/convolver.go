package kerneltest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// TestConvolver checks a backend's kernels.Convolver, if it has one,
// against the float64 reference of the lowered convolution: ConvForward
// against W·Im2Col(x), ConvBackward's weight gradient (added to what dw
// held) and input gradient against dy·Im2Col(x)ᵀ and Col2Im(Wᵀ·dy), over
// every test geometry in both layouts, and the rejection of bad buffers.
// Test runs it; a backend with internal blocking parameters can run it
// again with them set small, so that several blocks are exercised.
func TestConvolver(t *testing.T, be kernels.Backend) {
	cv, ok := be.(kernels.Convolver)
	if !ok {
		t.Logf("%T has no Convolver: the layers use Im2Col and Gemm", be)
		return
	}
	h := &h{t: t, be: be, rng: rand.New(rand.NewPCG(5, 7))}
	for _, g := range convGeoms() {
		for _, cout := range []int{1, 4, 20} {
			convolverCase(h, cv, g, cout)
		}
	}
	convolverBad(h, cv)
}

// convolverCase runs one geometry and output channel count.
func convolverCase(h *h, cv kernels.Convolver, g kernels.ConvGeom, cout int) {
	name := fmt.Sprintf("%+v cout %d", g, cout)
	rows, cols := g.ColRows(), g.ColCols()
	x, w, dy, dw0 := h.normal(g.InLen()), h.normal(cout*rows), h.normal(cout*cols), h.normal(cout*rows)
	col := make([]float64, rows*cols)
	im2colVisit(g, func(r, c, xi int) {
		if xi >= 0 {
			col[r*cols+c] = float64(x[xi])
		}
	})
	wantY := make([]float64, cout*cols)
	wantDW := f64(dw0)
	wantDX := make([]float64, g.InLen())
	for o := range cout {
		for r := range rows {
			wr := float64(w[o*rows+r])
			for c := range cols {
				wantY[o*cols+c] += wr * col[r*cols+c]
				wantDW[o*rows+r] += float64(dy[o*cols+c]) * col[r*cols+c]
			}
		}
	}
	im2colVisit(g, func(r, c, xi int) {
		if xi >= 0 {
			for o := range cout {
				wantDX[xi] += float64(w[o*rows+r]) * float64(dy[o*cols+c])
			}
		}
	})
	xb, wb, dyb := h.up(x), h.up(w), h.up(dy)
	y := h.filled(cout*cols, float32(math.NaN())) // overwritten
	h.must(cv.ConvForward(g, cout, wb, xb, y))
	// Tolerance: sums of C·K² float32 products, in another order.
	h.close("conv forward "+name, h.down(y, cout*cols), wantY, 1e-5)
	dw := h.up(dw0)
	dx := h.filled(g.InLen(), float32(math.NaN())) // overwritten
	h.must(cv.ConvBackward(g, cout, wb, xb, dyb, dw, dx))
	h.close("conv backward dw "+name, h.down(dw, cout*rows), wantDW, 1e-5)
	h.close("conv backward dx "+name, h.down(dx, g.InLen()), wantDX, 1e-5)
	dw = h.up(dw0)
	h.must(cv.ConvBackward(g, cout, wb, xb, dyb, dw, nil))
	h.close("conv backward dw without dx "+name, h.down(dw, cout*rows), wantDW, 1e-5)
}

// convolverBad checks that bad shapes and overlapping buffers are
// rejected with kernels.ErrShape.
func convolverBad(h *h, cv kernels.Convolver) {
	g := kernels.ConvGeom{N: 2, C: 3, H: 5, W: 5, K: 3, Stride: 1, Pad: 1}
	rows, cols := g.ColRows(), g.ColCols()
	x, w, y := h.zeros(g.InLen()), h.zeros(2*rows), h.zeros(2*cols)
	for _, c := range []struct {
		name string
		err  error
	}{
		{"zero output channels", cv.ConvForward(g, 0, w, x, y)},
		{"short w", cv.ConvForward(g, 2, h.zeros(2*rows-1), x, y)},
		{"short x", cv.ConvForward(g, 2, w, h.zeros(g.InLen()-1), y)},
		{"short y", cv.ConvForward(g, 2, w, x, h.zeros(2*cols-1))},
		{"bad geometry", cv.ConvForward(kernels.ConvGeom{N: 1, C: 1, H: 3, W: 3, K: 0, Stride: 1}, 2, w, x, y)},
		{"y is x", cv.ConvForward(kernels.ConvGeom{N: 1, C: 2, H: 5, W: 5, K: 1, Stride: 1}, 2, h.zeros(4), x, x)},
		{"short dw", cv.ConvBackward(g, 2, w, x, y, h.zeros(2*rows-1), nil)},
		{"short dx", cv.ConvBackward(g, 2, w, x, y, h.zeros(2*rows), h.zeros(g.InLen()-1))},
		{"dx is x", cv.ConvBackward(g, 2, w, x, y, h.zeros(2*rows), x)},
		{"dw is w", cv.ConvBackward(g, 2, w, x, y, w, nil)},
	} {
		if c.err == nil {
			h.t.Errorf("%s: accepted", c.name)
		} else if !errors.Is(c.err, kernels.ErrShape) && !errors.Is(c.err, kernels.ErrBuffer) {
			h.t.Errorf("%s: %v, want ErrShape or ErrBuffer", c.name, c.err)
		}
	}
}
