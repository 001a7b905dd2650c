package kerneltest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// marginRef is φ(c), written from the definitions: CosFace c − m; ArcFace
// cos(acos(c) + m) on c clamped to [−1, 1], or c − m·sin(π − m) where
// c ≤ cos(π − m).
func marginRef(m kernels.Margin, c float64) float64 {
	mm := float64(m.M)
	switch m.Kind {
	case kernels.CosFace:
		return c - mm
	case kernels.ArcFace:
		c = math.Max(-1, math.Min(1, c))
		if c > math.Cos(math.Pi-mm) {
			return math.Cos(math.Acos(c) + mm)
		}
		return c - mm*math.Sin(math.Pi-mm)
	}
	return c
}

// ceRowRef is −log softmax(z)_t for one row.
func ceRowRef(m kernels.Margin, row []float64, t int) float64 {
	s := float64(m.S)
	z := make([]float64, len(row))
	for j, c := range row {
		z[j] = s * c
	}
	z[t] = s * marginRef(m, row[t])
	mx := slices.Max(z)
	var sum float64
	for _, v := range z {
		sum += math.Exp(v - mx)
	}
	return mx + math.Log(sum) - z[t]
}

var margins = []kernels.Margin{
	{Kind: kernels.NoMargin, S: 8},
	{Kind: kernels.CosFace, S: 32, M: 0.4},
	{Kind: kernels.ArcFace, S: 32, M: 0.5},
	{Kind: kernels.ArcFace, S: 64, M: 0.5},
}

// lossShapes are (rows, cols) of the cosine matrices.
var lossShapes = [][2]int{{1, 1}, {3, 17}, {17, 33}, {33, 65}, {5, 1000}, {257, 2049}}

// randTargets draws targets in [0, cols) with about a quarter −1.
func (h *h) randTargets(rows, cols int) ([]int32, int) {
	t := make([]int32, rows)
	count := 0
	for r := range t {
		if h.rng.IntN(4) == 0 {
			t[r] = -1
		} else {
			t[r] = int32(h.rng.IntN(cols))
			count++
		}
	}
	return t, count
}

const sentinel = 7.5

func testMarginCE(t *testing.T, h *h) {
	for _, m := range margins {
		for _, sh := range lossShapes {
			rows, cols := sh[0], sh[1]
			name := fmt.Sprintf("%v s=%g m=%g %dx%d", m.Kind, m.S, m.M, rows, cols)
			cos := h.uniform(rows*cols, -0.8, 0.8)
			tg, count := h.randTargets(rows, cols)
			if m.Kind == kernels.ArcFace {
				// Put some targets on the other side of θ + m = π.
				for r := 0; r < rows; r += 3 {
					if tg[r] >= 0 {
						cos[r*cols+int(tg[r])] = -0.95
					}
				}
			}
			scale := float32(1 / float64(max(count, 1)))
			cb, tb := h.up(cos), h.upIdx(tg)
			grad, loss := h.filled(rows*cols, sentinel), h.filled(rows, sentinel)
			h.must(h.be.MarginSoftmaxCE(rows, cols, m, cb, tb, scale, grad, loss))
			g, l := h.down(grad, rows*cols), h.down(loss, rows)

			cos64 := f64(cos)
			var gotL []float32
			var wantL []float64
			var tcoords, ocoords []int
			for r, tr := range tg {
				if tr < 0 {
					h.equal(name+" rowLoss of a row without target", l[r:r+1], []float32{sentinel})
					for j := range cols {
						if g[r*cols+j] != sentinel {
							t.Fatalf("%s: grad[%d][%d] of a row without target written", name, r, j)
						}
					}
					continue
				}
				gotL = append(gotL, l[r])
				wantL = append(wantL, ceRowRef(m, cos64[r*cols:(r+1)*cols], int(tr)))
				tcoords = append(tcoords, r*cols+int(tr))
				if cols > 1 {
					j := h.rng.IntN(cols - 1)
					if j >= int(tr) {
						j++
					}
					ocoords = append(ocoords, r*cols+j)
				}
			}
			// Tolerance: 1e-5 relative on the row losses.
			h.close(name+" row loss", gotL, wantL, 1e-5)
			f := func(xs []float64, i int) float64 {
				r := i / cols
				return float64(scale) * ceRowRef(m, xs[r*cols:(r+1)*cols], int(tg[r]))
			}
			// Tolerance: 1e-4 relative on target and on other entries.
			h.fdCheckAt(name+" grad of targets", f, cos, g, tcoords, 1e-4)
			h.fdCheckAt(name+" grad of non-targets", f, cos, g, ocoords, 1e-4)

			// In place, and forward only.
			h.must(h.be.MarginSoftmaxCE(rows, cols, m, cb, tb, scale, cb, nil))
			inPlace := h.down(cb, rows*cols)
			for r, tr := range tg {
				row := inPlace[r*cols : (r+1)*cols]
				if tr < 0 {
					h.equal(name+" in place: row without target", row, cos[r*cols:(r+1)*cols])
				} else {
					h.close(name+" in place", row, f64(g[r*cols:(r+1)*cols]), 1e-6)
				}
			}
			loss2 := h.filled(rows, sentinel)
			h.must(h.be.MarginSoftmaxCE(rows, cols, m, h.up(cos), tb, scale, nil, loss2))
			h.close(name+" forward only", h.down(loss2, rows), f64(l), 1e-6)
		}
	}
}

// testMarginCEExtremes: cosines at and just beyond ±1 (rounding of unit
// vectors), all-equal rows and a large scale give finite values.
func testMarginCEExtremes(t *testing.T, h *h) {
	one := float32(1)
	above := math.Nextafter32(1, 2)
	vals := []float32{one, -one, above, -above, 0.9999999, -0.9999999}
	for _, m := range []kernels.Margin{{Kind: kernels.ArcFace, S: 64, M: 0.5}, {Kind: kernels.CosFace, S: 64, M: 0.4}, {Kind: kernels.ArcFace, S: 32, M: 0.5}} {
		rows, cols := len(vals)*len(vals), 7
		cos := make([]float32, rows*cols)
		tg := make([]int32, rows)
		for r := range rows {
			tv, ov := vals[r/len(vals)], vals[r%len(vals)]
			for j := range cols {
				cos[r*cols+j] = ov
			}
			tg[r] = int32(r % cols)
			cos[r*cols+int(tg[r])] = tv
		}
		grad, loss := h.zeros(rows*cols), h.zeros(rows)
		h.must(h.be.MarginSoftmaxCE(rows, cols, m, h.up(cos), h.upIdx(tg), 1/float32(rows), grad, loss))
		for _, b := range []struct {
			name string
			buf  kernels.Buffer
			n    int
		}{{"grad", grad, rows * cols}, {"loss", loss, rows}} {
			ok, err := h.be.AllFinite(b.n, b.buf)
			h.must(err)
			if !ok {
				t.Errorf("%v s=%g at cos = ±1: %s not finite: %v", m.Kind, m.S, b.name, h.down(b.buf, b.n))
			}
		}
		for r, v := range h.down(loss, rows) {
			if v < 0 {
				t.Errorf("%v: negative loss %v in row %d", m.Kind, v, r)
			}
		}
	}
}

// testMarginCELargeLogits: with generic logits (no margin, scale 1) far
// beyond float32's exp range, the max shift keeps everything finite.
func testMarginCELargeLogits(t *testing.T, h *h) {
	m := kernels.Margin{Kind: kernels.NoMargin, S: 1}
	rows, cols := 9, 13
	x := h.uniform(rows*cols, -500, 500)
	tg, count := h.randTargets(rows, cols)
	grad, loss := h.zeros(rows*cols), h.filled(rows, sentinel)
	scale := float32(1 / float64(max(count, 1)))
	h.must(h.be.MarginSoftmaxCE(rows, cols, m, h.up(x), h.upIdx(tg), scale, grad, loss))
	l := h.down(loss, rows)
	var got []float32
	var want []float64
	for r, tr := range tg {
		if tr >= 0 {
			got = append(got, l[r])
			want = append(want, ceRowRef(m, f64(x[r*cols:(r+1)*cols]), int(tr)))
		}
	}
	h.close("CE with logits ±500", got, want, 1e-5)
	if ok, err := h.be.AllFinite(rows*cols, grad); err != nil || !ok {
		t.Errorf("CE with logits ±500: gradient not finite (%v)", err)
	}
}

// topKRef returns the columns of the k largest entries (NaN as −Inf),
// descending, ties by ascending column, by k plain selection passes.
func topKRef[T float32 | float64](row []T, k int) []int32 {
	key := func(v T) float64 {
		if v != v {
			return math.Inf(-1)
		}
		return float64(v)
	}
	chosen := make([]bool, len(row))
	out := make([]int32, 0, k)
	for range k {
		best := -1
		for j, v := range row {
			if !chosen[j] && (best < 0 || key(v) > key(row[best])) {
				best = j
			}
		}
		chosen[best] = true
		out = append(out, int32(best))
	}
	return out
}

func testTopK(t *testing.T, h *h) {
	type tc struct {
		name          string
		rows, cols, k int
		gen           func(n int) []float32
	}
	uni := func(n int) []float32 { return h.uniform(n, -1, 1) }
	ties := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(h.rng.IntN(5))
		}
		return x
	}
	nans := func(n int) []float32 {
		x := h.uniform(n, -1, 1)
		for i := 0; i < n; i += 3 {
			x[i] = float32(math.NaN())
		}
		return x
	}
	cases := []tc{
		{"1x1", 1, 1, 1, uni}, {"3x17", 3, 17, 3, uni}, {"17x33", 17, 33, 10, uni},
		{"5x1000", 5, 1000, 10, uni}, {"33x65", 33, 65, 1, uni}, {"2x100003", 2, 100003, 5, uni},
		{"4x64 k=64", 4, 64, 64, uni}, {"257x2049", 257, 2049, 7, uni},
		{"ties", 9, 50, 10, ties}, {"ascending", 3, 40, 10, func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(i % 40)
			}
			return x
		}},
		{"NaN", 6, 30, 10, nans},
	}
	for _, c := range cases {
		x := c.gen(c.rows * c.cols)
		vb, ib := h.zeros(c.rows*c.k), h.upIdx(make([]int32, c.rows*c.k))
		h.must(h.be.TopK(c.rows, c.cols, c.k, h.up(x), vb, ib))
		vals, idx := h.down(vb, c.rows*c.k), h.downIdx(ib, c.rows*c.k)
		for r := range c.rows {
			row := x[r*c.cols : (r+1)*c.cols]
			want := topKRef(row, c.k)
			got := idx[r*c.k : (r+1)*c.k]
			if !slices.Equal(got, want) {
				t.Fatalf("top-k %s row %d: columns %v, want %v", c.name, r, got, want)
			}
			for p, j := range want {
				if v := vals[r*c.k+p]; v != row[j] {
					t.Fatalf("top-k %s row %d: value %v, want %v", c.name, r, v, row[j])
				}
			}
		}
	}
}

func testFresh(t *testing.T, h *h) {
	for _, sh := range [][3]int{{1, 1, 1}, {3, 17, 3}, {17, 33, 10}, {5, 1000, 7}, {65, 2049, 10}, {256, 4096, 3}} {
		rows, cols, k := sh[0], sh[1], sh[2]
		for _, masked := range []bool{false, true} {
			name := fmt.Sprintf("fresh %dx%d k=%d masked=%v", rows, cols, k, masked)
			// Distinct values at least 2/cols apart in every row, so that
			// finite differences never reorder the top k.
			cos := make([]float32, rows*cols)
			// Rows r%3 = 1 lie in [−1, 0) (no gradient at all); rows r%3 = 2
			// are shifted so that the top k straddle 0.
			for r := range rows {
				for j, p := range h.rng.Perm(cols) {
					v := -1 + 2*(float64(p)+0.5)/float64(cols)
					switch r % 3 {
					case 1:
						v = (v - 1) / 2
					case 2:
						v -= 1 - float64(k)/float64(cols)
					}
					cos[r*cols+j] = float32(v)
				}
			}
			awayFrom(cos, 0, 1e-4)
			var tg []int32
			var tb kernels.IndexBuffer
			fresh := rows
			if masked {
				tg, _ = h.randTargets(rows, cols)
				fresh = 0
				for _, v := range tg {
					if v < 0 {
						fresh++
					}
				}
				tb = h.upIdx(tg)
			}
			selected := func(r int) bool { return tg == nil || tg[r] < 0 }
			scale := float32(1 / float64(max(fresh*k, 1)))
			cb := h.up(cos)
			grad, loss := h.filled(rows*cols, sentinel), h.filled(rows, sentinel)
			h.must(h.be.FreshTopKLoss(rows, cols, k, cb, tb, scale, grad, loss))
			g, l := h.down(grad, rows*cols), h.down(loss, rows)
			rowLoss := func(row []float64) float64 {
				var s float64
				for _, j := range topKRef(row, k) {
					s += max(row[j], 0)
				}
				return s
			}
			var gotL []float32
			var wantL []float64
			var coords []int
			for r := range rows {
				if !selected(r) {
					h.equal(name+" untouched loss", l[r:r+1], []float32{sentinel})
					for j := range cols {
						if g[r*cols+j] != sentinel {
							t.Fatalf("%s: grad[%d][%d] of an unselected row written", name, r, j)
						}
					}
					continue
				}
				gotL = append(gotL, l[r])
				wantL = append(wantL, rowLoss(f64(cos[r*cols:(r+1)*cols])))
				if len(gotL) > 40 {
					continue // enough rows for finite differences
				}
				// Check the selected columns and a few others.
				for _, j := range topKRef(cos[r*cols:(r+1)*cols], k) {
					coords = append(coords, r*cols+int(j))
				}
				for range 3 {
					coords = append(coords, r*cols+h.rng.IntN(cols))
				}
			}
			h.close(name+" row loss", gotL, wantL, 1e-6)
			f := func(xs []float64, i int) float64 {
				r := i / cols
				return float64(scale) * rowLoss(xs[r*cols:(r+1)*cols])
			}
			h.fdCheckAt(name+" grad", f, cos, g, coords, 1e-5)

			// In place.
			h.must(h.be.FreshTopKLoss(rows, cols, k, cb, tb, scale, cb, nil))
			inPlace := h.down(cb, rows*cols)
			for r := range rows {
				want := cos[r*cols : (r+1)*cols]
				if selected(r) {
					want = g[r*cols : (r+1)*cols]
				}
				h.equal(name+" in place", inPlace[r*cols:(r+1)*cols], want)
			}
		}
	}
}

func testGatherScatter(t *testing.T, h *h) {
	for _, sh := range [][3]int{{1, 1, 1}, {17, 33, 5}, {1000, 65, 257}, {3, 512, 9}} {
		q, d, n := sh[0], sh[1], sh[2]
		name := fmt.Sprintf("Q=%d D=%d n=%d", q, d, n)
		src := h.normal(q * d)
		idx := make([]int32, n)
		for i := range idx {
			idx[i] = int32(h.rng.IntN(q+1)) - 1 // −1 .. q−1, with repeats
		}
		want := make([]float32, n*d)
		for i, j := range idx {
			if j >= 0 {
				copy(want[i*d:(i+1)*d], src[int(j)*d:])
			}
		}
		dst := h.filled(n*d, sentinel)
		ib := h.upIdx(idx)
		h.must(h.be.GatherRows(n, d, h.up(src), q, ib, dst))
		h.equal("gather "+name, h.down(dst, n*d), want)

		rows := h.normal(n * d)
		pool := h.normal(q * d)
		wantPool := append([]float32(nil), pool...)
		for i, j := range idx { // in order: the last repeat wins
			if j >= 0 {
				copy(wantPool[int(j)*d:(int(j)+1)*d], rows[i*d:])
			}
		}
		pb := h.up(pool)
		h.must(h.be.ScatterRows(n, d, h.up(rows), ib, pb, q))
		h.equal("scatter "+name, h.down(pb, q*d), wantPool)
	}
}
