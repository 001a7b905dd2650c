package cuda

import (
	"fmt"
	"unsafe"

	"github.com/ffc-stream/ffc/kernels"
)

func convBuffers(be *Backend, op string, g kernels.ConvGeom, x, col kernels.Buffer) (*buffer, *buffer, error) {
	if err := g.Validate(); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if err := dims(g.N, g.C, g.H, g.W); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if err := dims(g.ColRows(), g.ColCols()); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	xb, err := be.f32("x", x, g.InLen())
	if err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	cb, err := be.f32("col", col, g.ColRows()*g.ColCols())
	if err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if overlap(xb, g.InLen(), cb, g.ColRows()*g.ColCols()) {
		return nil, nil, fmt.Errorf("cuda: %s: %w: x overlaps col", op, kernels.ErrShape)
	}
	return xb, cb, nil
}

func convArgs(g kernels.ConvGeom) []uint64 {
	return []uint64{i(g.N), i(g.C), i(g.H), i(g.W), i(g.K), i(g.Stride), i(g.Pad), i(g.OutH()), i(g.OutW()), i(int(g.Layout))}
}

// Im2Col lowers x to the column matrix, one thread per element.
func (be *Backend) Im2Col(g kernels.ConvGeom, x, col kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	xb, cb, err := convBuffers(be, "im2col", g, x, col)
	if err != nil {
		return err
	}
	n := int64(g.ColRows()) * int64(g.ColCols())
	return wrap("im2col", be.launch1(kIm2Col, n, append([]uint64{ptr(xb), ptr(cb)}, convArgs(g)...)...))
}

// Col2Im gathers the column matrix back into dx (overwritten), one thread
// per element of dx.
func (be *Backend) Col2Im(g kernels.ConvGeom, col, dx kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	xb, cb, err := convBuffers(be, "col2im", g, dx, col)
	if err != nil {
		return err
	}
	return wrap("col2im", be.launch1(kCol2Im, int64(g.InLen()), append([]uint64{ptr(cb), ptr(xb)}, convArgs(g)...)...))
}

// SwapAxes permutes [a][b][inner] into [b][a][inner].
func (be *Backend) SwapAxes(a, b, inner int, src, dst kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "swap axes"
	if err := dims(a, b, inner); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	n := a * b * inner
	if err := dims(n); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	sb, err := be.f32("src", src, n)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	db, err := be.f32("dst", dst, n)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if overlap(sb, n, db, n) {
		return fmt.Errorf("cuda: %s: %w: dst overlaps src", op, kernels.ErrShape)
	}
	return wrap(op, be.launch1(kSwapAxes, int64(n), ptr(sb), ptr(db), i(a), i(b), i(inner)))
}

// chanBuffers validates a ChanShape and fetches the full tensors and the
// per-channel vectors.
func (be *Backend) chanBuffers(op string, s kernels.ChanShape, full []string, fullB []kernels.Buffer, per []string, perB []kernels.Buffer) ([]*buffer, []*buffer, error) {
	if err := s.Validate(); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if err := dims(s.Outer, s.C, s.Inner); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	if err := dims(s.Len()); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
	}
	fs := make([]*buffer, len(fullB))
	for k, b := range fullB {
		v, err := be.f32(full[k], b, s.Len())
		if err != nil {
			return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
		}
		fs[k] = v
	}
	ps := make([]*buffer, len(perB))
	for k, b := range perB {
		v, err := be.f32(per[k], b, s.C)
		if err != nil {
			return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
		}
		ps[k] = v
	}
	return fs, ps, nil
}

func shapeArgs(s kernels.ChanShape) []uint64 { return []uint64{i(s.Outer), i(s.C), i(s.Inner)} }

// AddChannel adds bias[c] to x[o][c][i].
func (be *Backend) AddChannel(s kernels.ChanShape, bias, x kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	fs, ps, err := be.chanBuffers("add channel", s, []string{"x"}, []kernels.Buffer{x}, []string{"bias"}, []kernels.Buffer{bias})
	if err != nil {
		return err
	}
	return wrap("add channel", be.launch1(kAddChannel, int64(s.Len()), append([]uint64{ptr(ps[0]), ptr(fs[0])}, shapeArgs(s)...)...))
}

// ChannelSum accumulates dst[c] += Σ_{o,i} x[o][c][i], one block per
// channel.
func (be *Backend) ChannelSum(s kernels.ChanShape, x, dst kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	fs, ps, err := be.chanBuffers("channel sum", s, []string{"x"}, []kernels.Buffer{x}, []string{"dst"}, []kernels.Buffer{dst})
	if err != nil {
		return err
	}
	if overlap(fs[0], s.Len(), ps[0], s.C) {
		return fmt.Errorf("cuda: channel sum: %w: dst overlaps x", kernels.ErrShape)
	}
	return wrap("channel sum", be.launchBlocks(kChannelSum, s.C, s.Outer*s.Inner, append([]uint64{ptr(fs[0]), ptr(ps[0])}, shapeArgs(s)...)...))
}

// BatchNormTrain normalises x with the batch statistics, one block per
// channel (see kernels.Layers).
func (be *Backend) BatchNormTrain(s kernels.ChanShape, eps, momentum float32, x, gamma, beta, y, mean, invStd, runMean, runVar kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "batch norm train"
	fs, ps, err := be.chanBuffers(op, s, []string{"x", "y"}, []kernels.Buffer{x, y},
		[]string{"gamma", "beta", "mean", "invStd"}, []kernels.Buffer{gamma, beta, mean, invStd})
	if err != nil {
		return err
	}
	rm, err := be.optF32("runMean", runMean, s.C)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	rv, err := be.optF32("runVar", runVar, s.C)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if (rm == nil) != (rv == nil) {
		return fmt.Errorf("cuda: %s: %w: runMean and runVar must both be given or both nil", op, kernels.ErrBuffer)
	}
	if !(eps > 0) {
		return fmt.Errorf("cuda: %s: %w: eps = %g", op, kernels.ErrShape, eps)
	}
	args := []uint64{ptr(fs[0]), ptr(ps[0]), ptr(ps[1]), ptr(fs[1]), ptr(ps[2]), ptr(ps[3]), ptr(rm), ptr(rv), flag(rm != nil)}
	args = append(args, shapeArgs(s)...)
	args = append(args, f(eps), f(momentum))
	return wrap(op, be.launchBlocks(kBNTrain, s.C, s.Outer*s.Inner, args...))
}

// BatchNormInfer normalises x with the running statistics.
func (be *Backend) BatchNormInfer(s kernels.ChanShape, eps float32, x, gamma, beta, runMean, runVar, y kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "batch norm infer"
	fs, ps, err := be.chanBuffers(op, s, []string{"x", "y"}, []kernels.Buffer{x, y},
		[]string{"gamma", "beta", "runMean", "runVar"}, []kernels.Buffer{gamma, beta, runMean, runVar})
	if err != nil {
		return err
	}
	if !(eps > 0) {
		return fmt.Errorf("cuda: %s: %w: eps = %g", op, kernels.ErrShape, eps)
	}
	args := []uint64{ptr(fs[0]), ptr(ps[0]), ptr(ps[1]), ptr(ps[2]), ptr(ps[3]), ptr(fs[1])}
	args = append(args, shapeArgs(s)...)
	args = append(args, f(eps))
	return wrap(op, be.launch1(kBNInfer, int64(s.Len()), args...))
}

// BatchNormBackward writes dx and accumulates dgamma and dbeta, one block
// per channel.
func (be *Backend) BatchNormBackward(s kernels.ChanShape, x, gamma, mean, invStd, dy, dx, dgamma, dbeta kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "batch norm backward"
	fs, ps, err := be.chanBuffers(op, s, []string{"x", "dy", "dx"}, []kernels.Buffer{x, dy, dx},
		[]string{"gamma", "mean", "invStd", "dgamma", "dbeta"}, []kernels.Buffer{gamma, mean, invStd, dgamma, dbeta})
	if err != nil {
		return err
	}
	args := []uint64{ptr(fs[0]), ptr(ps[0]), ptr(ps[1]), ptr(ps[2]), ptr(fs[1]), ptr(fs[2]), ptr(ps[3]), ptr(ps[4])}
	return wrap(op, be.launchBlocks(kBNBackward, s.C, s.Outer*s.Inner, append(args, shapeArgs(s)...)...))
}

// PReLU sets y = x where x > 0, else slope[c]·x.
func (be *Backend) PReLU(s kernels.ChanShape, x, slope, y kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	fs, ps, err := be.chanBuffers("prelu", s, []string{"x", "y"}, []kernels.Buffer{x, y}, []string{"slope"}, []kernels.Buffer{slope})
	if err != nil {
		return err
	}
	args := []uint64{ptr(fs[0]), ptr(ps[0]), ptr(fs[1])}
	return wrap("prelu", be.launch1(kPReLU, int64(s.Len()), append(args, shapeArgs(s)...)...))
}

// PReLUBackward writes dx and accumulates dslope, one block per channel.
func (be *Backend) PReLUBackward(s kernels.ChanShape, x, slope, dy, dx, dslope kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	fs, ps, err := be.chanBuffers("prelu backward", s, []string{"x", "dy", "dx"}, []kernels.Buffer{x, dy, dx},
		[]string{"slope", "dslope"}, []kernels.Buffer{slope, dslope})
	if err != nil {
		return err
	}
	args := []uint64{ptr(fs[0]), ptr(ps[0]), ptr(fs[1]), ptr(fs[2]), ptr(ps[1])}
	return wrap("prelu backward", be.launchBlocks(kPReLUBackward, s.C, s.Outer*s.Inner, append(args, shapeArgs(s)...)...))
}

// rowBuffers validates a rows×cols shape and fetches the matrices and the
// per-row vectors.
func (be *Backend) rowBuffers(op string, rows, cols int, mat []string, matB []kernels.Buffer, per []string, perB []kernels.Buffer) ([]*buffer, []*buffer, error) {
	if err := dims(rows, cols); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	if err := dims(rows * cols); err != nil {
		return nil, nil, fmt.Errorf("cuda: %s: rows=%d cols=%d: %w", op, rows, cols, err)
	}
	ms := make([]*buffer, len(matB))
	for k, b := range matB {
		v, err := be.f32(mat[k], b, rows*cols)
		if err != nil {
			return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
		}
		ms[k] = v
	}
	ps := make([]*buffer, len(perB))
	for k, b := range perB {
		v, err := be.f32(per[k], b, rows)
		if err != nil {
			return nil, nil, fmt.Errorf("cuda: %s: %w", op, err)
		}
		ps[k] = v
	}
	return ms, ps, nil
}

// L2NormalizeRows sets y[r] = x[r]/max(‖x[r]‖, eps) and norms[r] = ‖x[r]‖,
// one block per row.
func (be *Backend) L2NormalizeRows(rows, cols int, eps float32, x, y, norms kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	ms, ps, err := be.rowBuffers("l2 normalize", rows, cols, []string{"x", "y"}, []kernels.Buffer{x, y}, []string{"norms"}, []kernels.Buffer{norms})
	if err != nil {
		return err
	}
	if !(eps > 0) {
		return fmt.Errorf("cuda: l2 normalize: %w: eps = %g", kernels.ErrShape, eps)
	}
	return wrap("l2 normalize", be.launchBlocks(kL2Norm, rows, cols, ptr(ms[0]), ptr(ms[1]), ptr(ps[0]), i(rows), i(cols), f(eps)))
}

// L2NormalizeRowsBackward writes dx from y, norms and dy, one block per
// row.
func (be *Backend) L2NormalizeRowsBackward(rows, cols int, eps float32, y, norms, dy, dx kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	ms, ps, err := be.rowBuffers("l2 normalize backward", rows, cols, []string{"y", "dy", "dx"}, []kernels.Buffer{y, dy, dx}, []string{"norms"}, []kernels.Buffer{norms})
	if err != nil {
		return err
	}
	if !(eps > 0) {
		return fmt.Errorf("cuda: l2 normalize backward: %w: eps = %g", kernels.ErrShape, eps)
	}
	return wrap("l2 normalize backward", be.launchBlocks(kL2NormBackward, rows, cols,
		ptr(ms[0]), ptr(ps[0]), ptr(ms[1]), ptr(ms[2]), i(rows), i(cols), f(eps)))
}

// checkIndex reports, as an error wrapping kernels.ErrIndex, an idx[i] ≥
// limit among n: the first the host knows of. It reads the host's copy of
// the indices, so it waits for nothing, unless one of them was written by a
// kernel (TopK) and may be out of range: then one small launch and a 4-byte
// read find the first on the device, which waits for the stream. Skipped
// with Options.SkipIndexChecks.
func (be *Backend) checkIndex(name string, idx *buffer, n, limit int, what string) error {
	if !be.check || n == 0 {
		return nil
	}
	sh, o := idx.shadow()
	onDevice := false
	for k, v := range sh.val[o : o+n] {
		if int(v) < limit {
			continue
		}
		if sh.bound == nil || !sh.bound[o+k] {
			return fmt.Errorf("%w: %s[%d] = %d, %s", kernels.ErrIndex, name, k, v, what)
		}
		onDevice = true
	}
	if !onDevice {
		return nil
	}
	if err := be.dev.launch(kCheckIndex, dim3{1, 1, 1}, dim3{be.block, 1, 1}, []uint64{ptr(idx), i(n), i(limit), ptr(be.word)}); err != nil {
		return err
	}
	var first int32
	if err := be.dev.dtoh(unsafe.Pointer(&first), be.word.ptr, 4); err != nil {
		return err
	}
	if first < 0 {
		return nil
	}
	var v int32
	if err := be.dev.dtoh(unsafe.Pointer(&v), idx.ptr+uintptr(first)*4, 4); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s[%d] = %d, %s", kernels.ErrIndex, name, first, v, what)
}

// GatherRows sets dst[i] = src[idx[i]], zeroing rows with a negative index.
func (be *Backend) GatherRows(n, cols int, src kernels.Buffer, srcRows int, idx kernels.IndexBuffer, dst kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "gather rows"
	if err := dims(n, cols, srcRows); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if err := dims(n*cols, srcRows*cols); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	sb, err := be.f32("src", src, srcRows*cols)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	db, err := be.f32("dst", dst, n*cols)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	ib, err := be.i32("idx", idx, n)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if overlap(sb, srcRows*cols, db, n*cols) {
		return fmt.Errorf("cuda: %s: %w: dst overlaps src", op, kernels.ErrShape)
	}
	if err := be.checkIndex("idx", ib, n, srcRows, fmt.Sprintf("src has %d rows", srcRows)); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	return wrap(op, be.launch1(kGatherRows, int64(n)*int64(cols), ptr(sb), ptr(ib), ptr(db), i(n), i(cols), i(srcRows)))
}

// ScatterRows sets dst[idx[i]] = src[i], the last of repeated indices
// winning, skipping negative indices: one pass marks each destination row's
// owner (the largest i naming it), a second copies the owners' rows.
func (be *Backend) ScatterRows(n, cols int, src kernels.Buffer, idx kernels.IndexBuffer, dst kernels.Buffer, dstRows int) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "scatter rows"
	if err := dims(n, cols, dstRows); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if err := dims(n*cols, dstRows*cols); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	sb, err := be.f32("src", src, n*cols)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	db, err := be.f32("dst", dst, dstRows*cols)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	ib, err := be.i32("idx", idx, n)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if overlap(sb, n*cols, db, dstRows*cols) {
		return fmt.Errorf("cuda: %s: %w: dst overlaps src", op, kernels.ErrShape)
	}
	if err := be.checkIndex("idx", ib, n, dstRows, fmt.Sprintf("dst has %d rows", dstRows)); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if n == 0 || cols == 0 || dstRows == 0 {
		return nil
	}
	if be.owner == nil || be.owner.n < dstRows {
		// Grows to the largest destination seen (the pool's 2Q rows in
		// training), so steady-state steps allocate nothing.
		if be.owner != nil {
			if err := be.release(be.owner); err != nil {
				return err
			}
		}
		if be.owner, err = be.allocBuf(dstRows); err != nil {
			be.owner = nil
			return fmt.Errorf("cuda: %s: scratch for %d rows: %w", op, dstRows, err)
		}
	}
	if err := be.dev.memsetD32(be.owner.ptr, 0xFFFFFFFF, int64(dstRows)); err != nil {
		return wrap(op, err)
	}
	if err := be.launch1(kScatterOwner, int64(n), ptr(ib), ptr(be.owner), i(n), i(dstRows)); err != nil {
		return wrap(op, err)
	}
	return wrap(op, be.launch1(kScatterRows, int64(n)*int64(cols), ptr(sb), ptr(ib), ptr(be.owner), ptr(db), i(n), i(cols), i(dstRows)))
}
