package centers

import (
	"errors"
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// ErrNonFinite reports a NaN or Inf in a loss or gradient: the step must be
// abandoned and the last good state kept.
var ErrNonFinite = errors.New("non-finite value")

// FFCOptions configures the FFC loss head.
type FFCOptions struct {
	// Margin of the softmax over pool slots for IDs in the pool (e.g.
	// CosFace S=32 M=0.4, or ArcFace S=32 M=0.5).
	Margin kernels.Margin
	// TopK for fresh IDs; 0 picks K = min(max(int(0.0002·Q), 3), 10) as
	// the reference does.
	TopK int
	// MaxBatch bounds the probe rows of one Loss call.
	MaxBatch int
	// ChunkRows is the number of probe rows whose Q logits are held at
	// once (0: DefaultChunkRows). The head's scratch is (ChunkRows +
	// SecondSetRows)·Q floats instead of MaxBatch·Q.
	ChunkRows int
}

// chunkFloats bounds a logit block of the default chunk: 8M floats (32
// MiB). Every chunk streams the whole pool through two products, so fewer,
// larger chunks are faster; at Q = 100k and B = 256 this makes 4 chunks of
// 64 rows (25 MiB), where the old bound of 4M floats made 7 of ≤ 41 rows
// and a head step 1.3× slower (BenchmarkFFCLoss).
const chunkFloats = 8 << 20

// secondSetRows is the rows of the second logit set held at once: its
// block is memory traffic only (copy, loss, add), so it can be small.
const secondSetRows = 8

// DefaultChunkRows is the chunk of probe rows for a pool of q slots and
// at most maxBatch rows: the fewest chunks of at most max(32, 8M/q) rows
// (their logits fit in 8M floats unless q > 256k), with the rows spread
// evenly over them.
func DefaultChunkRows(q, maxBatch int) int {
	if maxBatch < 1 {
		return 0
	}
	most := min(maxBatch, max(32, chunkFloats/max(q, 1)))
	chunks := (maxBatch + most - 1) / most
	return (maxBatch + chunks - 1) / chunks
}

// FFCMemory is the bytes of the FFC head and its pool: pool[2][Q][D], the
// pool's scratch (three maxInsert×D blocks), the head's logit blocks and
// its refreshed-column buffers for at most maxBatch probe rows.
func FFCMemory(q, d, maxBatch, maxInsert int) int64 {
	qq, dd, b, ins := int64(q), int64(d), int64(maxBatch), int64(maxInsert)
	chunk := int64(DefaultChunkRows(q, maxBatch))
	sub := min(chunk, secondSetRows)
	floats := 2*qq*dd + 3*ins*dd + (chunk+sub)*qq + 2*b*ins + 3*b
	return 4*floats + 4*(sub*ins+b) + 80*qq
}

// DefaultTopK is the reference's K for a pool of q slots.
func DefaultTopK(q int) int { return min(max(int(0.0002*float64(q)), 3), 10) }

// FFCLoss is the result of one Loss call.
type FFCLoss struct {
	// Total = CE1 + Fresh1 + CE2 + Fresh2 (0 for a part with no rows).
	Total float64
	// CE1, CE2: mean margin cross-entropy over the probe rows whose label is
	// in the pool, against the first and second logit sets.
	CE1, CE2 float64
	// Fresh1, Fresh2: mean(clip(topK(cos), 0)) over the fresh rows.
	Fresh1, Fresh2 float64
	// Held and Fresh count the probe rows of each kind.
	Held, Fresh int
	// Refreshed is the number of refreshed slots (columns where the two
	// logit sets differ).
	Refreshed int
}

// FFC computes the FFC loss of probe features against a Pool, and its
// gradient with respect to the probe features only (the pool is a
// constant).
//
// For probe features p (n×D, L2-normalised) with labels, slot = view(label)
// (−1 when fresh), it forms two logit sets, cos1 = p·pool[0]ᵀ and
// cos2 = p·Wᵀ with W[s] = pool[1][s] for slots refreshed in this pass and
// pool[0][s] otherwise, and sums over both: the margin softmax
// cross-entropy over all Q slots for held rows (mean over those rows) and
// mean(clip(topK(cos), 0)) over the K most similar slots for fresh rows
// (mean over rows·K).
//
// The two sets differ only in the R ≤ MaxBatch refreshed columns, so the
// head computes the n×Q products once: cos2 is cos1 with those R columns
// replaced by p·pool[1][R]ᵀ, and
//
//	dp = (dcos1 + dcos2)·pool[0] + dcos2[:, R]·(pool[1][R] − pool[0][R]).
//
// That is two n×Q×D products a step instead of four. The rows go through in
// chunks of ChunkRows, so no n×Q matrix is ever held.
type FFC struct {
	be     kernels.Backend
	pool   *Pool
	margin kernels.Margin
	k      int
	max    int
	chunk  int // probe rows per logit block
	sub    int // rows per second-set block

	cos      kernels.Buffer // chunk·Q logits, overwritten by dcos1 + dcos2
	alt      kernels.Buffer // sub·Q second-set logits, overwritten by dcos2
	rowLoss  kernels.Buffer // max: set 1
	rowLoss2 kernels.Buffer // max: set 2
	c2       kernels.Buffer // max·R: p·pool[1][R]ᵀ, then dcos2[:, R]
	targets  kernels.IndexBuffer
	flat     kernels.IndexBuffer // sub·R: i·Q + R[j], the refreshed entries of a second-set block
	tHost    []int32
	flatHost []int32
	lossH    []float32
}

// NewFFC allocates the head's scratch on the pool's backend.
func NewFFC(be kernels.Backend, pool *Pool, opts FFCOptions) (*FFC, error) {
	if err := opts.Margin.Validate(); err != nil {
		return nil, fmt.Errorf("ffc head: %w", err)
	}
	if opts.MaxBatch <= 0 {
		return nil, fmt.Errorf("ffc head: max batch %d must be positive", opts.MaxBatch)
	}
	if opts.TopK == 0 {
		opts.TopK = DefaultTopK(pool.Slots())
	}
	if opts.TopK < 1 || opts.TopK > min(pool.Slots(), kernels.MaxTopK) {
		return nil, fmt.Errorf("ffc head: top-K %d must be in [1, %d]", opts.TopK, min(pool.Slots(), kernels.MaxTopK))
	}
	if opts.ChunkRows < 0 {
		return nil, fmt.Errorf("ffc head: chunk rows %d must not be negative", opts.ChunkRows)
	}
	if opts.ChunkRows == 0 {
		opts.ChunkRows = DefaultChunkRows(pool.Slots(), opts.MaxBatch)
	}
	q, ins := pool.Slots(), pool.maxBatch
	h := &FFC{be: be, pool: pool, margin: opts.Margin, k: opts.TopK, max: opts.MaxBatch,
		chunk: min(opts.ChunkRows, opts.MaxBatch),
		tHost: make([]int32, opts.MaxBatch), lossH: make([]float32, opts.MaxBatch)}
	h.sub = min(h.chunk, secondSetRows)
	h.flatHost = make([]int32, h.sub*ins)
	for _, a := range []struct {
		dst *kernels.Buffer
		n   int
	}{{&h.cos, h.chunk * q}, {&h.alt, h.sub * q}, {&h.rowLoss, h.max}, {&h.rowLoss2, h.max}, {&h.c2, h.max * ins}} {
		var err error
		if *a.dst, err = be.Alloc(a.n); err != nil {
			return nil, errors.Join(fmt.Errorf("ffc head: allocate %d floats: %w", a.n, err), h.Close())
		}
	}
	var err error
	if h.targets, err = be.AllocIndex(opts.MaxBatch); err != nil {
		return nil, errors.Join(fmt.Errorf("ffc head: %w", err), h.Close())
	}
	if h.flat, err = be.AllocIndex(h.sub * ins); err != nil {
		return nil, errors.Join(fmt.Errorf("ffc head: %w", err), h.Close())
	}
	return h, nil
}

// Close frees the scratch buffers.
func (h *FFC) Close() error {
	var errs []error
	for _, b := range []kernels.Buffer{h.cos, h.alt, h.rowLoss, h.rowLoss2, h.c2} {
		if b != nil {
			errs = append(errs, h.be.Free(b))
		}
	}
	for _, b := range []kernels.IndexBuffer{h.targets, h.flat} {
		if b != nil {
			errs = append(errs, h.be.FreeIndex(b))
		}
	}
	return errors.Join(errs...)
}

// TopK is the K used for fresh IDs.
func (h *FFC) TopK() int { return h.k }

// ChunkRows is the number of probe rows whose logits are held at once.
func (h *FFC) ChunkRows() int { return h.chunk }

// Loss computes the loss of the n = len(labels) probe features p (n×D)
// and writes its gradient with respect to p into dp (n×D, overwritten).
// A non-finite loss is reported as ErrNonFinite, with dp undefined.
func (h *FFC) Loss(p kernels.Buffer, labels []int64, dp kernels.Buffer) (FFCLoss, error) {
	var out FFCLoss
	n := len(labels)
	if n == 0 {
		return out, errors.New("ffc head: empty batch")
	}
	if n > h.max {
		return out, fmt.Errorf("ffc head: batch %d exceeds max batch %d", n, h.max)
	}
	q, d := h.pool.Slots(), h.pool.Dim()
	// A NaN feature would give NaN cosines that top-K and clipping can
	// turn into a finite loss: reject it here.
	if ok, err := h.be.AllFinite(n*d, p); err != nil {
		return out, fmt.Errorf("ffc head: %w", err)
	} else if !ok {
		return out, fmt.Errorf("ffc head: probe features contain NaN or Inf: %w", ErrNonFinite)
	}
	out.Held = h.pool.Targets(labels, h.tHost[:n])
	out.Fresh = n - out.Held
	if err := h.be.UploadIndex(h.targets, h.tHost[:n]); err != nil {
		return out, fmt.Errorf("ffc head: %w", err)
	}
	pool0, err := h.be.View(h.pool.Rows(), 0, q*d)
	if err != nil {
		return out, fmt.Errorf("ffc head: %w", err)
	}
	r, slots, rows0, rows1, err := h.pool.GatherRefreshed()
	if err != nil {
		return out, fmt.Errorf("ffc head: %w", err)
	}
	out.Refreshed = r
	if r > 0 {
		if err := h.refreshedColumns(p, n, slots, rows0, rows1); err != nil {
			return out, err
		}
	}
	for c0 := 0; c0 < n; c0 += h.chunk {
		if err := h.chunkPass(p, dp, pool0, c0, min(h.chunk, n-c0), out); err != nil {
			return out, err
		}
	}
	if r > 0 {
		// The refreshed columns of the second set weigh pool[1][R], not
		// pool[0][R]: rows1 holds their difference now.
		c2, err := h.be.View(h.c2, 0, n*r)
		if err != nil {
			return out, fmt.Errorf("ffc head: %w", err)
		}
		if err := h.be.Gemm(false, false, n, d, r, 1, c2, rows1, 1, dp); err != nil {
			return out, fmt.Errorf("ffc head: refreshed columns' gradient: %w", err)
		}
	}
	if out.CE1, out.Fresh1, err = h.sumLoss(h.rowLoss, n, out); err != nil {
		return out, err
	}
	out.CE2, out.Fresh2 = out.CE1, out.Fresh1
	if r > 0 {
		if out.CE2, out.Fresh2, err = h.sumLoss(h.rowLoss2, n, out); err != nil {
			return out, err
		}
	}
	out.Total = out.CE1 + out.Fresh1 + out.CE2 + out.Fresh2
	if math.IsNaN(out.Total) || math.IsInf(out.Total, 0) {
		return out, fmt.Errorf("ffc head: loss %v: %w", out.Total, ErrNonFinite)
	}
	return out, nil
}

// refreshedColumns prepares the second logit set's R refreshed columns:
// c2 = p·pool[1][R]ᵀ (n×R), the flat indices i·Q + R[j] of a second-set
// block, and rows1 −= rows0 for the gradient's correction.
func (h *FFC) refreshedColumns(p kernels.Buffer, n int, slots kernels.IndexBuffer, rows0, rows1 kernels.Buffer) error {
	q, d := h.pool.Slots(), h.pool.Dim()
	r := slots.Len()
	c2, err := h.be.View(h.c2, 0, n*r)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	if err := h.be.Gemm(false, true, n, r, d, 1, p, rows1, 0, c2); err != nil {
		return fmt.Errorf("ffc head: refreshed logits: %w", err)
	}
	if err := h.be.Axpby(r*d, -1, rows0, 1, rows1); err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	ref := h.pool.RefreshedSlots()
	flat := h.flatHost[:h.sub*r]
	for i := 0; i < h.sub; i++ {
		for j, s := range ref {
			flat[i*r+j] = int32(i*q) + s
		}
	}
	if err := h.be.UploadIndex(h.flat, flat); err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	return nil
}

// chunkPass runs probe rows [c0, c0+m): their logits against pool[0], both
// sets' losses (the second set in blocks of sub rows), and their rows of
// dp = (dcos1 + dcos2)·pool[0].
func (h *FFC) chunkPass(p, dp, pool0 kernels.Buffer, c0, m int, out FFCLoss) error {
	q, d, r := h.pool.Slots(), h.pool.Dim(), out.Refreshed
	pc, err := h.be.View(p, c0*d, m*d)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	cos, err := h.be.View(h.cos, 0, m*q)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	if err := h.be.Gemm(false, true, m, q, d, 1, pc, pool0, 0, cos); err != nil {
		return fmt.Errorf("ffc head: logits: %w", err)
	}
	alpha := float32(1)
	if r == 0 {
		// W equals pool[0]: the second set repeats the first exactly.
		alpha = 2
		if err := h.losses(m, cos, c0, h.rowLoss, out); err != nil {
			return err
		}
	}
	for s0 := 0; r > 0 && s0 < m; s0 += h.sub {
		if err := h.secondSet(c0+s0, s0, min(h.sub, m-s0), r, out); err != nil {
			return err
		}
	}
	dpc, err := h.be.View(dp, c0*d, m*d)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	if err := h.be.Gemm(false, false, m, d, q, alpha, cos, pool0, 0, dpc); err != nil {
		return fmt.Errorf("ffc head: probe gradient: %w", err)
	}
	return nil
}

// secondSet handles k probe rows from row (s0 in the chunk): the second
// set's logits are a copy of the first's with the refreshed columns
// replaced; both losses' gradients are summed into the chunk's rows, and
// dcos2 of the refreshed columns is kept in c2 for the correction.
func (h *FFC) secondSet(row, s0, k, r int, out FFCLoss) error {
	q := h.pool.Slots()
	cs, err := h.be.View(h.cos, s0*q, k*q)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	alt, err := h.be.View(h.alt, 0, k*q)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	c2, err := h.be.View(h.c2, row*r, k*r)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	flat, err := h.be.ViewIndex(h.flat, 0, k*r)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	if err := h.be.Copy(k*q, cs, alt); err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	if err := h.be.ScatterRows(k*r, 1, c2, flat, alt, k*q); err != nil {
		return fmt.Errorf("ffc head: second set's columns: %w", err)
	}
	if err := h.losses(k, alt, row, h.rowLoss2, out); err != nil {
		return err
	}
	if err := h.be.GatherRows(k*r, 1, alt, k*q, flat, c2); err != nil {
		return fmt.Errorf("ffc head: second set's gradient: %w", err)
	}
	if err := h.losses(k, cs, row, h.rowLoss, out); err != nil {
		return err
	}
	if err := h.be.Add(k*q, cs, alt, cs); err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	return nil
}

// losses replaces the k×Q logits of probe rows [row, row+k) by the
// gradient of both loss parts and writes the rows' losses to rowLoss.
func (h *FFC) losses(k int, cos kernels.Buffer, row int, rowLoss kernels.Buffer, out FFCLoss) error {
	q := h.pool.Slots()
	tv, err := h.be.ViewIndex(h.targets, row, k)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	lv, err := h.be.View(rowLoss, row, k)
	if err != nil {
		return fmt.Errorf("ffc head: %w", err)
	}
	if out.Held > 0 {
		if err := h.be.MarginSoftmaxCE(k, q, h.margin, cos, tv, float32(1/float64(out.Held)), cos, lv); err != nil {
			return fmt.Errorf("ffc head: margin softmax: %w", err)
		}
	}
	if out.Fresh > 0 {
		if err := h.be.FreshTopKLoss(k, q, h.k, cos, tv, float32(1/float64(out.Fresh*h.k)), cos, lv); err != nil {
			return fmt.Errorf("ffc head: fresh top-K: %w", err)
		}
	}
	return nil
}

// sumLoss reads the n row losses of one set and returns its mean margin
// cross-entropy over held rows and mean clipped top-K over fresh rows.
func (h *FFC) sumLoss(rowLoss kernels.Buffer, n int, out FFCLoss) (ce, fresh float64, err error) {
	lossRows, err := h.be.View(rowLoss, 0, n)
	if err != nil {
		return 0, 0, fmt.Errorf("ffc head: %w", err)
	}
	if err := h.be.Download(h.lossH[:n], lossRows); err != nil {
		return 0, 0, fmt.Errorf("ffc head: %w", err)
	}
	for i := 0; i < n; i++ {
		if h.tHost[i] >= 0 {
			ce += float64(h.lossH[i])
		} else {
			fresh += float64(h.lossH[i])
		}
	}
	if out.Held > 0 {
		ce /= float64(out.Held)
	}
	if out.Fresh > 0 {
		fresh /= float64(out.Fresh * h.k)
	}
	return ce, fresh, nil
}
