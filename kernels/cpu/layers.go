package cpu

import (
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// BatchNormTrain normalises x with the batch statistics (see
// kernels.Layers).
func (be *Backend) BatchNormTrain(s kernels.ChanShape, eps, momentum float32, x, gamma, beta, y, mean, invStd, runMean, runVar kernels.Buffer) error {
	const op = "batch norm train"
	fs, ps, err := chanBuffers(op, s, []string{"x", "y"}, []kernels.Buffer{x, y},
		[]string{"gamma", "beta", "mean", "invStd"}, []kernels.Buffer{gamma, beta, mean, invStd})
	if err != nil {
		return err
	}
	rm, err := optF32("runMean", runMean, s.C)
	if err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	rv, err := optF32("runVar", runVar, s.C)
	if err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	if (rm == nil) != (rv == nil) {
		return fmt.Errorf("cpu: %s: %w: runMean and runVar must both be given or both nil", op, kernels.ErrBuffer)
	}
	if !(eps > 0) {
		return fmt.Errorf("cpu: %s: %w: eps = %g", op, kernels.ErrShape, eps)
	}
	xs, ys := fs[0], fs[1]
	gs, bs, ms, is := ps[0], ps[1], ps[2], ps[3]
	m := s.Outer * s.Inner
	be.parallel(s.C, grainFor(3*m), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var sum float64
			for o := range s.Outer {
				sum += be.sum(xs[(o*s.C+c)*s.Inner:][:s.Inner])
			}
			mu := 0.0
			if m > 0 {
				mu = sum / float64(m)
			}
			var ss float64
			for o := range s.Outer {
				ss += be.sqDev(xs[(o*s.C+c)*s.Inner:][:s.Inner], mu)
			}
			variance := 0.0
			if m > 0 {
				variance = ss / float64(m)
			}
			inv := 1 / math.Sqrt(variance+float64(eps))
			a := float64(gs[c]) * inv
			b := float64(bs[c]) - mu*a
			a32, b32 := float32(a), float32(b)
			for o := range s.Outer {
				off := (o*s.C + c) * s.Inner
				be.affine(xs[off:][:s.Inner], a32, b32, ys[off:][:s.Inner])
			}
			ms[c], is[c] = float32(mu), float32(inv)
			if rm != nil && m > 0 {
				unbiased := variance
				if m > 1 {
					unbiased = ss / float64(m-1)
				}
				mo := float64(momentum)
				rm[c] = float32((1-mo)*float64(rm[c]) + mo*mu)
				rv[c] = float32((1-mo)*float64(rv[c]) + mo*unbiased)
			}
		}
	})
	return nil
}

// BatchNormInfer normalises x with the running statistics.
func (be *Backend) BatchNormInfer(s kernels.ChanShape, eps float32, x, gamma, beta, runMean, runVar, y kernels.Buffer) error {
	const op = "batch norm infer"
	fs, ps, err := chanBuffers(op, s, []string{"x", "y"}, []kernels.Buffer{x, y},
		[]string{"gamma", "beta", "runMean", "runVar"}, []kernels.Buffer{gamma, beta, runMean, runVar})
	if err != nil {
		return err
	}
	if !(eps > 0) {
		return fmt.Errorf("cpu: %s: %w: eps = %g", op, kernels.ErrShape, eps)
	}
	xs, ys := fs[0], fs[1]
	gs, bs, rm, rv := ps[0], ps[1], ps[2], ps[3]
	be.parallel(s.Outer*s.C, grainFor(s.Inner), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			c := p % s.C
			a := float64(gs[c]) / math.Sqrt(float64(rv[c])+float64(eps))
			b := float64(bs[c]) - float64(rm[c])*a
			be.affine(xs[p*s.Inner:][:s.Inner], float32(a), float32(b), ys[p*s.Inner:][:s.Inner])
		}
	})
	return nil
}

// BatchNormBackward writes dx and accumulates dgamma and dbeta.
func (be *Backend) BatchNormBackward(s kernels.ChanShape, x, gamma, mean, invStd, dy, dx, dgamma, dbeta kernels.Buffer) error {
	const op = "batch norm backward"
	fs, ps, err := chanBuffers(op, s, []string{"x", "dy", "dx"}, []kernels.Buffer{x, dy, dx},
		[]string{"gamma", "mean", "invStd", "dgamma", "dbeta"}, []kernels.Buffer{gamma, mean, invStd, dgamma, dbeta})
	if err != nil {
		return err
	}
	xs, dys, dxs := fs[0], fs[1], fs[2]
	gs, ms, is, dgs, dbs := ps[0], ps[1], ps[2], ps[3], ps[4]
	m := s.Outer * s.Inner
	be.parallel(s.C, grainFor(3*m), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			mu, inv := float64(ms[c]), float64(is[c])
			var sdy, sdyx float64
			for o := range s.Outer {
				off := (o*s.C + c) * s.Inner
				a, b := be.gradDev(dys[off:][:s.Inner], xs[off:][:s.Inner], mu)
				sdy += a
				sdyx += b
			}
			sdyx *= inv
			dbs[c] += float32(sdy)
			dgs[c] += float32(sdyx)
			if m == 0 {
				continue
			}
			// dx = γ·inv·(dy − sdy/M − x̂·sdyx/M) = k·dy + kx·x + k0
			k := float64(gs[c]) * inv
			kx := -k * sdyx / float64(m) * inv
			k0 := -k*sdy/float64(m) - kx*mu
			k32, kx32, k032 := float32(k), float32(kx), float32(k0)
			for o := range s.Outer {
				off := (o*s.C + c) * s.Inner
				be.affine2(dys[off:][:s.Inner], xs[off:][:s.Inner], k32, kx32, k032, dxs[off:][:s.Inner])
			}
		}
	})
	return nil
}

// PReLU sets y = x where x > 0, else slope[c]·x.
func (be *Backend) PReLU(s kernels.ChanShape, x, slope, y kernels.Buffer) error {
	fs, ps, err := chanBuffers("prelu", s, []string{"x", "y"}, []kernels.Buffer{x, y}, []string{"slope"}, []kernels.Buffer{slope})
	if err != nil {
		return err
	}
	xs, ys, as := fs[0], fs[1], ps[0]
	be.parallel(s.Outer*s.C, grainFor(s.Inner), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			be.prelu(xs[p*s.Inner:][:s.Inner], as[p%s.C], ys[p*s.Inner:][:s.Inner])
		}
	})
	return nil
}

// PReLUBackward writes dx and accumulates dslope.
func (be *Backend) PReLUBackward(s kernels.ChanShape, x, slope, dy, dx, dslope kernels.Buffer) error {
	fs, ps, err := chanBuffers("prelu backward", s, []string{"x", "dy", "dx"}, []kernels.Buffer{x, dy, dx},
		[]string{"slope", "dslope"}, []kernels.Buffer{slope, dslope})
	if err != nil {
		return err
	}
	xs, dys, dxs := fs[0], fs[1], fs[2]
	as, das := ps[0], ps[1]
	be.parallel(s.C, grainFor(s.Outer*s.Inner), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var acc float64
			for o := range s.Outer {
				off := (o*s.C + c) * s.Inner
				acc += be.preluBackward(xs[off:][:s.Inner], dys[off:][:s.Inner], as[c], dxs[off:][:s.Inner])
			}
			das[c] += float32(acc)
		}
	})
	return nil
}

// rowBuffers validates a rows×cols shape and fetches the matrices and the
// per-row vectors.
func rowBuffers(op string, rows, cols int, mat []string, matB []kernels.Buffer, per []string, perB []kernels.Buffer) ([][]float32, [][]float32, error) {
	if err := dims(rows, cols); err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	ms := make([][]float32, len(matB))
	for i, b := range matB {
		v, err := f32(mat[i], b, rows*cols)
		if err != nil {
			return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
		}
		ms[i] = v
	}
	ps := make([][]float32, len(perB))
	for i, b := range perB {
		v, err := f32(per[i], b, rows)
		if err != nil {
			return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
		}
		ps[i] = v
	}
	return ms, ps, nil
}

// L2NormalizeRows sets y[r] = x[r]/max(‖x[r]‖, eps) and norms[r] = ‖x[r]‖.
func (be *Backend) L2NormalizeRows(rows, cols int, eps float32, x, y, norms kernels.Buffer) error {
	ms, ps, err := rowBuffers("l2 normalize", rows, cols, []string{"x", "y"}, []kernels.Buffer{x, y}, []string{"norms"}, []kernels.Buffer{norms})
	if err != nil {
		return err
	}
	if !(eps > 0) {
		return fmt.Errorf("cpu: l2 normalize: %w: eps = %g", kernels.ErrShape, eps)
	}
	xs, ys, ns := ms[0], ms[1], ps[0]
	be.parallel(rows, grainFor(2*cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := xs[r*cols:][:cols], ys[r*cols:][:cols]
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			nrm := math.Sqrt(ss)
			ns[r] = float32(nrm)
			inv := float32(1 / max(nrm, float64(eps)))
			for i, v := range xr {
				yr[i] = v * inv
			}
		}
	})
	return nil
}

// L2NormalizeRowsBackward writes dx from y, norms and dy.
func (be *Backend) L2NormalizeRowsBackward(rows, cols int, eps float32, y, norms, dy, dx kernels.Buffer) error {
	ms, ps, err := rowBuffers("l2 normalize backward", rows, cols, []string{"y", "dy", "dx"}, []kernels.Buffer{y, dy, dx}, []string{"norms"}, []kernels.Buffer{norms})
	if err != nil {
		return err
	}
	if !(eps > 0) {
		return fmt.Errorf("cpu: l2 normalize backward: %w: eps = %g", kernels.ErrShape, eps)
	}
	ys, dys, dxs, ns := ms[0], ms[1], ms[2], ps[0]
	be.parallel(rows, grainFor(2*cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			yr, dyr, dxr := ys[r*cols:][:cols], dys[r*cols:][:cols], dxs[r*cols:][:cols]
			nrm := float64(ns[r])
			if nrm <= float64(eps) {
				inv := 1 / eps
				for i, g := range dyr {
					dxr[i] = g * inv
				}
				continue
			}
			var dot float64
			for i, v := range yr {
				dot += float64(v) * float64(dyr[i])
			}
			inv := float32(1 / nrm)
			d := float32(dot)
			for i, v := range yr {
				dxr[i] = (dyr[i] - v*d) * inv
			}
		}
	})
	return nil
}

// rowArgs checks the arguments of GatherRows (scatter false) and
// ScatterRows (scatter true): n rows of cols elements move between src and
// dst, whose table side (src for gather, dst for scatter) has rows rows, and
// every idx[i] must be below rows. It returns the buffers' slices.
func rowArgs(op string, n, cols, rows int, scatter bool, src kernels.Buffer, idx kernels.IndexBuffer, dst kernels.Buffer) (ss, ds []float32, is []int32, err error) {
	if err = dims(n, cols, rows); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	srcLen, dstLen, table := rows*cols, n*cols, "src"
	if scatter {
		srcLen, dstLen, table = n*cols, rows*cols, "dst"
	}
	if ss, err = f32("src", src, srcLen); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if ds, err = f32("dst", dst, dstLen); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if is, err = i32("idx", idx, n); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if overlap(ss, ds) {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w: dst overlaps src", op, kernels.ErrShape)
	}
	for i, j := range is {
		if int(j) >= rows {
			return nil, nil, nil, fmt.Errorf("cpu: %s: %w: idx[%d] = %d, %s has %d rows", op, kernels.ErrIndex, i, j, table, rows)
		}
	}
	return ss, ds, is, nil
}

// GatherRows sets dst[i] = src[idx[i]], zeroing rows with a negative index.
func (be *Backend) GatherRows(n, cols int, src kernels.Buffer, srcRows int, idx kernels.IndexBuffer, dst kernels.Buffer) error {
	ss, ds, is, err := rowArgs("gather rows", n, cols, srcRows, false, src, idx, dst)
	if err != nil {
		return err
	}
	be.parallel(n, grainFor(cols), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out := ds[i*cols:][:cols]
			if j := int(is[i]); j >= 0 {
				copy(out, ss[j*cols:][:cols])
			} else {
				clear(out)
			}
		}
	})
	return nil
}

// ScatterRows sets dst[idx[i]] = src[i] in increasing i (the last of
// repeated indices wins), skipping negative indices. It runs on one
// goroutine: rows are few (a batch) and repeats must be ordered.
func (be *Backend) ScatterRows(n, cols int, src kernels.Buffer, idx kernels.IndexBuffer, dst kernels.Buffer, dstRows int) error {
	ss, ds, is, err := rowArgs("scatter rows", n, cols, dstRows, true, src, idx, dst)
	if err != nil {
		return err
	}
	for i, j := range is {
		if j >= 0 {
			copy(ds[int(j)*cols:][:cols], ss[i*cols:][:cols])
		}
	}
	return nil
}
