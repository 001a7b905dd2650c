package centers

import (
	"errors"
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// FCOptions configures the full FC head.
type FCOptions struct {
	// Classes is N, the number of classes (rows of W).
	Classes int
	// Dim is D, the feature dimension.
	Dim int
	// Margin of the softmax (CosFace S=32 M=0.4, or ArcFace S=32 M=0.5).
	Margin kernels.Margin
	// MaxBatch bounds the probe rows of one Loss call; it sizes the
	// MaxBatch×N logits.
	MaxBatch int
	// SGD holds the momentum, weight decay and Nesterov flag of the
	// weights' optimizer (the probe's: momentum 0.9, Nesterov, weight decay
	// 1e-4). Its LR is ignored: Step takes the learning rate.
	SGD kernels.SGD
	// Seed makes the initial weights, normal(0, 0.01), reproducible.
	Seed uint64
}

// FCMemory estimates the bytes the full FC head holds for n classes of
// dimension d and batches up to maxBatch: the weights, their momentum,
// their gradient and their row-normalised copy (n×d each), the row norms
// and the maxBatch×n logits.
func FCMemory(n, d, maxBatch int) int64 {
	nn, dd, b := int64(n), int64(d), int64(maxBatch)
	return 4 * (4*nn*dd + nn + b*nn + 2*b)
}

// FC is the full FC head with margin softmax, as in insightface: raw class
// weights W (N×D) trained by SGD with momentum, cos = p·normalize(W)ᵀ for
// L2-normalised probe features p, and the margin softmax cross-entropy over
// all N classes (mean over the batch rows).
//
// Loss writes the gradient with respect to p and accumulates the gradient
// with respect to the normalised weights; Step back-propagates it through
// the row normalisation and applies one SGD step to W.
type FC struct {
	core  fcCore
	n     int
	sgd   kernels.SGD
	w     kernels.Buffer // N×D raw weights
	v     kernels.Buffer // N×D momentum
	g     kernels.Buffer // N×D: gradient w.r.t. Wn, then (finalised) w.r.t. W
	wn    kernels.Buffer // N×D: normalize(W), valid while wnOK
	norms kernels.Buffer // N row norms of W

	wnOK      bool
	pending   int  // Loss calls since the last Step
	finalised bool // g holds the gradient w.r.t. W
}

// NewFC allocates the weights (initialised from opts.Seed), their momentum
// and the scratch on be.
func NewFC(be kernels.Backend, opts FCOptions) (*FC, error) {
	const name = "fc head"
	if err := checkHeadShape(name, opts.Classes, opts.Dim, opts.MaxBatch, opts.Margin); err != nil {
		return nil, err
	}
	n, d := opts.Classes, opts.Dim
	h := &FC{
		core: fcCore{be: be, name: name, d: d, maxBatch: opts.MaxBatch, margin: opts.Margin},
		n:    n, sgd: opts.SGD,
	}
	for _, b := range []*kernels.Buffer{&h.w, &h.v, &h.g, &h.wn} {
		var err error
		if *b, err = be.Alloc(n * d); err != nil {
			return nil, errors.Join(fmt.Errorf("%s: allocate %d×%d weights: %w", name, n, d, err), h.Close())
		}
	}
	var err error
	if h.norms, err = be.Alloc(n); err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", name, err), h.Close())
	}
	if err := h.core.allocInit(n, h.w, n, opts.Seed); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return h, nil
}

// Close frees the backend buffers.
func (h *FC) Close() error {
	return errors.Join(freeBuffers(h.core.be, h.core.free(), &h.w, &h.v, &h.g, &h.wn, &h.norms)...)
}

// Classes is N; Dim is D.
func (h *FC) Classes() int { return h.n }

// Dim is the feature dimension D.
func (h *FC) Dim() int { return h.core.d }

// Weights is the N×D buffer of raw class weights (read it, e.g. to
// checkpoint or publish centers; after writing it call Invalidate).
func (h *FC) Weights() kernels.Buffer { return h.w }

// Momentum is the N×D momentum buffer of the weights' SGD (same rules as
// Weights).
func (h *FC) Momentum() kernels.Buffer { return h.v }

// Invalidate drops the cached normalised weights and any gradient
// accumulated since the last Step; call it after writing Weights or
// Momentum, or to abandon a step.
func (h *FC) Invalidate() {
	h.wnOK, h.pending, h.finalised = false, 0, false
}

// normalise refreshes Wn = normalize(W) when W changed.
func (h *FC) normalise() error {
	if h.wnOK {
		return nil
	}
	if err := h.core.be.L2NormalizeRows(h.n, h.core.d, normEps, h.w, h.wn, h.norms); err != nil {
		return fmt.Errorf("%s: normalise weights: %w", h.core.name, err)
	}
	h.wnOK = true
	return nil
}

// Loss computes the margin softmax cross-entropy (mean over the rows) of
// the n = len(labels) probe features p (n×D, L2-normalised) with class
// labels in [0, N), writes its gradient with respect to p into dp (n×D,
// overwritten; dp must not overlap p) and adds its gradient with respect to
// the weights to the one Step applies. A non-finite loss is reported as
// ErrNonFinite; then dp is undefined and the weight gradient unchanged.
func (h *FC) Loss(p kernels.Buffer, labels []int64, dp kernels.Buffer) (HeadLoss, error) {
	out := HeadLoss{Rows: len(labels), Classes: h.n}
	if err := checkLabels(h.core.name, labels, h.n, h.core.maxBatch); err != nil {
		return out, err
	}
	if h.finalised {
		return out, fmt.Errorf("%s: Loss after WeightGrad: call Step (or Invalidate) first", h.core.name)
	}
	if err := h.normalise(); err != nil {
		return out, err
	}
	for i, l := range labels {
		h.core.tHost[i] = int32(l)
	}
	beta := float32(0)
	if h.pending > 0 {
		beta = 1
	}
	var err error
	if out.Loss, err = h.core.lossOver(p, len(labels), dp, h.wn, h.n, h.g, beta); err != nil {
		return out, err
	}
	h.pending++
	return out, nil
}

// finalise turns the accumulated gradient w.r.t. Wn into the gradient
// w.r.t. W (in place).
func (h *FC) finalise() error {
	if h.finalised {
		return nil
	}
	if err := h.core.be.L2NormalizeRowsBackward(h.n, h.core.d, normEps, h.wn, h.norms, h.g, h.g); err != nil {
		return fmt.Errorf("%s: normalisation backward: %w", h.core.name, err)
	}
	h.finalised = true
	return nil
}

// WeightGrad returns the N×D gradient of the losses since the last Step
// with respect to the raw weights W (before weight decay). After it, Loss
// refuses until Step or Invalidate. It fails when no Loss was computed.
func (h *FC) WeightGrad() (kernels.Buffer, error) {
	if h.pending == 0 {
		return nil, fmt.Errorf("%s: no gradient: Loss was not called since the last Step", h.core.name)
	}
	if err := h.finalise(); err != nil {
		return nil, err
	}
	return h.g, nil
}

// Step applies one SGD step (the options' momentum, weight decay and
// Nesterov flag, learning rate lr) to the weights with the gradient of the
// losses computed since the last Step. Without such a loss it does nothing.
func (h *FC) Step(lr float32) error {
	if math.IsNaN(float64(lr)) || math.IsInf(float64(lr), 0) {
		return fmt.Errorf("%s: learning rate %v", h.core.name, lr)
	}
	if h.pending == 0 {
		return nil
	}
	if err := h.finalise(); err != nil {
		return err
	}
	p := h.sgd
	p.LR = lr
	if err := h.core.be.SGDStep(h.n*h.core.d, p, h.w, h.g, h.v); err != nil {
		return fmt.Errorf("%s: sgd: %w", h.core.name, err)
	}
	h.Invalidate()
	return nil
}
