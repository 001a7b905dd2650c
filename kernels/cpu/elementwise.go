package cpu

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/ffc-stream/ffc/kernels"
)

// vecs fetches the n-element prefixes of the named buffers for an
// elementwise operation.
func vecs(op string, n int, names []string, bufs ...kernels.Buffer) ([][]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: %s: %w: n = %d", op, kernels.ErrShape, n)
	}
	out := make([][]float32, len(bufs))
	for i, b := range bufs {
		s, err := f32(names[i], b, n)
		if err != nil {
			return nil, fmt.Errorf("cpu: %s: %w", op, err)
		}
		out[i] = s
	}
	return out, nil
}

// Fill sets x[i] = v.
func (be *Backend) Fill(n int, v float32, x kernels.Buffer) error {
	s, err := vecs("fill", n, []string{"x"}, x)
	if err != nil {
		return err
	}
	xs := s[0]
	be.parallel(n, minWork, func(lo, hi int) {
		if v == 0 {
			clear(xs[lo:hi])
			return
		}
		for i := lo; i < hi; i++ {
			xs[i] = v
		}
	})
	return nil
}

// Copy sets dst[i] = src[i].
func (be *Backend) Copy(n int, src, dst kernels.Buffer) error {
	s, err := vecs("copy", n, []string{"src", "dst"}, src, dst)
	if err != nil {
		return err
	}
	copy(s[1], s[0])
	return nil
}

// Add sets dst[i] = a[i] + b[i].
func (be *Backend) Add(n int, a, b, dst kernels.Buffer) error {
	s, err := vecs("add", n, []string{"a", "b", "dst"}, a, b, dst)
	if err != nil {
		return err
	}
	as, bs, ds := s[0], s[1], s[2]
	be.parallel(n, minWork, func(lo, hi int) {
		a, b, d := as[lo:hi], bs[lo:hi], ds[lo:hi]
		for i := range d {
			d[i] = a[i] + b[i]
		}
	})
	return nil
}

// Mul sets dst[i] = a[i]·b[i].
func (be *Backend) Mul(n int, a, b, dst kernels.Buffer) error {
	s, err := vecs("mul", n, []string{"a", "b", "dst"}, a, b, dst)
	if err != nil {
		return err
	}
	as, bs, ds := s[0], s[1], s[2]
	be.parallel(n, minWork, func(lo, hi int) {
		a, b, d := as[lo:hi], bs[lo:hi], ds[lo:hi]
		for i := range d {
			d[i] = a[i] * b[i]
		}
	})
	return nil
}

// Scale sets x[i] = alpha·x[i].
func (be *Backend) Scale(n int, alpha float32, x kernels.Buffer) error {
	s, err := vecs("scale", n, []string{"x"}, x)
	if err != nil {
		return err
	}
	xs := s[0]
	be.parallel(n, minWork, func(lo, hi int) {
		x := xs[lo:hi]
		for i := range x {
			x[i] *= alpha
		}
	})
	return nil
}

// AddScalar sets x[i] = x[i] + beta.
func (be *Backend) AddScalar(n int, beta float32, x kernels.Buffer) error {
	s, err := vecs("add scalar", n, []string{"x"}, x)
	if err != nil {
		return err
	}
	xs := s[0]
	be.parallel(n, minWork, func(lo, hi int) {
		x := xs[lo:hi]
		for i := range x {
			x[i] += beta
		}
	})
	return nil
}

// Axpby sets y[i] = alpha·x[i] + beta·y[i].
func (be *Backend) Axpby(n int, alpha float32, x kernels.Buffer, beta float32, y kernels.Buffer) error {
	s, err := vecs("axpby", n, []string{"x", "y"}, x, y)
	if err != nil {
		return err
	}
	xs, ys := s[0], s[1]
	be.parallel(n, minWork, func(lo, hi int) {
		x, y := xs[lo:hi], ys[lo:hi]
		for i := range y {
			y[i] = alpha*x[i] + beta*y[i]
		}
	})
	return nil
}

// ReLU sets y[i] = max(x[i], 0).
func (be *Backend) ReLU(n int, x, y kernels.Buffer) error {
	s, err := vecs("relu", n, []string{"x", "y"}, x, y)
	if err != nil {
		return err
	}
	xs, ys := s[0], s[1]
	be.parallel(n, minWork, func(lo, hi int) {
		x, y := xs[lo:hi], ys[lo:hi]
		for i := range y {
			v := x[i]
			y[i] = [2]float32{0, v}[positive(v)]
		}
	})
	return nil
}

// ReLUBackward sets dx[i] = dy[i] where x[i] > 0, else 0.
func (be *Backend) ReLUBackward(n int, x, dy, dx kernels.Buffer) error {
	s, err := vecs("relu backward", n, []string{"x", "dy", "dx"}, x, dy, dx)
	if err != nil {
		return err
	}
	xs, dys, dxs := s[0], s[1], s[2]
	be.parallel(n, minWork, func(lo, hi int) {
		x, dy, dx := xs[lo:hi], dys[lo:hi], dxs[lo:hi]
		for i := range dx {
			dx[i] = [2]float32{0, dy[i]}[positive(x[i])]
		}
	})
	return nil
}

// Sum returns Σ x[i] accumulated in float64 (per-chunk partial sums, so the
// result depends only on n and the thread count).
func (be *Backend) Sum(n int, x kernels.Buffer) (float64, error) {
	s, err := vecs("sum", n, []string{"x"}, x)
	if err != nil {
		return 0, err
	}
	xs := s[0]
	parts := make([]float64, be.threads)
	be.parallelChunks(n, minWork, func(chunk, lo, hi int) {
		var acc float64
		for _, v := range xs[lo:hi] {
			acc += float64(v)
		}
		parts[chunk] = acc
	})
	var total float64
	for _, p := range parts {
		total += p
	}
	return total, nil
}

// AllFinite reports whether no x[i] is NaN or ±Inf.
func (be *Backend) AllFinite(n int, x kernels.Buffer) (bool, error) {
	s, err := vecs("all finite", n, []string{"x"}, x)
	if err != nil {
		return false, err
	}
	xs := s[0]
	bad := make([]bool, be.threads)
	be.parallelChunks(n, minWork, func(chunk, lo, hi int) {
		for _, v := range xs[lo:hi] {
			// v−v is NaN exactly for NaN and ±Inf.
			if f := v - v; f != f {
				bad[chunk] = true
				return
			}
		}
	})
	for _, b := range bad {
		if b {
			return false, nil
		}
	}
	return true, nil
}

// SGDStep applies SGD with momentum, weight decay and optionally Nesterov
// (PyTorch's formulation; see kernels.Optimizer).
func (be *Backend) SGDStep(n int, p kernels.SGD, w, g, v kernels.Buffer) error {
	s, err := vecs("sgd", n, []string{"w", "g", "v"}, w, g, v)
	if err != nil {
		return err
	}
	if math.IsNaN(float64(p.LR)) || math.IsNaN(float64(p.Momentum)) || math.IsNaN(float64(p.WeightDecay)) {
		return fmt.Errorf("cpu: sgd: %w: NaN hyper-parameter %+v", kernels.ErrShape, p)
	}
	ws, gs, vs := s[0], s[1], s[2]
	lr, mu, wd := p.LR, p.Momentum, p.WeightDecay
	be.parallel(n, minWork, func(lo, hi int) {
		w, g, v := ws[lo:hi], gs[lo:hi], vs[lo:hi]
		for i := range w {
			d := g[i] + wd*w[i]
			vi := mu*v[i] + d
			v[i] = vi
			if p.Nesterov {
				w[i] -= lr * (d + mu*vi)
			} else {
				w[i] -= lr * vi
			}
		}
	})
	return nil
}

// positive is 1 where v > 0, else 0 (NaN too), without a branch:
// activations' signs follow no pattern, and a mispredicted branch per
// element costs about ten times the arithmetic around it.
func positive(v float32) int {
	b := v > 0
	return int(*(*uint8)(unsafe.Pointer(&b)))
}
