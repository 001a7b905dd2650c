package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

func newBackend(tb testing.TB) kernels.Backend {
	tb.Helper()
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return be
}

func upload(tb testing.TB, be kernels.Backend, v []float32) kernels.Buffer {
	tb.Helper()
	b, err := be.Alloc(len(v))
	if err != nil {
		tb.Fatal(err)
	}
	if err := be.Upload(b, v); err != nil {
		tb.Fatal(err)
	}
	return b
}

func download(tb testing.TB, be kernels.Backend, b kernels.Buffer, n int) []float32 {
	tb.Helper()
	v := make([]float32, n)
	if err := be.Download(v, b); err != nil {
		tb.Fatal(err)
	}
	return v
}

func randn(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

// awayFromZero returns values of magnitude in [lo, lo+|N(0,1)|], random sign,
// so that a kink at 0 is never crossed by a finite difference.
func awayFromZero(r *rand.Rand, n int, lo float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		m := lo + math.Abs(r.NormFloat64())
		if r.IntN(2) == 0 {
			m = -m
		}
		v[i] = float32(m)
	}
	return v
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// gradTensor is a tensor whose analytic gradient is checked.
type gradTensor struct {
	name string
	buf  kernels.Buffer
	n    int
	grad []float32 // analytic dL/d(tensor)
}

// gradCheck compares analytic gradients with central differences of loss.
type gradCheck struct {
	be   kernels.Backend
	loss func() float64 // runs the forward pass from the current tensors
	h    float64
	rtol float64 // relative tolerance
	// floor is an absolute tolerance for single coordinates, added to
	// rtol·max|grad| of the tensor (float32 forward noise).
	floor float64
	coord int // random coordinates per tensor (besides the largest two)
	r     *rand.Rand
}

// perturbed evaluates the loss at tensor + h·dir (dir nil: unchanged).
func (g *gradCheck) perturbed(t testing.TB, gt gradTensor, base []float32, dir []float64, h float64) float64 {
	t.Helper()
	v := make([]float32, len(base))
	for i := range v {
		v[i] = float32(float64(base[i]) + h*dir[i])
	}
	if err := g.be.Upload(gt.buf, v); err != nil {
		t.Fatal(err)
	}
	l := g.loss()
	if err := g.be.Upload(gt.buf, base); err != nil {
		t.Fatal(err)
	}
	return l
}

func (g *gradCheck) numeric(t testing.TB, gt gradTensor, base []float32, dir []float64) float64 {
	return (g.perturbed(t, gt, base, dir, g.h) - g.perturbed(t, gt, base, dir, -g.h)) / (2 * g.h)
}

// check returns a description of the first mismatch, or "".
func (g *gradCheck) check(t testing.TB, gt gradTensor) string {
	t.Helper()
	base := download(t, g.be, gt.buf, gt.n)
	var norm, maxAbs float64
	for _, v := range gt.grad[:gt.n] {
		norm += float64(v) * float64(v)
		maxAbs = max(maxAbs, math.Abs(float64(v)))
	}
	norm = math.Sqrt(norm)
	// Directional derivative along the analytic gradient and along a mix
	// of it with a random direction.
	dirs := [][]float64{make([]float64, gt.n), make([]float64, gt.n)}
	var rn float64
	rnd := make([]float64, gt.n)
	for i := range rnd {
		rnd[i] = g.r.NormFloat64()
		rn += rnd[i] * rnd[i]
	}
	rn = math.Sqrt(rn)
	for i := range gt.n {
		gi := 0.0
		if norm > 0 {
			gi = float64(gt.grad[i]) / norm
		}
		dirs[0][i] = gi
		dirs[1][i] = (gi + rnd[i]/rn) / math.Sqrt2
	}
	for k, d := range dirs {
		if norm == 0 && k == 0 {
			continue
		}
		var want float64
		for i := range d {
			want += d[i] * float64(gt.grad[i])
		}
		got := g.numeric(t, gt, base, d)
		if math.Abs(got-want) > g.rtol*norm+g.floor {
			return fmt.Sprintf("%s: directional derivative %d: numeric %.6g, analytic %.6g (|grad| %.3g)", gt.name, k, got, want, norm)
		}
	}
	// Single coordinates: the two largest and some random ones.
	idx := []int{}
	best := [2]int{-1, -1}
	for i, v := range gt.grad[:gt.n] {
		a := math.Abs(float64(v))
		switch {
		case best[0] < 0 || a > math.Abs(float64(gt.grad[best[0]])):
			best[1], best[0] = best[0], i
		case best[1] < 0 || a > math.Abs(float64(gt.grad[best[1]])):
			best[1] = i
		}
	}
	for _, b := range best {
		if b >= 0 {
			idx = append(idx, b)
		}
	}
	for range g.coord {
		idx = append(idx, g.r.IntN(gt.n))
	}
	one := make([]float64, gt.n)
	for _, i := range idx {
		one[i] = 1
		got := g.numeric(t, gt, base, one)
		one[i] = 0
		want := float64(gt.grad[i])
		if math.Abs(got-want) > g.rtol*maxAbs+g.floor {
			return fmt.Sprintf("%s[%d]: numeric %.6g, analytic %.6g (max |grad| %.3g)", gt.name, i, got, want, maxAbs)
		}
	}
	return ""
}
