package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// recorder is a reporter that records instead of failing.
type recorder struct {
	prefix     string
	errs, logs *[]string
}

func newRecorder() recorder { return recorder{errs: new([]string), logs: new([]string)} }

func (recorder) Helper() {}

func (r recorder) Logf(format string, args ...any) {
	*r.logs = append(*r.logs, r.prefix+fmt.Sprintf(format, args...))
}

func (r recorder) Errorf(format string, args ...any) {
	*r.errs = append(*r.errs, r.prefix+fmt.Sprintf(format, args...))
}

func (r recorder) Run(name string, fn func(reporter)) {
	fn(recorder{prefix: r.prefix + name + ": ", errs: r.errs, logs: r.logs})
}

func newCPU(t testing.TB, o cpu.Options) *cpu.Backend {
	t.Helper()
	be, err := cpu.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// TestCompareCoversBackend fails when a method of kernels.Backend has no
// entry in the comparison table (or in notCompared), or when an entry names
// no method.
func TestCompareCoversBackend(t *testing.T) {
	methods := map[string]bool{}
	bt := reflect.TypeFor[kernels.Backend]()
	for i := range bt.NumMethod() {
		methods[bt.Method(i).Name] = true
	}
	covered := map[string]string{}
	for _, op := range compareOps() {
		names := op.also
		if op.name != "Memory" {
			names = append([]string{op.name}, names...)
		}
		for _, m := range names {
			if !methods[m] {
				t.Errorf("comparison %q covers %q, which is not a method of kernels.Backend", op.name, m)
			}
			covered[m] = op.name
		}
	}
	for m, why := range notCompared {
		if !methods[m] {
			t.Errorf("notCompared lists %q, which is not a method of kernels.Backend", m)
		}
		if op, ok := covered[m]; ok {
			t.Errorf("%q is both compared (by %q) and not compared (%s)", m, op, why)
		}
	}
	for m := range methods {
		if _, ok := covered[m]; !ok && notCompared[m] == "" {
			t.Errorf("kernels.Backend.%s has no entry in compareOps (kernels/kerneltest/compare.go)", m)
		}
	}
}

// TestCompareSelf: the CPU backend against itself (different thread
// counts) passes, with the logged seed.
func TestCompareSelf(t *testing.T) {
	r := newRecorder()
	compare(r, newCPU(t, cpu.Options{Threads: 2}), newCPU(t, cpu.Options{Threads: 1}), CompareOptions{Rounds: 1}, nil)
	for _, e := range *r.errs {
		t.Error(e)
	}
	if len(*r.logs) == 0 || !strings.Contains((*r.logs)[0], "seed ") {
		t.Errorf("the seed is not logged: %q", *r.logs)
	}
}

// Broken backends: a CPU backend with one operation wrong.

type axpbyOff struct{ *cpu.Backend }

func (b axpbyOff) Axpby(n int, alpha float32, x kernels.Buffer, beta float32, y kernels.Buffer) error {
	return b.Backend.Axpby(n, alpha*(1+1e-4), x, beta, y)
}

// ceSkipsOne leaves one gradient element of the first row with a target
// unwritten.
type ceSkipsOne struct{ *cpu.Backend }

func (b ceSkipsOne) MarginSoftmaxCE(rows, cols int, m kernels.Margin, cos kernels.Buffer, targets kernels.IndexBuffer, gradScale float32, grad, rowLoss kernels.Buffer) error {
	g, tg := cpu.Floats(grad), cpu.Int32s(targets)
	p := -1
	for r := range min(rows, len(tg)) {
		if tg[r] >= 0 && g != nil {
			p = r*cols + (int(tg[r])+1)%cols
			break
		}
	}
	var old float32
	if p >= 0 {
		old = g[p]
	}
	err := b.Backend.MarginSoftmaxCE(rows, cols, m, cos, targets, gradScale, grad, rowLoss)
	if p >= 0 {
		g[p] = old
	}
	return err
}

// ceWritesUntargeted writes a loss of 0 into rows without a target.
type ceWritesUntargeted struct{ *cpu.Backend }

func (b ceWritesUntargeted) MarginSoftmaxCE(rows, cols int, m kernels.Margin, cos kernels.Buffer, targets kernels.IndexBuffer, gradScale float32, grad, rowLoss kernels.Buffer) error {
	err := b.Backend.MarginSoftmaxCE(rows, cols, m, cos, targets, gradScale, grad, rowLoss)
	if l := cpu.Floats(rowLoss); l != nil {
		for r, t := range cpu.Int32s(targets)[:rows] {
			if t < 0 {
				l[r] = 0
			}
		}
	}
	return err
}

// gemmReadsC reads C when beta = 0 (0·NaN = NaN).
type gemmReadsC struct{ *cpu.Backend }

func (b gemmReadsC) Gemm(transA, transB bool, m, n, k int, alpha float32, a, bb kernels.Buffer, beta float32, c kernels.Buffer) error {
	cs := cpu.Floats(c)
	old := slices.Clone(cs)
	err := b.Backend.Gemm(transA, transB, m, n, k, alpha, a, bb, beta, c)
	for i := range min(m*n, len(cs)) {
		cs[i] += beta * old[i]
	}
	return err
}

// scatterFirstWins lets the first of repeated indices win.
type scatterFirstWins struct{ *cpu.Backend }

func (b scatterFirstWins) ScatterRows(n, cols int, src kernels.Buffer, idx kernels.IndexBuffer, dst kernels.Buffer, dstRows int) error {
	s, is, d := cpu.Floats(src), cpu.Int32s(idx), cpu.Floats(dst)
	for i := n - 1; i >= 0; i-- {
		if j := int(is[i]); j >= 0 {
			copy(d[j*cols:(j+1)*cols], s[i*cols:])
		}
	}
	return nil
}

// channelSumOverwrites overwrites dst instead of accumulating.
type channelSumOverwrites struct{ *cpu.Backend }

func (b channelSumOverwrites) ChannelSum(s kernels.ChanShape, x, dst kernels.Buffer) error {
	if err := b.Backend.Fill(s.C, 0, dst); err != nil {
		return err
	}
	return b.Backend.ChannelSum(s, x, dst)
}

// topKSwapped returns the first two columns of row 0 in the wrong order.
type topKSwapped struct{ *cpu.Backend }

func (b topKSwapped) TopK(rows, cols, k int, x, vals kernels.Buffer, idx kernels.IndexBuffer) error {
	err := b.Backend.TopK(rows, cols, k, x, vals, idx)
	if is := cpu.Int32s(idx); k >= 2 && rows > 0 {
		is[0], is[1] = is[1], is[0]
	}
	return err
}

// freshTouchesUnselected zeroes the gradient of unselected rows.
type freshTouchesUnselected struct{ *cpu.Backend }

func (b freshTouchesUnselected) FreshTopKLoss(rows, cols, k int, cos kernels.Buffer, targets kernels.IndexBuffer, gradScale float32, grad, rowLoss kernels.Buffer) error {
	err := b.Backend.FreshTopKLoss(rows, cols, k, cos, targets, gradScale, grad, rowLoss)
	if g, tg := cpu.Floats(grad), cpu.Int32s(targets); g != nil && tg != nil {
		for r := range rows {
			if tg[r] >= 0 {
				clear(g[r*cols : (r+1)*cols])
			}
		}
	}
	return err
}

// sgdIgnoresNesterov always takes the plain momentum step.
type sgdIgnoresNesterov struct{ *cpu.Backend }

func (b sgdIgnoresNesterov) SGDStep(n int, p kernels.SGD, w, g, v kernels.Buffer) error {
	p.Nesterov = false
	return b.Backend.SGDStep(n, p, w, g, v)
}

// allFiniteMissesInf only looks for NaN.
type allFiniteMissesInf struct{ *cpu.Backend }

func (b allFiniteMissesInf) AllFinite(n int, x kernels.Buffer) (bool, error) {
	for _, v := range cpu.Floats(x)[:n] {
		if v != v {
			return false, nil
		}
	}
	return true, nil
}

// fillOverruns writes one element past n.
type fillOverruns struct{ *cpu.Backend }

func (b fillOverruns) Fill(n int, v float32, x kernels.Buffer) error {
	return b.Backend.Fill(min(n+1, x.Len()), v, x)
}

// bnInferWrongEps adds eps twice.
type bnInferWrongEps struct{ *cpu.Backend }

func (b bnInferWrongEps) BatchNormInfer(s kernels.ChanShape, eps float32, x, gamma, beta, runMean, runVar, y kernels.Buffer) error {
	return b.Backend.BatchNormInfer(s, 1e-3, x, gamma, beta, runMean, runVar, y)
}

// TestCompareCatchesBrokenBackends: Compare reports each deliberately
// broken operation, under its name, and nothing else.
func TestCompareCatchesBrokenBackends(t *testing.T) {
	ref := newCPU(t, cpu.Options{})
	base := func() *cpu.Backend { return newCPU(t, cpu.Options{Threads: 2}) }
	cases := []struct {
		op   string
		be   kernels.Backend
		want string // a substring of some error
	}{
		{"Axpby", axpbyOff{base()}, "relative L2 error"},
		{"MarginSoftmaxCE", ceSkipsOne{base()}, "grad"},
		{"MarginSoftmaxCE", ceWritesUntargeted{base()}, "rowLoss"},
		{"Gemm", gemmReadsC{base()}, "NaN"},
		{"ScatterRows", scatterFirstWins{base()}, "want exactly"},
		{"ChannelSum", channelSumOverwrites{base()}, "relative L2 error"},
		{"TopK", topKSwapped{base()}, "idx"},
		{"FreshTopKLoss", freshTouchesUnselected{base()}, "left alone"},
		{"SGDStep", sgdIgnoresNesterov{base()}, "relative L2 error"},
		{"AllFinite", allFiniteMissesInf{base()}, "AllFinite = true, want false"},
		{"Fill", fillOverruns{base()}, "past the"},
		{"BatchNormInfer", bnInferWrongEps{base()}, "relative L2 error"},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%s/%T", tc.op, tc.be)
		t.Run(name, func(t *testing.T) {
			r := newRecorder()
			compare(r, tc.be, ref, CompareOptions{Seed: 12345, Rounds: 2}, func(op string) bool { return op == tc.op })
			errs := *r.errs
			if len(errs) == 0 {
				t.Fatalf("Compare reported nothing for a broken %s", tc.op)
			}
			found := false
			for _, e := range errs {
				if !strings.HasPrefix(e, tc.op+": "+tc.op+" ") {
					t.Errorf("error without the op name and shape: %s", e)
				}
				found = found || strings.Contains(e, tc.want)
			}
			if !found {
				t.Errorf("no error mentions %q; got %d errors, first: %s", tc.want, len(errs), errs[0])
			}
			t.Logf("%d errors, first: %s", len(errs), errs[0])

			// The same comparison with a correct backend passes.
			r = newRecorder()
			compare(r, base(), ref, CompareOptions{Seed: 12345, Rounds: 2}, func(op string) bool { return op == tc.op })
			for _, e := range *r.errs {
				t.Errorf("correct backend: %s", e)
			}
		})
	}
}

// tf32 emulates a backend whose matrix products round their inputs to TF32
// (10-bit mantissa) by truncation, the worst case, and accumulate in
// float32.
type tf32 struct{ *cpu.Backend }

func toTF32(x []float32) kernels.Buffer {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = math.Float32frombits(math.Float32bits(v) &^ 0x1fff)
	}
	return cpu.Wrap(y)
}

func (b tf32) Gemm(transA, transB bool, m, n, k int, alpha float32, a, bb kernels.Buffer, beta float32, c kernels.Buffer) error {
	return b.Backend.Gemm(transA, transB, m, n, k, alpha, toTF32(cpu.Floats(a)), toTF32(cpu.Floats(bb)), beta, c)
}

func (b tf32) Gemv(transA bool, m, n int, alpha float32, a, x kernels.Buffer, beta float32, y kernels.Buffer) error {
	return b.Backend.Gemv(transA, m, n, alpha, toTF32(cpu.Floats(a)), toTF32(cpu.Floats(x)), beta, y)
}

// TestCompareTF32Emulated: an emulated TF32 backend passes with the TF32
// tolerances and fails the FP32 ones on Gemm and Gemv only.
func TestCompareTF32Emulated(t *testing.T) {
	ref := newCPU(t, cpu.Options{})
	emu := tf32{newCPU(t, cpu.Options{})}
	gemmOnly := func(op string) bool { return op == "Gemm" || op == "Gemv" }
	for seed := uint64(1); seed <= 3; seed++ {
		r := newRecorder()
		compare(r, emu, ref, CompareOptions{Precision: TF32, Seed: seed}, gemmOnly)
		for _, e := range *r.errs {
			t.Errorf("TF32 tolerances: %s", e)
		}
		r = newRecorder()
		compare(r, emu, ref, CompareOptions{Precision: FP32, Seed: seed}, gemmOnly)
		failed := map[string]bool{}
		for _, e := range *r.errs {
			failed[strings.SplitN(e, ":", 2)[0]] = true
		}
		if !failed["Gemm"] || !failed["Gemv"] {
			t.Errorf("FP32 tolerances do not catch TF32 products (failed: %v)", failed)
		}
	}
}

// TestTF32ErrorModel measures the relative L2 error of truncated-TF32
// products against float32 ones for growing k (inputs with random signs):
// it does not grow with k, which is why the TF32 tolerance of Gemm is a
// constant (see tolerances).
func TestTF32ErrorModel(t *testing.T) {
	be := newCPU(t, cpu.Options{})
	emu := tf32{be}
	rng := rand.New(rand.NewPCG(7, 8))
	normal := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	for _, k := range []int{1, 16, 512, 10000} {
		m, n := 64, 64
		a, b := cpu.Wrap(normal(m*k)), cpu.Wrap(normal(k*n))
		c1, c2 := cpu.Wrap(make([]float32, m*n)), cpu.Wrap(make([]float32, m*n))
		if err := be.Gemm(false, true, m, n, k, 1, a, b, 0, c1); err != nil {
			t.Fatal(err)
		}
		if err := emu.Gemm(false, true, m, n, k, 1, a, b, 0, c2); err != nil {
			t.Fatal(err)
		}
		e := relErr(cpu.Floats(c2), f64(cpu.Floats(c1)))
		t.Logf("k=%5d: TF32 (truncated) vs FP32 relative L2 error %.3g", k, e)
		if tol := tolerancesFor(TF32).gemm; e > tol/3 {
			t.Errorf("k=%d: TF32 error %.3g leaves less than ×3 margin under the tolerance %.3g", k, e, tol)
		}
	}
}
