package kerneltest

import (
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// BLAS: Gemm and Gemv.

type gemmCase struct {
	m, n, k        int
	transA, transB bool
}

func cmpGemm(c *cmp) {
	var cases []gemmCase
	for range c.rounds {
		m, n, k := c.dim(), c.dim(), c.dim()
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				cases = append(cases, gemmCase{m, n, k, ta, tb})
			}
		}
	}
	cases = append(cases, gemmCase{3, 5, 0, false, true}, gemmCase{0, 4, 7, true, false}, gemmCase{130, 257, 300, true, true})
	if c.large {
		for _, s := range GemmShapes() {
			cases = append(cases, gemmCase{s.M, s.N, s.K, s.TransA, s.TransB})
		}
	}
	// (alpha, beta): beta = 0 with a NaN-poisoned C (it must not be read),
	// general, accumulating, and alpha = 0 (C = beta·C).
	ab := [][2]float32{{1, 0}, {0.5, -1.5}, {-2, 1}, {0, 0.75}}
	for i, g := range cases {
		abs := ab
		if i >= len(cases)-len(GemmShapes()) && c.large {
			abs = ab[:2] // the big shapes: beta = 0 and one general
		}
		a, b := c.normal(g.m*g.k), c.normal(g.k*g.n)
		for _, p := range abs {
			alpha, beta := p[0], p[1]
			c.each(fmt.Sprintf("m=%d n=%d k=%d transA=%v transB=%v alpha=%g beta=%g", g.m, g.n, g.k, g.transA, g.transB, alpha, beta), func() {
				ab, bb := c.up(a), c.up(b)
				cc := c.out(g.m * g.n)
				if beta != 0 {
					cc = c.up(c.normal(g.m * g.n))
				}
				c.do(func(be kernels.Backend, s int) error {
					return be.Gemm(g.transA, g.transB, g.m, g.n, g.k, alpha, ab[s], bb[s], beta, cc[s])
				})
				c.checkScaled("C", cc, g.m*g.n, c.tol.gemm, gemmScale(g, alpha, a, b))
				if g.m*g.n*g.k < 1<<16 {
					c.unchanged("input A unchanged", ab, a)
					c.unchanged("input B unchanged", bb, b)
				}
			})
		}
	}
}

// gemmScale is the natural size of the product alpha·op(A)·op(B):
// |alpha|·(Σ_l ‖column l of op(A)‖²·‖row l of op(B)‖²)^½, the expected
// ‖Σ_l a_il·b_lj·δ_l‖ for independent unit relative errors δ of the k
// products. For inputs with random signs it is about ‖op(A)·op(B)‖, but it
// does not shrink when a result cancels: relative to a C of 0.045 that
// should be ~8 (m = n = 1, k = 65), correct TF32 products err by 1e-2.
func gemmScale(g gemmCase, alpha float32, a, b []float32) float64 {
	var s float64
	for l := range g.k {
		var na, nb float64
		for i := range g.m {
			v := a[i*g.k+l]
			if g.transA {
				v = a[l*g.m+i]
			}
			na += float64(v) * float64(v)
		}
		for j := range g.n {
			v := b[l*g.n+j]
			if g.transB {
				v = b[j*g.k+l]
			}
			nb += float64(v) * float64(v)
		}
		s += na * nb
	}
	return math.Abs(float64(alpha)) * math.Sqrt(s)
}

func cmpGemv(c *cmp) {
	var shapes [][2]int
	for range c.rounds {
		shapes = append(shapes, [2]int{c.dim(), c.dim()}, [2]int{c.dim(), 200 + c.rng.IntN(400)})
	}
	shapes = append(shapes, [2]int{0, 5}, [2]int{5, 0})
	if c.large {
		shapes = append(shapes, [2]int{10000, 512}, [2]int{256, 8192})
	}
	ab := [][2]float32{{1, 0}, {0.5, -1.5}, {0, 2}}
	for _, sh := range shapes {
		m, n := sh[0], sh[1]
		a := c.normal(m * n)
		for _, ta := range []bool{false, true} {
			lx, ly := n, m
			if ta {
				lx, ly = m, n
			}
			x := c.normal(lx)
			for _, p := range ab {
				alpha, beta := p[0], p[1]
				c.each(fmt.Sprintf("m=%d n=%d transA=%v alpha=%g beta=%g", m, n, ta, alpha, beta), func() {
					abuf, xb := c.up(a), c.up(x)
					y := c.out(ly)
					if beta != 0 {
						y = c.up(c.normal(ly))
					}
					c.do(func(be kernels.Backend, s int) error {
						return be.Gemv(ta, m, n, alpha, abuf[s], xb[s], beta, y[s])
					})
					c.checkScaled("y", y, ly, c.tol.gemm, gemmScale(gemmCase{ly, 1, lx, ta, false}, alpha, a, x))
					c.unchanged("input x unchanged", xb, x)
				})
			}
		}
	}
}
