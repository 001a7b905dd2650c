package centers

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/ffc-stream/ffc/kernels"
)

// HeadLoss is the result of one Loss call of a classifier head (full FC or
// Partial FC).
type HeadLoss struct {
	// Loss is the margin softmax cross-entropy, mean over the batch rows.
	Loss float64
	// Rows is the batch size n.
	Rows int
	// Classes is the number of classes the softmax ran over: N for the full
	// FC head, the size of the step's sample for Partial FC.
	Classes int
}

// Head is a classifier head that keeps class weights and trains them: the
// full FC and Partial FC baselines. Loss may be called more than once
// before Step (the gradients add up; Partial FC restricts this, see
// [PFC.Loss]); Step applies them with the given learning rate.
type Head interface {
	Loss(p kernels.Buffer, labels []int64, dp kernels.Buffer) (HeadLoss, error)
	Step(lr float32) error
	Close() error
}

var (
	_ Head = (*FC)(nil)
	_ Head = (*PFC)(nil)
)

// normEps is the eps of the row normalisation of the class weights
// (torch.nn.functional.normalize's default).
const normEps = 1e-12

// WeightInitStd is the standard deviation of the normal distribution the
// class weights start from (insightface: normal(0, 0.01)).
const WeightInitStd = 0.01

// freeBuffers frees every non-nil buffer of bufs on be, sets it to nil and
// returns errs with the errors of the frees appended.
func freeBuffers(be kernels.Backend, errs []error, bufs ...*kernels.Buffer) []error {
	for _, b := range bufs {
		if *b != nil {
			errs = append(errs, be.Free(*b))
			*b = nil
		}
	}
	return errs
}

// initWeights fills the rows×d matrix w with normal(0, WeightInitStd)
// values, block by block of initChunkRows rows, block i drawn from a PCG
// seeded with (seed, i): the host never holds the whole matrix, the blocks
// are generated in parallel (uploads stay on the calling goroutine), and
// the values do not depend on the number of threads. FC and Partial FC
// with the same seed start from the same weights.
func initWeights(be kernels.Backend, w kernels.Buffer, rows, d int, seed uint64) error {
	const initChunkRows = 4096
	chunks := (rows + initChunkRows - 1) / initChunkRows
	workers := max(1, min(runtime.GOMAXPROCS(0), chunks))
	host := make([][]float32, workers)
	for i := range host {
		host[i] = make([]float32, min(initChunkRows, rows)*d)
	}
	for c0 := 0; c0 < chunks; c0 += workers {
		var wg sync.WaitGroup
		for j := 0; j < workers && c0+j < chunks; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := c0 + j
				n := min(initChunkRows, rows-c*initChunkRows)
				rng := rand.New(rand.NewPCG(seed, uint64(c)))
				buf := host[j][:n*d]
				for i := range buf {
					buf[i] = float32(rng.NormFloat64() * WeightInitStd)
				}
			}()
		}
		wg.Wait()
		for j := 0; j < workers && c0+j < chunks; j++ {
			r0 := (c0 + j) * initChunkRows
			n := min(initChunkRows, rows-r0)
			view, err := be.View(w, r0*d, n*d)
			if err != nil {
				return err
			}
			if err := be.Upload(view, host[j][:n*d]); err != nil {
				return fmt.Errorf("initialise weights: %w", err)
			}
		}
	}
	return nil
}

// checkHeadShape validates the options shared by FC and Partial FC.
func checkHeadShape(name string, classes, dim, maxBatch int, m kernels.Margin) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if classes <= 0 || dim <= 0 || maxBatch <= 0 {
		return fmt.Errorf("%s: classes %d, dim %d, max batch %d: all must be positive", name, classes, dim, maxBatch)
	}
	if classes > math.MaxInt32 {
		return fmt.Errorf("%s: %d classes do not fit int32 class indices", name, classes)
	}
	if int64(classes)*int64(dim) > math.MaxInt {
		return fmt.Errorf("%s: %d×%d weights are too large", name, classes, dim)
	}
	return nil
}

// checkLabels validates a batch: not empty, not above maxBatch, every label
// in [0, classes).
func checkLabels(name string, labels []int64, classes, maxBatch int) error {
	n := len(labels)
	if n == 0 {
		return fmt.Errorf("%s: empty batch", name)
	}
	if n > maxBatch {
		return fmt.Errorf("%s: batch %d exceeds max batch %d", name, n, maxBatch)
	}
	for i, l := range labels {
		if l < 0 || l >= int64(classes) {
			return fmt.Errorf("%s: label %d at row %d is outside [0, %d)", name, l, i, classes)
		}
	}
	return nil
}

// meanRowLoss downloads the first n row losses and returns their mean, or
// an error wrapping ErrNonFinite.
func meanRowLoss(be kernels.Backend, name string, rowLoss kernels.Buffer, host []float32) (float64, error) {
	view, err := be.View(rowLoss, 0, len(host))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if err := be.Download(host, view); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	var s float64
	for _, v := range host {
		s += float64(v)
	}
	s /= float64(len(host))
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return s, fmt.Errorf("%s: loss %v: %w", name, s, ErrNonFinite)
	}
	return s, nil
}

// fcCore is the scratch and the loss computation shared by FC and Partial
// FC: logits, row losses and targets for up to maxBatch rows.
type fcCore struct {
	be       kernels.Backend
	name     string
	d        int
	maxBatch int
	margin   kernels.Margin

	cos     kernels.Buffer // maxBatch·C logits, overwritten by their gradient
	rowLoss kernels.Buffer
	targets kernels.IndexBuffer
	lossH   []float32
	tHost   []int32
}

// lossOver runs the margin softmax of p (n×d) against the c×d normalised
// weights wn: it writes dp = dcos·wn and accumulates dwn (+)= dcosᵀ·p
// (beta 0 on the first call of a step, 1 after). tHost[:n] holds the
// target column of every row. On a non-finite loss neither dp nor dwn is
// written.
func (h *fcCore) lossOver(p kernels.Buffer, n int, dp kernels.Buffer, wn kernels.Buffer, c int, dwn kernels.Buffer, beta float32) (float64, error) {
	d, be := h.d, h.be
	if err := be.UploadIndex(h.targets, h.tHost[:n]); err != nil {
		return 0, fmt.Errorf("%s: %w", h.name, err)
	}
	if err := be.Gemm(false, true, n, c, d, 1, p, wn, 0, h.cos); err != nil {
		return 0, fmt.Errorf("%s: logits: %w", h.name, err)
	}
	if err := be.MarginSoftmaxCE(n, c, h.margin, h.cos, h.targets, float32(1/float64(n)), h.cos, h.rowLoss); err != nil {
		return 0, fmt.Errorf("%s: margin softmax: %w", h.name, err)
	}
	loss, err := meanRowLoss(be, h.name, h.rowLoss, h.lossH[:n])
	if err != nil {
		return loss, err
	}
	if err := be.Gemm(false, false, n, d, c, 1, h.cos, wn, 0, dp); err != nil {
		return loss, fmt.Errorf("%s: feature gradient: %w", h.name, err)
	}
	if err := be.Gemm(true, false, c, d, n, 1, h.cos, p, beta, dwn); err != nil {
		return loss, fmt.Errorf("%s: weight gradient: %w", h.name, err)
	}
	return loss, nil
}

func (h *fcCore) alloc(c int) error {
	var err error
	if h.cos, err = h.be.Alloc(h.maxBatch * c); err != nil {
		return fmt.Errorf("%s: allocate %d×%d logits: %w", h.name, h.maxBatch, c, err)
	}
	if h.rowLoss, err = h.be.Alloc(h.maxBatch); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	if h.targets, err = h.be.AllocIndex(h.maxBatch); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	h.lossH = make([]float32, h.maxBatch)
	h.tHost = make([]int32, h.maxBatch)
	return nil
}

// allocInit allocates the scratch for c classes (see alloc) and fills the
// n×d weights w from seed (see initWeights).
func (h *fcCore) allocInit(c int, w kernels.Buffer, n int, seed uint64) error {
	if err := h.alloc(c); err != nil {
		return err
	}
	if err := initWeights(h.be, w, n, h.d, seed); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	return nil
}

func (h *fcCore) free() []error {
	errs := freeBuffers(h.be, nil, &h.cos, &h.rowLoss)
	if h.targets != nil {
		errs = append(errs, h.be.FreeIndex(h.targets))
		h.targets = nil
	}
	return errs
}
