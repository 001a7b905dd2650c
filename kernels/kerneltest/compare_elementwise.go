package kerneltest

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// Elementwise operations and the SGD step.

func cmpFill(c *cmp) {
	for _, n := range c.lengths() {
		for _, v := range []float32{0, float32(c.rng.NormFloat64())} {
			c.each(fmt.Sprintf("n=%d v=%g", n, v), func() {
				x := c.out(n)
				c.do(func(be kernels.Backend, s int) error { return be.Fill(n, v, x[s]) })
				c.check("x", x, n, 0)
			})
		}
	}
}

func cmpCopy(c *cmp) {
	for _, n := range c.lengths() {
		c.each(fmt.Sprintf("n=%d", n), func() {
			src := c.normal(n)
			sb, dst := c.up(src), c.out(n)
			c.do(func(be kernels.Backend, s int) error { return be.Copy(n, sb[s], dst[s]) })
			c.check("dst", dst, n, 0)
			c.unchanged("input src unchanged", sb, src)
		})
	}
}

// binary compares dst = f(a, b) out of place and in place (dst = a, then
// dst = b).
func cmpBinary(c *cmp, f func(be kernels.Backend, n int, a, b, dst kernels.Buffer) error) {
	for _, n := range c.lengths() {
		for _, mode := range []string{"dst separate", "dst = a", "dst = b"} {
			c.each(fmt.Sprintf("n=%d %s", n, mode), func() {
				a, b := c.normal(n), c.normal(n)
				ab, bb := c.up(a), c.up(b)
				dst := ab
				switch mode {
				case "dst separate":
					dst = c.out(n)
				case "dst = b":
					dst = bb
				}
				c.do(func(be kernels.Backend, s int) error { return f(be, n, ab[s], bb[s], dst[s]) })
				c.check("dst", dst, n, c.tol.elem)
			})
		}
	}
}

func cmpAdd(c *cmp) {
	cmpBinary(c, func(be kernels.Backend, n int, a, b, dst kernels.Buffer) error { return be.Add(n, a, b, dst) })
}

func cmpMul(c *cmp) {
	cmpBinary(c, func(be kernels.Backend, n int, a, b, dst kernels.Buffer) error { return be.Mul(n, a, b, dst) })
}

func cmpScale(c *cmp) {
	for _, n := range c.lengths() {
		alpha := float32(c.rng.NormFloat64())
		c.each(fmt.Sprintf("n=%d alpha=%g", n, alpha), func() {
			x := c.up(c.normal(n))
			c.do(func(be kernels.Backend, s int) error { return be.Scale(n, alpha, x[s]) })
			c.check("x", x, n, c.tol.elem)
		})
	}
}

func cmpAddScalar(c *cmp) {
	for _, n := range c.lengths() {
		beta := float32(c.rng.NormFloat64())
		c.each(fmt.Sprintf("n=%d beta=%g", n, beta), func() {
			x := c.up(c.normal(n))
			c.do(func(be kernels.Backend, s int) error { return be.AddScalar(n, beta, x[s]) })
			c.check("x", x, n, c.tol.elem)
		})
	}
}

func cmpAxpby(c *cmp) {
	for _, n := range c.lengths() {
		m := float32(0.999)
		for _, p := range [][2]float32{{1 - m, m}, {float32(c.rng.NormFloat64()), float32(c.rng.NormFloat64())}} {
			c.each(fmt.Sprintf("n=%d alpha=%g beta=%g", n, p[0], p[1]), func() {
				x := c.normal(n)
				xb, y := c.up(x), c.up(c.normal(n))
				c.do(func(be kernels.Backend, s int) error { return be.Axpby(n, p[0], xb[s], p[1], y[s]) })
				c.check("y", y, n, c.tol.elem)
				c.unchanged("input x unchanged", xb, x)
			})
		}
	}
}

func cmpReLU(c *cmp) {
	for _, n := range c.lengths() {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("n=%d in place=%v", n, inPlace), func() {
				x := c.up(c.signed(n))
				y := x
				if !inPlace {
					y = c.out(n)
				}
				c.do(func(be kernels.Backend, s int) error { return be.ReLU(n, x[s], y[s]) })
				c.check("y", y, n, 0)
			})
		}
	}
}

func cmpReLUBackward(c *cmp) {
	for _, n := range c.lengths() {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("n=%d in place (dx = dy)=%v", n, inPlace), func() {
				x, dy := c.up(c.signed(n)), c.up(c.normal(n))
				dx := dy
				if !inPlace {
					dx = c.out(n)
				}
				c.do(func(be kernels.Backend, s int) error { return be.ReLUBackward(n, x[s], dy[s], dx[s]) })
				c.check("dx", dx, n, 0)
			})
		}
	}
}

func cmpSGDStep(c *cmp) {
	for _, n := range c.lengths() {
		for _, nesterov := range []bool{false, true} {
			p := kernels.SGD{
				LR:          float32(0.001 + 0.2*c.rng.Float64()),
				Momentum:    float32(c.pick(0, 1)) * float32(0.5+0.49*c.rng.Float64()),
				WeightDecay: float32(c.pick(0, 1)) * float32(1e-3*c.rng.Float64()),
				Nesterov:    nesterov,
			}
			c.each(fmt.Sprintf("n=%d %+v", n, p), func() {
				g := c.normal(n)
				v0 := c.normal(n)
				if c.rng.IntN(2) == 0 {
					clear(v0) // the first step
				}
				w, gb, v := c.up(c.normal(n)), c.up(g), c.up(v0)
				c.do(func(be kernels.Backend, s int) error { return be.SGDStep(n, p, w[s], gb[s], v[s]) })
				c.check("w", w, n, c.tol.elem)
				c.check("v", v, n, c.tol.elem)
				c.unchanged("input g unchanged", gb, g)
			})
		}
	}
}
