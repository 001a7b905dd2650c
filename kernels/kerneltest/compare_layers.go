package kerneltest

import (
	"fmt"
	"math"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
)

// Layers: per-channel operations, batch norm, PReLU and the row
// normalisation.

// chanShapes draws per-channel shapes, of at least minM = Outer·Inner
// elements per channel.
func (c *cmp) chanShapes(minM int) []kernels.ChanShape {
	var ss []kernels.ChanShape
	for len(ss) < c.rounds {
		s := kernels.ChanShape{Outer: c.dim(), C: c.dim(), Inner: c.pick(1, 1, 3, 17, 65)}
		if s.Outer*s.Inner >= minM {
			ss = append(ss, s)
		}
	}
	if c.large {
		ss = append(ss, kernels.ChanShape{Outer: 1, C: 32, Inner: 64 * 1024}, kernels.ChanShape{Outer: 64, C: 512, Inner: 1},
			kernels.ChanShape{Outer: 1, C: 128, Inner: 64 * 64})
	}
	return ss
}

func chanString(s kernels.ChanShape) string {
	return fmt.Sprintf("outer=%d C=%d inner=%d", s.Outer, s.C, s.Inner)
}

// channelData returns x with a per-channel mean in [−1, 1] and standard
// deviation in [0.5, 2].
func (c *cmp) channelData(s kernels.ChanShape) []float32 {
	mu, sd := c.uniform(s.C, -1, 1), c.uniform(s.C, 0.5, 2)
	x := c.normal(s.Len())
	for i := range x {
		ch := (i / s.Inner) % s.C
		x[i] = mu[ch] + sd[ch]*x[i]
	}
	return x
}

func cmpAddChannel(c *cmp) {
	for _, s := range c.chanShapes(1) {
		c.each(chanString(s), func() {
			bias := c.normal(s.C)
			bb, x := c.up(bias), c.up(c.normal(s.Len()))
			c.do(func(be kernels.Backend, i int) error { return be.AddChannel(s, bb[i], x[i]) })
			c.check("x", x, s.Len(), c.tol.elem)
			c.unchanged("input bias unchanged", bb, bias)
		})
	}
}

func cmpChannelSum(c *cmp) {
	for _, s := range c.chanShapes(1) {
		c.each(chanString(s), func() {
			x, dst := c.up(c.channelData(s)), c.up(c.normal(s.C)) // accumulates onto dst
			c.do(func(be kernels.Backend, i int) error { return be.ChannelSum(s, x[i], dst[i]) })
			c.check("dst", dst, s.C, c.tol.red)
		})
	}
}

const bnEps, bnMomentum = 1e-5, 0.1

func cmpBatchNormTrain(c *cmp) {
	// At least two elements per channel: with one, the variance is 0 and
	// 1/√eps amplifies the rounding of x − mean 316-fold (legitimately
	// different between backends).
	for _, s := range c.chanShapes(2) {
		for _, running := range []bool{false, true} {
			for _, inPlace := range []bool{false, true} {
				c.each(fmt.Sprintf("%s running stats=%v in place=%v", chanString(s), running, inPlace), func() {
					n := s.Len()
					x := c.up(c.channelData(s))
					gamma, beta := c.up(c.uniform(s.C, 0.5, 1.5)), c.up(c.normal(s.C))
					mean, inv := c.out(s.C), c.out(s.C)
					y := x
					if !inPlace {
						y = c.out(n)
					}
					var rm, rv bufs
					if running {
						rm, rv = c.up(c.normal(s.C)), c.up(c.uniform(s.C, 0.5, 2))
					}
					c.do(func(be kernels.Backend, i int) error {
						return be.BatchNormTrain(s, bnEps, bnMomentum, x[i], gamma[i], beta[i], y[i], mean[i], inv[i], rm[i], rv[i])
					})
					c.check("y", y, n, c.tol.red)
					c.check("mean", mean, s.C, c.tol.red)
					c.check("invStd", inv, s.C, c.tol.red)
					if running {
						c.check("runMean", rm, s.C, c.tol.red)
						c.check("runVar", rv, s.C, c.tol.red)
					}
				})
			}
		}
	}
}

func cmpBatchNormInfer(c *cmp) {
	for _, s := range c.chanShapes(1) {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("%s in place=%v", chanString(s), inPlace), func() {
				x := c.up(c.channelData(s))
				gamma, beta := c.up(c.uniform(s.C, 0.5, 1.5)), c.up(c.normal(s.C))
				rm, rv := c.up(c.uniform(s.C, -1, 1)), c.up(c.uniform(s.C, 0.25, 4))
				y := x
				if !inPlace {
					y = c.out(s.Len())
				}
				c.do(func(be kernels.Backend, i int) error {
					return be.BatchNormInfer(s, bnEps, x[i], gamma[i], beta[i], rm[i], rv[i], y[i])
				})
				c.check("y", y, s.Len(), c.tol.elem)
			})
		}
	}
}

func cmpBatchNormBackward(c *cmp) {
	for _, s := range c.chanShapes(2) {
		c.each(chanString(s), func() {
			xh := c.channelData(s)
			_, mean, inv, _ := bnRef(s, bnEps, f64(xh), make([]float64, s.C), make([]float64, s.C))
			m32, i32 := make([]float32, s.C), make([]float32, s.C)
			for ch := range s.C {
				m32[ch], i32[ch] = float32(mean[ch]), float32(inv[ch])
			}
			x, gamma := c.up(xh), c.up(c.uniform(s.C, 0.5, 1.5))
			mb, ib, dy := c.up(m32), c.up(i32), c.up(c.normal(s.Len()))
			dx := c.out(s.Len())
			dgamma, dbeta := c.up(c.normal(s.C)), c.up(c.normal(s.C)) // accumulated onto
			c.do(func(be kernels.Backend, i int) error {
				return be.BatchNormBackward(s, x[i], gamma[i], mb[i], ib[i], dy[i], dx[i], dgamma[i], dbeta[i])
			})
			c.check("dx", dx, s.Len(), c.tol.red)
			c.check("dgamma", dgamma, s.C, c.tol.red)
			c.check("dbeta", dbeta, s.C, c.tol.red)
		})
	}
}

func cmpPReLU(c *cmp) {
	for _, s := range c.chanShapes(1) {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("%s in place=%v", chanString(s), inPlace), func() {
				x, slope := c.up(c.signed(s.Len())), c.up(c.uniform(s.C, -0.5, 0.5))
				y := x
				if !inPlace {
					y = c.out(s.Len())
				}
				c.do(func(be kernels.Backend, i int) error { return be.PReLU(s, x[i], slope[i], y[i]) })
				c.check("y", y, s.Len(), c.tol.elem)
			})
		}
	}
}

func cmpPReLUBackward(c *cmp) {
	for _, s := range c.chanShapes(1) {
		c.each(chanString(s), func() {
			x, slope := c.up(c.signed(s.Len())), c.up(c.uniform(s.C, -0.5, 0.5))
			dy, dx := c.up(c.normal(s.Len())), c.out(s.Len())
			dslope := c.up(c.normal(s.C)) // accumulated onto
			c.do(func(be kernels.Backend, i int) error {
				return be.PReLUBackward(s, x[i], slope[i], dy[i], dx[i], dslope[i])
			})
			c.check("dx", dx, s.Len(), c.tol.elem)
			c.check("dslope", dslope, s.C, c.tol.red)
		})
	}
}

const l2Eps = 1e-6

// l2Rows draws rows×cols shapes for the row normalisation.
func (c *cmp) l2Shapes() [][2]int {
	var ss [][2]int
	for range c.rounds {
		ss = append(ss, [2]int{c.dim(), c.pick(1, 3, 17, 65, 128, 512, c.dim())})
	}
	if c.large {
		ss = append(ss, [2]int{256, 512}, [2]int{10000, 512})
	}
	return ss
}

// l2Data returns rows×cols normal values with, when there are at least
// three rows, one zero row and one row of norm ≪ eps (the eps path); it
// returns those rows too.
func (c *cmp) l2Data(rows, cols int) (x []float32, epsRows []int) {
	x = c.normal(rows * cols)
	if rows >= 3 {
		z, t := c.rng.IntN(rows), c.rng.IntN(rows)
		for t == z {
			t = c.rng.IntN(rows)
		}
		clear(x[z*cols : (z+1)*cols])
		for j := range cols {
			x[t*cols+j] *= 1e-9
		}
		epsRows = []int{min(z, t), max(z, t)}
	}
	return x, epsRows
}

func cmpL2Normalize(c *cmp) {
	for _, sh := range c.l2Shapes() {
		rows, cols := sh[0], sh[1]
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("rows=%d cols=%d in place=%v", rows, cols, inPlace), func() {
				xh, _ := c.l2Data(rows, cols)
				x, norms := c.up(xh), c.out(rows)
				y := x
				if !inPlace {
					y = c.out(rows * cols)
				}
				c.do(func(be kernels.Backend, i int) error {
					return be.L2NormalizeRows(rows, cols, l2Eps, x[i], y[i], norms[i])
				})
				c.check("y", y, rows*cols, c.tol.red)
				c.check("norms", norms, rows, c.tol.red)
			})
		}
	}
}

func cmpL2NormalizeBackward(c *cmp) {
	for _, sh := range c.l2Shapes() {
		rows, cols := sh[0], sh[1]
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("rows=%d cols=%d in place (dx = dy)=%v", rows, cols, inPlace), func() {
				xh, epsRows := c.l2Data(rows, cols)
				yh, nh := make([]float32, rows*cols), make([]float32, rows)
				for r := range rows {
					var ss float64
					for _, v := range xh[r*cols : (r+1)*cols] {
						ss += float64(v) * float64(v)
					}
					nh[r] = float32(math.Sqrt(ss))
					for j, v := range xh[r*cols : (r+1)*cols] {
						yh[r*cols+j] = float32(float64(v) / max(math.Sqrt(ss), l2Eps))
					}
				}
				y, norms, dy := c.up(yh), c.up(nh), c.up(c.normal(rows*cols))
				dx := dy
				if !inPlace {
					dx = c.out(rows * cols)
				}
				c.do(func(be kernels.Backend, i int) error {
					return be.L2NormalizeRowsBackward(rows, cols, l2Eps, y[i], norms[i], dy[i], dx[i])
				})
				g, w, ok := c.get("dx", dx, rows*cols)
				if !ok {
					return
				}
				// dy/eps in the eps rows is ~1e6 times the rest: compare the
				// two groups separately.
				var normal []int
				for r := range rows {
					if !slices.Contains(epsRows, r) {
						normal = append(normal, r)
					}
				}
				c.close("dx (rows with ‖x‖ > eps)", rowsOf(g, cols, normal), rowsOf(w, cols, normal), c.tol.red)
				c.close("dx (rows with ‖x‖ ≤ eps)", rowsOf(g, cols, epsRows), rowsOf(w, cols, epsRows), c.tol.elem)
			})
		}
	}
}
