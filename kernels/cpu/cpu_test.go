package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/kerneltest"
)

// variants are the backends this build can make: the default, a pure-Go
// GEMM one when OpenBLAS is compiled in, and an odd thread count to
// exercise uneven chunking.
func variants(t testing.TB) []*Backend {
	t.Helper()
	opts := []Options{{}, {Threads: 3}, {NoSIMD: true}}
	if HaveOpenBLAS() {
		opts = append(opts, Options{PureGoGEMM: true})
	}
	var out []*Backend
	for _, o := range opts {
		be, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, be)
	}
	return out
}

func TestParity(t *testing.T) {
	for _, be := range variants(t) {
		t.Run(fmt.Sprintf("%s/threads=%d", be.Name(), be.Threads()), func(t *testing.T) {
			kerneltest.Test(t, be)
		})
	}
}

func TestName(t *testing.T) {
	be, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "cpu-go"
	if HaveOpenBLAS() {
		want = "cpu-openblas"
	}
	if be.Name() != want {
		t.Errorf("Name() = %q, want %q", be.Name(), want)
	}
	be, err = New(Options{PureGoGEMM: true})
	if err != nil {
		t.Fatal(err)
	}
	if be.Name() != "cpu-go" {
		t.Errorf("Name() with PureGoGEMM = %q, want cpu-go", be.Name())
	}
	if _, err := New(Options{Threads: -1}); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("New(Threads: -1) error = %v, want ErrShape", err)
	}
}

// TestGemmOpenBLASvsGo compares the two GEMMs directly on the same data:
// OpenBLAS as the backend runs it, split into bands of rows (m ≥ n) or
// columns across 3 goroutines (uneven last band) above gemmSplitFlops,
// and whole with OpenBLAS's own threads (BLASThreads).
func TestGemmOpenBLASvsGo(t *testing.T) {
	if !HaveOpenBLAS() {
		t.Skip("OpenBLAS not compiled in (noopenblas tag or no cgo)")
	}
	for _, blas := range []bool{false, true} {
		be, err := New(Options{Threads: 3, BLASThreads: blas})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("blas-threads=%v", blas), func(t *testing.T) { gemmVsGo(t, be) })
	}
	if _, err := New(Options{}); err != nil { // restore the process-wide default
		t.Fatal(err)
	}
}

func gemmVsGo(t *testing.T, be *Backend) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][3]int{{1, 1, 1}, {3, 17, 33}, {65, 33, 17}, {128, 257, 129}, {32, 4096, 9}, {256, 1000, 512}, {1000, 64, 300}, {333, 50, 200}} {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				m, n, k := s[0], s[1], s[2]
				a, b := make([]float32, m*k), make([]float32, k*n)
				for i := range a {
					a[i] = float32(rng.NormFloat64())
				}
				for i := range b {
					b[i] = float32(rng.NormFloat64())
				}
				c1, c2 := make([]float32, m*n), make([]float32, m*n)
				for i := range c1 {
					c1[i] = float32(rng.NormFloat64())
					c2[i] = c1[i]
				}
				be.openblasPanels(ta, tb, m, n, k, 0.7, a, b, 0.3, c1)
				lda, ldb := contiguousLd(ta, tb, m, n, k)
				goSgemm(ta, tb, m, n, k, 0.7, a, lda, b, ldb, 0.3, c2, n)
				var num, den float64
				for i := range c1 {
					d := float64(c1[i]) - float64(c2[i])
					num += d * d
					den += float64(c2[i]) * float64(c2[i])
				}
				// Tolerance: 1e-5 relative L2 (two float32 summation orders).
				if e := math.Sqrt(num / den); e > 1e-5 {
					t.Errorf("m=%d n=%d k=%d ta=%v tb=%v: OpenBLAS vs Go relative error %.3g", m, n, k, ta, tb, e)
				}
			}
		}
	}
}

// TestOverlap: the CPU backend rejects outputs that overlap inputs where
// the result would be wrong.
func TestOverlap(t *testing.T) {
	be, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	buf, _ := be.Alloc(100)
	a, _ := be.View(buf, 0, 20)
	c, _ := be.View(buf, 10, 20)
	b, _ := be.Alloc(20)
	if err := be.Gemm(false, false, 4, 5, 5, 1, a, b, 0, c); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("gemm with c overlapping a: error %v, want ErrShape", err)
	}
	g, _ := be.View(buf, 5, 20)
	tg, _ := be.AllocIndex(4)
	if err := be.MarginSoftmaxCE(4, 5, kernels.Margin{Kind: kernels.CosFace, S: 1}, a, tg, 1, g, nil); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("CE with grad partially overlapping cos: error %v, want ErrShape", err)
	}
	if err := be.MarginSoftmaxCE(4, 5, kernels.Margin{Kind: kernels.CosFace, S: 1}, a, tg, 1, a, nil); err != nil {
		t.Errorf("CE in place: %v", err)
	}
}

// TestWrap: Wrap and Floats share memory with the host slice.
func TestWrap(t *testing.T) {
	be, err := New(Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := []float32{1, 2, 3}
	b := Wrap(s)
	if err := be.Scale(3, 2, b); err != nil {
		t.Fatal(err)
	}
	if s[2] != 6 || &Floats(b)[0] != &s[0] {
		t.Errorf("Wrap does not share memory: %v", s)
	}
	idx := []int32{4}
	if &Int32s(WrapIndex(idx))[0] != &idx[0] {
		t.Error("WrapIndex does not share memory")
	}
	if err := be.Free(b); err != nil {
		t.Fatal(err)
	}
	if Floats(b) != nil {
		t.Error("Floats of a freed buffer is not nil")
	}
}

// TestConvolverBlocks runs the Convolver suite with column blocks of one
// image and of a few (ragged last block), on every variant: with and,
// where the CPU has AVX2 and FMA, without the direct 3×3 kernels, which
// it runs on every 3×3 geometry with padding 1, whatever the channels.
func TestConvolverBlocks(t *testing.T) {
	for _, be := range variants(t) {
		be.directMinC = 1 // the direct kernels on every 3×3 geometry
		for _, floats := range []int{1, 200} {
			be.convFloats, be.directFloats = floats, floats
			t.Run(fmt.Sprintf("%s/threads=%d/simd=%v/floats=%d", be.Name(), be.Threads(), be.simd, floats), func(t *testing.T) {
				kerneltest.TestConvolver(t, be)
			})
		}
	}
}
