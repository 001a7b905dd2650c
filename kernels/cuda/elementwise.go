package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/ffc-stream/ffc/kernels"
)

// vecs checks the n-element prefixes of the named buffers of an
// elementwise operation.
func (be *Backend) vecs(op string, n int, names []string, bufs ...kernels.Buffer) ([]*buffer, error) {
	if n < 0 || n > math.MaxInt32 {
		return nil, fmt.Errorf("cuda: %s: %w: n = %d", op, kernels.ErrShape, n)
	}
	out := make([]*buffer, len(bufs))
	for k, b := range bufs {
		bb, err := be.f32(names[k], b, n)
		if err != nil {
			return nil, fmt.Errorf("cuda: %s: %w", op, err)
		}
		out[k] = bb
	}
	return out, nil
}

// Fill sets x[i] = v.
func (be *Backend) Fill(n int, v float32, x kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("fill", n, []string{"x"}, x)
	if err != nil {
		return err
	}
	return wrap("fill", be.launch1(kFill, int64(n), ptr(s[0]), i(n), f(v)))
}

// Copy sets dst[i] = src[i] (a device-to-device copy on the stream).
func (be *Backend) Copy(n int, src, dst kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("copy", n, []string{"src", "dst"}, src, dst)
	if err != nil {
		return err
	}
	if n == 0 || s[0].ptr == s[1].ptr {
		return nil
	}
	if overlap(s[0], n, s[1], n) {
		return fmt.Errorf("cuda: copy: %w: dst partially overlaps src", kernels.ErrShape)
	}
	return wrap("copy", be.dev.dtod(s[1].ptr, s[0].ptr, int64(n)*4))
}

// Add sets dst[i] = a[i] + b[i].
func (be *Backend) Add(n int, a, b, dst kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("add", n, []string{"a", "b", "dst"}, a, b, dst)
	if err != nil {
		return err
	}
	return wrap("add", be.launch1(kAdd, int64(n), ptr(s[0]), ptr(s[1]), ptr(s[2]), i(n)))
}

// Mul sets dst[i] = a[i]·b[i].
func (be *Backend) Mul(n int, a, b, dst kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("mul", n, []string{"a", "b", "dst"}, a, b, dst)
	if err != nil {
		return err
	}
	return wrap("mul", be.launch1(kMul, int64(n), ptr(s[0]), ptr(s[1]), ptr(s[2]), i(n)))
}

// Scale sets x[i] = alpha·x[i].
func (be *Backend) Scale(n int, alpha float32, x kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("scale", n, []string{"x"}, x)
	if err != nil {
		return err
	}
	return wrap("scale", be.launch1(kScale, int64(n), ptr(s[0]), i(n), f(alpha)))
}

// AddScalar sets x[i] = x[i] + beta.
func (be *Backend) AddScalar(n int, beta float32, x kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("add scalar", n, []string{"x"}, x)
	if err != nil {
		return err
	}
	return wrap("add scalar", be.launch1(kAddScalar, int64(n), ptr(s[0]), i(n), f(beta)))
}

// Axpby sets y[i] = alpha·x[i] + beta·y[i].
func (be *Backend) Axpby(n int, alpha float32, x kernels.Buffer, beta float32, y kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("axpby", n, []string{"x", "y"}, x, y)
	if err != nil {
		return err
	}
	return wrap("axpby", be.launch1(kAxpby, int64(n), ptr(s[0]), ptr(s[1]), i(n), f(alpha), f(beta)))
}

// ReLU sets y[i] = max(x[i], 0).
func (be *Backend) ReLU(n int, x, y kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("relu", n, []string{"x", "y"}, x, y)
	if err != nil {
		return err
	}
	return wrap("relu", be.launch1(kReLU, int64(n), ptr(s[0]), ptr(s[1]), i(n)))
}

// ReLUBackward sets dx[i] = dy[i] where x[i] > 0, else 0.
func (be *Backend) ReLUBackward(n int, x, dy, dx kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("relu backward", n, []string{"x", "dy", "dx"}, x, dy, dx)
	if err != nil {
		return err
	}
	return wrap("relu backward", be.launch1(kReLUBackward, int64(n), ptr(s[0]), ptr(s[1]), ptr(s[2]), i(n)))
}

// reduce runs a two-pass reduction (per-block partials, then one block)
// and returns its float64 result.
func (be *Backend) reduce(partial kernel, n int, x *buffer) (float64, error) {
	if n == 0 {
		return 0, nil
	}
	out := be.parts.ptr + maxParts*8
	if err := be.queueReduce(partial, n, x, out); err != nil {
		return 0, err
	}
	var v float64
	if err := be.dev.dtoh(unsafe.Pointer(&v), out, 8); err != nil {
		return 0, err
	}
	return v, nil
}

// queueReduce queues a two-pass reduction of x[0:n] (n > 0) whose float64
// result lands at device address out.
func (be *Backend) queueReduce(partial kernel, n int, x *buffer, out uintptr) error {
	g := grid(int64(n), be.block)
	g.x = min(g.x, maxParts)
	if err := be.dev.launch(partial, g, dim3{be.block, 1, 1}, []uint64{ptr(x), i(n), ptr(be.parts)}); err != nil {
		return err
	}
	return be.dev.launch(kSumFinal, dim3{1, 1, 1}, dim3{be.block, 1, 1}, []uint64{ptr(be.parts), i(g.x), uint64(out)})
}

// Sum returns Σ x[i], accumulated in float64 on the device.
func (be *Backend) Sum(n int, x kernels.Buffer) (float64, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("sum", n, []string{"x"}, x)
	if err != nil {
		return 0, err
	}
	v, err := be.reduce(kSumPartial, n, s[0])
	return v, wrap("sum", err)
}

// AllFinite reports whether no x[i] is NaN or ±Inf.
func (be *Backend) AllFinite(n int, x kernels.Buffer) (bool, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("all finite", n, []string{"x"}, x)
	if err != nil {
		return false, err
	}
	bad, err := be.reduce(kNonfinitePartial, n, s[0])
	if err != nil {
		return false, wrap("all finite", err)
	}
	return bad == 0, nil
}

// FirstNonFinite checks every xs[j][0:ns[j]] with one wait: each buffer's
// two-pass count of NaN and ±Inf is queued, writing one double per buffer,
// and the counts are read back together (see kernels.FiniteChecker).
func (be *Backend) FirstNonFinite(ns []int, xs []kernels.Buffer) (int, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "first non-finite"
	if len(ns) != len(xs) {
		return -1, fmt.Errorf("cuda: %s: %w: %d lengths for %d buffers", op, kernels.ErrShape, len(ns), len(xs))
	}
	if len(xs) == 0 {
		return -1, nil
	}
	bufs := make([]*buffer, len(xs))
	for j, x := range xs {
		s, err := be.vecs(op, ns[j], []string{fmt.Sprintf("xs[%d]", j)}, x)
		if err != nil {
			return -1, err
		}
		bufs[j] = s[0]
	}
	if be.counts == nil || be.counts.n < 2*len(xs) {
		// Grows to the most buffers checked at once (a model's
		// parameters), so steady-state steps allocate nothing.
		if be.counts != nil {
			if err := be.release(be.counts); err != nil {
				return -1, err
			}
		}
		var err error
		if be.counts, err = be.allocBuf(2 * len(xs)); err != nil { // doubles as pairs of float32
			be.counts = nil
			return -1, fmt.Errorf("cuda: %s: scratch for %d counts: %w", op, len(xs), err)
		}
	}
	for j, b := range bufs {
		out := be.counts.ptr + uintptr(j)*8
		if ns[j] == 0 {
			if err := be.dev.memsetD32(out, 0, 2); err != nil {
				return -1, wrap(op, err)
			}
			continue
		}
		if err := be.queueReduce(kNonfinitePartial, ns[j], b, out); err != nil {
			return -1, wrap(op, err)
		}
	}
	counts := make([]float64, len(xs))
	if err := be.dev.dtoh(unsafe.Pointer(&counts[0]), be.counts.ptr, int64(len(xs))*8); err != nil {
		return -1, wrap(op, err)
	}
	for j, c := range counts {
		if c != 0 {
			return j, nil
		}
	}
	return -1, nil
}

// SGDStep applies SGD with momentum, weight decay and optionally Nesterov
// (PyTorch's formulation; see kernels.Optimizer).
func (be *Backend) SGDStep(n int, p kernels.SGD, w, g, v kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.vecs("sgd", n, []string{"w", "g", "v"}, w, g, v)
	if err != nil {
		return err
	}
	if math.IsNaN(float64(p.LR)) || math.IsNaN(float64(p.Momentum)) || math.IsNaN(float64(p.WeightDecay)) {
		return fmt.Errorf("cuda: sgd: %w: NaN hyper-parameter %+v", kernels.ErrShape, p)
	}
	return wrap("sgd", be.launch1(kSGD, int64(n), ptr(s[0]), ptr(s[1]), ptr(s[2]), i(n),
		f(p.LR), f(p.Momentum), f(p.WeightDecay), flag(p.Nesterov)))
}
