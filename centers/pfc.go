package centers

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
)

// DefaultPFCRate is the fraction of the classes Partial FC samples per step.
const DefaultPFCRate = 0.1

// PFCOptions configures the Partial FC head.
type PFCOptions struct {
	// Classes, Dim, Margin, MaxBatch, SGD and Seed are as in FCOptions; the
	// same Seed gives the same initial weights as the full FC head.
	Classes  int
	Dim      int
	Margin   kernels.Margin
	MaxBatch int
	SGD      kernels.SGD
	Seed     uint64
	// Rate is the fraction of the classes in each step's sample, in (0, 1];
	// 0 means DefaultPFCRate.
	Rate float64
}

// sampleSize is ceil(rate·n) clamped to [1, n]; a product within 1e-9 of
// an integer counts as that integer, so 0.1·10000 is 1000.
func sampleSize(n int, rate float64) int {
	x := rate * float64(n)
	k := int(math.Ceil(x))
	if r := math.Round(x); math.Abs(x-r) < 1e-9*math.Max(1, x) {
		k = int(r)
	}
	return max(1, min(n, k))
}

// pfcCapacity is the most classes one step's sample can hold: ceil(rate·n),
// or every distinct label of a batch when they are more.
func pfcCapacity(n, maxBatch int, rate float64) int {
	return min(n, max(sampleSize(n, rate), maxBatch))
}

// PFCMemory estimates the bytes the Partial FC head holds for n classes of
// dimension d, batches up to maxBatch and sampling rate (0 = default): the
// weights and their momentum (n×d each), the sample's gathered weights,
// gradient and normalised copy (c×d each for a capacity c = ceil(rate·n),
// or maxBatch when larger), the maxBatch×c logits and the host sampling
// bitmap.
func PFCMemory(n, d, maxBatch int, rate float64) int64 {
	if rate == 0 {
		rate = DefaultPFCRate
	}
	nn, dd, b := int64(n), int64(d), int64(maxBatch)
	c := int64(pfcCapacity(n, maxBatch, rate))
	return 4*(2*nn*dd+3*c*dd+c+b*c+2*b) + 4*c*2 + (nn+63)/64*8
}

// PFC is the Partial FC head: the full N×D weights and their momentum are
// kept, but each step computes the margin softmax over a sample of the
// classes only — every class that labels a row of the step's batch, plus
// classes drawn uniformly (without replacement) from the others, up to
// ceil(Rate·N) in total (all positives are kept when they are more). The
// sample's weight rows are gathered into a scratch matrix, the loss is the
// full FC's on that matrix with the targets remapped, and Step updates the
// sampled rows only (gather weights and momentum, SGD, scatter back); rows
// outside the sample keep their weights and momentum.
//
// The sample is drawn from a PCG seeded with Seed, so a run is
// reproducible; it is sorted by class, and with Rate 1 the head computes
// exactly what FC does.
type PFC struct {
	core fcCore
	n    int
	k    int // ceil(rate·N)
	cap  int
	sgd  kernels.SGD
	rng  *rand.Rand

	w, v   kernels.Buffer // N×D weights and momentum
	ws     kernels.Buffer // cap×D: the sample's weight rows
	gs     kernels.Buffer // cap×D: gradient w.r.t. wns, then w.r.t. ws
	wns    kernels.Buffer // cap×D: normalize(ws); reused for the momentum rows in Step
	norms  kernels.Buffer // cap
	idx    kernels.IndexBuffer
	marks  []uint64 // N bits, all clear between draws
	sample []int32  // the step's classes, ascending
	sorted []int32  // scratch: the batch's distinct labels, ascending

	active  bool // sample drawn and gathered for the current step
	pending int  // Loss calls since the last Step
}

// NewPFC allocates the weights (initialised as NewFC does), their momentum
// and the sample scratch on be.
func NewPFC(be kernels.Backend, opts PFCOptions) (*PFC, error) {
	const name = "partial fc head"
	if err := checkHeadShape(name, opts.Classes, opts.Dim, opts.MaxBatch, opts.Margin); err != nil {
		return nil, err
	}
	if opts.Rate == 0 {
		opts.Rate = DefaultPFCRate
	}
	if !(opts.Rate > 0 && opts.Rate <= 1) {
		return nil, fmt.Errorf("%s: sample rate %v must be in (0, 1]", name, opts.Rate)
	}
	n, d := opts.Classes, opts.Dim
	h := &PFC{
		core: fcCore{be: be, name: name, d: d, maxBatch: opts.MaxBatch, margin: opts.Margin},
		n:    n, k: sampleSize(n, opts.Rate), cap: pfcCapacity(n, opts.MaxBatch, opts.Rate),
		sgd:   opts.SGD,
		rng:   rand.New(rand.NewPCG(opts.Seed, 0x9fc)),
		marks: make([]uint64, (n+63)/64),
	}
	h.sample = make([]int32, 0, h.cap)
	h.sorted = make([]int32, 0, opts.MaxBatch)
	allocs := []struct {
		b    *kernels.Buffer
		size int
	}{{&h.w, n * d}, {&h.v, n * d}, {&h.ws, h.cap * d}, {&h.gs, h.cap * d}, {&h.wns, h.cap * d}, {&h.norms, h.cap}}
	for _, a := range allocs {
		var err error
		if *a.b, err = be.Alloc(a.size); err != nil {
			return nil, errors.Join(fmt.Errorf("%s: allocate %d floats: %w", name, a.size, err), h.Close())
		}
	}
	var err error
	if h.idx, err = be.AllocIndex(h.cap); err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", name, err), h.Close())
	}
	if err := h.core.allocInit(h.cap, h.w, n, opts.Seed); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return h, nil
}

// Close frees the backend buffers.
func (h *PFC) Close() error {
	errs := freeBuffers(h.core.be, h.core.free(), &h.w, &h.v, &h.ws, &h.gs, &h.wns, &h.norms)
	if h.idx != nil {
		errs = append(errs, h.core.be.FreeIndex(h.idx))
		h.idx = nil
	}
	return errors.Join(errs...)
}

// Classes is N.
func (h *PFC) Classes() int { return h.n }

// Dim is the feature dimension D.
func (h *PFC) Dim() int { return h.core.d }

// SampleSize is ceil(Rate·N), the size of a step's sample unless the
// batch has more distinct labels.
func (h *PFC) SampleSize() int { return h.k }

// Weights is the N×D buffer of raw class weights (read it; after writing
// it call Invalidate).
func (h *PFC) Weights() kernels.Buffer { return h.w }

// Momentum is the N×D momentum buffer (same rules as Weights).
func (h *PFC) Momentum() kernels.Buffer { return h.v }

// Sample returns the classes of the current step's sample, ascending (nil
// before the first Loss of a step). The slice is reused by the next draw.
func (h *PFC) Sample() []int32 {
	if !h.active {
		return nil
	}
	return h.sample
}

// Invalidate drops the current sample and any gradient accumulated since
// the last Step; call it after writing Weights or Momentum, or to abandon a
// step.
func (h *PFC) Invalidate() { h.active, h.pending = false, 0 }

// draw samples the step's classes: every distinct label of the batch and
// uniformly drawn others up to h.k, into h.sample (ascending).
func (h *PFC) draw(labels []int64) {
	pos := h.sorted[:0]
	for _, l := range labels {
		w, b := l>>6, uint64(1)<<(l&63)
		if h.marks[w]&b == 0 {
			h.marks[w] |= b
			pos = append(pos, int32(l))
		}
	}
	slices.Sort(pos)
	h.sorted = pos
	k := max(h.k, len(pos))
	need, avail := k-len(pos), h.n-len(pos)
	if need <= avail/2 {
		// Rejection: few of the draws hit a marked class.
		for need > 0 {
			c := h.rng.IntN(h.n)
			w, b := c>>6, uint64(1)<<(c&63)
			if h.marks[w]&b == 0 {
				h.marks[w] |= b
				need--
			}
		}
	} else {
		// Mark every class, then clear avail−need random negatives.
		for i := range h.marks {
			h.marks[i] = ^uint64(0)
		}
		if r := h.n & 63; r != 0 {
			h.marks[len(h.marks)-1] = 1<<r - 1
		}
		for drop := avail - need; drop > 0; {
			c := h.rng.IntN(h.n)
			w, b := c>>6, uint64(1)<<(c&63)
			if h.marks[w]&b == 0 {
				continue
			}
			if _, isPos := slices.BinarySearch(pos, int32(c)); isPos {
				continue
			}
			h.marks[w] &^= b
			drop--
		}
	}
	h.sample = h.sample[:0]
	for wi, w := range h.marks {
		for w != 0 {
			h.sample = append(h.sample, int32(wi*64+bits.TrailingZeros64(w)))
			w &= w - 1
		}
		h.marks[wi] = 0
	}
}

// begin draws and gathers the step's sample and normalises its rows.
func (h *PFC) begin(labels []int64) error {
	h.draw(labels)
	k, d, be := len(h.sample), h.core.d, h.core.be
	if err := be.UploadIndex(h.idx, h.sample); err != nil {
		return fmt.Errorf("%s: %w", h.core.name, err)
	}
	if err := be.GatherRows(k, d, h.w, h.n, h.idx, h.ws); err != nil {
		return fmt.Errorf("%s: gather weights: %w", h.core.name, err)
	}
	if err := be.L2NormalizeRows(k, d, normEps, h.ws, h.wns, h.norms); err != nil {
		return fmt.Errorf("%s: normalise weights: %w", h.core.name, err)
	}
	h.active = true
	return nil
}

// Loss computes the margin softmax cross-entropy (mean over the rows) of
// the n = len(labels) probe features p (n×D, L2-normalised) over the
// step's sample of classes, writes its gradient with respect to p into dp
// (n×D, overwritten; dp must not overlap p) and adds its gradient with
// respect to the sampled weights to the one Step applies.
//
// The first Loss of a step draws the sample from its labels. A further
// Loss before Step reuses that sample and accumulates, so its labels must
// all be in it (an error says otherwise). A non-finite loss is reported as
// ErrNonFinite; a first Loss that fails drops its sample.
func (h *PFC) Loss(p kernels.Buffer, labels []int64, dp kernels.Buffer) (HeadLoss, error) {
	out := HeadLoss{Rows: len(labels)}
	if err := checkLabels(h.core.name, labels, h.n, h.core.maxBatch); err != nil {
		return out, err
	}
	if !h.active {
		if err := h.begin(labels); err != nil {
			return out, err
		}
	}
	out.Classes = len(h.sample)
	for i, l := range labels {
		j, ok := slices.BinarySearch(h.sample, int32(l))
		if !ok {
			return out, fmt.Errorf("%s: label %d of row %d is not in this step's sample (a second Loss before Step must use labels of the first)", h.core.name, l, i)
		}
		h.core.tHost[i] = int32(j)
	}
	beta := float32(0)
	if h.pending > 0 {
		beta = 1
	}
	var err error
	out.Loss, err = h.core.lossOver(p, len(labels), dp, h.wns, len(h.sample), h.gs, beta)
	if err != nil {
		if h.pending == 0 {
			h.active = false
		}
		return out, err
	}
	h.pending++
	return out, nil
}

// Step applies one SGD step (the options' momentum, weight decay and
// Nesterov flag, learning rate lr) to the sampled rows of the weights with
// the gradient of the losses computed since the last Step, and ends the
// step's sample. Without such a loss it does nothing.
func (h *PFC) Step(lr float32) error {
	if math.IsNaN(float64(lr)) || math.IsInf(float64(lr), 0) {
		return fmt.Errorf("%s: learning rate %v", h.core.name, lr)
	}
	if h.pending == 0 {
		h.active = false
		return nil
	}
	k, d, be, name := len(h.sample), h.core.d, h.core.be, h.core.name
	if err := be.L2NormalizeRowsBackward(k, d, normEps, h.wns, h.norms, h.gs, h.gs); err != nil {
		return fmt.Errorf("%s: normalisation backward: %w", name, err)
	}
	vs := h.wns // the normalised rows are no longer needed
	if err := be.GatherRows(k, d, h.v, h.n, h.idx, vs); err != nil {
		return fmt.Errorf("%s: gather momentum: %w", name, err)
	}
	p := h.sgd
	p.LR = lr
	if err := be.SGDStep(k*d, p, h.ws, h.gs, vs); err != nil {
		return fmt.Errorf("%s: sgd: %w", name, err)
	}
	if err := be.ScatterRows(k, d, h.ws, h.idx, h.w, h.n); err != nil {
		return fmt.Errorf("%s: scatter weights: %w", name, err)
	}
	if err := be.ScatterRows(k, d, vs, h.idx, h.v, h.n); err != nil {
		return fmt.Errorf("%s: scatter momentum: %w", name, err)
	}
	h.Invalidate()
	return nil
}
