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
type FFC struct {
	be     kernels.Backend
	pool   *Pool
	margin kernels.Margin
	k      int
	max    int

	cos     kernels.Buffer // max·Q logits, overwritten by their gradient
	rowLoss kernels.Buffer
	targets kernels.IndexBuffer
	tHost   []int32
	lossH   []float32
}

// NewFFC allocates the head's scratch (one max·Q logit buffer) on the
// pool's backend.
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
	h := &FFC{be: be, pool: pool, margin: opts.Margin, k: opts.TopK, max: opts.MaxBatch,
		tHost: make([]int32, opts.MaxBatch), lossH: make([]float32, opts.MaxBatch)}
	var err error
	if h.cos, err = be.Alloc(opts.MaxBatch * pool.Slots()); err != nil {
		return nil, fmt.Errorf("ffc head: allocate %d×%d logits: %w", opts.MaxBatch, pool.Slots(), err)
	}
	if h.rowLoss, err = be.Alloc(opts.MaxBatch); err != nil {
		return nil, errors.Join(fmt.Errorf("ffc head: %w", err), h.Close())
	}
	if h.targets, err = be.AllocIndex(opts.MaxBatch); err != nil {
		return nil, errors.Join(fmt.Errorf("ffc head: %w", err), h.Close())
	}
	return h, nil
}

// Close frees the scratch buffers.
func (h *FFC) Close() error {
	var errs []error
	if h.cos != nil {
		errs = append(errs, h.be.Free(h.cos))
	}
	if h.rowLoss != nil {
		errs = append(errs, h.be.Free(h.rowLoss))
	}
	if h.targets != nil {
		errs = append(errs, h.be.FreeIndex(h.targets))
	}
	return errors.Join(errs...)
}

// TopK is the K used for fresh IDs.
func (h *FFC) TopK() int { return h.k }

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
	out.Refreshed = len(h.pool.RefreshedSlots())
	if err := h.be.UploadIndex(h.targets, h.tHost[:n]); err != nil {
		return out, fmt.Errorf("ffc head: %w", err)
	}
	pool0, err := h.be.View(h.pool.Rows(), 0, q*d)
	if err != nil {
		return out, fmt.Errorf("ffc head: %w", err)
	}

	// One logit set: loss parts, and dp (+)= dcos·pool0.
	set := func(beta float32) (ce, fresh float64, err error) {
		if err := h.be.Gemm(false, true, n, q, d, 1, p, pool0, 0, h.cos); err != nil {
			return 0, 0, fmt.Errorf("ffc head: logits: %w", err)
		}
		if out.Held > 0 {
			if err := h.be.MarginSoftmaxCE(n, q, h.margin, h.cos, h.targets, float32(1/float64(out.Held)), h.cos, h.rowLoss); err != nil {
				return 0, 0, fmt.Errorf("ffc head: margin softmax: %w", err)
			}
		}
		if out.Fresh > 0 {
			if err := h.be.FreshTopKLoss(n, q, h.k, h.cos, h.targets, float32(1/float64(out.Fresh*h.k)), h.cos, h.rowLoss); err != nil {
				return 0, 0, fmt.Errorf("ffc head: fresh top-K: %w", err)
			}
		}
		if err := h.be.Gemm(false, false, n, d, q, 1, h.cos, pool0, beta, dp); err != nil {
			return 0, 0, fmt.Errorf("ffc head: probe gradient: %w", err)
		}
		lossRows, err := h.be.View(h.rowLoss, 0, n)
		if err != nil {
			return 0, 0, err
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

	if out.CE1, out.Fresh1, err = set(0); err != nil {
		return out, err
	}
	if out.Refreshed == 0 {
		// W equals pool[0]: the second set repeats the first exactly.
		out.CE2, out.Fresh2 = out.CE1, out.Fresh1
		if err := h.be.Scale(n*d, 2, dp); err != nil {
			return out, fmt.Errorf("ffc head: %w", err)
		}
	} else {
		if err := h.pool.SwapRefreshed(); err != nil {
			return out, fmt.Errorf("ffc head: %w", err)
		}
		out.CE2, out.Fresh2, err = set(1)
		if serr := h.pool.SwapRefreshed(); serr != nil {
			return out, errors.Join(err, fmt.Errorf("ffc head: swap back: %w", serr))
		}
		if err != nil {
			return out, err
		}
	}
	out.Total = out.CE1 + out.Fresh1 + out.CE2 + out.Fresh2
	if math.IsNaN(out.Total) || math.IsInf(out.Total, 0) {
		return out, fmt.Errorf("ffc head: loss %v: %w", out.Total, ErrNonFinite)
	}
	return out, nil
}
