// Package kernels owns the compute layer of the FFC trainer: one interface,
// [Backend], for every numeric operation the networks, heads and the Dynamic
// Class Pool need (matrix products, convolution lowering, batch
// normalisation, activations, margin softmax cross-entropy, top-K, row
// gather/scatter, SGD), and swappable implementations of it:
//
//   - kernels/cpu: Go loops parallelised over rows/channels, GEMM through
//     OpenBLAS (cgo) or, with the noopenblas build tag or without cgo,
//     through gonum's pure-Go Sgemm, and on amd64 CPUs with AVX2 (cgo)
//     direct 3×3 convolutions and batch-norm/PReLU loops in C;
//   - kernels/cuda: the same operations on an NVIDIA GPU (cuBLAS and custom
//     kernels compiled to PTX; the GPU constructor needs the build tag
//     cuda), with a CPU emulator of its kernel source for tests.
//
// The package is compute only: it imports nothing else of the project, and
// it knows nothing about models, labels or the pool's bookkeeping.
//
// # Buffers
//
// Every operation works on device buffers: opaque handles owned by the
// backend that allocated them ([Buffer] holds float32, [IndexBuffer] holds
// int32). Host data enters and leaves only through Upload/Download; no
// operation copies to or from the host behind the caller's back. Buffers
// passed to a backend must come from that backend (Alloc, View, or a
// backend-specific wrapper); anything else is rejected with [ErrBuffer].
//
// # Conventions
//
//   - Shapes are explicit ints. A buffer must hold at least the elements the
//     shape needs (it may be longer: a scratch buffer sized for the largest
//     batch serves smaller ones); too short a buffer, a negative dimension or
//     an inconsistent parameter is an error wrapping [ErrShape].
//   - Matrices are row-major and contiguous.
//   - Memory transfers take (dst, src) like Go's copy; compute operations
//     take their inputs first and their outputs last.
//   - Gradients of parameters (dgamma, dbeta, dslope, ChannelSum) are
//     accumulated (+=) so two backward passes through the same layer add up,
//     as in PyTorch; zero them with Fill before a step. Gradients of
//     activations (dx) are overwritten.
//   - Unless an operation says otherwise, an output may alias an input of
//     the same shape exactly (in-place), but must not partially overlap one.
//   - Operations are ordered: on an asynchronous backend they are queued on
//     one stream. Sync waits for all queued work; Download, Sum, AllFinite
//     and [FirstNonFinite] return host values and therefore synchronise
//     implicitly. On the CPU every operation completes before it returns
//     and Sync is a no-op.
//   - Negative indices in an IndexBuffer mean "none" where documented.
//     Out-of-range indices are an error ([ErrIndex]) where the backend can
//     check cheaply (the CPU backend always checks); a GPU backend may skip
//     such rows instead.
//
// # Composing layers
//
// With activations kept in layout CNHW (ChanShape{1, C, N·H·W}) no
// transposes are needed between layers; SwapAxes converts to NCHW or to the
// N×(C·H·W) matrix a Linear layer flattens. For a convolution with weights
// W (Cout × C·K·K) and geometry g:
//
//	forward   Im2Col(g, x, col); Gemm(false, false, Cout, g.ColCols(), g.ColRows(), 1, W, col, 0, y)
//	dW       += Gemm(false, true, Cout, g.ColRows(), g.ColCols(), 1, dy, col, 1, dW)
//	dx        Gemm(true, false, g.ColRows(), g.ColCols(), Cout, 1, W, dy, 0, dcol); Col2Im(g, dcol, dx)
//
// A Linear layer y = x·Wᵀ (x B×In, W Out×In) is Gemm(false, true, B, Out,
// In, …); dW += dyᵀ·x is Gemm(true, false, Out, In, B, 1, dy, x, 1, dW); dx
// = dy·W is Gemm(false, false, B, In, Out, …). The FFC head is cos =
// P·poolᵀ (Gemm(false, true, B, Q, D, …)), MarginSoftmaxCE and
// FreshTopKLoss writing dL/dcos in place over cos, then dP = dcos·pool
// (Gemm(false, false, B, D, Q, …)).
package kernels

import (
	"errors"
	"fmt"
	"math"
)

// Sentinel errors; every error a backend returns wraps one of these (or an
// error of the backend's runtime, such as a CUDA error).
var (
	// ErrShape reports a negative dimension, a buffer too short for the
	// shape, or inconsistent parameters.
	ErrShape = errors.New("bad shape")
	// ErrBuffer reports a nil buffer, a freed buffer, or a buffer that
	// belongs to another backend.
	ErrBuffer = errors.New("bad buffer")
	// ErrIndex reports an index outside its valid range.
	ErrIndex = errors.New("index out of range")
)

// Buffer is a float32 array owned by a backend (host memory on the CPU,
// device memory on a GPU). Its contents are reachable from the host only
// through [Memory.Download] (or a backend-specific accessor on the CPU).
type Buffer interface {
	// Len is the number of float32 elements.
	Len() int
	// Float32 only marks the type, so that an IndexBuffer cannot be passed
	// where a Buffer is expected.
	Float32()
}

// IndexBuffer is an int32 array owned by a backend: labels, slots, row
// indices.
type IndexBuffer interface {
	// Len is the number of int32 elements.
	Len() int
	// Int32 only marks the type.
	Int32()
}

// Backend is the complete compute interface. Implementations must pass the
// parity suite in kernels/kerneltest.
type Backend interface {
	Memory
	BLAS
	Elementwise
	Layers
	Losses
	Optimizer

	// Name identifies the implementation, e.g. "cpu-openblas" or "cpu-go".
	Name() string
	// Sync blocks until every queued operation has completed and reports
	// the first asynchronous error, if any. A no-op on the CPU.
	Sync() error
	// Close releases the backend's resources; buffers become invalid.
	Close() error
}

// Memory allocates buffers and moves data between host and backend.
type Memory interface {
	// Alloc returns a zeroed buffer of n float32.
	Alloc(n int) (Buffer, error)
	// AllocIndex returns a zeroed buffer of n int32.
	AllocIndex(n int) (IndexBuffer, error)
	// View returns the elements [off, off+n) of b without copying. A view
	// is valid while its parent is; freeing a view is a no-op.
	View(b Buffer, off, n int) (Buffer, error)
	// ViewIndex is View for index buffers.
	ViewIndex(b IndexBuffer, off, n int) (IndexBuffer, error)
	// Free releases a buffer obtained from Alloc. Using it afterwards is an
	// error (ErrBuffer) where detectable.
	Free(b Buffer) error
	// FreeIndex releases an index buffer obtained from AllocIndex.
	FreeIndex(b IndexBuffer) error
	// Upload copies src into dst[0:len(src)].
	Upload(dst Buffer, src []float32) error
	// Download copies src[0:len(dst)] into dst, after all queued work.
	Download(dst []float32, src Buffer) error
	// UploadIndex copies src into dst[0:len(src)].
	UploadIndex(dst IndexBuffer, src []int32) error
	// DownloadIndex copies src[0:len(dst)] into dst, after all queued work.
	DownloadIndex(dst []int32, src IndexBuffer) error
}

// BLAS holds the matrix products.
type BLAS interface {
	// Gemm computes C = alpha·op(A)·op(B) + beta·C with op(A) m×k, op(B)
	// k×n, C m×n, all row-major. A is stored m×k (k×m when transA), B k×n
	// (n×k when transB). When beta is 0, C is not read (NaN in C is
	// ignored). C must not overlap A or B.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a, b Buffer, beta float32, c Buffer) error
	// Gemv computes y = alpha·op(A)·x + beta·y with A stored m×n
	// row-major; x has n elements (m when transA), y m (n when transA).
	Gemv(transA bool, m, n int, alpha float32, a, x Buffer, beta float32, y Buffer) error
}

// Elementwise holds vector operations over the first n elements.
type Elementwise interface {
	// Fill sets x[i] = v.
	Fill(n int, v float32, x Buffer) error
	// Copy sets dst[i] = src[i].
	Copy(n int, src, dst Buffer) error
	// Add sets dst[i] = a[i] + b[i].
	Add(n int, a, b, dst Buffer) error
	// Mul sets dst[i] = a[i]·b[i].
	Mul(n int, a, b, dst Buffer) error
	// Scale sets x[i] = alpha·x[i].
	Scale(n int, alpha float32, x Buffer) error
	// AddScalar sets x[i] = x[i] + beta.
	AddScalar(n int, beta float32, x Buffer) error
	// Axpby sets y[i] = alpha·x[i] + beta·y[i]; with alpha = 1−m, beta = m
	// it is the gallery's moving average θg ← m·θg + (1−m)·θp.
	Axpby(n int, alpha float32, x Buffer, beta float32, y Buffer) error
	// ReLU sets y[i] = max(x[i], 0).
	ReLU(n int, x, y Buffer) error
	// ReLUBackward sets dx[i] = dy[i] where x[i] > 0, else 0.
	ReLUBackward(n int, x, dy, dx Buffer) error
	// Sum returns Σ x[i], accumulated in float64.
	Sum(n int, x Buffer) (float64, error)
	// AllFinite reports whether no x[i] is NaN or ±Inf.
	AllFinite(n int, x Buffer) (bool, error)
}

// FiniteChecker is implemented by backends that can check several buffers
// for NaN and ±Inf with one wait for the device, where AllFinite on each
// would wait once per buffer (a training step checks every parameter's
// gradient). Call it through [FirstNonFinite], which falls back to
// AllFinite.
type FiniteChecker interface {
	// FirstNonFinite returns the smallest j such that xs[j][0:ns[j]] holds
	// a NaN or ±Inf, or −1 when every buffer is finite.
	FirstNonFinite(ns []int, xs []Buffer) (int, error)
}

// FirstNonFinite returns the smallest j such that xs[j][0:ns[j]] holds a
// NaN or ±Inf, or −1 when all are finite, using be's FiniteChecker when it
// has one and AllFinite on each buffer otherwise.
func FirstNonFinite(be Backend, ns []int, xs []Buffer) (int, error) {
	if len(ns) != len(xs) {
		return -1, fmt.Errorf("first non-finite: %w: %d lengths for %d buffers", ErrShape, len(ns), len(xs))
	}
	if fc, ok := be.(FiniteChecker); ok {
		return fc.FirstNonFinite(ns, xs)
	}
	for j, x := range xs {
		ok, err := be.AllFinite(ns[j], x)
		if err != nil {
			return -1, fmt.Errorf("buffer %d: %w", j, err)
		}
		if !ok {
			return j, nil
		}
	}
	return -1, nil
}

// Convolver is an optional extension of a Backend: a convolution run a few
// images at a time, each block of images lowered to its columns and
// multiplied while they are in cache, or convolved directly, so the whole
// column matrix of [Layers.Im2Col] is never held. Results equal the
// composition in the package comment up to float32 summation order.
type Convolver interface {
	// ConvForward sets y = W·Im2Col(g, x): W is outC × g.ColRows(), y is
	// outC × g.ColCols() (layout CNHW). y must not overlap x or w.
	ConvForward(g ConvGeom, outC int, w, x, y Buffer) error
	// ConvBackward adds dy·Im2Col(g, x)ᵀ to dw (outC × g.ColRows()) and,
	// when dx is not nil, sets dx = Col2Im(g, Wᵀ·dy). dw and dx must not
	// overlap the inputs or each other.
	ConvBackward(g ConvGeom, outC int, w, x, dy, dw, dx Buffer) error
}

// Layers holds the operations of the network layers besides GEMM.
type Layers interface {
	// Im2Col lowers the input x (layout g.Layout) to the column matrix col
	// of g.ColRows() × g.ColCols(): row (c·K + kh)·K + kw, column
	// (n·OutH + oh)·OutW + ow holds x[n][c][oh·S−P+kh][ow·S−P+kw], or 0 in
	// the padding. A convolution is then Gemm(W[Cout×C·K·K], col), giving
	// Cout × N·OutH·OutW, i.e. layout CNHW. col must not overlap x.
	Im2Col(g ConvGeom, x, col Buffer) error
	// Col2Im is the adjoint of Im2Col: dx (overwritten, layout g.Layout)
	// receives the sum of every col entry that Im2Col would have read from
	// it. dx must not overlap col.
	Col2Im(g ConvGeom, col, dx Buffer) error
	// SwapAxes permutes src, viewed as [a][b][inner], into dst viewed as
	// [b][a][inner] (e.g. CNHW ↔ NCHW). dst must not overlap src.
	SwapAxes(a, b, inner int, src, dst Buffer) error
	// AddChannel adds bias[c] to x[o][c][i] in place.
	AddChannel(s ChanShape, bias, x Buffer) error
	// ChannelSum accumulates dst[c] += Σ_{o,i} x[o][c][i] (bias gradients).
	ChannelSum(s ChanShape, x, dst Buffer) error

	// BatchNormTrain normalises x per channel with the batch statistics
	// over (outer, inner): y = gamma·(x−mean)·invStd + beta with the
	// biased variance, invStd = 1/sqrt(var+eps). It writes mean and invStd
	// (C each, needed by BatchNormBackward) and, when runMean and runVar are
	// not nil, updates them as PyTorch does: r ← (1−momentum)·r +
	// momentum·stat, with the unbiased variance (×M/(M−1), M =
	// outer·inner, when M > 1) for runVar.
	BatchNormTrain(s ChanShape, eps, momentum float32, x, gamma, beta, y, mean, invStd, runMean, runVar Buffer) error
	// BatchNormInfer normalises with the running statistics.
	BatchNormInfer(s ChanShape, eps float32, x, gamma, beta, runMean, runVar, y Buffer) error
	// BatchNormBackward, given the forward input x and the saved mean and
	// invStd, writes dx and accumulates dgamma += Σ dy·x̂ and dbeta += Σ dy.
	BatchNormBackward(s ChanShape, x, gamma, mean, invStd, dy, dx, dgamma, dbeta Buffer) error

	// PReLU sets y = x where x > 0, else slope[c]·x.
	PReLU(s ChanShape, x, slope, y Buffer) error
	// PReLUBackward writes dx and accumulates dslope[c] += Σ dy·x over
	// x ≤ 0.
	PReLUBackward(s ChanShape, x, slope, dy, dx, dslope Buffer) error

	// L2NormalizeRows sets y[r] = x[r] / max(‖x[r]‖, eps) for each of the
	// rows×cols row-major rows, and norms[r] = ‖x[r]‖.
	L2NormalizeRows(rows, cols int, eps float32, x, y, norms Buffer) error
	// L2NormalizeRowsBackward writes dx from the forward output y and
	// norms: dx = (dy − y·⟨y,dy⟩)/‖x‖, or dy/eps where ‖x‖ ≤ eps.
	L2NormalizeRowsBackward(rows, cols int, eps float32, y, norms, dy, dx Buffer) error

	// GatherRows copies rows of the srcRows×cols matrix src into the
	// n×cols matrix dst: dst[i] = src[idx[i]]; a negative idx[i] zeroes
	// dst[i].
	GatherRows(n, cols int, src Buffer, srcRows int, idx IndexBuffer, dst Buffer) error
	// ScatterRows copies the rows of the n×cols matrix src into the
	// dstRows×cols matrix dst: dst[idx[i]] = src[i] in increasing i, so the
	// last of repeated indices wins; negative indices are skipped.
	ScatterRows(n, cols int, src Buffer, idx IndexBuffer, dst Buffer, dstRows int) error
}

// Losses holds the fused loss kernels of the classification heads.
type Losses interface {
	// MarginSoftmaxCE is the fused margin softmax cross-entropy over the
	// rows×cols matrix cos (cosines). For each row r with targets[r] = t ≥
	// 0, the logits are z_j = S·cos_j (j ≠ t) and z_t = S·φ(cos_t) with φ
	// the margin of m; the row's loss −log softmax(z)_t goes to rowLoss[r]
	// (if rowLoss is not nil) and, if grad is not nil, the gradient of
	// gradScale·loss_r with respect to cos goes to grad[r] (pass
	// gradScale = 1/count for the mean over rows with targets). Rows with
	// t < 0 are neither read nor written in any buffer, so a second loss
	// (FreshTopKLoss) can fill them. grad may be cos itself (in place) or a
	// separate buffer; no other B×C memory is used.
	MarginSoftmaxCE(rows, cols int, m Margin, cos Buffer, targets IndexBuffer, gradScale float32, grad, rowLoss Buffer) error
	// TopK writes, for each row of the rows×cols matrix x, the k largest
	// values (descending; equal values by ascending column) to vals
	// (rows×k) and their columns to idx, without sorting whole rows. NaN
	// entries are never preferred over numbers. 1 ≤ k ≤ min(cols, MaxTopK).
	TopK(rows, cols, k int, x Buffer, vals Buffer, idx IndexBuffer) error
	// FreshTopKLoss is the loss of fresh IDs: for each row r selected
	// (targets == nil, or targets[r] < 0) rowLoss[r] = Σ over the k largest
	// cos[r][j] of max(cos[r][j], 0); if grad is not nil, grad[r] is
	// overwritten with the gradient of gradScale·rowLoss[r]: gradScale on
	// the selected entries that are > 0, 0 elsewhere (gradScale =
	// 1/(rows·k) gives mean(clip(topK(cos), 0))). Other rows are neither
	// read nor written. grad may be cos itself.
	FreshTopKLoss(rows, cols, k int, cos Buffer, targets IndexBuffer, gradScale float32, grad, rowLoss Buffer) error
}

// Optimizer holds parameter updates.
type Optimizer interface {
	// SGDStep applies one step of SGD with momentum and weight decay to the
	// n parameters w given their gradient g and momentum buffer v, with
	// PyTorch's formulation (torch.optim.SGD, dampening 0):
	//
	//	d = g + wd·w
	//	v = μ·v + d
	//	w = w − lr·(d + μ·v)   (Nesterov)
	//	w = w − lr·v           (otherwise)
	//
	// PyTorch initialises v to d on the first step, which equals μ·0 + d, so
	// a zeroed v reproduces it.
	SGDStep(n int, p SGD, w, g, v Buffer) error
}

// MaxTopK bounds k in TopK and FreshTopKLoss.
const MaxTopK = 64

// SGD holds the hyper-parameters of [Optimizer.SGDStep].
type SGD struct {
	LR          float32
	Momentum    float32
	WeightDecay float32
	Nesterov    bool
}

// Layout is the memory order of a 4-d activation tensor.
type Layout int

const (
	// NCHW is [batch][channel][height][width].
	NCHW Layout = iota
	// CNHW is [channel][batch][height][width], the order a convolution
	// lowered to Gemm(W, Im2Col(x)) produces; a network can stay in it
	// throughout and avoid transposes.
	CNHW
)

// ConvGeom is the geometry of a 2-d convolution with a square K×K kernel,
// equal strides and equal zero padding on every side.
type ConvGeom struct {
	N, C, H, W int // input batch, channels, height, width
	K          int // kernel size
	Stride     int
	Pad        int
	Layout     Layout // layout of the input (and of Col2Im's output)
}

// OutH is the output height.
func (g ConvGeom) OutH() int { return (g.H+2*g.Pad-g.K)/g.Stride + 1 }

// OutW is the output width.
func (g ConvGeom) OutW() int { return (g.W+2*g.Pad-g.K)/g.Stride + 1 }

// InLen is the number of input elements N·C·H·W.
func (g ConvGeom) InLen() int { return g.N * g.C * g.H * g.W }

// ColRows is the number of rows of the column matrix, C·K·K.
func (g ConvGeom) ColRows() int { return g.C * g.K * g.K }

// ColCols is the number of columns of the column matrix, N·OutH·OutW.
func (g ConvGeom) ColCols() int { return g.N * g.OutH() * g.OutW() }

// Validate reports whether the geometry is usable.
func (g ConvGeom) Validate() error {
	switch {
	case g.N < 0 || g.C < 0 || g.H < 0 || g.W < 0:
		return fmt.Errorf("conv geometry %+v: %w: negative dimension", g, ErrShape)
	case g.K < 1 || g.Stride < 1 || g.Pad < 0:
		return fmt.Errorf("conv geometry %+v: %w: need K ≥ 1, Stride ≥ 1, Pad ≥ 0", g, ErrShape)
	case g.H+2*g.Pad < g.K || g.W+2*g.Pad < g.K:
		return fmt.Errorf("conv geometry %+v: %w: kernel larger than padded input", g, ErrShape)
	case g.Layout != NCHW && g.Layout != CNHW:
		return fmt.Errorf("conv geometry %+v: %w: unknown layout", g, ErrShape)
	}
	return nil
}

// ChanShape views a tensor as [Outer][C][Inner] for per-channel operations:
// NCHW is {N, C, H·W}, CNHW is {1, C, N·H·W}, an N×C matrix is {N, C, 1}.
type ChanShape struct {
	Outer, C, Inner int
}

// Len is Outer·C·Inner.
func (s ChanShape) Len() int { return s.Outer * s.C * s.Inner }

// Validate reports whether the shape has no negative dimension.
func (s ChanShape) Validate() error {
	if s.Outer < 0 || s.C < 0 || s.Inner < 0 {
		return fmt.Errorf("channel shape %+v: %w: negative dimension", s, ErrShape)
	}
	return nil
}

// MarginKind selects the margin of [Margin].
type MarginKind int

const (
	// NoMargin is the plain scaled softmax: φ(c) = c.
	NoMargin MarginKind = iota
	// CosFace is φ(c) = c − M.
	CosFace
	// ArcFace is φ(c) = cos(θ + M) with θ = acos(c), c clamped to [−1, 1];
	// where c ≤ cos(π − M) (θ + M would pass π) it is c − M·sin(π − M), as
	// in insightface.
	ArcFace
)

// String names the margin kind.
func (k MarginKind) String() string {
	switch k {
	case NoMargin:
		return "none"
	case CosFace:
		return "cosface"
	case ArcFace:
		return "arcface"
	}
	return fmt.Sprintf("MarginKind(%d)", int(k))
}

// Margin is the target-logit margin and the scale of the margin softmax.
type Margin struct {
	Kind MarginKind
	S    float32 // scale, > 0 (e.g. 32 or 64)
	M    float32 // margin (CosFace 0.4, ArcFace 0.5)
}

// Validate reports whether the margin is usable.
func (m Margin) Validate() error {
	if !(m.S > 0) || math.IsInf(float64(m.S), 0) {
		return fmt.Errorf("margin %+v: %w: scale must be positive and finite", m, ErrShape)
	}
	switch m.Kind {
	case NoMargin, CosFace:
	case ArcFace:
		if !(m.M >= 0 && m.M < math.Pi) {
			return fmt.Errorf("margin %+v: %w: ArcFace margin must be in [0, π)", m, ErrShape)
		}
	default:
		return fmt.Errorf("margin %+v: %w: unknown kind", m, ErrShape)
	}
	return nil
}

// ArcSinFloor bounds sin θ from below in the ArcFace derivative
// dφ/dc = cos M + c·sin M / sin θ, which is infinite at c = ±1; with the
// floor the gradient stays finite (at most cos M + sin M/ArcSinFloor).
const ArcSinFloor = 1e-4

// Target returns φ(c) and dφ/dc for the target cosine c. It is the
// reference definition that backends implement (in float64 on the CPU).
func (m Margin) Target(c float64) (phi, dphi float64) {
	switch m.Kind {
	case CosFace:
		return c - float64(m.M), 1
	case ArcFace:
		c = max(-1, min(1, c))
		mm := float64(m.M)
		if c > math.Cos(math.Pi-mm) {
			sin := math.Sqrt(max(0, 1-c*c))
			phi = c*math.Cos(mm) - sin*math.Sin(mm)
			dphi = math.Cos(mm) + c*math.Sin(mm)/max(sin, ArcSinFloor)
			return phi, dphi
		}
		return c - math.Sin(math.Pi-mm)*mm, 1
	}
	return c, 1
}
