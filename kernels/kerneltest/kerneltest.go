// Package kerneltest is the parity suite of kernels: every implementation of
// kernels.Backend runs the same tests (Test) and benchmarks (BenchmarkGemm,
// BenchmarkLosses, BenchmarkLayers) from its own _test.go file:
//
//	func TestParity(t *testing.T) { kerneltest.Test(t, newBackend(t)) }
//
// The tests compare each operation with a plain float64 reference written
// here, check every backward pass against central finite differences of
// the float64 reference forward, and check that bad shapes and buffers are
// rejected. They use the backend only through kernels.Backend (Upload and
// Download), so they run unchanged on a GPU.
package kerneltest

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// Test runs the whole parity suite against be.
func Test(t *testing.T, be kernels.Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, *h)
	}{
		{"Memory", testMemory},
		{"Gemm", testGemm},
		{"Gemv", testGemv},
		{"Elementwise", testElementwise},
		{"SumAllFinite", testSumAllFinite},
		{"FirstNonFinite", testFirstNonFinite},
		{"SGD", testSGD},
		{"Im2Col", testIm2Col},
		{"Col2ImAdjoint", testCol2ImAdjoint},
		{"ConvLowering", testConvLowering},
		{"Convolver", func(t *testing.T, h *h) { TestConvolver(t, h.be) }},
		{"SwapAxes", testSwapAxes},
		{"Channel", testChannel},
		{"BatchNorm", testBatchNorm},
		{"BatchNormGrad", testBatchNormGrad},
		{"ReLUGrad", testReLUGrad},
		{"PReLU", testPReLU},
		{"L2Normalize", testL2Normalize},
		{"MarginSoftmaxCE", testMarginCE},
		{"MarginSoftmaxCEExtremes", testMarginCEExtremes},
		{"MarginSoftmaxCELargeLogits", testMarginCELargeLogits},
		{"TopK", testTopK},
		{"FreshTopKLoss", testFresh},
		{"GatherScatter", testGatherScatter},
		{"BadInput", testBadInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, &h{t: t, be: be, rng: rand.New(rand.NewPCG(1, uint64(len(tc.name))))})
		})
	}
}

// h bundles the test, the backend and a seeded random source.
type h struct {
	t   *testing.T
	be  kernels.Backend
	rng *rand.Rand
}

func (h *h) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

// up uploads host data into a fresh buffer.
func (h *h) up(x []float32) kernels.Buffer {
	h.t.Helper()
	b, err := h.be.Alloc(len(x))
	h.must(err)
	h.must(h.be.Upload(b, x))
	return b
}

// upIdx uploads host indices into a fresh index buffer.
func (h *h) upIdx(x []int32) kernels.IndexBuffer {
	h.t.Helper()
	b, err := h.be.AllocIndex(len(x))
	h.must(err)
	h.must(h.be.UploadIndex(b, x))
	return b
}

// zeros allocates a zeroed buffer.
func (h *h) zeros(n int) kernels.Buffer {
	h.t.Helper()
	b, err := h.be.Alloc(n)
	h.must(err)
	return b
}

// filled allocates a buffer filled with v.
func (h *h) filled(n int, v float32) kernels.Buffer {
	h.t.Helper()
	b := h.zeros(n)
	h.must(h.be.Fill(n, v, b))
	return b
}

// down downloads the first n elements of b.
func (h *h) down(b kernels.Buffer, n int) []float32 {
	h.t.Helper()
	out := make([]float32, n)
	h.must(h.be.Download(out, b))
	return out
}

// downIdx downloads the first n indices of b.
func (h *h) downIdx(b kernels.IndexBuffer, n int) []int32 {
	h.t.Helper()
	out := make([]int32, n)
	h.must(h.be.DownloadIndex(out, b))
	return out
}

// randn returns n values uniform in [lo, hi).
func (h *h) uniform(n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*h.rng.Float64())
	}
	return x
}

// normal returns n standard normal values.
func (h *h) normal(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(h.rng.NormFloat64())
	}
	return x
}

// awayFrom pushes values within gap of p to distance gap, so that finite
// differences do not straddle a kink at p.
func awayFrom(x []float32, p, gap float32) {
	for i, v := range x {
		if d := v - p; d > -gap && d < gap {
			if d >= 0 {
				x[i] = p + gap
			} else {
				x[i] = p - gap
			}
		}
	}
}

func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// relErr is ‖got − want‖₂ / ‖want‖₂ (or the absolute ‖got − want‖₂ when
// want is 0).
func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - w
		num += d * d
		den += w * w
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// close fails the test when relErr(got, want) > tol or got has a NaN.
func (h *h) close(name string, got []float32, want []float64, tol float64) {
	h.t.Helper()
	if len(got) != len(want) {
		h.t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	for i, v := range got {
		if math.IsNaN(float64(v)) != math.IsNaN(want[i]) {
			h.t.Fatalf("%s: [%d] = %v, want %v", name, i, v, want[i])
		}
	}
	if e := relErr(got, want); e > tol || math.IsNaN(e) {
		i := worst(got, want)
		h.t.Errorf("%s: relative error %.3g > %.3g (worst [%d]: got %v want %v)", name, e, tol, i, got[i], want[i])
	}
}

func worst(got []float32, want []float64) int {
	wi, wd := 0, -1.0
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > wd {
			wi, wd = i, d
		}
	}
	return wi
}

// equal fails unless got == want exactly.
func (h *h) equal(name string, got, want []float32) {
	h.t.Helper()
	for i := range want {
		if got[i] != want[i] && !(got[i] != got[i] && want[i] != want[i]) {
			h.t.Fatalf("%s: [%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}

// wantErr fails unless err wraps target.
func (h *h) wantErr(name string, err, target error) {
	h.t.Helper()
	if err == nil {
		h.t.Errorf("%s: no error, want %v", name, target)
		return
	}
	if !errors.Is(err, target) {
		h.t.Errorf("%s: error %q does not wrap %q", name, err, target)
	}
}

// fdCheck compares grad (the backend's analytic gradient, at x) with central
// differences of the float64 function f on up to 400 random coordinates,
// with relative tolerance tol over the checked coordinates. f is told which
// coordinate i is perturbed, so that it may evaluate only the terms that
// depend on it (constant terms cancel in the difference).
func (h *h) fdCheck(name string, f func(x []float64, i int) float64, x []float32, grad []float32, tol float64) {
	h.t.Helper()
	const maxCoords = 400
	var coords []int
	if len(x) <= maxCoords {
		for i := range x {
			coords = append(coords, i)
		}
	} else {
		coords = h.rng.Perm(len(x))[:maxCoords]
	}
	h.fdCheckAt(name, f, x, grad, coords, tol)
}

// fdCheckAt is fdCheck on the given coordinates.
func (h *h) fdCheckAt(name string, f func(x []float64, i int) float64, x []float32, grad []float32, coords []int, tol float64) {
	h.t.Helper()
	xs := f64(x)
	got := make([]float32, len(coords))
	want := make([]float64, len(coords))
	for n, i := range coords {
		step := 1e-6 * max(1, math.Abs(xs[i]))
		v := xs[i]
		xs[i] = v + step
		fp := f(xs, i)
		xs[i] = v - step
		fm := f(xs, i)
		xs[i] = v
		want[n] = (fp - fm) / (2 * step)
		got[n] = grad[i]
	}
	h.close(name+" (finite differences)", got, want, tol)
}

// dot64 is ⟨a, b⟩ in float64.
func dot64(a []float64, b []float32) float64 {
	var s float64
	for i, v := range a {
		s += v * float64(b[i])
	}
	return s
}

// sizes are the odd and small dimensions every shape test draws from.
var sizes = []int{1, 3, 17, 33, 65}
