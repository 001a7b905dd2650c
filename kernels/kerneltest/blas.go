package kerneltest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

func testMemory(t *testing.T, h *h) {
	be := h.be
	b := h.zeros(10)
	h.equal("alloc is zeroed", h.down(b, 10), make([]float32, 10))
	x := h.uniform(10, -1, 1)
	h.must(be.Upload(b, x))
	h.equal("round trip", h.down(b, 10), x)

	v, err := be.View(b, 3, 4)
	h.must(err)
	if v.Len() != 4 {
		t.Fatalf("view Len = %d, want 4", v.Len())
	}
	h.must(be.Fill(4, 2, v))
	vv, err := be.View(v, 1, 2)
	h.must(err)
	h.must(be.Fill(2, 5, vv))
	want := append([]float32(nil), x...)
	copy(want[3:7], []float32{2, 5, 5, 2})
	h.equal("writes through views", h.down(b, 10), want)
	h.equal("view reads", h.down(v, 4), []float32{2, 5, 5, 2})
	h.must(be.Free(vv)) // no-op on a view
	h.equal("freeing a view keeps the parent", h.down(b, 10), want)

	_, err = be.View(b, 8, 3)
	h.wantErr("view past the end", err, kernels.ErrShape)
	_, err = be.View(b, -1, 3)
	h.wantErr("view at negative offset", err, kernels.ErrShape)
	h.wantErr("upload too long", be.Upload(b, make([]float32, 11)), kernels.ErrShape)
	h.wantErr("download too long", be.Download(make([]float32, 11), b), kernels.ErrShape)
	_, err = be.Alloc(-1)
	h.wantErr("alloc -1", err, kernels.ErrShape)

	z, err := be.Alloc(0)
	h.must(err)
	h.must(be.Fill(0, 1, z))
	h.must(be.Free(z))

	ib, err := be.AllocIndex(6)
	h.must(err)
	h.must(be.UploadIndex(ib, []int32{1, -2, 3, 4, 5, 6}))
	iv, err := be.ViewIndex(ib, 2, 3)
	h.must(err)
	got := h.downIdx(iv, 3)
	if fmt.Sprint(got) != "[3 4 5]" {
		t.Errorf("index view = %v, want [3 4 5]", got)
	}
	h.wantErr("index upload too long", be.UploadIndex(ib, make([]int32, 7)), kernels.ErrShape)
	_, err = be.ViewIndex(ib, 5, 2)
	h.wantErr("index view past the end", err, kernels.ErrShape)
	h.must(be.FreeIndex(ib))
	h.wantErr("use of a freed index buffer", be.DownloadIndex(make([]int32, 1), ib), kernels.ErrBuffer)

	h.must(be.Free(b))
	h.wantErr("use of a freed buffer", be.Fill(1, 0, b), kernels.ErrBuffer)
	h.must(be.Sync())
}

// gemmRef computes alpha·op(A)·op(B) + beta·C in float64 (C ignored when
// beta = 0).
func gemmRef(ta, tb bool, m, n, k int, alpha float64, a, b []float32, beta float64, c []float32) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for l := range k {
				av := a[i*k+l]
				if ta {
					av = a[l*m+i]
				}
				bv := b[l*n+j]
				if tb {
					bv = b[j*k+l]
				}
				s += float64(av) * float64(bv)
			}
			out[i*n+j] = alpha * s
			if beta != 0 {
				out[i*n+j] += beta * float64(c[i*n+j])
			}
		}
	}
	return out
}

// gemmShapes are (m, n, k): every combination of the odd sizes, a few
// larger ones that cross blocking and threading thresholds, and a long k.
func gemmShapes() [][3]int {
	var s [][3]int
	for _, m := range sizes {
		for _, n := range sizes {
			for _, k := range []int{1, 17, 65} {
				s = append(s, [3]int{m, n, k})
			}
		}
	}
	return append(s, [3]int{130, 257, 300}, [3]int{3, 5, 2000}, [3]int{256, 100, 64}, [3]int{0, 3, 4}, [3]int{3, 0, 4})
}

func testGemm(t *testing.T, h *h) {
	ab := [][2]float32{{1, 0}, {0.5, -1.5}, {-2, 1}}
	n := 0
	// Tolerance: relative L2 error 1e-5 (float32 accumulation against
	// float64; k ≤ 2000 gives ≈ 1e-6).
	for _, s := range gemmShapes() {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				m, nn, k := s[0], s[1], s[2]
				alpha, beta := ab[n%3][0], ab[n%3][1]
				n++
				a, b, c := h.normal(m*k), h.normal(k*nn), h.normal(m*nn)
				if beta == 0 {
					for i := range c {
						c[i] = float32(math.NaN()) // must not be read
					}
				}
				want := gemmRef(ta, tb, m, nn, k, float64(alpha), a, b, float64(beta), c)
				cb := h.up(c)
				h.must(h.be.Gemm(ta, tb, m, nn, k, alpha, h.up(a), h.up(b), beta, cb))
				h.close(fmt.Sprintf("gemm ta=%v tb=%v m=%d n=%d k=%d α=%g β=%g", ta, tb, m, nn, k, alpha, beta), h.down(cb, m*nn), want, 1e-5)
			}
		}
	}
	// k = 0 and alpha = 0 only scale C.
	c := h.normal(12)
	cb := h.up(c)
	h.must(h.be.Gemm(false, false, 3, 4, 0, 1, h.zeros(0), h.zeros(0), 2, cb))
	want := make([]float64, 12)
	for i, v := range c {
		want[i] = 2 * float64(v)
	}
	h.close("gemm k=0", h.down(cb, 12), want, 1e-7)
	h.must(h.be.Gemm(false, true, 3, 4, 5, 0, h.filled(15, float32(math.NaN())), h.zeros(20), 0, cb))
	h.close("gemm alpha=0 beta=0", h.down(cb, 12), make([]float64, 12), 0)
	// Operands longer than needed are fine (scratch buffers).
	a, b := h.normal(3*5+7), h.normal(5*4+1)
	cb = h.zeros(12 + 9)
	h.must(h.be.Gemm(false, false, 3, 4, 5, 1, h.up(a), h.up(b), 0, cb))
	h.close("gemm with long buffers", h.down(cb, 12), gemmRef(false, false, 3, 4, 5, 1, a, b, 0, nil), 1e-5)
}

func testGemv(t *testing.T, h *h) {
	for _, m := range slices.Concat(sizes, []int{300}) {
		for _, n := range slices.Concat(sizes, []int{257}) {
			for _, ta := range []bool{false, true} {
				lx, ly := n, m
				if ta {
					lx, ly = m, n
				}
				a, x, y := h.normal(m*n), h.normal(lx), h.normal(ly)
				// Reference via gemmRef with op(A) ly×lx and x as lx×1.
				want := gemmRef(ta, false, ly, 1, lx, 0.5, a, x, -1, y)
				yb := h.up(y)
				h.must(h.be.Gemv(ta, m, n, 0.5, h.up(a), h.up(x), -1, yb))
				h.close(fmt.Sprintf("gemv ta=%v m=%d n=%d", ta, m, n), h.down(yb, ly), want, 1e-5)
			}
		}
	}
}

// elemSizes include one large enough to run on several goroutines.
var elemSizes = []int{0, 1, 3, 17, 33, 65, 100003}

func testElementwise(t *testing.T, h *h) {
	be := h.be
	for _, n := range elemSizes {
		a, b := h.normal(n), h.normal(n)
		ab, bb := h.up(a), h.up(b)
		out := h.zeros(n)
		ref := func(f func(x, y float64) float64) []float64 {
			w := make([]float64, n)
			for i := range w {
				w[i] = f(float64(a[i]), float64(b[i]))
			}
			return w
		}
		name := func(op string) string { return fmt.Sprintf("%s n=%d", op, n) }
		// Tolerance: 1e-6 relative (single float32 roundings).
		h.must(be.Fill(n, 1.5, out))
		h.close(name("fill"), h.down(out, n), ref(func(x, y float64) float64 { return 1.5 }), 0)
		h.must(be.Copy(n, ab, out))
		h.equal(name("copy"), h.down(out, n), a)
		h.must(be.Add(n, ab, bb, out))
		h.close(name("add"), h.down(out, n), ref(func(x, y float64) float64 { return x + y }), 1e-6)
		h.must(be.Mul(n, ab, bb, out))
		h.close(name("mul"), h.down(out, n), ref(func(x, y float64) float64 { return x * y }), 1e-6)
		h.must(be.Copy(n, ab, out))
		h.must(be.Scale(n, -0.75, out))
		h.close(name("scale"), h.down(out, n), ref(func(x, y float64) float64 { return -0.75 * x }), 1e-6)
		h.must(be.Copy(n, ab, out))
		h.must(be.AddScalar(n, 0.25, out))
		h.close(name("add scalar"), h.down(out, n), ref(func(x, y float64) float64 { return x + 0.25 }), 1e-6)
		h.must(be.Copy(n, bb, out))
		h.must(be.Axpby(n, 0.01, ab, 0.99, out))
		h.close(name("axpby (moving average)"), h.down(out, n), ref(func(x, y float64) float64 { return 0.01*x + 0.99*y }), 1e-6)
		h.must(be.ReLU(n, ab, out))
		h.close(name("relu"), h.down(out, n), ref(func(x, y float64) float64 { return max(x, 0) }), 0)
		h.must(be.ReLUBackward(n, ab, bb, out))
		h.close(name("relu backward"), h.down(out, n), ref(func(x, y float64) float64 {
			if x > 0 {
				return y
			}
			return 0
		}), 0)
		// In place: dst aliases an input.
		h.must(be.Copy(n, ab, out))
		h.must(be.Add(n, out, bb, out))
		h.close(name("add in place"), h.down(out, n), ref(func(x, y float64) float64 { return x + y }), 1e-6)
		h.must(be.Copy(n, ab, out))
		h.must(be.ReLU(n, out, out))
		h.close(name("relu in place"), h.down(out, n), ref(func(x, y float64) float64 { return max(x, 0) }), 0)
	}
}

func testSumAllFinite(t *testing.T, h *h) {
	be := h.be
	for _, n := range elemSizes {
		x := h.normal(n)
		var want float64
		for _, v := range x {
			want += float64(v)
		}
		xb := h.up(x)
		got, err := be.Sum(n, xb)
		h.must(err)
		// Tolerance: 1e-9 relative to Σ|x| (float64 accumulation).
		var abs float64
		for _, v := range x {
			abs += math.Abs(float64(v))
		}
		if math.Abs(got-want) > 1e-9*max(abs, 1) {
			t.Errorf("sum n=%d = %v, want %v", n, got, want)
		}
		ok, err := be.AllFinite(n, xb)
		h.must(err)
		if !ok {
			t.Errorf("AllFinite(n=%d) of finite data = false", n)
		}
		if n == 0 {
			continue
		}
		for _, pos := range []int{0, n / 2, n - 1} {
			for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
				y := append([]float32(nil), x...)
				y[pos] = bad
				yb := h.up(y)
				ok, err := be.AllFinite(n, yb)
				h.must(err)
				if ok {
					t.Errorf("AllFinite(n=%d) with %v at %d = true", n, bad, pos)
				}
				ok, err = be.AllFinite(pos, yb)
				h.must(err)
				if !ok {
					t.Errorf("AllFinite over the %d elements before a %v = false", pos, bad)
				}
			}
		}
	}
}

// testFirstNonFinite checks kernels.FirstNonFinite through the backend's
// own FiniteChecker (when it has one) and through the AllFinite fallback.
func testFirstNonFinite(t *testing.T, h *h) {
	be := h.be
	nan, inf := float32(math.NaN()), float32(math.Inf(-1))
	for _, via := range []struct {
		name string
		be   kernels.Backend
	}{
		{"backend", be},
		{"fallback", struct{ kernels.Backend }{be}}, // hides FiniteChecker
	} {
		first := func(ns []int, xs []kernels.Buffer) int {
			j, err := kernels.FirstNonFinite(via.be, ns, xs)
			h.must(err)
			return j
		}
		if j := first(nil, nil); j != -1 {
			t.Errorf("%s: no buffers: %d, want -1", via.name, j)
		}
		// Many buffers of every size (buffer j holds elemSizes[j%7]), the
		// long ones past one reduction's blocks; asked for a few, then all,
		// then one, so that a backend's scratch grows and is reused.
		var ns []int
		var xs []kernels.Buffer
		for range 6 {
			for _, n := range elemSizes {
				ns, xs = append(ns, n), append(xs, h.up(h.normal(n)))
			}
		}
		for _, m := range []int{3, len(xs), 1} {
			if j := first(ns[:m], xs[:m]); j != -1 {
				t.Errorf("%s: %d finite buffers: %d, want -1", via.name, m, j)
			}
		}
		for _, c := range []struct {
			name string
			bad  map[int]int // buffer → position of the bad value
			want int
		}{
			{"one", map[int]int{9: 0}, 9},
			{"last of a long one", map[int]int{13: 100002}, 13},
			{"two", map[int]int{31: 16, 12: 1}, 12},
			{"first buffer", map[int]int{1: 0, 40: 5}, 1},
		} {
			bx := append([]kernels.Buffer(nil), xs...)
			for j, pos := range c.bad {
				y := h.normal(ns[j])
				y[pos] = nan
				if j%2 == 0 {
					y[pos] = inf
				}
				bx[j] = h.up(y)
			}
			if j := first(ns, bx); j != c.want {
				t.Errorf("%s: %s: %d, want %d", via.name, c.name, j, c.want)
			}
		}
		// Only the first ns[j] elements count, views included.
		y := h.normal(40)
		y[20] = nan
		yb := h.up(y)
		head, err := be.View(yb, 0, 20)
		h.must(err)
		tail, err := be.View(yb, 20, 20)
		h.must(err)
		if j := first([]int{20, 20, 19}, []kernels.Buffer{yb, head, xs[5]}); j != -1 {
			t.Errorf("%s: NaN past the lengths checked: %d, want -1", via.name, j)
		}
		if j := first([]int{20, 1}, []kernels.Buffer{head, tail}); j != 1 {
			t.Errorf("%s: NaN at a view's start: %d, want 1", via.name, j)
		}
		_, err = kernels.FirstNonFinite(via.be, []int{1}, nil)
		h.wantErr(via.name+": lengths for no buffers", err, kernels.ErrShape)
		_, err = kernels.FirstNonFinite(via.be, []int{1, 41}, []kernels.Buffer{yb, yb})
		h.wantErr(via.name+": too long", err, kernels.ErrShape)
		_, err = kernels.FirstNonFinite(via.be, []int{1, 1}, []kernels.Buffer{yb, nil})
		h.wantErr(via.name+": nil buffer", err, kernels.ErrBuffer)
	}
}

func testSGD(t *testing.T, h *h) {
	for _, n := range []int{1, 17, 1000, 100003} {
		for _, nesterov := range []bool{false, true} {
			p := kernels.SGD{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: nesterov}
			w := h.normal(n)
			wb, vb := h.up(w), h.zeros(n)
			ww := f64(w)
			vv := make([]float64, n)
			for step := range 3 {
				g := h.normal(n)
				h.must(h.be.SGDStep(n, p, wb, h.up(g), vb))
				mu, lr, wd := float64(p.Momentum), float64(p.LR), float64(p.WeightDecay)
				for i := range ww {
					d := float64(g[i]) + wd*ww[i]
					if step == 0 {
						vv[i] = d // PyTorch: buf = d on the first step
					} else {
						vv[i] = mu*vv[i] + d
					}
					if nesterov {
						ww[i] -= lr * (d + mu*vv[i])
					} else {
						ww[i] -= lr * vv[i]
					}
				}
			}
			// Tolerance: 1e-6 relative after three steps.
			h.close(fmt.Sprintf("sgd w n=%d nesterov=%v", n, nesterov), h.down(wb, n), ww, 1e-6)
			h.close(fmt.Sprintf("sgd v n=%d nesterov=%v", n, nesterov), h.down(vb, n), vv, 1e-6)
		}
	}
}
