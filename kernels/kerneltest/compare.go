package kerneltest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	mrand "math/rand/v2"
	"slices"
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

// poisonBits is the NaN that fills outputs before an operation and the
// tails of every buffer: a quiet NaN with a payload no arithmetic produces,
// so that "left alone" can be told from "wrote a NaN".
const poisonBits = 0x7fc5a5a5

// poisonIndex fills index outputs and tails.
const poisonIndex = -0x5a5a5a5a

// tail is the number of poisoned elements after the used part of every
// buffer: an operation must neither read them (inputs: NaN would
// propagate) nor write them.
const tail = 3

var poison = math.Float32frombits(poisonBits)

func isPoison(v float32) bool { return math.Float32bits(v) == poisonBits }

func poisoned(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = poison
	}
	return x
}

// bufs is a buffer on each backend: [0] on got, [1] on want.
type bufs [2]kernels.Buffer

// ibufs is an index buffer on each backend.
type ibufs [2]kernels.IndexBuffer

var sideName = [2]string{"got", "want"}

// cmp runs the cases of one operation.
type cmp struct {
	r      reporter
	op     string
	be     [2]kernels.Backend
	rng    *mrand.Rand
	tol    tolerances
	rounds int
	large  bool

	shape  string // the current case, for messages
	broken bool   // a backend error ended the current case
	owned  []bufs
	ownedI []ibufs
}

// each runs fn as one case described by shape, then frees its buffers.
func (c *cmp) each(shape string, fn func()) {
	c.shape, c.broken = shape, false
	defer c.release()
	fn()
}

func (c *cmp) release() {
	for _, b := range c.owned {
		for i, be := range c.be {
			if err := be.Free(b[i]); err != nil {
				c.r.Errorf("%s %s: Free on %s (%s): %v", c.op, c.shape, sideName[i], be.Name(), err)
			}
		}
	}
	for _, b := range c.ownedI {
		for i, be := range c.be {
			if err := be.FreeIndex(b[i]); err != nil {
				c.r.Errorf("%s %s: FreeIndex on %s (%s): %v", c.op, c.shape, sideName[i], be.Name(), err)
			}
		}
	}
	c.owned, c.ownedI = c.owned[:0], c.ownedI[:0]
}

// fail reports a backend error and ends the case.
func (c *cmp) fail(side int, what string, err error) {
	c.r.Helper()
	c.r.Errorf("%s %s: %s on %s (%s): %v", c.op, c.shape, what, sideName[side], c.be[side].Name(), err)
	c.broken = true
}

// do runs fn on got, then on want, each followed by Sync.
func (c *cmp) do(fn func(be kernels.Backend, s int) error) bool {
	c.r.Helper()
	if c.broken {
		return false
	}
	for s, be := range c.be {
		err := fn(be, s)
		if err == nil {
			err = be.Sync()
		}
		if err != nil {
			c.fail(s, c.op, err)
			return false
		}
	}
	return true
}

// allocBoth allocates len(host) elements on got, then on want, with alloc
// and, unless put is nil, uploads host into each right after allocating
// it; allocName and putName name the methods in messages. After a
// failure, which it reports and which ends the case, it returns the
// buffers allocated so far and ok = false.
func allocBoth[B, T any](c *cmp, host []T, alloc func(kernels.Backend, int) (B, error), allocName string,
	put func(kernels.Backend, B, []T) error, putName string) (b [2]B, ok bool) {
	c.r.Helper()
	for s, be := range c.be {
		buf, err := alloc(be, len(host))
		if err != nil {
			c.fail(s, allocName, err)
			return b, false
		}
		b[s] = buf
		if put == nil {
			continue
		}
		if err := put(be, buf, host); err != nil {
			c.fail(s, putName, err)
			return b, false
		}
	}
	return b, true
}

// up uploads x followed by a poisoned tail to fresh buffers on both sides.
func (c *cmp) up(x []float32) bufs {
	c.r.Helper()
	if c.broken {
		return bufs{}
	}
	b, ok := allocBoth(c, slices.Concat(x, poisoned(tail)), kernels.Backend.Alloc, "Alloc", kernels.Backend.Upload, "Upload")
	if ok {
		c.owned = append(c.owned, b)
	}
	return b
}

// out returns n poisoned elements (and the tail) on both sides.
func (c *cmp) out(n int) bufs { return c.up(poisoned(n)) }

// upIdx uploads x followed by a poisoned tail.
func (c *cmp) upIdx(x []int32) ibufs {
	c.r.Helper()
	if c.broken {
		return ibufs{}
	}
	host := slices.Concat(x, []int32{poisonIndex, poisonIndex, poisonIndex})
	b, ok := allocBoth(c, host, kernels.Backend.AllocIndex, "AllocIndex", kernels.Backend.UploadIndex, "UploadIndex")
	if ok {
		c.ownedI = append(c.ownedI, b)
	}
	return b
}

// outIdx returns n poisoned indices on both sides.
func (c *cmp) outIdx(n int) ibufs {
	x := make([]int32, n)
	for i := range x {
		x[i] = poisonIndex
	}
	return c.upIdx(x)
}

// get downloads the whole of p on both sides and checks what must be left
// alone: elements past n and elements where want still holds the poison
// must be bit for bit the same on got. It returns the first n elements.
func (c *cmp) get(what string, p bufs, n int) (g, w []float32, ok bool) {
	c.r.Helper()
	if c.broken {
		return nil, nil, false
	}
	var host [2][]float32
	for s, be := range c.be {
		host[s] = make([]float32, p[s].Len())
		if err := be.Download(host[s], p[s]); err != nil {
			c.fail(s, "Download of "+what, err)
			return nil, nil, false
		}
	}
	g, w = host[0], host[1]
	for i := range w {
		if (i >= n || isPoison(w[i])) && math.Float32bits(g[i]) != math.Float32bits(w[i]) {
			where := "an element the reference leaves alone"
			if i >= n {
				where = fmt.Sprintf("past the %d elements of the operation", n)
			}
			c.r.Errorf("%s %s: %s: [%d] is %s but got %v (bits %#x), want %v (bits %#x)",
				c.op, c.shape, what, i, where, g[i], math.Float32bits(g[i]), w[i], math.Float32bits(w[i]))
			return nil, nil, false
		}
	}
	return g[:n], w[:n], true
}

// check compares the first n elements of p on both sides within tol
// (0: exactly).
func (c *cmp) check(what string, p bufs, n int, tol float64) {
	c.r.Helper()
	c.checkScaled(what, p, n, tol, 0)
}

// checkScaled is check with the error measured against max(‖want‖, scale).
func (c *cmp) checkScaled(what string, p bufs, n int, tol, scale float64) {
	c.r.Helper()
	if g, w, ok := c.get(what, p, n); ok {
		c.closeScaled(what, g, w, tol, scale)
	}
}

// close compares got with want: non-finite values must match, and with
// tol = 0 everything must be equal; otherwise the relative L2 error must
// be ≤ tol and no element may be off by more than elemGuard·tol·max|want|.
func (c *cmp) close(what string, g, w []float32, tol float64) bool {
	c.r.Helper()
	return c.closeScaled(what, g, w, tol, 0)
}

// closeScaled is close with the L2 error relative to max(‖want‖₂, scale)
// and the per-element guard relative to max(max|want|, scale/√n): scale is
// the natural size of the result where it may cancel (see gemmScale).
func (c *cmp) closeScaled(what string, g, w []float32, tol, scale float64) bool {
	c.r.Helper()
	var num, den, maxErr, maxW float64
	worst := -1
	for i, wv := range w {
		gv := g[i]
		g64, w64 := float64(gv), float64(wv)
		if finite(w64) != finite(g64) || (!finite(w64) && !(g64 == w64 || (gv != gv && wv != wv))) {
			c.r.Errorf("%s %s: %s: [%d] = %v, want %v", c.op, c.shape, what, i, gv, wv)
			return false
		}
		if !finite(w64) {
			continue
		}
		d := math.Abs(g64 - w64)
		if tol == 0 && d != 0 {
			c.r.Errorf("%s %s: %s: [%d] = %v, want exactly %v", c.op, c.shape, what, i, gv, wv)
			return false
		}
		num += d * d
		den += w64 * w64
		maxW = max(maxW, math.Abs(w64))
		if d > maxErr {
			maxErr, worst = d, i
		}
	}
	if tol == 0 || worst < 0 {
		return true
	}
	if len(w) > 0 {
		maxW = max(maxW, scale/math.Sqrt(float64(len(w))))
	}
	rel := math.Sqrt(num)
	if d := max(math.Sqrt(den), scale); d > 0 {
		rel /= d
	}
	if rel > tol || (maxW > 0 && maxErr > elemGuard*tol*maxW) {
		c.r.Errorf("%s %s: %s: relative L2 error %.3g (tolerance %.3g) over %d elements; worst [%d]: got %v, want %v (|Δ| = %.3g = %.3g·max|want|)",
			c.op, c.shape, what, rel, tol, len(w), worst, g[worst], w[worst], maxErr, maxErr/max(maxW, math.SmallestNonzeroFloat64))
		return false
	}
	return true
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// rowsOf gathers the listed rows of a rows×cols matrix.
func rowsOf(x []float32, cols int, rows []int) []float32 {
	out := make([]float32, 0, len(rows)*cols)
	for _, r := range rows {
		out = append(out, x[r*cols:(r+1)*cols]...)
	}
	return out
}

// keeps checks that the listed rows of p on got still hold host's values
// bit for bit (poison, or the original input of an in-place operation).
func (c *cmp) keeps(what string, p bufs, cols int, rows []int, host []float32) {
	c.r.Helper()
	if c.broken || len(rows) == 0 {
		return
	}
	g := make([]float32, p[0].Len())
	if err := c.be[0].Download(g, p[0]); err != nil {
		c.fail(0, "Download of "+what, err)
		return
	}
	for _, r := range rows {
		for j := range cols {
			i := r*cols + j
			if math.Float32bits(g[i]) != math.Float32bits(host[i]) {
				c.r.Errorf("%s %s: %s: row %d must be left alone, but [%d][%d] = %v, was %v",
					c.op, c.shape, what, r, r, j, g[i], host[i])
				return
			}
		}
	}
}

// unchanged checks that an input still holds host exactly on both sides.
func (c *cmp) unchanged(what string, p bufs, host []float32) {
	c.r.Helper()
	if g, w, ok := c.get(what, p, len(host)); ok {
		c.close(what+" on got", g, host, 0)
		c.close(what+" on want", w, host, 0)
	}
}

// getIdx is get for index buffers.
func (c *cmp) getIdx(what string, p ibufs, n int) (g, w []int32, ok bool) {
	c.r.Helper()
	if c.broken {
		return nil, nil, false
	}
	var host [2][]int32
	for s, be := range c.be {
		host[s] = make([]int32, p[s].Len())
		if err := be.DownloadIndex(host[s], p[s]); err != nil {
			c.fail(s, "DownloadIndex of "+what, err)
			return nil, nil, false
		}
	}
	g, w = host[0], host[1]
	for i := n; i < len(w); i++ {
		if g[i] != w[i] {
			c.r.Errorf("%s %s: %s: [%d] is past the %d elements of the operation but got %d, want %d", c.op, c.shape, what, i, n, g[i], w[i])
			return nil, nil, false
		}
	}
	return g[:n], w[:n], true
}

// equalIdx fails unless g == want.
func (c *cmp) equalIdx(what string, g, w []int32) bool {
	c.r.Helper()
	for i := range w {
		if g[i] != w[i] {
			c.r.Errorf("%s %s: %s: [%d] = %d, want %d", c.op, c.shape, what, i, g[i], w[i])
			return false
		}
	}
	return true
}

// Random inputs.

// compareDims are the odd sizes that shapes are drawn from.
var compareDims = []int{1, 3, 17, 33, 65, 127}

func (c *cmp) pick(xs ...int) int { return xs[c.rng.IntN(len(xs))] }

// dim draws a dimension: an odd size, or now and then any size up to 130.
func (c *cmp) dim() int {
	if c.rng.IntN(4) == 0 {
		return 1 + c.rng.IntN(130)
	}
	return compareDims[c.rng.IntN(len(compareDims))]
}

// lengths returns the vector lengths of the elementwise operations: one per
// round (the first rounds small, the others crossing the CPU's threading
// threshold of 32768), 0, and with Large the head's B·Q.
func (c *cmp) lengths() []int {
	var ns []int
	for r := range c.rounds {
		if r%3 == 2 {
			ns = append(ns, 40000+c.rng.IntN(30000))
		} else {
			ns = append(ns, c.pick(1, 3, 17, 33, 65, 127, 1000+c.rng.IntN(1000)))
		}
	}
	ns = append(ns, 0)
	if c.large {
		ns = append(ns, 256*10000)
	}
	return ns
}

func (c *cmp) normal(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(c.rng.NormFloat64())
	}
	return x
}

func (c *cmp) uniform(n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*c.rng.Float64())
	}
	return x
}

// signed returns n normal values with about one in eight exactly 0 (the
// kink of ReLU and PReLU).
func (c *cmp) signed(n int) []float32 {
	x := c.normal(n)
	for i := range x {
		if c.rng.IntN(8) == 0 {
			x[i] = 0
		}
	}
	return x
}

// Memory.

func cmpMemory(c *cmp) {
	for _, n := range c.lengths() {
		c.each(fmt.Sprintf("n=%d", n), func() {
			if c.broken {
				return
			}
			zero := make([]float32, n)
			z, ok := allocBoth(c, zero, kernels.Backend.Alloc, "Alloc", nil, "")
			if !ok {
				return
			}
			c.owned = append(c.owned, z)
			c.unchanged("Alloc is zeroed", z, zero)

			x := c.normal(n)
			p := c.up(x)
			c.unchanged("Upload then Download", p, x)
			if n > 0 {
				// Download of a prefix.
				m := 1 + c.rng.IntN(n)
				for s, be := range c.be {
					pre := make([]float32, m)
					if err := be.Download(pre, p[s]); err != nil {
						c.fail(s, "Download of a prefix", err)
						return
					}
					c.close(fmt.Sprintf("Download of the first %d on %s", m, sideName[s]), pre, x[:m], 0)
				}
				// Views, and a view of a view, written through.
				off := c.rng.IntN(n)
				m = 1 + c.rng.IntN(n-off)
				off2 := c.rng.IntN(m)
				m2 := 1 + c.rng.IntN(m-off2)
				y := c.normal(m2)
				want := slices.Clone(x)
				copy(want[off+off2:], y)
				var v, vv bufs
				for s, be := range c.be {
					var err error
					if v[s], err = be.View(p[s], off, m); err != nil {
						c.fail(s, "View", err)
						return
					}
					if v[s].Len() != m {
						c.r.Errorf("%s %s: View(%d, %d) on %s has Len %d", c.op, c.shape, off, m, sideName[s], v[s].Len())
					}
					if vv[s], err = be.View(v[s], off2, m2); err != nil {
						c.fail(s, "View of a view", err)
						return
					}
					if err := be.Upload(vv[s], y); err != nil {
						c.fail(s, "Upload into a view", err)
						return
					}
					got := make([]float32, m)
					if err := be.Download(got, v[s]); err != nil {
						c.fail(s, "Download of a view", err)
						return
					}
					c.close("Download of a view on "+sideName[s], got, want[off:off+m], 0)
					if err := be.Free(vv[s]); err != nil {
						c.fail(s, "Free of a view", err)
						return
					}
				}
				c.unchanged("parent written through views, after freeing a view", p, want)
			}

			// Index buffers.
			zeroI := make([]int32, n)
			zi, ok := allocBoth(c, zeroI, kernels.Backend.AllocIndex, "AllocIndex", nil, "")
			if !ok {
				return
			}
			c.ownedI = append(c.ownedI, zi)
			if g, w, ok := c.getIdx("AllocIndex is zeroed", zi, n); ok {
				c.equalIdx("AllocIndex is zeroed (got)", g, zeroI)
				c.equalIdx("AllocIndex is zeroed (want)", w, zeroI)
			}
			xi := make([]int32, n)
			for i := range xi {
				xi[i] = int32(c.rng.Uint32())
			}
			pi := c.upIdx(xi)
			if g, w, ok := c.getIdx("UploadIndex then DownloadIndex", pi, n); ok {
				c.equalIdx("UploadIndex then DownloadIndex (got)", g, xi)
				c.equalIdx("UploadIndex then DownloadIndex (want)", w, xi)
			}
			if n > 0 && !c.broken {
				off := c.rng.IntN(n)
				m := 1 + c.rng.IntN(n-off)
				y := make([]int32, m)
				for i := range y {
					y[i] = int32(c.rng.IntN(1000)) - 500
				}
				want := slices.Clone(xi)
				copy(want[off:], y)
				for s, be := range c.be {
					v, err := be.ViewIndex(pi[s], off, m)
					if err != nil {
						c.fail(s, "ViewIndex", err)
						return
					}
					if v.Len() != m {
						c.r.Errorf("%s %s: ViewIndex(%d, %d) on %s has Len %d", c.op, c.shape, off, m, sideName[s], v.Len())
					}
					if err := be.UploadIndex(v, y); err != nil {
						c.fail(s, "UploadIndex into a view", err)
						return
					}
					got := make([]int32, m)
					if err := be.DownloadIndex(got, v); err != nil {
						c.fail(s, "DownloadIndex of a view", err)
						return
					}
					c.equalIdx("DownloadIndex of a view on "+sideName[s], got, y)
					if err := be.FreeIndex(v); err != nil {
						c.fail(s, "FreeIndex of a view", err)
						return
					}
				}
				if g, w, ok := c.getIdx("index parent written through a view", pi, n); ok {
					c.equalIdx("index parent written through a view (got)", g, want)
					c.equalIdx("index parent written through a view (want)", w, want)
				}
			}
		})
	}
}

// BLAS.

type gemmCase struct {
	m, n, k        int
	transA, transB bool
}

func cmpGemm(c *cmp) {
	var cases []gemmCase
	for range c.rounds {
		m, n, k := c.dim(), c.dim(), c.dim()
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				cases = append(cases, gemmCase{m, n, k, ta, tb})
			}
		}
	}
	cases = append(cases, gemmCase{3, 5, 0, false, true}, gemmCase{0, 4, 7, true, false}, gemmCase{130, 257, 300, true, true})
	if c.large {
		for _, s := range GemmShapes() {
			cases = append(cases, gemmCase{s.M, s.N, s.K, s.TransA, s.TransB})
		}
	}
	// (alpha, beta): beta = 0 with a NaN-poisoned C (it must not be read),
	// general, accumulating, and alpha = 0 (C = beta·C).
	ab := [][2]float32{{1, 0}, {0.5, -1.5}, {-2, 1}, {0, 0.75}}
	for i, g := range cases {
		abs := ab
		if i >= len(cases)-len(GemmShapes()) && c.large {
			abs = ab[:2] // the big shapes: beta = 0 and one general
		}
		a, b := c.normal(g.m*g.k), c.normal(g.k*g.n)
		for _, p := range abs {
			alpha, beta := p[0], p[1]
			c.each(fmt.Sprintf("m=%d n=%d k=%d transA=%v transB=%v alpha=%g beta=%g", g.m, g.n, g.k, g.transA, g.transB, alpha, beta), func() {
				ab, bb := c.up(a), c.up(b)
				cc := c.out(g.m * g.n)
				if beta != 0 {
					cc = c.up(c.normal(g.m * g.n))
				}
				c.do(func(be kernels.Backend, s int) error {
					return be.Gemm(g.transA, g.transB, g.m, g.n, g.k, alpha, ab[s], bb[s], beta, cc[s])
				})
				c.checkScaled("C", cc, g.m*g.n, c.tol.gemm, gemmScale(g, alpha, a, b))
				if g.m*g.n*g.k < 1<<16 {
					c.unchanged("input A unchanged", ab, a)
					c.unchanged("input B unchanged", bb, b)
				}
			})
		}
	}
}

// gemmScale is the natural size of the product alpha·op(A)·op(B):
// |alpha|·(Σ_l ‖column l of op(A)‖²·‖row l of op(B)‖²)^½, the expected
// ‖Σ_l a_il·b_lj·δ_l‖ for independent unit relative errors δ of the k
// products. For inputs with random signs it is about ‖op(A)·op(B)‖, but it
// does not shrink when a result cancels: relative to a C of 0.045 that
// should be ~8 (m = n = 1, k = 65), correct TF32 products err by 1e-2.
func gemmScale(g gemmCase, alpha float32, a, b []float32) float64 {
	var s float64
	for l := range g.k {
		var na, nb float64
		for i := range g.m {
			v := a[i*g.k+l]
			if g.transA {
				v = a[l*g.m+i]
			}
			na += float64(v) * float64(v)
		}
		for j := range g.n {
			v := b[l*g.n+j]
			if g.transB {
				v = b[j*g.k+l]
			}
			nb += float64(v) * float64(v)
		}
		s += na * nb
	}
	return math.Abs(float64(alpha)) * math.Sqrt(s)
}

func cmpGemv(c *cmp) {
	var shapes [][2]int
	for range c.rounds {
		shapes = append(shapes, [2]int{c.dim(), c.dim()}, [2]int{c.dim(), 200 + c.rng.IntN(400)})
	}
	shapes = append(shapes, [2]int{0, 5}, [2]int{5, 0})
	if c.large {
		shapes = append(shapes, [2]int{10000, 512}, [2]int{256, 8192})
	}
	ab := [][2]float32{{1, 0}, {0.5, -1.5}, {0, 2}}
	for _, sh := range shapes {
		m, n := sh[0], sh[1]
		a := c.normal(m * n)
		for _, ta := range []bool{false, true} {
			lx, ly := n, m
			if ta {
				lx, ly = m, n
			}
			x := c.normal(lx)
			for _, p := range ab {
				alpha, beta := p[0], p[1]
				c.each(fmt.Sprintf("m=%d n=%d transA=%v alpha=%g beta=%g", m, n, ta, alpha, beta), func() {
					abuf, xb := c.up(a), c.up(x)
					y := c.out(ly)
					if beta != 0 {
						y = c.up(c.normal(ly))
					}
					c.do(func(be kernels.Backend, s int) error {
						return be.Gemv(ta, m, n, alpha, abuf[s], xb[s], beta, y[s])
					})
					c.checkScaled("y", y, ly, c.tol.gemm, gemmScale(gemmCase{ly, 1, lx, ta, false}, alpha, a, x))
					c.unchanged("input x unchanged", xb, x)
				})
			}
		}
	}
}

// Elementwise.

func cmpFill(c *cmp) {
	for _, n := range c.lengths() {
		for _, v := range []float32{0, float32(c.rng.NormFloat64())} {
			c.each(fmt.Sprintf("n=%d v=%g", n, v), func() {
				x := c.out(n)
				c.do(func(be kernels.Backend, s int) error { return be.Fill(n, v, x[s]) })
				c.check("x", x, n, 0)
			})
		}
	}
}

func cmpCopy(c *cmp) {
	for _, n := range c.lengths() {
		c.each(fmt.Sprintf("n=%d", n), func() {
			src := c.normal(n)
			sb, dst := c.up(src), c.out(n)
			c.do(func(be kernels.Backend, s int) error { return be.Copy(n, sb[s], dst[s]) })
			c.check("dst", dst, n, 0)
			c.unchanged("input src unchanged", sb, src)
		})
	}
}

// binary compares dst = f(a, b) out of place and in place (dst = a, then
// dst = b).
func cmpBinary(c *cmp, f func(be kernels.Backend, n int, a, b, dst kernels.Buffer) error) {
	for _, n := range c.lengths() {
		for _, mode := range []string{"dst separate", "dst = a", "dst = b"} {
			c.each(fmt.Sprintf("n=%d %s", n, mode), func() {
				a, b := c.normal(n), c.normal(n)
				ab, bb := c.up(a), c.up(b)
				dst := ab
				switch mode {
				case "dst separate":
					dst = c.out(n)
				case "dst = b":
					dst = bb
				}
				c.do(func(be kernels.Backend, s int) error { return f(be, n, ab[s], bb[s], dst[s]) })
				c.check("dst", dst, n, c.tol.elem)
			})
		}
	}
}

func cmpAdd(c *cmp) {
	cmpBinary(c, func(be kernels.Backend, n int, a, b, dst kernels.Buffer) error { return be.Add(n, a, b, dst) })
}

func cmpMul(c *cmp) {
	cmpBinary(c, func(be kernels.Backend, n int, a, b, dst kernels.Buffer) error { return be.Mul(n, a, b, dst) })
}

func cmpScale(c *cmp) {
	for _, n := range c.lengths() {
		alpha := float32(c.rng.NormFloat64())
		c.each(fmt.Sprintf("n=%d alpha=%g", n, alpha), func() {
			x := c.up(c.normal(n))
			c.do(func(be kernels.Backend, s int) error { return be.Scale(n, alpha, x[s]) })
			c.check("x", x, n, c.tol.elem)
		})
	}
}

func cmpAddScalar(c *cmp) {
	for _, n := range c.lengths() {
		beta := float32(c.rng.NormFloat64())
		c.each(fmt.Sprintf("n=%d beta=%g", n, beta), func() {
			x := c.up(c.normal(n))
			c.do(func(be kernels.Backend, s int) error { return be.AddScalar(n, beta, x[s]) })
			c.check("x", x, n, c.tol.elem)
		})
	}
}

func cmpAxpby(c *cmp) {
	for _, n := range c.lengths() {
		m := float32(0.999)
		for _, p := range [][2]float32{{1 - m, m}, {float32(c.rng.NormFloat64()), float32(c.rng.NormFloat64())}} {
			c.each(fmt.Sprintf("n=%d alpha=%g beta=%g", n, p[0], p[1]), func() {
				x := c.normal(n)
				xb, y := c.up(x), c.up(c.normal(n))
				c.do(func(be kernels.Backend, s int) error { return be.Axpby(n, p[0], xb[s], p[1], y[s]) })
				c.check("y", y, n, c.tol.elem)
				c.unchanged("input x unchanged", xb, x)
			})
		}
	}
}

func cmpReLU(c *cmp) {
	for _, n := range c.lengths() {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("n=%d in place=%v", n, inPlace), func() {
				x := c.up(c.signed(n))
				y := x
				if !inPlace {
					y = c.out(n)
				}
				c.do(func(be kernels.Backend, s int) error { return be.ReLU(n, x[s], y[s]) })
				c.check("y", y, n, 0)
			})
		}
	}
}

func cmpReLUBackward(c *cmp) {
	for _, n := range c.lengths() {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("n=%d in place (dx = dy)=%v", n, inPlace), func() {
				x, dy := c.up(c.signed(n)), c.up(c.normal(n))
				dx := dy
				if !inPlace {
					dx = c.out(n)
				}
				c.do(func(be kernels.Backend, s int) error { return be.ReLUBackward(n, x[s], dy[s], dx[s]) })
				c.check("dx", dx, n, 0)
			})
		}
	}
}

// plants returns the values to plant in an input of n elements: 0 (none)
// and, when n > 0, NaN, +Inf and −Inf.
func plants(n int) []float32 {
	ps := []float32{0}
	if n > 0 {
		ps = append(ps, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)))
	}
	return ps
}

func cmpSum(c *cmp) {
	for _, n := range c.lengths() {
		for _, bad := range plants(n) {
			x := c.normal(n)
			for i := range x {
				x[i] += 0.3 // a non-zero mean
			}
			if bad != 0 {
				x[c.rng.IntN(n)] = bad
			}
			c.each(fmt.Sprintf("n=%d planted=%v", n, bad), func() {
				xb := c.up(x)
				var sum [2]float64
				c.do(func(be kernels.Backend, s int) error {
					var err error
					sum[s], err = be.Sum(n, xb[s])
					return err
				})
				if c.broken {
					return
				}
				var abs float64
				for _, v := range x {
					abs += math.Abs(float64(v))
				}
				g, w := sum[0], sum[1]
				switch {
				case bad != 0:
					if !(g == w || (math.IsNaN(g) && math.IsNaN(w))) {
						c.r.Errorf("%s %s: Sum = %v, want %v", c.op, c.shape, g, w)
					}
				case math.Abs(g-w) > c.tol.sum*abs || math.IsNaN(g):
					c.r.Errorf("%s %s: Sum = %v, want %v (|Δ| = %.3g > %.3g·Σ|x| = %.3g)", c.op, c.shape, g, w, math.Abs(g-w), c.tol.sum, c.tol.sum*abs)
				}
				c.unchanged("input x unchanged", xb, x)
			})
		}
	}
}

func cmpAllFinite(c *cmp) {
	for _, n := range c.lengths() {
		for _, bad := range plants(n) {
			x := c.normal(n)
			pos := -1
			if bad != 0 {
				pos = c.rng.IntN(n)
				x[pos] = bad
			}
			// The whole n, and the prefix before the planted value (the
			// poisoned tail after n must not be looked at either).
			prefixes := []int{n}
			if pos >= 0 {
				prefixes = append(prefixes, pos)
			}
			for _, m := range prefixes {
				c.each(fmt.Sprintf("n=%d planted %v at %d, checking %d", n, bad, pos, m), func() {
					xb := c.up(x)
					var fin [2]bool
					c.do(func(be kernels.Backend, s int) error {
						var err error
						fin[s], err = be.AllFinite(m, xb[s])
						return err
					})
					expect := pos < 0 || pos >= m
					if !c.broken && (fin[0] != fin[1] || fin[1] != expect) {
						c.r.Errorf("%s %s: AllFinite = %v, want %v (reference %v)", c.op, c.shape, fin[0], expect, fin[1])
					}
				})
			}
		}
	}
}

func cmpSGDStep(c *cmp) {
	for _, n := range c.lengths() {
		for _, nesterov := range []bool{false, true} {
			p := kernels.SGD{
				LR:          float32(0.001 + 0.2*c.rng.Float64()),
				Momentum:    float32(c.pick(0, 1)) * float32(0.5+0.49*c.rng.Float64()),
				WeightDecay: float32(c.pick(0, 1)) * float32(1e-3*c.rng.Float64()),
				Nesterov:    nesterov,
			}
			c.each(fmt.Sprintf("n=%d %+v", n, p), func() {
				g := c.normal(n)
				v0 := c.normal(n)
				if c.rng.IntN(2) == 0 {
					clear(v0) // the first step
				}
				w, gb, v := c.up(c.normal(n)), c.up(g), c.up(v0)
				c.do(func(be kernels.Backend, s int) error { return be.SGDStep(n, p, w[s], gb[s], v[s]) })
				c.check("w", w, n, c.tol.elem)
				c.check("v", v, n, c.tol.elem)
				c.unchanged("input g unchanged", gb, g)
			})
		}
	}
}

// Convolution lowering and layers.

// geoms draws two geometries per round (one per layout) and adds the
// yardstick backbone's with Large.
func (c *cmp) geoms() []kernels.ConvGeom {
	var gs []kernels.ConvGeom
	for range c.rounds {
		for _, l := range []kernels.Layout{kernels.NCHW, kernels.CNHW} {
			for {
				g := kernels.ConvGeom{
					N: c.pick(1, 2, 3, 5), C: c.pick(1, 2, 3, 5),
					H: c.pick(1, 2, 3, 5, 7, 8, 12, 17, 33), W: c.pick(1, 2, 3, 5, 7, 8, 12, 17, 33),
					K: c.pick(1, 2, 3, 3, 5, 7), Stride: c.pick(1, 1, 2, 3), Pad: c.pick(0, 1, 1, 2, 3),
					Layout: l,
				}
				if g.Validate() == nil {
					gs = append(gs, g)
					break
				}
			}
		}
	}
	if c.large {
		gs = append(gs,
			kernels.ConvGeom{N: 64, C: 3, H: 32, W: 32, K: 3, Stride: 1, Pad: 1, Layout: kernels.NCHW},
			kernels.ConvGeom{N: 64, C: 32, H: 32, W: 32, K: 3, Stride: 1, Pad: 1, Layout: kernels.CNHW},
			kernels.ConvGeom{N: 64, C: 32, H: 32, W: 32, K: 3, Stride: 2, Pad: 1, Layout: kernels.CNHW},
			kernels.ConvGeom{N: 64, C: 64, H: 16, W: 16, K: 3, Stride: 1, Pad: 1, Layout: kernels.CNHW},
		)
	}
	return gs
}

func geomString(g kernels.ConvGeom) string {
	l := "NCHW"
	if g.Layout == kernels.CNHW {
		l = "CNHW"
	}
	return fmt.Sprintf("N=%d C=%d H=%d W=%d K=%d stride=%d pad=%d %s", g.N, g.C, g.H, g.W, g.K, g.Stride, g.Pad, l)
}

func cmpIm2Col(c *cmp) {
	for _, g := range c.geoms() {
		c.each(geomString(g), func() {
			x := c.normal(g.InLen())
			xb, col := c.up(x), c.out(g.ColRows()*g.ColCols())
			c.do(func(be kernels.Backend, s int) error { return be.Im2Col(g, xb[s], col[s]) })
			c.check("col", col, g.ColRows()*g.ColCols(), 0)
			c.unchanged("input x unchanged", xb, x)
		})
	}
}

func cmpCol2Im(c *cmp) {
	for _, g := range c.geoms() {
		c.each(geomString(g), func() {
			col := c.normal(g.ColRows() * g.ColCols())
			cb, dx := c.up(col), c.out(g.InLen())
			c.do(func(be kernels.Backend, s int) error { return be.Col2Im(g, cb[s], dx[s]) })
			c.check("dx", dx, g.InLen(), c.tol.elem)
			c.unchanged("input col unchanged", cb, col)
		})
	}
}

func cmpSwapAxes(c *cmp) {
	type sh struct{ a, b, inner int }
	var shapes []sh
	for range c.rounds {
		shapes = append(shapes, sh{c.dim(), c.dim(), c.pick(1, 1, 2, 3, 17, 64)})
	}
	shapes = append(shapes, sh{0, 3, 2}, sh{1, 1, 1})
	if c.large {
		shapes = append(shapes, sh{32, 64, 1024}, sh{64, 128 * 64, 1})
	}
	for _, s := range shapes {
		c.each(fmt.Sprintf("a=%d b=%d inner=%d", s.a, s.b, s.inner), func() {
			n := s.a * s.b * s.inner
			src := c.normal(n)
			sb, dst := c.up(src), c.out(n)
			c.do(func(be kernels.Backend, i int) error { return be.SwapAxes(s.a, s.b, s.inner, sb[i], dst[i]) })
			c.check("dst", dst, n, 0)
		})
	}
}

// chanShapes draws per-channel shapes, of at least minM = Outer·Inner
// elements per channel.
func (c *cmp) chanShapes(minM int) []kernels.ChanShape {
	var ss []kernels.ChanShape
	for len(ss) < c.rounds {
		s := kernels.ChanShape{Outer: c.dim(), C: c.dim(), Inner: c.pick(1, 1, 3, 17, 65)}
		if s.Outer*s.Inner >= minM {
			ss = append(ss, s)
		}
	}
	if c.large {
		ss = append(ss, kernels.ChanShape{Outer: 1, C: 32, Inner: 64 * 1024}, kernels.ChanShape{Outer: 64, C: 512, Inner: 1},
			kernels.ChanShape{Outer: 1, C: 128, Inner: 64 * 64})
	}
	return ss
}

func chanString(s kernels.ChanShape) string {
	return fmt.Sprintf("outer=%d C=%d inner=%d", s.Outer, s.C, s.Inner)
}

// channelData returns x with a per-channel mean in [−1, 1] and standard
// deviation in [0.5, 2].
func (c *cmp) channelData(s kernels.ChanShape) []float32 {
	mu, sd := c.uniform(s.C, -1, 1), c.uniform(s.C, 0.5, 2)
	x := c.normal(s.Len())
	for i := range x {
		ch := (i / s.Inner) % s.C
		x[i] = mu[ch] + sd[ch]*x[i]
	}
	return x
}

func cmpAddChannel(c *cmp) {
	for _, s := range c.chanShapes(1) {
		c.each(chanString(s), func() {
			bias := c.normal(s.C)
			bb, x := c.up(bias), c.up(c.normal(s.Len()))
			c.do(func(be kernels.Backend, i int) error { return be.AddChannel(s, bb[i], x[i]) })
			c.check("x", x, s.Len(), c.tol.elem)
			c.unchanged("input bias unchanged", bb, bias)
		})
	}
}

func cmpChannelSum(c *cmp) {
	for _, s := range c.chanShapes(1) {
		c.each(chanString(s), func() {
			x, dst := c.up(c.channelData(s)), c.up(c.normal(s.C)) // accumulates onto dst
			c.do(func(be kernels.Backend, i int) error { return be.ChannelSum(s, x[i], dst[i]) })
			c.check("dst", dst, s.C, c.tol.red)
		})
	}
}

const bnEps, bnMomentum = 1e-5, 0.1

func cmpBatchNormTrain(c *cmp) {
	// At least two elements per channel: with one, the variance is 0 and
	// 1/√eps amplifies the rounding of x − mean 316-fold (legitimately
	// different between backends).
	for _, s := range c.chanShapes(2) {
		for _, running := range []bool{false, true} {
			for _, inPlace := range []bool{false, true} {
				c.each(fmt.Sprintf("%s running stats=%v in place=%v", chanString(s), running, inPlace), func() {
					n := s.Len()
					x := c.up(c.channelData(s))
					gamma, beta := c.up(c.uniform(s.C, 0.5, 1.5)), c.up(c.normal(s.C))
					mean, inv := c.out(s.C), c.out(s.C)
					y := x
					if !inPlace {
						y = c.out(n)
					}
					var rm, rv bufs
					if running {
						rm, rv = c.up(c.normal(s.C)), c.up(c.uniform(s.C, 0.5, 2))
					}
					c.do(func(be kernels.Backend, i int) error {
						return be.BatchNormTrain(s, bnEps, bnMomentum, x[i], gamma[i], beta[i], y[i], mean[i], inv[i], rm[i], rv[i])
					})
					c.check("y", y, n, c.tol.red)
					c.check("mean", mean, s.C, c.tol.red)
					c.check("invStd", inv, s.C, c.tol.red)
					if running {
						c.check("runMean", rm, s.C, c.tol.red)
						c.check("runVar", rv, s.C, c.tol.red)
					}
				})
			}
		}
	}
}

func cmpBatchNormInfer(c *cmp) {
	for _, s := range c.chanShapes(1) {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("%s in place=%v", chanString(s), inPlace), func() {
				x := c.up(c.channelData(s))
				gamma, beta := c.up(c.uniform(s.C, 0.5, 1.5)), c.up(c.normal(s.C))
				rm, rv := c.up(c.uniform(s.C, -1, 1)), c.up(c.uniform(s.C, 0.25, 4))
				y := x
				if !inPlace {
					y = c.out(s.Len())
				}
				c.do(func(be kernels.Backend, i int) error {
					return be.BatchNormInfer(s, bnEps, x[i], gamma[i], beta[i], rm[i], rv[i], y[i])
				})
				c.check("y", y, s.Len(), c.tol.elem)
			})
		}
	}
}

func cmpBatchNormBackward(c *cmp) {
	for _, s := range c.chanShapes(2) {
		c.each(chanString(s), func() {
			xh := c.channelData(s)
			_, mean, inv, _ := bnRef(s, bnEps, f64(xh), make([]float64, s.C), make([]float64, s.C))
			m32, i32 := make([]float32, s.C), make([]float32, s.C)
			for ch := range s.C {
				m32[ch], i32[ch] = float32(mean[ch]), float32(inv[ch])
			}
			x, gamma := c.up(xh), c.up(c.uniform(s.C, 0.5, 1.5))
			mb, ib, dy := c.up(m32), c.up(i32), c.up(c.normal(s.Len()))
			dx := c.out(s.Len())
			dgamma, dbeta := c.up(c.normal(s.C)), c.up(c.normal(s.C)) // accumulated onto
			c.do(func(be kernels.Backend, i int) error {
				return be.BatchNormBackward(s, x[i], gamma[i], mb[i], ib[i], dy[i], dx[i], dgamma[i], dbeta[i])
			})
			c.check("dx", dx, s.Len(), c.tol.red)
			c.check("dgamma", dgamma, s.C, c.tol.red)
			c.check("dbeta", dbeta, s.C, c.tol.red)
		})
	}
}

func cmpPReLU(c *cmp) {
	for _, s := range c.chanShapes(1) {
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("%s in place=%v", chanString(s), inPlace), func() {
				x, slope := c.up(c.signed(s.Len())), c.up(c.uniform(s.C, -0.5, 0.5))
				y := x
				if !inPlace {
					y = c.out(s.Len())
				}
				c.do(func(be kernels.Backend, i int) error { return be.PReLU(s, x[i], slope[i], y[i]) })
				c.check("y", y, s.Len(), c.tol.elem)
			})
		}
	}
}

func cmpPReLUBackward(c *cmp) {
	for _, s := range c.chanShapes(1) {
		c.each(chanString(s), func() {
			x, slope := c.up(c.signed(s.Len())), c.up(c.uniform(s.C, -0.5, 0.5))
			dy, dx := c.up(c.normal(s.Len())), c.out(s.Len())
			dslope := c.up(c.normal(s.C)) // accumulated onto
			c.do(func(be kernels.Backend, i int) error {
				return be.PReLUBackward(s, x[i], slope[i], dy[i], dx[i], dslope[i])
			})
			c.check("dx", dx, s.Len(), c.tol.elem)
			c.check("dslope", dslope, s.C, c.tol.red)
		})
	}
}

const l2Eps = 1e-6

// l2Rows draws rows×cols shapes for the row normalisation.
func (c *cmp) l2Shapes() [][2]int {
	var ss [][2]int
	for range c.rounds {
		ss = append(ss, [2]int{c.dim(), c.pick(1, 3, 17, 65, 128, 512, c.dim())})
	}
	if c.large {
		ss = append(ss, [2]int{256, 512}, [2]int{10000, 512})
	}
	return ss
}

// l2Data returns rows×cols normal values with, when there are at least
// three rows, one zero row and one row of norm ≪ eps (the eps path); it
// returns those rows too.
func (c *cmp) l2Data(rows, cols int) (x []float32, epsRows []int) {
	x = c.normal(rows * cols)
	if rows >= 3 {
		z, t := c.rng.IntN(rows), c.rng.IntN(rows)
		for t == z {
			t = c.rng.IntN(rows)
		}
		clear(x[z*cols : (z+1)*cols])
		for j := range cols {
			x[t*cols+j] *= 1e-9
		}
		epsRows = []int{min(z, t), max(z, t)}
	}
	return x, epsRows
}

func cmpL2Normalize(c *cmp) {
	for _, sh := range c.l2Shapes() {
		rows, cols := sh[0], sh[1]
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("rows=%d cols=%d in place=%v", rows, cols, inPlace), func() {
				xh, _ := c.l2Data(rows, cols)
				x, norms := c.up(xh), c.out(rows)
				y := x
				if !inPlace {
					y = c.out(rows * cols)
				}
				c.do(func(be kernels.Backend, i int) error {
					return be.L2NormalizeRows(rows, cols, l2Eps, x[i], y[i], norms[i])
				})
				c.check("y", y, rows*cols, c.tol.red)
				c.check("norms", norms, rows, c.tol.red)
			})
		}
	}
}

func cmpL2NormalizeBackward(c *cmp) {
	for _, sh := range c.l2Shapes() {
		rows, cols := sh[0], sh[1]
		for _, inPlace := range []bool{false, true} {
			c.each(fmt.Sprintf("rows=%d cols=%d in place (dx = dy)=%v", rows, cols, inPlace), func() {
				xh, epsRows := c.l2Data(rows, cols)
				yh, nh := make([]float32, rows*cols), make([]float32, rows)
				for r := range rows {
					var ss float64
					for _, v := range xh[r*cols : (r+1)*cols] {
						ss += float64(v) * float64(v)
					}
					nh[r] = float32(math.Sqrt(ss))
					for j, v := range xh[r*cols : (r+1)*cols] {
						yh[r*cols+j] = float32(float64(v) / max(math.Sqrt(ss), l2Eps))
					}
				}
				y, norms, dy := c.up(yh), c.up(nh), c.up(c.normal(rows*cols))
				dx := dy
				if !inPlace {
					dx = c.out(rows * cols)
				}
				c.do(func(be kernels.Backend, i int) error {
					return be.L2NormalizeRowsBackward(rows, cols, l2Eps, y[i], norms[i], dy[i], dx[i])
				})
				g, w, ok := c.get("dx", dx, rows*cols)
				if !ok {
					return
				}
				// dy/eps in the eps rows is ~1e6 times the rest: compare the
				// two groups separately.
				var normal []int
				for r := range rows {
					if !slices.Contains(epsRows, r) {
						normal = append(normal, r)
					}
				}
				c.close("dx (rows with ‖x‖ > eps)", rowsOf(g, cols, normal), rowsOf(w, cols, normal), c.tol.red)
				c.close("dx (rows with ‖x‖ ≤ eps)", rowsOf(g, cols, epsRows), rowsOf(w, cols, epsRows), c.tol.elem)
			})
		}
	}
}

// Rows and losses.

// rowIndices draws n indices in [−1, rows) with repeats (some forced) and
// at least one −1 when n ≥ 3.
func (c *cmp) rowIndices(n, rows int) []int32 {
	idx := make([]int32, n)
	for i := range idx {
		idx[i] = int32(c.rng.IntN(rows+1)) - 1
	}
	if n >= 3 {
		p := c.rng.Perm(n)
		idx[p[0]] = int32(c.rng.IntN(rows)) // a repeat of a valid row
		idx[p[1]] = idx[p[0]]
		idx[p[2]] = -1
	}
	return idx
}

type gatherShape struct{ rows, cols, n int }

func (c *cmp) gatherShapes() []gatherShape {
	var ss []gatherShape
	for range c.rounds {
		ss = append(ss, gatherShape{c.dim(), c.pick(1, 3, 17, 128, 512, c.dim()), c.dim()})
	}
	if c.large {
		ss = append(ss, gatherShape{10000, 512, 256})
	}
	return ss
}

func cmpGatherRows(c *cmp) {
	for _, s := range c.gatherShapes() {
		c.each(fmt.Sprintf("srcRows=%d cols=%d n=%d", s.rows, s.cols, s.n), func() {
			src := c.normal(s.rows * s.cols)
			sb, idx, dst := c.up(src), c.upIdx(c.rowIndices(s.n, s.rows)), c.out(s.n*s.cols)
			c.do(func(be kernels.Backend, i int) error {
				return be.GatherRows(s.n, s.cols, sb[i], s.rows, idx[i], dst[i])
			})
			c.check("dst", dst, s.n*s.cols, 0)
			c.unchanged("input src unchanged", sb, src)
		})
	}
}

func cmpScatterRows(c *cmp) {
	for _, s := range c.gatherShapes() {
		c.each(fmt.Sprintf("dstRows=%d cols=%d n=%d", s.rows, s.cols, s.n), func() {
			src := c.normal(s.n * s.cols)
			sb, idx, dst := c.up(src), c.upIdx(c.rowIndices(s.n, s.rows)), c.up(c.normal(s.rows*s.cols))
			c.do(func(be kernels.Backend, i int) error {
				return be.ScatterRows(s.n, s.cols, sb[i], idx[i], dst[i], s.rows)
			})
			c.check("dst", dst, s.rows*s.cols, 0)
		})
	}
}

// lossShapes draws rows×cols cosine matrices.
func (c *cmp) lossShapes() [][2]int {
	var ss [][2]int
	for range c.rounds {
		ss = append(ss, [2]int{c.dim(), c.pick(1, 3, 17, 65, 127, 1000+c.rng.IntN(1000), c.dim())})
	}
	if c.large {
		ss = append(ss, [2]int{256, 10000})
	}
	return ss
}

// targets draws a target per row, about a quarter −1 (at least one when
// rows ≥ 2); it returns the rows without a target too.
func (c *cmp) targets(rows, cols int) (t []int32, none []int, count int) {
	t = make([]int32, rows)
	for r := range t {
		t[r] = int32(c.rng.IntN(cols))
	}
	for r := range t {
		if c.rng.IntN(4) == 0 {
			t[r] = -1
		}
	}
	if rows >= 2 {
		t[c.rng.IntN(rows)] = -1
	}
	for r, v := range t {
		if v < 0 {
			none = append(none, r)
		} else {
			count++
		}
	}
	return t, none, count
}

// lossCos returns cosines in [−0.85, 0.9] with, for ArcFace, some targets
// beyond the θ + m = π threshold (at −0.95) and none within 1e-3 of it
// (φ jumps there, so a one-ulp difference would change the loss).
//
// Targets may lead their rows by any amount: both backends sum the
// exponentials over j ≠ t directly (the CPU once summed the whole row and
// subtracted the raw target's term, which lost the rest's digits with few
// columns and a large S, off by a few percent).
func (c *cmp) lossCos(m kernels.Margin, rows, cols int, tg []int32) []float32 {
	cos := c.uniform(rows*cols, -0.85, 0.9)
	if m.Kind == kernels.ArcFace {
		th := float32(math.Cos(math.Pi - float64(m.M)))
		for r, t := range tg {
			if t < 0 {
				continue
			}
			p := r*cols + int(t)
			if r%3 == 0 {
				cos[p] = -0.95
			}
			if d := cos[p] - th; d > -1e-3 && d < 1e-3 {
				cos[p] = th + 2e-3
			}
		}
	}
	return cos
}

// lossOutputs returns the grad buffers of a row loss ("nil", "separate"
// poisoned, or "in place" over cos) and, withLoss, poisoned rowLoss buffers.
func (c *cmp) lossOutputs(grad string, withLoss bool, cos bufs, rows, cols int) (gb, lb bufs) {
	switch grad {
	case "separate":
		gb = c.out(rows * cols)
	case "in place":
		gb = cos
	}
	if withLoss {
		lb = c.out(rows)
	}
	return gb, lb
}

// checkLossOutputs checks the buffers of lossOutputs after a row loss: grad
// within gradTol and rowLoss within the red tolerance, with the rows in
// alone (no target, or not selected) left as they were, and cos unchanged
// unless the grad was written over it (cosH is what was uploaded).
func (c *cmp) checkLossOutputs(grad string, withLoss bool, gb, lb, cos bufs, cosH []float32, rows, cols int, alone []int, gradTol float64) {
	c.r.Helper()
	switch grad {
	case "separate":
		c.check("grad", gb, rows*cols, gradTol)
		c.keeps("grad", gb, cols, alone, poisoned(rows*cols))
		c.unchanged("input cos unchanged", cos, cosH)
	case "in place":
		c.check("grad (in place over cos)", gb, rows*cols, gradTol)
		c.keeps("cos (in place)", gb, cols, alone, cosH)
	default:
		c.unchanged("input cos unchanged", cos, cosH)
	}
	if withLoss {
		c.check("rowLoss", lb, rows, c.tol.red)
		c.keeps("rowLoss", lb, 1, alone, poisoned(rows))
	}
}

func cmpMarginSoftmaxCE(c *cmp) {
	margins := []kernels.Margin{
		{Kind: kernels.NoMargin, S: float32(c.pick(1, 8))},
		{Kind: kernels.CosFace, S: 32, M: 0.4},
		{Kind: kernels.ArcFace, S: 64, M: 0.5},
	}
	for _, sh := range c.lossShapes() {
		rows, cols := sh[0], sh[1]
		for _, m := range margins {
			for _, grad := range []string{"nil", "separate", "in place"} {
				for _, withLoss := range []bool{false, true} {
					if rows*cols > 1<<20 && (grad != "in place" || !withLoss) {
						continue // the large shape: the trainer's call only
					}
					c.each(fmt.Sprintf("rows=%d cols=%d %v s=%g m=%g grad %s rowLoss=%v", rows, cols, m.Kind, m.S, m.M, grad, withLoss), func() {
						tg, none, count := c.targets(rows, cols)
						cosH := c.lossCos(m, rows, cols, tg)
						scale := float32(1 / float64(max(count, 1)))
						cos, tb := c.up(cosH), c.upIdx(tg)
						gb, lb := c.lossOutputs(grad, withLoss, cos, rows, cols)
						c.do(func(be kernels.Backend, i int) error {
							return be.MarginSoftmaxCE(rows, cols, m, cos[i], tb[i], scale, gb[i], lb[i])
						})
						c.checkLossOutputs(grad, withLoss, gb, lb, cos, cosH, rows, cols, none, c.tol.red)
					})
				}
			}
		}
	}
}

// distinctRows returns rows×cols values, distinct within each row, spread
// over [lo, hi) in a random order.
func (c *cmp) distinctRows(rows, cols int, lo, hi float64) []float32 {
	x := make([]float32, rows*cols)
	for r := range rows {
		for j, p := range c.rng.Perm(cols) {
			x[r*cols+j] = float32(lo + (hi-lo)*(float64(p)+0.25+0.5*c.rng.Float64())/float64(cols))
		}
	}
	return x
}

func (c *cmp) topKShapes() [][3]int {
	var ss [][3]int
	for range c.rounds {
		cols := c.pick(1, 3, 17, 65, 127, 1000+c.rng.IntN(1000), c.dim())
		k := 1 + c.rng.IntN(min(cols, kernels.MaxTopK))
		if c.rng.IntN(3) == 0 {
			k = min(cols, kernels.MaxTopK)
		}
		ss = append(ss, [3]int{c.dim(), cols, k})
	}
	if c.large {
		ss = append(ss, [3]int{256, 10000, 10}, [3]int{256, 10000, kernels.MaxTopK})
	}
	return ss
}

func cmpTopK(c *cmp) {
	for _, sh := range c.topKShapes() {
		rows, cols, k := sh[0], sh[1], sh[2]
		for _, kind := range []string{"distinct", "ties", "NaN"} {
			c.each(fmt.Sprintf("rows=%d cols=%d k=%d %s", rows, cols, k, kind), func() {
				var x []float32
				switch kind {
				case "distinct":
					x = c.distinctRows(rows, cols, -1, 1)
				case "ties":
					x = make([]float32, rows*cols)
					for i := range x {
						x[i] = float32(c.rng.IntN(5)) - 2
					}
				case "NaN":
					// Distinct numbers and NaN in up to cols − k places.
					x = c.distinctRows(rows, cols, -1, 1)
					for r := range rows {
						for range c.rng.IntN(cols - k + 1) {
							x[r*cols+c.rng.IntN(cols)] = float32(math.NaN())
						}
					}
				}
				xb, vals, idx := c.up(x), c.out(rows*k), c.outIdx(rows*k)
				c.do(func(be kernels.Backend, i int) error { return be.TopK(rows, cols, k, xb[i], vals[i], idx[i]) })
				c.check("vals", vals, rows*k, 0)
				g, w, ok := c.getIdx("idx", idx, rows*k)
				if !ok {
					return
				}
				if kind != "ties" {
					c.equalIdx("idx", g, w)
					return
				}
				// With ties the columns may differ; they must still be in
				// range, distinct within a row, and point at the values.
				gv, _, ok := c.get("vals", vals, rows*k)
				if !ok {
					return
				}
				for r := range rows {
					seen := map[int32]bool{}
					for p, j := range g[r*k : (r+1)*k] {
						if j < 0 || int(j) >= cols || seen[j] || x[r*cols+int(j)] != gv[r*k+p] {
							c.r.Errorf("%s %s: idx row %d = %v does not select the values %v", c.op, c.shape, r, g[r*k:(r+1)*k], gv[r*k:(r+1)*k])
							return
						}
						seen[j] = true
					}
				}
			})
		}
	}
}

func cmpFreshTopKLoss(c *cmp) {
	for _, sh := range c.topKShapes() {
		rows, cols, k := sh[0], sh[1], sh[2]
		for _, masked := range []bool{false, true} {
			for _, grad := range []string{"nil", "separate", "in place"} {
				for _, withLoss := range []bool{false, true} {
					if rows*cols > 1<<20 && (grad != "in place" || !withLoss) {
						continue
					}
					c.each(fmt.Sprintf("rows=%d cols=%d k=%d targets=%v grad %s rowLoss=%v", rows, cols, k, masked, grad, withLoss), func() {
						// Distinct values per row, shifted per row so that the
						// top k lie above 0, straddle it, or lie below.
						cosH := c.distinctRows(rows, cols, -1, 1)
						for r := range rows {
							shift := float32(c.pick(0, 1, 2)) * (1 - float32(k)/float32(cols))
							for j := range cols {
								cosH[r*cols+j] -= shift
							}
						}
						var tb ibufs
						var unselected []int
						fresh := rows
						if masked {
							var tg []int32
							tg, _, _ = c.targets(rows, cols)
							fresh = 0
							for r, t := range tg {
								if t < 0 {
									fresh++
								} else {
									unselected = append(unselected, r)
								}
							}
							tb = c.upIdx(tg)
						}
						scale := float32(1 / float64(max(fresh*k, 1)))
						cos := c.up(cosH)
						gb, lb := c.lossOutputs(grad, withLoss, cos, rows, cols)
						c.do(func(be kernels.Backend, i int) error {
							return be.FreshTopKLoss(rows, cols, k, cos[i], tb[i], scale, gb[i], lb[i])
						})
						c.checkLossOutputs(grad, withLoss, gb, lb, cos, cosH, rows, cols, unselected, 0)
					})
				}
			}
		}
	}
}
