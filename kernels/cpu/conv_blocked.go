package cpu

import (
	"fmt"
	"sync"

	"github.com/ffc-stream/ffc/kernels"
)

// convBlockFloats bounds the column block one worker lowers at a time:
// 256k floats (1 MiB), so that the block is still in cache when the
// product reads it; a block holds at least one whole image.
const convBlockFloats = 1 << 18

// ConvForward sets y = W·Im2Col(g, x) (see kernels.Convolver): the images
// are split into blocks across the backend's goroutines, and each worker
// lowers one block into its own cache-sized column buffer and multiplies
// it into the block's columns of y, with single-threaded BLAS.
func (be *Backend) ConvForward(g kernels.ConvGeom, outC int, w, x, y kernels.Buffer) error {
	ws, xs, ys, err := be.convArgs("conv forward", g, outC, w, x, y)
	if err != nil || g.N == 0 {
		return err
	}
	if be.useDirect(g) {
		be.convForwardDirect(g, outC, ws, xs, ys)
		return nil
	}
	rows, hw, nb := g.ColRows(), g.OutH()*g.OutW(), be.convImages(g)
	blocks := (g.N + nb - 1) / nb
	be.parallelChunks(blocks, be.convGrain(blocks), func(_, lo, hi int) {
		col := be.scratch.get(rows * nb * hw)
		defer be.scratch.put(col)
		for blk := lo; blk < hi; blk++ {
			n0, n1 := blk*nb, min((blk+1)*nb, g.N)
			cols := (n1 - n0) * hw
			im2colImages(g, xs, col[:rows*cols], n0, n1)
			be.sgemm(false, false, outC, cols, rows, 1, ws, rows, col, cols, 0, ys[n0*hw:], g.N*hw)
		}
	})
	return nil
}

// ConvBackward adds dy·Im2Col(g, x)ᵀ to dw and, when dx is not nil, sets
// dx = Col2Im(g, Wᵀ·dy) (see kernels.Convolver), by blocks of images as
// ConvForward: each worker lowers its block again, accumulates its share
// of the weight gradient, transposed, in a buffer of its own (added to dw
// at the end) and writes the block's planes of dx.
func (be *Backend) ConvBackward(g kernels.ConvGeom, outC int, w, x, dy, dw, dx kernels.Buffer) error {
	ws, xs, dys, err := be.convArgs("conv backward", g, outC, w, x, dy)
	if err != nil {
		return err
	}
	rows, hw, nb := g.ColRows(), g.OutH()*g.OutW(), be.convImages(g)
	dws, err := f32("dw", dw, outC*rows)
	if err != nil {
		return fmt.Errorf("cpu: conv backward: %w", err)
	}
	dxs, err := optF32("dx", dx, g.InLen())
	if err != nil {
		return fmt.Errorf("cpu: conv backward: %w", err)
	}
	for _, o := range [][]float32{ws, xs, dys} {
		if overlap(dws, o) || overlap(dxs, o) {
			return fmt.Errorf("cpu: conv backward: %w: dw or dx overlaps an input", kernels.ErrShape)
		}
	}
	if overlap(dws, dxs) {
		return fmt.Errorf("cpu: conv backward: %w: dw overlaps dx", kernels.ErrShape)
	}
	if g.N == 0 {
		return nil
	}
	if be.useDirect(g) {
		be.convBackwardDirect(g, outC, ws, xs, dys, dws, dxs)
		return nil
	}
	blocks := (g.N + nb - 1) / nb
	parts := make([][]float32, be.threads)
	be.parallelChunks(blocks, be.convGrain(blocks), func(chunk, lo, hi int) {
		col := be.scratch.get(rows * nb * hw)
		defer be.scratch.put(col)
		part := be.workerPart(parts, chunk, rows*outC)
		for blk := lo; blk < hi; blk++ {
			n0, n1 := blk*nb, min((blk+1)*nb, g.N)
			be.convBackwardBlock(g, outC, ws, xs, dys, part, dxs, col, n0, n1)
		}
	})
	be.addPartsTransposed(parts, rows, outC, dws)
	return nil
}

// convBackwardBlock runs images [n0, n1) of ConvBackward with the column
// buffer col: part += col·dyᵀ (the weight gradient transposed, rows ×
// outC: OpenBLAS runs this product faster than dy·colᵀ for these shapes),
// then col = Wᵀ·dy scattered into dx.
func (be *Backend) convBackwardBlock(g kernels.ConvGeom, outC int, ws, xs, dys, part, dxs, col []float32, n0, n1 int) {
	rows, hw, K := g.ColRows(), g.OutH()*g.OutW(), g.K
	cols := (n1 - n0) * hw
	col = col[:rows*cols]
	im2colImages(g, xs, col, n0, n1)
	be.sgemm(false, true, rows, outC, cols, 1, col, cols, dys[n0*hw:], g.N*hw, 1, part, outC)
	if dxs == nil {
		return
	}
	be.sgemm(true, false, rows, cols, outC, 1, ws, rows, dys[n0*hw:], g.N*hw, 0, col, cols)
	same3 := K == 3 && g.Stride == 1 && g.Pad == 1
	for c := range g.C {
		for n := n0; n < n1; n++ {
			dst := dxs[planeBase(g, n, c):][:g.H*g.W]
			src := col[c*K*K*cols+(n-n0)*hw:]
			if same3 {
				col2imSame3(g, src, cols, dst)
			} else {
				col2imPlane(g, src, cols, dst)
			}
		}
	}
}

// convArgs checks a convolution's geometry and buffers: W outC×ColRows, x
// the input, y (or dy) outC×ColCols, and that y does not overlap x or W.
func (be *Backend) convArgs(op string, g kernels.ConvGeom, outC int, w, x, y kernels.Buffer) (ws, xs, ys []float32, err error) {
	if err := g.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if outC < 1 {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w: %d output channels", op, kernels.ErrShape, outC)
	}
	if err := gemmDims(outC, g.ColCols(), g.ColRows()); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if ws, err = f32("w", w, outC*g.ColRows()); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if xs, err = f32("x", x, g.InLen()); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if ys, err = f32("y", y, outC*g.ColCols()); err != nil {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if overlap(ys, xs) || overlap(ys, ws) {
		return nil, nil, nil, fmt.Errorf("cpu: %s: %w: y overlaps x or w", op, kernels.ErrShape)
	}
	return ws, xs, ys, nil
}

// convImages is the images per column block: as many as fit in
// be.convFloats, at least one.
func (be *Backend) convImages(g kernels.ConvGeom) int {
	per := g.ColRows() * g.OutH() * g.OutW()
	return max(1, min(g.N, be.convFloats/max(per, 1)))
}

// convGrain keeps the blocks on one goroutine when OpenBLAS threads each
// product itself (BLASThreads): its threads are not shared between calls.
func (be *Backend) convGrain(blocks int) int {
	if be.blasThreads && be.openblas {
		return blocks
	}
	return 1
}

// im2colImages lowers images [n0, n1) into col, a ColRows × (n1−n0)·hw
// matrix laid out as Im2Col's for those images alone.
func im2colImages(g kernels.ConvGeom, xs, col []float32, n0, n1 int) {
	hw := g.OutH() * g.OutW()
	cols := (n1 - n0) * hw
	for r := range g.ColRows() {
		for n := n0; n < n1; n++ {
			im2colItem(g, xs, col[r*cols+(n-n0)*hw:][:hw], r, n)
		}
	}
}

// sgemm is one single-threaded product with leading dimensions (OpenBLAS,
// or gonum without it); m, n, k > 0.
func (be *Backend) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if be.openblas {
		openblasSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	goSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// scratch is a free list of float32 buffers for the workers of
// ConvForward and ConvBackward, so that steps do not allocate them anew.
type scratch struct {
	mu   sync.Mutex
	free [][]float32
}

// get returns a buffer of at least n floats (contents undefined).
func (s *scratch) get(n int) []float32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range s.free {
		if cap(b) >= n {
			s.free = append(s.free[:i], s.free[i+1:]...)
			return b[:n]
		}
	}
	return make([]float32, n)
}

// put returns a buffer to the list, which keeps the 8 largest.
func (s *scratch) put(b []float32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, b[:cap(b)])
	if len(s.free) > 8 {
		small := 0
		for i, f := range s.free {
			if cap(f) < cap(s.free[small]) {
				small = i
			}
		}
		s.free = append(s.free[:small], s.free[small+1:]...)
	}
}
