package kerneltest

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// Convolution lowering: Im2Col, Col2Im and SwapAxes.

// geoms draws two geometries per round (one per layout) and adds the
// yardstick backbone's with Large.
func (c *cmp) geoms() []kernels.ConvGeom {
	var gs []kernels.ConvGeom
	for range c.rounds {
		for _, l := range []kernels.Layout{kernels.NCHW, kernels.CNHW} {
			for {
				g := kernels.ConvGeom{
					N: c.pick(1, 2, 3, 5), C: c.pick(1, 2, 3, 5),
					H: c.pick(1, 2, 3, 5, 7, 8, 12, 17, 33), W: c.pick(1, 2, 3, 5, 7, 8, 12, 17, 33),
					K: c.pick(1, 2, 3, 3, 5, 7), Stride: c.pick(1, 1, 2, 3), Pad: c.pick(0, 1, 1, 2, 3),
					Layout: l,
				}
				if g.Validate() == nil {
					gs = append(gs, g)
					break
				}
			}
		}
	}
	if c.large {
		gs = append(gs,
			kernels.ConvGeom{N: 64, C: 3, H: 32, W: 32, K: 3, Stride: 1, Pad: 1, Layout: kernels.NCHW},
			kernels.ConvGeom{N: 64, C: 32, H: 32, W: 32, K: 3, Stride: 1, Pad: 1, Layout: kernels.CNHW},
			kernels.ConvGeom{N: 64, C: 32, H: 32, W: 32, K: 3, Stride: 2, Pad: 1, Layout: kernels.CNHW},
			kernels.ConvGeom{N: 64, C: 64, H: 16, W: 16, K: 3, Stride: 1, Pad: 1, Layout: kernels.CNHW},
		)
	}
	return gs
}

func geomString(g kernels.ConvGeom) string {
	l := "NCHW"
	if g.Layout == kernels.CNHW {
		l = "CNHW"
	}
	return fmt.Sprintf("N=%d C=%d H=%d W=%d K=%d stride=%d pad=%d %s", g.N, g.C, g.H, g.W, g.K, g.Stride, g.Pad, l)
}

func cmpIm2Col(c *cmp) {
	for _, g := range c.geoms() {
		c.each(geomString(g), func() {
			x := c.normal(g.InLen())
			xb, col := c.up(x), c.out(g.ColRows()*g.ColCols())
			c.do(func(be kernels.Backend, s int) error { return be.Im2Col(g, xb[s], col[s]) })
			c.check("col", col, g.ColRows()*g.ColCols(), 0)
			c.unchanged("input x unchanged", xb, x)
		})
	}
}

func cmpCol2Im(c *cmp) {
	for _, g := range c.geoms() {
		c.each(geomString(g), func() {
			col := c.normal(g.ColRows() * g.ColCols())
			cb, dx := c.up(col), c.out(g.InLen())
			c.do(func(be kernels.Backend, s int) error { return be.Col2Im(g, cb[s], dx[s]) })
			c.check("dx", dx, g.InLen(), c.tol.elem)
			c.unchanged("input col unchanged", cb, col)
		})
	}
}

func cmpSwapAxes(c *cmp) {
	type sh struct{ a, b, inner int }
	var shapes []sh
	for range c.rounds {
		shapes = append(shapes, sh{c.dim(), c.dim(), c.pick(1, 1, 2, 3, 17, 64)})
	}
	shapes = append(shapes, sh{0, 3, 2}, sh{1, 1, 1})
	if c.large {
		shapes = append(shapes, sh{32, 64, 1024}, sh{64, 128 * 64, 1})
	}
	for _, s := range shapes {
		c.each(fmt.Sprintf("a=%d b=%d inner=%d", s.a, s.b, s.inner), func() {
			n := s.a * s.b * s.inner
			src := c.normal(n)
			sb, dst := c.up(src), c.out(n)
			c.do(func(be kernels.Backend, i int) error { return be.SwapAxes(s.a, s.b, s.inner, sb[i], dst[i]) })
			c.check("dst", dst, n, 0)
		})
	}
}
