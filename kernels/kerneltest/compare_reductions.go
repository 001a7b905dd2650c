package kerneltest

import (
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// Reductions: Sum and AllFinite.

// plants returns the values to plant in an input of n elements: 0 (none)
// and, when n > 0, NaN, +Inf and −Inf.
func plants(n int) []float32 {
	ps := []float32{0}
	if n > 0 {
		ps = append(ps, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)))
	}
	return ps
}

func cmpSum(c *cmp) {
	for _, n := range c.lengths() {
		for _, bad := range plants(n) {
			x := c.normal(n)
			for i := range x {
				x[i] += 0.3 // a non-zero mean
			}
			if bad != 0 {
				x[c.rng.IntN(n)] = bad
			}
			c.each(fmt.Sprintf("n=%d planted=%v", n, bad), func() {
				xb := c.up(x)
				var sum [2]float64
				c.do(func(be kernels.Backend, s int) error {
					var err error
					sum[s], err = be.Sum(n, xb[s])
					return err
				})
				if c.broken {
					return
				}
				var abs float64
				for _, v := range x {
					abs += math.Abs(float64(v))
				}
				g, w := sum[0], sum[1]
				switch {
				case bad != 0:
					if !(g == w || (math.IsNaN(g) && math.IsNaN(w))) {
						c.r.Errorf("%s %s: Sum = %v, want %v", c.op, c.shape, g, w)
					}
				case math.Abs(g-w) > c.tol.sum*abs || math.IsNaN(g):
					c.r.Errorf("%s %s: Sum = %v, want %v (|Δ| = %.3g > %.3g·Σ|x| = %.3g)", c.op, c.shape, g, w, math.Abs(g-w), c.tol.sum, c.tol.sum*abs)
				}
				c.unchanged("input x unchanged", xb, x)
			})
		}
	}
}

func cmpAllFinite(c *cmp) {
	for _, n := range c.lengths() {
		for _, bad := range plants(n) {
			x := c.normal(n)
			pos := -1
			if bad != 0 {
				pos = c.rng.IntN(n)
				x[pos] = bad
			}
			// The whole n, and the prefix before the planted value (the
			// poisoned tail after n must not be looked at either).
			prefixes := []int{n}
			if pos >= 0 {
				prefixes = append(prefixes, pos)
			}
			for _, m := range prefixes {
				c.each(fmt.Sprintf("n=%d planted %v at %d, checking %d", n, bad, pos, m), func() {
					xb := c.up(x)
					var fin [2]bool
					c.do(func(be kernels.Backend, s int) error {
						var err error
						fin[s], err = be.AllFinite(m, xb[s])
						return err
					})
					expect := pos < 0 || pos >= m
					if !c.broken && (fin[0] != fin[1] || fin[1] != expect) {
						c.r.Errorf("%s %s: AllFinite = %v, want %v (reference %v)", c.op, c.shape, fin[0], expect, fin[1])
					}
				})
			}
		}
	}
}
