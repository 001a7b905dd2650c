package kerneltest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// bnRef is batch normalisation in float64: y, batch mean, 1/sqrt(var+eps)
// and the unbiased variance per channel.
func bnRef(s kernels.ChanShape, eps float64, x, gamma, beta []float64) (y, mean, inv, unbiased []float64) {
	m := float64(s.Outer * s.Inner)
	y = make([]float64, len(x))
	mean, inv, unbiased = make([]float64, s.C), make([]float64, s.C), make([]float64, s.C)
	for c := range s.C {
		var sum, ss float64
		for o := range s.Outer {
			for i := range s.Inner {
				sum += x[(o*s.C+c)*s.Inner+i]
			}
		}
		mu := sum / m
		for o := range s.Outer {
			for i := range s.Inner {
				d := x[(o*s.C+c)*s.Inner+i] - mu
				ss += d * d
			}
		}
		mean[c], inv[c] = mu, 1/math.Sqrt(ss/m+eps)
		unbiased[c] = ss / max(m-1, 1)
		for o := range s.Outer {
			for i := range s.Inner {
				p := (o*s.C+c)*s.Inner + i
				y[p] = gamma[c]*(x[p]-mu)*inv[c] + beta[c]
			}
		}
	}
	return y, mean, inv, unbiased
}

func testBatchNorm(t *testing.T, h *h) {
	const eps, mom = 1e-5, 0.1
	for _, s := range slices.Concat(chanShapes, []kernels.ChanShape{{Outer: 17, C: 1, Inner: 1}}) {
		x := h.normal(s.Len())
		for i := range x {
			x[i] = 3*x[i] + 2 // non-zero mean, non-unit variance
		}
		gamma, beta := h.uniform(s.C, 0.5, 1.5), h.normal(s.C)
		rm0, rv0 := h.normal(s.C), h.uniform(s.C, 0.5, 2)
		y, mean, inv, unb := bnRef(s, eps, f64(x), f64(gamma), f64(beta))
		wantRM, wantRV := make([]float64, s.C), make([]float64, s.C)
		for c := range s.C {
			wantRM[c] = (1-mom)*float64(rm0[c]) + mom*mean[c]
			wantRV[c] = (1-mom)*float64(rv0[c]) + mom*unb[c]
		}
		xb, gb, bb := h.up(x), h.up(gamma), h.up(beta)
		yb, mb, ib, rmb, rvb := h.zeros(s.Len()), h.zeros(s.C), h.zeros(s.C), h.up(rm0), h.up(rv0)
		h.must(h.be.BatchNormTrain(s, eps, mom, xb, gb, bb, yb, mb, ib, rmb, rvb))
		name := fmt.Sprintf("batch norm %+v", s)
		// Tolerance: 1e-5 relative.
		h.close(name+" y", h.down(yb, s.Len()), y, 1e-5)
		h.close(name+" mean", h.down(mb, s.C), mean, 1e-5)
		h.close(name+" invStd", h.down(ib, s.C), inv, 1e-5)
		h.close(name+" running mean", h.down(rmb, s.C), wantRM, 1e-5)
		h.close(name+" running var", h.down(rvb, s.C), wantRV, 1e-5)

		// Inference with the updated running statistics.
		wantInf := make([]float64, s.Len())
		for o := range s.Outer {
			for c := range s.C {
				for i := range s.Inner {
					p := (o*s.C+c)*s.Inner + i
					wantInf[p] = float64(gamma[c])*(float64(x[p])-wantRM[c])/math.Sqrt(wantRV[c]+eps) + float64(beta[c])
				}
			}
		}
		h.must(h.be.BatchNormInfer(s, eps, xb, gb, bb, rmb, rvb, yb))
		h.close(name+" inference", h.down(yb, s.Len()), wantInf, 1e-5)

		// In place, without running statistics.
		h.must(h.be.BatchNormTrain(s, eps, mom, xb, gb, bb, xb, mb, ib, nil, nil))
		h.close(name+" y in place", h.down(xb, s.Len()), y, 1e-5)
	}
}

func testBatchNormGrad(t *testing.T, h *h) {
	const eps = 1e-5
	for _, s := range []kernels.ChanShape{{Outer: 2, C: 3, Inner: 5}, {Outer: 5, C: 4, Inner: 1}, {Outer: 1, C: 3, Inner: 17}, {Outer: 3, C: 2, Inner: 3}, {Outer: 4, C: 33, Inner: 2}} {
		x := h.normal(s.Len())
		gamma, beta := h.uniform(s.C, 0.5, 1.5), h.normal(s.C)
		r := h.normal(s.Len()) // L = ⟨r, y⟩, so dy = r
		xb, gb, bb := h.up(x), h.up(gamma), h.up(beta)
		mb, ib := h.zeros(s.C), h.zeros(s.C)
		h.must(h.be.BatchNormTrain(s, eps, 0.1, xb, gb, bb, h.zeros(s.Len()), mb, ib, nil, nil))
		dx, dg, db := h.zeros(s.Len()), h.filled(s.C, 0.25), h.filled(s.C, 0.25)
		h.must(h.be.BatchNormBackward(s, xb, gb, mb, ib, h.up(r), dx, dg, db))
		// θ = [x; gamma; beta], grad = [dx; dgamma − 0.25; dbeta − 0.25].
		theta := append(append(append([]float32(nil), x...), gamma...), beta...)
		grad := append(append(h.down(dx, s.Len()), h.down(dg, s.C)...), h.down(db, s.C)...)
		for i := s.Len(); i < len(grad); i++ {
			grad[i] -= 0.25 // accumulated onto 0.25
		}
		n := s.Len()
		f := func(th []float64, _ int) float64 {
			y, _, _, _ := bnRef(s, eps, th[:n], th[n:n+s.C], th[n+s.C:])
			return dot64(y, r)
		}
		// Tolerance: 1e-4 relative (float32 backward vs float64 differences).
		h.fdCheck(fmt.Sprintf("batch norm backward %+v", s), f, theta, grad, 1e-4)
	}
}

func testReLUGrad(t *testing.T, h *h) {
	for _, n := range []int{1, 17, 65, 300} {
		x, r := h.normal(n), h.normal(n)
		awayFrom(x, 0, 1e-2)
		dx := h.zeros(n)
		h.must(h.be.ReLUBackward(n, h.up(x), h.up(r), dx))
		f := func(xs []float64, _ int) float64 {
			var s float64
			for i, v := range xs {
				s += max(v, 0) * float64(r[i])
			}
			return s
		}
		h.fdCheck(fmt.Sprintf("relu backward n=%d", n), f, x, h.down(dx, n), 1e-6)
	}
}

func preluRef(s kernels.ChanShape, x, a []float64) []float64 {
	y := make([]float64, len(x))
	for p, v := range x {
		if v > 0 {
			y[p] = v
		} else {
			y[p] = a[(p/s.Inner)%s.C] * v
		}
	}
	return y
}

func testPReLU(t *testing.T, h *h) {
	for _, s := range chanShapes {
		x, a := h.normal(s.Len()), h.uniform(s.C, 0, 0.5)
		awayFrom(x, 0, 1e-2)
		yb := h.zeros(s.Len())
		xb, ab := h.up(x), h.up(a)
		h.must(h.be.PReLU(s, xb, ab, yb))
		name := fmt.Sprintf("prelu %+v", s)
		h.close(name, h.down(yb, s.Len()), preluRef(s, f64(x), f64(a)), 1e-6)

		r := h.normal(s.Len())
		dx, da := h.zeros(s.Len()), h.filled(s.C, 0.25)
		h.must(h.be.PReLUBackward(s, xb, ab, h.up(r), dx, da))
		theta := append(append([]float32(nil), x...), a...)
		grad := append(h.down(dx, s.Len()), h.down(da, s.C)...)
		for i := s.Len(); i < len(grad); i++ {
			grad[i] -= 0.25
		}
		n := s.Len()
		f := func(th []float64, i int) float64 {
			if i < n { // only element i changes
				c := (i / s.Inner) % s.C
				v := th[i]
				if v <= 0 {
					v *= th[n+c]
				}
				return v * float64(r[i])
			}
			return dot64(preluRef(s, th[:n], th[n:]), r)
		}
		// Tolerance: 1e-5 relative (the slope gradient sums many terms).
		h.fdCheck(name+" backward", f, theta, grad, 1e-5)
	}
}

func testL2Normalize(t *testing.T, h *h) {
	const eps = 1e-6
	for _, rows := range sizes {
		for _, cols := range slices.Concat(sizes, []int{512}) {
			x := h.normal(rows * cols)
			want := make([]float64, len(x))
			norms := make([]float64, rows)
			for r := range rows {
				var ss float64
				for _, v := range x[r*cols : (r+1)*cols] {
					ss += float64(v) * float64(v)
				}
				norms[r] = math.Sqrt(ss)
				for j := range cols {
					want[r*cols+j] = float64(x[r*cols+j]) / max(norms[r], eps)
				}
			}
			xb, yb, nb := h.up(x), h.zeros(len(x)), h.zeros(rows)
			h.must(h.be.L2NormalizeRows(rows, cols, eps, xb, yb, nb))
			name := fmt.Sprintf("l2 normalize %dx%d", rows, cols)
			h.close(name, h.down(yb, len(x)), want, 1e-6)
			h.close(name+" norms", h.down(nb, rows), norms, 1e-6)

			r := h.normal(len(x))
			dx := h.zeros(len(x))
			h.must(h.be.L2NormalizeRowsBackward(rows, cols, eps, yb, nb, h.up(r), dx))
			f := func(xs []float64, i int) float64 {
				row := i / cols
				xr := xs[row*cols : (row+1)*cols]
				var ss float64
				for _, v := range xr {
					ss += v * v
				}
				n := max(math.Sqrt(ss), eps)
				var s float64
				for j, v := range xr {
					s += v / n * float64(r[row*cols+j])
				}
				return s
			}
			h.fdCheck(name+" backward", f, x, h.down(dx, len(x)), 1e-4)

			xc := h.up(x)
			h.must(h.be.L2NormalizeRows(rows, cols, eps, xc, xc, nb))
			h.close(name+" in place", h.down(xc, len(x)), want, 1e-6)
		}
	}
	// A zero row: y = 0 and dx = dy/eps, both finite.
	xb, yb, nb, dx := h.zeros(8), h.zeros(8), h.zeros(2), h.zeros(8)
	h.must(h.be.L2NormalizeRows(2, 4, eps, xb, yb, nb))
	h.close("l2 normalize of zero rows", h.down(yb, 8), make([]float64, 8), 0)
	dy := h.normal(8)
	h.must(h.be.L2NormalizeRowsBackward(2, 4, eps, yb, nb, h.up(dy), dx))
	want := make([]float64, 8)
	for i, v := range dy {
		want[i] = float64(v) / eps
	}
	h.close("l2 normalize backward of zero rows", h.down(dx, 8), want, 1e-6)
}
