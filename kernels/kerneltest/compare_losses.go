package kerneltest

import (
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// Losses and top-k: MarginSoftmaxCE, TopK and FreshTopKLoss.

// lossShapes draws rows×cols cosine matrices.
func (c *cmp) lossShapes() [][2]int {
	var ss [][2]int
	for range c.rounds {
		ss = append(ss, [2]int{c.dim(), c.pick(1, 3, 17, 65, 127, 1000+c.rng.IntN(1000), c.dim())})
	}
	if c.large {
		ss = append(ss, [2]int{256, 10000})
	}
	return ss
}

// targets draws a target per row, about a quarter −1 (at least one when
// rows ≥ 2); it returns the rows without a target too.
func (c *cmp) targets(rows, cols int) (t []int32, none []int, count int) {
	t = make([]int32, rows)
	for r := range t {
		t[r] = int32(c.rng.IntN(cols))
	}
	for r := range t {
		if c.rng.IntN(4) == 0 {
			t[r] = -1
		}
	}
	if rows >= 2 {
		t[c.rng.IntN(rows)] = -1
	}
	for r, v := range t {
		if v < 0 {
			none = append(none, r)
		} else {
			count++
		}
	}
	return t, none, count
}

// lossCos returns cosines in [−0.85, 0.9] with, for ArcFace, some targets
// beyond the θ + m = π threshold (at −0.95) and none within 1e-3 of it
// (φ jumps there, so a one-ulp difference would change the loss).
//
// Targets may lead their rows by any amount: both backends sum the
// exponentials over j ≠ t directly (the CPU once summed the whole row and
// subtracted the raw target's term, which lost the rest's digits with few
// columns and a large S, off by a few percent).
func (c *cmp) lossCos(m kernels.Margin, rows, cols int, tg []int32) []float32 {
	cos := c.uniform(rows*cols, -0.85, 0.9)
	if m.Kind == kernels.ArcFace {
		th := float32(math.Cos(math.Pi - float64(m.M)))
		for r, t := range tg {
			if t < 0 {
				continue
			}
			p := r*cols + int(t)
			if r%3 == 0 {
				cos[p] = -0.95
			}
			if d := cos[p] - th; d > -1e-3 && d < 1e-3 {
				cos[p] = th + 2e-3
			}
		}
	}
	return cos
}

// lossOutputs returns the grad buffers of a row loss ("nil", "separate"
// poisoned, or "in place" over cos) and, withLoss, poisoned rowLoss buffers.
func (c *cmp) lossOutputs(grad string, withLoss bool, cos bufs, rows, cols int) (gb, lb bufs) {
	switch grad {
	case "separate":
		gb = c.out(rows * cols)
	case "in place":
		gb = cos
	}
	if withLoss {
		lb = c.out(rows)
	}
	return gb, lb
}

// checkLossOutputs checks the buffers of lossOutputs after a row loss: grad
// within gradTol and rowLoss within the red tolerance, with the rows in
// alone (no target, or not selected) left as they were, and cos unchanged
// unless the grad was written over it (cosH is what was uploaded).
func (c *cmp) checkLossOutputs(grad string, withLoss bool, gb, lb, cos bufs, cosH []float32, rows, cols int, alone []int, gradTol float64) {
	c.r.Helper()
	switch grad {
	case "separate":
		c.check("grad", gb, rows*cols, gradTol)
		c.keeps("grad", gb, cols, alone, poisoned(rows*cols))
		c.unchanged("input cos unchanged", cos, cosH)
	case "in place":
		c.check("grad (in place over cos)", gb, rows*cols, gradTol)
		c.keeps("cos (in place)", gb, cols, alone, cosH)
	default:
		c.unchanged("input cos unchanged", cos, cosH)
	}
	if withLoss {
		c.check("rowLoss", lb, rows, c.tol.red)
		c.keeps("rowLoss", lb, 1, alone, poisoned(rows))
	}
}

func cmpMarginSoftmaxCE(c *cmp) {
	margins := []kernels.Margin{
		{Kind: kernels.NoMargin, S: float32(c.pick(1, 8))},
		{Kind: kernels.CosFace, S: 32, M: 0.4},
		{Kind: kernels.ArcFace, S: 64, M: 0.5},
	}
	for _, sh := range c.lossShapes() {
		rows, cols := sh[0], sh[1]
		for _, m := range margins {
			for _, grad := range []string{"nil", "separate", "in place"} {
				for _, withLoss := range []bool{false, true} {
					if rows*cols > 1<<20 && (grad != "in place" || !withLoss) {
						continue // the large shape: the trainer's call only
					}
					c.each(fmt.Sprintf("rows=%d cols=%d %v s=%g m=%g grad %s rowLoss=%v", rows, cols, m.Kind, m.S, m.M, grad, withLoss), func() {
						tg, none, count := c.targets(rows, cols)
						cosH := c.lossCos(m, rows, cols, tg)
						scale := float32(1 / float64(max(count, 1)))
						cos, tb := c.up(cosH), c.upIdx(tg)
						gb, lb := c.lossOutputs(grad, withLoss, cos, rows, cols)
						c.do(func(be kernels.Backend, i int) error {
							return be.MarginSoftmaxCE(rows, cols, m, cos[i], tb[i], scale, gb[i], lb[i])
						})
						c.checkLossOutputs(grad, withLoss, gb, lb, cos, cosH, rows, cols, none, c.tol.red)
					})
				}
			}
		}
	}
}

// distinctRows returns rows×cols values, distinct within each row, spread
// over [lo, hi) in a random order.
func (c *cmp) distinctRows(rows, cols int, lo, hi float64) []float32 {
	x := make([]float32, rows*cols)
	for r := range rows {
		for j, p := range c.rng.Perm(cols) {
			x[r*cols+j] = float32(lo + (hi-lo)*(float64(p)+0.25+0.5*c.rng.Float64())/float64(cols))
		}
	}
	return x
}

func (c *cmp) topKShapes() [][3]int {
	var ss [][3]int
	for range c.rounds {
		cols := c.pick(1, 3, 17, 65, 127, 1000+c.rng.IntN(1000), c.dim())
		k := 1 + c.rng.IntN(min(cols, kernels.MaxTopK))
		if c.rng.IntN(3) == 0 {
			k = min(cols, kernels.MaxTopK)
		}
		ss = append(ss, [3]int{c.dim(), cols, k})
	}
	if c.large {
		ss = append(ss, [3]int{256, 10000, 10}, [3]int{256, 10000, kernels.MaxTopK})
	}
	return ss
}

func cmpTopK(c *cmp) {
	for _, sh := range c.topKShapes() {
		rows, cols, k := sh[0], sh[1], sh[2]
		for _, kind := range []string{"distinct", "ties", "NaN"} {
			c.each(fmt.Sprintf("rows=%d cols=%d k=%d %s", rows, cols, k, kind), func() {
				var x []float32
				switch kind {
				case "distinct":
					x = c.distinctRows(rows, cols, -1, 1)
				case "ties":
					x = make([]float32, rows*cols)
					for i := range x {
						x[i] = float32(c.rng.IntN(5)) - 2
					}
				case "NaN":
					// Distinct numbers and NaN in up to cols − k places.
					x = c.distinctRows(rows, cols, -1, 1)
					for r := range rows {
						for range c.rng.IntN(cols - k + 1) {
							x[r*cols+c.rng.IntN(cols)] = float32(math.NaN())
						}
					}
				}
				xb, vals, idx := c.up(x), c.out(rows*k), c.outIdx(rows*k)
				c.do(func(be kernels.Backend, i int) error { return be.TopK(rows, cols, k, xb[i], vals[i], idx[i]) })
				c.check("vals", vals, rows*k, 0)
				g, w, ok := c.getIdx("idx", idx, rows*k)
				if !ok {
					return
				}
				if kind != "ties" {
					c.equalIdx("idx", g, w)
					return
				}
				// With ties the columns may differ; they must still be in
				// range, distinct within a row, and point at the values.
				gv, _, ok := c.get("vals", vals, rows*k)
				if !ok {
					return
				}
				for r := range rows {
					seen := map[int32]bool{}
					for p, j := range g[r*k : (r+1)*k] {
						if j < 0 || int(j) >= cols || seen[j] || x[r*cols+int(j)] != gv[r*k+p] {
							c.r.Errorf("%s %s: idx row %d = %v does not select the values %v", c.op, c.shape, r, g[r*k:(r+1)*k], gv[r*k:(r+1)*k])
							return
						}
						seen[j] = true
					}
				}
			})
		}
	}
}

func cmpFreshTopKLoss(c *cmp) {
	for _, sh := range c.topKShapes() {
		rows, cols, k := sh[0], sh[1], sh[2]
		for _, masked := range []bool{false, true} {
			for _, grad := range []string{"nil", "separate", "in place"} {
				for _, withLoss := range []bool{false, true} {
					if rows*cols > 1<<20 && (grad != "in place" || !withLoss) {
						continue
					}
					c.each(fmt.Sprintf("rows=%d cols=%d k=%d targets=%v grad %s rowLoss=%v", rows, cols, k, masked, grad, withLoss), func() {
						// Distinct values per row, shifted per row so that the
						// top k lie above 0, straddle it, or lie below.
						cosH := c.distinctRows(rows, cols, -1, 1)
						for r := range rows {
							shift := float32(c.pick(0, 1, 2)) * (1 - float32(k)/float32(cols))
							for j := range cols {
								cosH[r*cols+j] -= shift
							}
						}
						var tb ibufs
						var unselected []int
						fresh := rows
						if masked {
							var tg []int32
							tg, _, _ = c.targets(rows, cols)
							fresh = 0
							for r, t := range tg {
								if t < 0 {
									fresh++
								} else {
									unselected = append(unselected, r)
								}
							}
							tb = c.upIdx(tg)
						}
						scale := float32(1 / float64(max(fresh*k, 1)))
						cos := c.up(cosH)
						gb, lb := c.lossOutputs(grad, withLoss, cos, rows, cols)
						c.do(func(be kernels.Backend, i int) error {
							return be.FreshTopKLoss(rows, cols, k, cos[i], tb[i], scale, gb[i], lb[i])
						})
						c.checkLossOutputs(grad, withLoss, gb, lb, cos, cosH, rows, cols, unselected, 0)
					})
				}
			}
		}
	}
}
