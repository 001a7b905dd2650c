package cpu

import (
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// marginFn is kernels.Margin with its constants precomputed.
type marginFn struct {
	kind                  kernels.MarginKind
	m                     float64
	cosM, sinM, th, mmArc float64
}

func newMarginFn(m kernels.Margin) marginFn {
	mm := float64(m.M)
	return marginFn{
		kind:  m.Kind,
		m:     mm,
		cosM:  math.Cos(mm),
		sinM:  math.Sin(mm),
		th:    math.Cos(math.Pi - mm),
		mmArc: math.Sin(math.Pi-mm) * mm,
	}
}

// target is kernels.Margin.Target without recomputing the constants.
func (f marginFn) target(c float64) (phi, dphi float64) {
	switch f.kind {
	case kernels.CosFace:
		return c - f.m, 1
	case kernels.ArcFace:
		c = max(-1, min(1, c))
		if c > f.th {
			sin := math.Sqrt(max(0, 1-c*c))
			return c*f.cosM - sin*f.sinM, f.cosM + c*f.sinM/max(sin, kernels.ArcSinFloor)
		}
		return c - f.mmArc, 1
	}
	return c, 1
}

// lossBuffers validates the common arguments of the row losses.
func lossBuffers(op string, rows, cols int, cos kernels.Buffer, targets kernels.IndexBuffer, needTargets bool, grad, rowLoss kernels.Buffer) (cs, gs, ls []float32, ts []int32, err error) {
	if err = dims(rows, cols); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cpu: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	if cs, err = f32("cos", cos, rows*cols); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if gs, err = optF32("grad", grad, rows*cols); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if gs != nil && !same(gs, cs) && overlap(gs, cs) {
		return nil, nil, nil, nil, fmt.Errorf("cpu: %s: %w: grad partially overlaps cos", op, kernels.ErrShape)
	}
	if ls, err = optF32("rowLoss", rowLoss, rows); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if ls != nil && (overlap(ls, cs) || overlap(ls, gs)) {
		return nil, nil, nil, nil, fmt.Errorf("cpu: %s: %w: rowLoss overlaps cos or grad", op, kernels.ErrShape)
	}
	if needTargets {
		ts, err = i32("targets", targets, rows)
	} else {
		ts, err = optI32("targets", targets, rows)
	}
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	return cs, gs, ls, ts, nil
}

// MarginSoftmaxCE is the fused margin softmax cross-entropy (see
// kernels.Losses). Per row it reads the cosines twice (max, then
// exponentials into grad) and rescales grad once: one exponential per
// element and no memory beyond the row.
func (be *Backend) MarginSoftmaxCE(rows, cols int, m kernels.Margin, cos kernels.Buffer, targets kernels.IndexBuffer, gradScale float32, grad, rowLoss kernels.Buffer) error {
	const op = "margin softmax ce"
	if err := m.Validate(); err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	cs, gs, ls, ts, err := lossBuffers(op, rows, cols, cos, targets, true, grad, rowLoss)
	if err != nil {
		return err
	}
	for r, t := range ts {
		if int(t) >= cols {
			return fmt.Errorf("cpu: %s: %w: targets[%d] = %d, %d columns", op, kernels.ErrIndex, r, t, cols)
		}
	}
	mf := newMarginFn(m)
	s := float64(m.S)
	s32 := m.S
	gsc := float64(gradScale)
	be.parallel(rows, grainFor(8*cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			t := int(ts[r])
			if t < 0 {
				continue
			}
			row := cs[r*cols:][:cols]
			var g []float32
			if gs != nil {
				g = gs[r*cols:][:cols]
			}
			phi, dphi := mf.target(float64(row[t]))
			shift := s * max(float64(rowMax(row)), phi)
			// Σ over j ≠ t directly: subtracting the raw target's term from
			// the whole row's sum would cancel most digits of the rest when
			// the target dominates (few columns, large S).
			var sum float64
			if g != nil {
				sum = expScaleStore(row[:t], g[:t], s32, float32(shift)) + expScaleStore(row[t+1:], g[t+1:], s32, float32(shift))
			} else {
				sum = expScaleSum(row[:t], s32, float32(shift)) + expScaleSum(row[t+1:], s32, float32(shift))
			}
			zt := s*phi - shift
			et := math.Exp(zt)
			sum += et
			if ls != nil {
				ls[r] = float32(math.Log(sum) - zt)
			}
			if g != nil {
				f := float32(gsc * s / sum)
				for j := range g {
					g[j] *= f
				}
				g[t] = float32(gsc * s * (et/sum - 1) * dphi)
			}
		}
	})
	return nil
}

// rowMax returns the largest entry of a non-empty row (NaN ignored unless
// first), with four independent running maxima.
func rowMax(x []float32) float32 {
	m0 := x[0]
	m1, m2, m3 := m0, m0, m0
	i := 0
	for ; i+4 <= len(x); i += 4 {
		b := x[i : i+4 : i+4]
		if b[0] > m0 {
			m0 = b[0]
		}
		if b[1] > m1 {
			m1 = b[1]
		}
		if b[2] > m2 {
			m2 = b[2]
		}
		if b[3] > m3 {
			m3 = b[3]
		}
	}
	for ; i < len(x); i++ {
		if x[i] > m0 {
			m0 = x[i]
		}
	}
	for _, m := range [3]float32{m1, m2, m3} {
		if m > m0 {
			m0 = m
		}
	}
	return m0
}

// expScaleStore sets g[j] = e^(s·x[j] − shift) and returns Σ g[j] in
// float64, for arguments ≤ 88 (the softmax shift makes them ≤ 0). The
// exponential is exp32 written out (the compiler does not inline it);
// TestExpLoops checks that the loops agree with exp32 bit for bit.
func expScaleStore(xs, g []float32, s, shift float32) float64 {
	g = g[:len(xs)]
	var a0, a1 float64
	for i, v := range xs {
		x := s*v - shift
		t := x*1.44269504088896341 + 12582912
		fn := t - 12582912
		r := x - fn*0.693359375 - fn*-2.12194440e-4
		p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
		e := (p*(r*r) + r + 1) * math.Float32frombits(uint32(int32(math.Float32bits(t))-0x4B400000+127)<<23)
		if x < -87.33 {
			e = 0
		}
		g[i] = e
		if i&1 == 0 {
			a0 += float64(e)
		} else {
			a1 += float64(e)
		}
	}
	return a0 + a1
}

// expScaleSum returns Σ e^(s·x[j] − shift) like expScaleStore.
func expScaleSum(xs []float32, s, shift float32) float64 {
	var a0, a1 float64
	for i, v := range xs {
		x := s*v - shift
		t := x*1.44269504088896341 + 12582912
		fn := t - 12582912
		r := x - fn*0.693359375 - fn*-2.12194440e-4
		p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
		e := (p*(r*r) + r + 1) * math.Float32frombits(uint32(int32(math.Float32bits(t))-0x4B400000+127)<<23)
		if x < -87.33 {
			e = 0
		}
		if i&1 == 0 {
			a0 += float64(e)
		} else {
			a1 += float64(e)
		}
	}
	return a0 + a1
}

// topKRow finds the k largest entries of row (NaN ranking as −Inf) in
// descending order, ties by ascending column: keys get the values (NaN as
// −Inf) and idx the columns. After the first k entries, blocks of 8 are
// skipped with 8 comparisons against the current k-th value.
func topKRow(row []float32, k int, keys []float32, idx []int32) {
	keys, idx = keys[:k], idx[:k]
	negInf := float32(math.Inf(-1))
	for j, v := range row[:k] {
		if v != v {
			v = negInf
		}
		p := j
		for p > 0 && v > keys[p-1] {
			keys[p], idx[p] = keys[p-1], idx[p-1]
			p--
		}
		keys[p], idx[p] = v, int32(j)
	}
	thr := keys[k-1]
	insert := func(v float32, j int) {
		p := k - 1
		for p > 0 && v > keys[p-1] {
			keys[p], idx[p] = keys[p-1], idx[p-1]
			p--
		}
		keys[p], idx[p] = v, int32(j)
		thr = keys[k-1]
	}
	j := k
	for ; j+8 <= len(row); j += 8 {
		b := row[j : j+8 : j+8]
		if b[0] > thr || b[1] > thr || b[2] > thr || b[3] > thr || b[4] > thr || b[5] > thr || b[6] > thr || b[7] > thr {
			for q, v := range b {
				if v > thr {
					insert(v, j+q)
				}
			}
		}
	}
	for ; j < len(row); j++ {
		if v := row[j]; v > thr {
			insert(v, j)
		}
	}
}

func checkK(op string, cols, k int) error {
	if k < 1 || k > cols || k > kernels.MaxTopK {
		return fmt.Errorf("cpu: %s: %w: k = %d, need 1 ≤ k ≤ min(cols = %d, %d)", op, kernels.ErrShape, k, cols, kernels.MaxTopK)
	}
	return nil
}

// TopK writes the k largest values of each row and their columns.
func (be *Backend) TopK(rows, cols, k int, x kernels.Buffer, vals kernels.Buffer, idx kernels.IndexBuffer) error {
	const op = "top-k"
	if err := dims(rows, cols); err != nil {
		return fmt.Errorf("cpu: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	if err := checkK(op, cols, k); err != nil {
		return err
	}
	xs, err := f32("x", x, rows*cols)
	if err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	vs, err := f32("vals", vals, rows*k)
	if err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	is, err := i32("idx", idx, rows*k)
	if err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	if overlap(vs, xs) {
		return fmt.Errorf("cpu: %s: %w: vals overlaps x", op, kernels.ErrShape)
	}
	be.parallel(rows, grainFor(cols), func(lo, hi int) {
		var keys [kernels.MaxTopK]float32
		for r := lo; r < hi; r++ {
			row := xs[r*cols:][:cols]
			ir := is[r*k:][:k]
			topKRow(row, k, keys[:k], ir)
			vr := vs[r*k:][:k]
			for p, j := range ir {
				vr[p] = row[j]
			}
		}
	})
	return nil
}

// FreshTopKLoss is the fresh-ID loss Σ max(topK(cos), 0) per selected row
// and its gradient (see kernels.Losses).
func (be *Backend) FreshTopKLoss(rows, cols, k int, cos kernels.Buffer, targets kernels.IndexBuffer, gradScale float32, grad, rowLoss kernels.Buffer) error {
	const op = "fresh top-k loss"
	cs, gs, ls, ts, err := lossBuffers(op, rows, cols, cos, targets, false, grad, rowLoss)
	if err != nil {
		return err
	}
	if err := checkK(op, cols, k); err != nil {
		return err
	}
	be.parallel(rows, grainFor(cols), func(lo, hi int) {
		var keys [kernels.MaxTopK]float32
		var idx [kernels.MaxTopK]int32
		for r := lo; r < hi; r++ {
			if ts != nil && ts[r] >= 0 {
				continue
			}
			row := cs[r*cols:][:cols]
			topKRow(row, k, keys[:k], idx[:k])
			var loss float64
			for _, v := range keys[:k] {
				if v > 0 {
					loss += float64(v)
				}
			}
			if ls != nil {
				ls[r] = float32(loss)
			}
			if gs != nil {
				g := gs[r*cols:][:cols]
				clear(g)
				for p, v := range keys[:k] {
					if v > 0 {
						g[idx[p]] = gradScale
					}
				}
			}
		}
	})
	return nil
}
