package kerneltest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// convGeoms cover 3×3 stride 1 and 2 with padding 1 (the backbone), odd
// sizes, 1×1, even and 5×5 kernels, inputs smaller than the kernel, and
// both layouts.
func convGeoms() []kernels.ConvGeom {
	base := []kernels.ConvGeom{
		{N: 2, C: 3, H: 7, W: 5, K: 3, Stride: 1, Pad: 1},
		{N: 3, C: 2, H: 9, W: 9, K: 3, Stride: 2, Pad: 1},
		{N: 2, C: 4, H: 8, W: 8, K: 3, Stride: 2, Pad: 1},
		{N: 1, C: 1, H: 1, W: 1, K: 3, Stride: 1, Pad: 1},
		{N: 1, C: 3, H: 6, W: 7, K: 1, Stride: 1, Pad: 0},
		{N: 2, C: 2, H: 11, W: 13, K: 5, Stride: 2, Pad: 2},
		{N: 1, C: 2, H: 4, W: 3, K: 2, Stride: 1, Pad: 0},
		{N: 2, C: 1, H: 2, W: 1, K: 3, Stride: 3, Pad: 1},
		{N: 5, C: 1, H: 32, W: 32, K: 3, Stride: 1, Pad: 1},
		{N: 3, C: 5, H: 16, W: 16, K: 3, Stride: 2, Pad: 1},
		{N: 1, C: 17, H: 3, W: 17, K: 3, Stride: 1, Pad: 1},
		{N: 3, C: 9, H: 7, W: 6, K: 3, Stride: 2, Pad: 1},
	}
	var out []kernels.ConvGeom
	for _, g := range base {
		out = append(out, g)
		g.Layout = kernels.CNHW
		out = append(out, g)
	}
	return out
}

// xIndex is the offset of x[n][c][i][j] in layout g.Layout.
func xIndex(g kernels.ConvGeom, n, c, i, j int) int {
	if g.Layout == kernels.CNHW {
		return ((c*g.N+n)*g.H+i)*g.W + j
	}
	return ((n*g.C+c)*g.H+i)*g.W + j
}

// im2colVisit visits every (col row, col column, input offset or −1).
func im2colVisit(g kernels.ConvGeom, f func(r, col, xi int)) {
	ho, wo := g.OutH(), g.OutW()
	for c := range g.C {
		for kh := range g.K {
			for kw := range g.K {
				r := (c*g.K+kh)*g.K + kw
				for n := range g.N {
					for oh := range ho {
						for ow := range wo {
							i, j := oh*g.Stride-g.Pad+kh, ow*g.Stride-g.Pad+kw
							xi := -1
							if i >= 0 && i < g.H && j >= 0 && j < g.W {
								xi = xIndex(g, n, c, i, j)
							}
							f(r, (n*ho+oh)*wo+ow, xi)
						}
					}
				}
			}
		}
	}
}

func testIm2Col(t *testing.T, h *h) {
	for _, g := range convGeoms() {
		x := h.normal(g.InLen())
		want := make([]float32, g.ColRows()*g.ColCols())
		im2colVisit(g, func(r, col, xi int) {
			if xi >= 0 {
				want[r*g.ColCols()+col] = x[xi]
			}
		})
		col := h.filled(len(want), float32(math.NaN())) // every entry written
		h.must(h.be.Im2Col(g, h.up(x), col))
		h.equal(fmt.Sprintf("im2col %+v", g), h.down(col, len(want)), want)
	}
}

func testCol2ImAdjoint(t *testing.T, h *h) {
	for _, g := range convGeoms() {
		x := h.normal(g.InLen())
		y := h.normal(g.ColRows() * g.ColCols())
		want := make([]float64, g.InLen())
		im2colVisit(g, func(r, col, xi int) {
			if xi >= 0 {
				want[xi] += float64(y[r*g.ColCols()+col])
			}
		})
		dx := h.filled(g.InLen(), float32(math.NaN())) // overwritten
		h.must(h.be.Col2Im(g, h.up(y), dx))
		got := h.down(dx, g.InLen())
		// Tolerance: 1e-6 relative (sums of at most K² float32 terms).
		h.close(fmt.Sprintf("col2im %+v", g), got, want, 1e-6)

		col := h.zeros(len(y))
		h.must(h.be.Im2Col(g, h.up(x), col))
		lhs := dot64(f64(h.down(col, len(y))), y) // ⟨im2col(x), y⟩
		rhs := dot64(f64(x), got)                 // ⟨x, col2im(y)⟩
		if math.Abs(lhs-rhs) > 1e-5*max(1, math.Abs(lhs)) {
			t.Errorf("adjointness %+v: ⟨im2col(x), y⟩ = %v, ⟨x, col2im(y)⟩ = %v", g, lhs, rhs)
		}
	}
}

// testConvLowering checks a whole convolution, Gemm(W, Im2Col(x)), against
// a direct convolution, and SwapAxes from CNHW back to NCHW.
func testConvLowering(t *testing.T, h *h) {
	for _, g := range convGeoms() {
		if g.Layout != kernels.NCHW {
			continue
		}
		cout := 4
		x, w := h.normal(g.InLen()), h.normal(cout*g.ColRows())
		ho, wo := g.OutH(), g.OutW()
		want := make([]float64, g.N*cout*ho*wo) // NCHW
		for n := range g.N {
			for o := range cout {
				for oh := range ho {
					for ow := range wo {
						var s float64
						for c := range g.C {
							for kh := range g.K {
								for kw := range g.K {
									i, j := oh*g.Stride-g.Pad+kh, ow*g.Stride-g.Pad+kw
									if i < 0 || i >= g.H || j < 0 || j >= g.W {
										continue
									}
									s += float64(w[o*g.ColRows()+(c*g.K+kh)*g.K+kw]) * float64(x[xIndex(g, n, c, i, j)])
								}
							}
						}
						want[((n*cout+o)*ho+oh)*wo+ow] = s
					}
				}
			}
		}
		col := h.zeros(g.ColRows() * g.ColCols())
		h.must(h.be.Im2Col(g, h.up(x), col))
		y := h.zeros(cout * g.ColCols()) // CNHW
		h.must(h.be.Gemm(false, false, cout, g.ColCols(), g.ColRows(), 1, h.up(w), col, 0, y))
		nchw := h.zeros(len(want))
		h.must(h.be.SwapAxes(cout, g.N, ho*wo, y, nchw))
		h.close(fmt.Sprintf("conv %+v", g), h.down(nchw, len(want)), want, 1e-5)

		// Backward as documented in package kernels, against finite
		// differences of L = ⟨r, conv(x, W)⟩ (r in CNHW like y), on the
		// smaller geometries.
		if g.ColRows()*g.ColCols() > 5000 {
			continue
		}
		r := h.normal(cout * g.ColCols())
		rb := h.up(r)
		dw := h.filled(len(w), 0)
		h.must(h.be.Gemm(false, true, cout, g.ColRows(), g.ColCols(), 1, rb, col, 1, dw))
		dcol := h.zeros(g.ColRows() * g.ColCols())
		h.must(h.be.Gemm(true, false, g.ColRows(), g.ColCols(), cout, 1, h.up(w), rb, 0, dcol))
		dx := h.zeros(g.InLen())
		h.must(h.be.Col2Im(g, dcol, dx))
		nx := len(x)
		f := func(th []float64, _ int) float64 {
			xs, ws := th[:nx], th[nx:]
			var l float64
			im2colVisit(g, func(row, c, xi int) {
				if xi < 0 {
					return
				}
				n, p := c/(ho*wo), c%(ho*wo)
				for o := range cout {
					l += float64(r[(o*g.N+n)*ho*wo+p]) * ws[o*g.ColRows()+row] * xs[xi]
				}
			})
			return l
		}
		theta := slices.Concat(x, w)
		grad := slices.Concat(h.down(dx, nx), h.down(dw, len(w)))
		h.fdCheck(fmt.Sprintf("conv backward %+v", g), f, theta, grad, 1e-4)
	}
}

func testSwapAxes(t *testing.T, h *h) {
	for _, s := range [][3]int{{1, 1, 1}, {3, 17, 1}, {17, 3, 5}, {33, 65, 2}, {64, 32, 1024}, {1, 5, 3}, {512, 256, 1}} {
		a, b, inner := s[0], s[1], s[2]
		x := h.normal(a * b * inner)
		want := make([]float32, len(x))
		for i := range a {
			for j := range b {
				copy(want[(j*a+i)*inner:(j*a+i+1)*inner], x[(i*b+j)*inner:])
			}
		}
		out := h.zeros(len(x))
		h.must(h.be.SwapAxes(a, b, inner, h.up(x), out))
		h.equal(fmt.Sprintf("swap axes %v", s), h.down(out, len(x)), want)
	}
}

// chanShapes are [Outer][C][Inner] views: NCHW, CNHW (Outer 1), matrices
// (Inner 1) and one large enough for several goroutines.
var chanShapes = []kernels.ChanShape{
	{Outer: 2, C: 3, Inner: 5}, {Outer: 4, C: 17, Inner: 1}, {Outer: 1, C: 5, Inner: 33},
	{Outer: 65, C: 3, Inner: 1}, {Outer: 3, C: 33, Inner: 7}, {Outer: 8, C: 32, Inner: 256},
	{Outer: 256, C: 512, Inner: 1}, {Outer: 1, C: 1, Inner: 65},
}

func testChannel(t *testing.T, h *h) {
	for _, s := range chanShapes {
		x, bias := h.normal(s.Len()), h.normal(s.C)
		want := make([]float64, s.Len())
		sum := make([]float64, s.C)
		for o := range s.Outer {
			for c := range s.C {
				for i := range s.Inner {
					p := (o*s.C+c)*s.Inner + i
					want[p] = float64(x[p]) + float64(bias[c])
					sum[c] += float64(x[p])
				}
			}
		}
		xb := h.up(x)
		h.must(h.be.AddChannel(s, h.up(bias), xb))
		h.close(fmt.Sprintf("add channel %+v", s), h.down(xb, s.Len()), want, 1e-6)
		acc := h.filled(s.C, 1) // accumulates
		h.must(h.be.ChannelSum(s, h.up(x), acc))
		for c := range sum {
			sum[c]++
		}
		h.close(fmt.Sprintf("channel sum %+v", s), h.down(acc, s.C), sum, 1e-6)
	}
}
