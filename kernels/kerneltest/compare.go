package kerneltest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// Precision selects the tolerances of Compare.
type Precision int

const (
	// FP32: both backends compute in float32.
	FP32 Precision = iota
	// TF32: the backend under test multiplies matrices with TF32 tensor
	// cores (inputs rounded to a 10-bit mantissa, float32 accumulation).
	TF32
)

// String names the precision.
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case TF32:
		return "tf32"
	}
	return fmt.Sprintf("Precision(%d)", int(p))
}

// CompareOptions configures Compare.
type CompareOptions struct {
	Precision Precision
	// Seed seeds the random inputs; 0 draws a fresh seed from crypto/rand
	// each run. The seed is logged so that a failure can be replayed.
	Seed uint64
	// Rounds is the number of random shapes per operation; 0 means 3.
	Rounds int
	// Large adds the big shapes of the trainer (head B = 256, D = 512,
	// Q = 10000; backbone convolutions at batch 64): slower.
	Large bool
}

// Tolerances of Compare. Every float comparison is the relative L2 error
// ‖got − want‖₂ / ‖want‖₂ over the written elements (the absolute L2
// error where want is all zeros), plus a per-element guard that no single
// element is off by more than elemGuard·tol·max|want|, so that one wrong
// element cannot hide in a large buffer. NaN and ±Inf must match exactly.
//
//	class      FP32    TF32    operations
//	exact      0       0       Alloc/Upload/Download/View round trips, Fill,
//	                           Copy, ReLU, ReLUBackward, Im2Col, SwapAxes,
//	                           GatherRows, ScatterRows, TopK (values; indices
//	                           when values are distinct), FreshTopKLoss grad,
//	                           AllFinite
//	elem       1e-5    1e-5    Add, Mul, Scale, AddScalar, Axpby, SGDStep,
//	                           Col2Im, AddChannel, BatchNormInfer, PReLU,
//	                           PReLUBackward dx, L2 backward in the eps path
//	red        1e-4    1e-4    ChannelSum, BatchNormTrain, BatchNormBackward,
//	                           PReLUBackward dslope, L2NormalizeRows(+Backward),
//	                           MarginSoftmaxCE, FreshTopKLoss loss
//	gemm       1e-4    5e-3    Gemm, Gemv
//	sum        1e-5·Σ|x|       Sum (absolute error bound)
//
// Justification (float32 unit roundoff u = 2⁻²⁴ ≈ 6e-8):
//
//   - elem: one to three roundings per element, so two correct backends
//     differ by a few u per element (FMA contraction, a different
//     association of Axpby or of BatchNormInfer's affine map, Col2Im's ≤ K²
//     terms summed in another order or with atomics): relative L2 ≈ 1e-7.
//     1e-5 leaves two orders of magnitude and still catches a wrong
//     coefficient (e.g. Axpby with alpha off by 1e-4).
//   - red: results downstream of a reduction over up to ~10⁵ terms. The
//     CPU accumulates in float64; a GPU accumulating in float32 trees
//     errs by ≈ u·√(log₂ n) relative to Σ|x|, and at most u·log₂ n ≈ 1e-6
//     (n = 65536), amplified up to ~√n-fold relative to the result by the
//     cancellation of zero-mean data. Observed errors are ~1e-6; 1e-4 keeps
//     margin for GPU reduction orders and for the exp approximations of
//     the fused losses (the CPU's exp32 and CUDA's __expf both stay
//     within a few ulp over the range used).
//   - gemm FP32: a float32 dot product of length k errs by ≈ u·√k relative
//     (random signs), 6e-6 at k = 10000; OpenBLAS vs gonum measure ≈ 1e-6.
//     1e-4 leaves ×15 at the largest k of the trainer.
//   - gemm TF32: the inputs are rounded to 11 significant bits (u' = 2⁻¹¹ ≈
//     4.9e-4 with rounding, 2⁻¹⁰ with truncation), so each product errs by
//     ≤ 2u' relative. For inputs with random signs the errors of the k
//     products are independent and ‖ΔC‖/‖C‖ ≈ √(2/3)·u' … 2u' whatever k
//     (TestTF32ErrorModel measures 6.5e-4 … 7.9e-4 for truncation, from k =
//     1 to k = 10000). The worst-case bound 2u'·Σ|a||b|/|C| grows like √k
//     (2e-3·√k was the first proposal), but such a tolerance would be 0.2
//     at k = 10000 and would pass a product that drops a whole 32-wide
//     k-slice (≈ 6 % error). 5e-3 is ×7 the measured truncation error and
//     catches that. Gemv on a TF32 backend may use tensor cores too; it
//     gets the same tolerance.
//   - gemm, both precisions: the error is taken relative to max(‖want‖,
//     gemmScale), the size a product of these inputs has without
//     cancellation, so that a result that happens to cancel (one element,
//     C = 0.045 where ~8 is typical) is not held to a tighter bound.
//   - sum: Sum accumulates in float64; 1e-5·Σ|x| still allows float32
//     partial sums of up to ~150 terms per thread.
type tolerances struct {
	elem, red, gemm, sum float64
}

// elemGuard bounds the error of any single element, relative to the
// largest |want| and in units of the L2 tolerance.
const elemGuard = 10

func tolerancesFor(p Precision) tolerances {
	t := tolerances{elem: 1e-5, red: 1e-4, gemm: 1e-4, sum: 1e-5}
	if p == TF32 {
		t.gemm = 5e-3
	}
	return t
}

// reporter is the part of testing.T that Compare uses, so that the tests
// of Compare itself can record failures instead of failing.
type reporter interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	// Run runs fn as a named sub-test.
	Run(name string, fn func(reporter))
}

type tReporter struct{ *testing.T }

func (r tReporter) Run(name string, fn func(reporter)) {
	r.T.Run(name, func(t *testing.T) { fn(tReporter{t}) })
}

// Compare runs every operation of kernels.Backend on got and on want with
// the same random inputs and fails t where they differ by more than the
// tolerance of opts.Precision (see the table above). Outputs are poisoned
// with a NaN before each run, every buffer carries a poisoned tail past the
// elements an operation may touch, and elements the reference leaves alone
// (rows without target, unselected rows, tails) must keep their bits on
// got. Each operation runs as a sub-test named after its method.
//
// want is the reference (usually the CPU backend); got is the backend under
// test. Compare allocates and frees buffers on both but closes neither.
func Compare(t *testing.T, got, want kernels.Backend, opts CompareOptions) {
	t.Helper()
	compare(tReporter{t}, got, want, opts, nil)
}

// compare is Compare on a reporter, restricted to the operations for which
// only returns true (all when only is nil).
func compare(r reporter, got, want kernels.Backend, opts CompareOptions, only func(string) bool) {
	r.Helper()
	seed := opts.Seed
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes instead)
		seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	rounds := opts.Rounds
	if rounds <= 0 {
		rounds = 3
	}
	r.Logf("kerneltest.Compare: got %s, want %s, precision %v, rounds %d, large %v; seed %d (replay with CompareOptions{Seed: %d})",
		got.Name(), want.Name(), opts.Precision, rounds, opts.Large, seed, seed)
	for _, op := range compareOps() {
		if only != nil && !only(op.name) {
			continue
		}
		r.Run(op.name, func(r reporter) {
			h := fnv.New64a()
			h.Write([]byte(op.name))
			c := &cmp{
				r:      r,
				op:     op.name,
				be:     [2]kernels.Backend{got, want},
				rng:    mrand.New(mrand.NewPCG(seed, h.Sum64())),
				tol:    tolerancesFor(opts.Precision),
				rounds: rounds,
				large:  opts.Large,
			}
			op.run(c)
		})
	}
}

// compareOp is one entry of the comparison table: the method of
// kernels.Backend it checks (its name) and the other methods it covers.
type compareOp struct {
	name string
	also []string
	run  func(*cmp)
}

// compareOps lists the comparisons; TestCompareCoversBackend checks that
// every method of kernels.Backend appears here or in notCompared.
func compareOps() []compareOp {
	return []compareOp{
		{name: "Memory", run: cmpMemory, also: []string{"Alloc", "AllocIndex", "View", "ViewIndex", "Free", "FreeIndex",
			"Upload", "Download", "UploadIndex", "DownloadIndex", "Name", "Sync"}},
		{name: "Gemm", run: cmpGemm},
		{name: "Gemv", run: cmpGemv},
		{name: "Fill", run: cmpFill},
		{name: "Copy", run: cmpCopy},
		{name: "Add", run: cmpAdd},
		{name: "Mul", run: cmpMul},
		{name: "Scale", run: cmpScale},
		{name: "AddScalar", run: cmpAddScalar},
		{name: "Axpby", run: cmpAxpby},
		{name: "ReLU", run: cmpReLU},
		{name: "ReLUBackward", run: cmpReLUBackward},
		{name: "Sum", run: cmpSum},
		{name: "AllFinite", run: cmpAllFinite},
		{name: "Im2Col", run: cmpIm2Col},
		{name: "Col2Im", run: cmpCol2Im},
		{name: "SwapAxes", run: cmpSwapAxes},
		{name: "AddChannel", run: cmpAddChannel},
		{name: "ChannelSum", run: cmpChannelSum},
		{name: "BatchNormTrain", run: cmpBatchNormTrain},
		{name: "BatchNormInfer", run: cmpBatchNormInfer},
		{name: "BatchNormBackward", run: cmpBatchNormBackward},
		{name: "PReLU", run: cmpPReLU},
		{name: "PReLUBackward", run: cmpPReLUBackward},
		{name: "L2NormalizeRows", run: cmpL2Normalize},
		{name: "L2NormalizeRowsBackward", run: cmpL2NormalizeBackward},
		{name: "GatherRows", run: cmpGatherRows},
		{name: "ScatterRows", run: cmpScatterRows},
		{name: "MarginSoftmaxCE", run: cmpMarginSoftmaxCE},
		{name: "TopK", run: cmpTopK},
		{name: "FreshTopKLoss", run: cmpFreshTopKLoss},
		{name: "SGDStep", run: cmpSGDStep},
	}
}

// notCompared are the methods of kernels.Backend that Compare deliberately
// does not call, with the reason.
var notCompared = map[string]string{
	"Close": "Compare borrows the backends; closing them is the caller's business",
}
