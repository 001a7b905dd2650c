package kerneltest

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// Rows: GatherRows and ScatterRows.

// rowIndices draws n indices in [−1, rows) with repeats (some forced) and
// at least one −1 when n ≥ 3.
func (c *cmp) rowIndices(n, rows int) []int32 {
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(c.rng.IntN(rows+1)) - 1
	}
	if n >= 3 {
		p := c.rng.Perm(n)
		idx[p[0]] = int32(c.rng.IntN(rows)) // a repeat of a valid row
		idx[p[1]] = idx[p[0]]
		idx[p[2]] = -1
	}
	return idx
}

type gatherShape struct{ rows, cols, n int }

func (c *cmp) gatherShapes() []gatherShape {
	var ss []gatherShape
	for range c.rounds {
		ss = append(ss, gatherShape{c.dim(), c.pick(1, 3, 17, 128, 512, c.dim()), c.dim()})
	}
	if c.large {
		ss = append(ss, gatherShape{10000, 512, 256})
	}
	return ss
}

func cmpGatherRows(c *cmp) {
	for _, s := range c.gatherShapes() {
		c.each(fmt.Sprintf("srcRows=%d cols=%d n=%d", s.rows, s.cols, s.n), func() {
			src := c.normal(s.rows * s.cols)
			sb, idx, dst := c.up(src), c.upIdx(c.rowIndices(s.n, s.rows)), c.out(s.n*s.cols)
			c.do(func(be kernels.Backend, i int) error {
				return be.GatherRows(s.n, s.cols, sb[i], s.rows, idx[i], dst[i])
			})
			c.check("dst", dst, s.n*s.cols, 0)
			c.unchanged("input src unchanged", sb, src)
		})
	}
}

func cmpScatterRows(c *cmp) {
	for _, s := range c.gatherShapes() {
		c.each(fmt.Sprintf("dstRows=%d cols=%d n=%d", s.rows, s.cols, s.n), func() {
			src := c.normal(s.n * s.cols)
			sb, idx, dst := c.up(src), c.upIdx(c.rowIndices(s.n, s.rows)), c.up(c.normal(s.rows*s.cols))
			c.do(func(be kernels.Backend, i int) error {
				return be.ScatterRows(s.n, s.cols, sb[i], idx[i], dst[i], s.rows)
			})
			c.check("dst", dst, s.rows*s.cols, 0)
		})
	}
}
