package nn

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// layerGrad sets up the gradient check of one layer: L = Σ c·y over a batch
// of n samples of x.
type layerGrad struct {
	be   kernels.Backend
	l    Layer
	n    int
	x, c kernels.Buffer
	ch   []float32
}

func newLayerGrad(t *testing.T, be kernels.Backend, l Layer, n int, x []float32, r *rand.Rand) *layerGrad {
	t.Helper()
	ch := randn(r, n*l.OutLen(), 1)
	return &layerGrad{be: be, l: l, n: n, x: upload(t, be, x), c: upload(t, be, ch), ch: ch}
}

func (lg *layerGrad) loss(t *testing.T) func() float64 {
	return func() float64 {
		y, err := lg.l.Forward(lg.x, lg.n, true)
		if err != nil {
			t.Fatal(err)
		}
		return dot64(download(t, lg.be, y, lg.n*lg.l.OutLen()), lg.ch)
	}
}

// analytic runs forward and backward and returns the tensors to check with
// their gradients.
func (lg *layerGrad) analytic(t *testing.T) []gradTensor {
	t.Helper()
	if err := ZeroGrads(lg.be, lg.l.Params()); err != nil {
		t.Fatal(err)
	}
	if _, err := lg.l.Forward(lg.x, lg.n, true); err != nil {
		t.Fatal(err)
	}
	dx, err := lg.l.Backward(lg.c, true)
	if err != nil {
		t.Fatal(err)
	}
	nin := lg.n * lg.l.InLen()
	ts := []gradTensor{{name: "x", buf: lg.x, n: nin, grad: download(t, lg.be, dx, nin)}}
	for _, p := range lg.l.Params() {
		ts = append(ts, gradTensor{name: p.Name, buf: p.W, n: p.N, grad: download(t, lg.be, p.G, p.N)})
	}
	return ts
}

func TestLayerGradients(t *testing.T) {
	be := newBackend(t)
	c := Config{MaxBatch: 4, Seed: 7}
	type build func() (Layer, error)
	cases := []struct {
		name string
		n    int
		in   func(r *rand.Rand, n int) []float32
		mk   build
	}{
		{"linear", 3, nil, func() (Layer, error) { return NewLinear(be, c, "fc", 5, 4) }},
		{"conv-nchw-s1", 2, nil, func() (Layer, error) {
			return NewConv2d(be, c, "conv", ConvShape{InC: 2, OutC: 3, H: 5, W: 5, K: 3, Stride: 1, Pad: 1, InLayout: kernels.NCHW})
		}},
		{"conv-cnhw-s2", 3, nil, func() (Layer, error) {
			return NewConv2d(be, c, "conv", ConvShape{InC: 3, OutC: 2, H: 6, W: 6, K: 3, Stride: 2, Pad: 1, InLayout: kernels.CNHW})
		}},
		{"conv-cnhw-s2-odd", 2, nil, func() (Layer, error) {
			return NewConv2d(be, c, "conv", ConvShape{InC: 2, OutC: 2, H: 5, W: 5, K: 3, Stride: 2, Pad: 1, InLayout: kernels.CNHW})
		}},
		{"batchnorm2d-cnhw", 3, shifted, func() (Layer, error) { return NewBatchNorm(be, c, "bn", 2, 4, kernels.CNHW) }},
		{"batchnorm2d-nchw", 2, shifted, func() (Layer, error) { return NewBatchNorm(be, c, "bn", 3, 4, kernels.NCHW) }},
		{"batchnorm1d", 4, shifted, func() (Layer, error) { return NewBatchNorm(be, c, "bn", 3, 1, kernels.NCHW) }},
		{"prelu-cnhw", 2, offZero, func() (Layer, error) { return NewPReLU(be, c, "prelu", 3, 4, kernels.CNHW) }},
		{"prelu-1d", 3, offZero, func() (Layer, error) { return NewPReLU(be, c, "prelu", 4, 1, kernels.NCHW) }},
		{"relu", 3, offZero, func() (Layer, error) { return NewReLU(be, c, "relu", 6) }},
		{"flatten", 3, nil, func() (Layer, error) { return NewFlatten(be, c, "flatten", 2, 5) }},
		{"l2norm", 3, nil, func() (Layer, error) { return NewL2Norm(be, c, "l2", 5) }},
		{"irblock", 3, nil, func() (Layer, error) { return NewIRBlock(be, c, "block", 2, 4, 4) }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 99))
			l, err := tc.mk()
			if err != nil {
				t.Fatal(err)
			}
			in := tc.in
			if in == nil {
				in = func(r *rand.Rand, n int) []float32 { return randn(r, n, 1) }
			}
			lg := newLayerGrad(t, be, l, tc.n, in(r, tc.n*l.InLen()), r)
			gc := &gradCheck{be: be, loss: lg.loss(t), h: 1e-2, rtol: 2e-2, floor: 1e-4, coord: 6, r: r}
			for _, gt := range lg.analytic(t) {
				if msg := gc.check(t, gt); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

// shifted gives inputs with a non-zero mean and scale, so BatchNorm's
// statistics matter.
func shifted(r *rand.Rand, n int) []float32 {
	v := randn(r, n, 2)
	for i := range v {
		v[i] += 0.7
	}
	return v
}

func offZero(r *rand.Rand, n int) []float32 { return awayFromZero(r, n, 0.05) }

// TestGradCheckDetectsErrors makes sure the checker fails on a wrong
// gradient: 3% too large, and one coordinate off.
func TestGradCheckDetectsErrors(t *testing.T) {
	be := newBackend(t)
	c := Config{MaxBatch: 3, Seed: 1}
	l, err := NewLinear(be, c, "fc", 6, 4)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	lg := newLayerGrad(t, be, l, 3, randn(r, 18, 1), r)
	gc := &gradCheck{be: be, loss: lg.loss(t), h: 1e-2, rtol: 2e-2, floor: 1e-4, coord: 6, r: r}
	ts := lg.analytic(t)
	for _, gt := range ts {
		if msg := gc.check(t, gt); msg != "" {
			t.Fatalf("correct gradient rejected: %s", msg)
		}
	}
	for _, mutate := range []func(g []float32){
		func(g []float32) {
			for i := range g {
				g[i] *= 1.03
			}
		},
		func(g []float32) {
			big := 0
			for i := range g {
				if abs32(g[i]) > abs32(g[big]) {
					big = i
				}
			}
			g[big] += 0.1 * g[big]
		},
	} {
		for _, gt := range ts {
			bad := gt
			bad.grad = append([]float32(nil), gt.grad...)
			mutate(bad.grad)
			if msg := gc.check(t, bad); msg == "" {
				t.Errorf("%s: wrong gradient accepted", gt.name)
			}
		}
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// netGrad checks every parameter gradient of a whole net.
func netGrad(t *testing.T, be kernels.Backend, net Net, n int, h, floor float64, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 5))
	x := upload(t, be, randn(r, n*net.InLen(), 1))
	ch := randn(r, n*net.Dim(), 1)
	cb := upload(t, be, ch)
	loss := func() float64 {
		y, err := net.Forward(x, n, true)
		if err != nil {
			t.Fatal(err)
		}
		return dot64(download(t, be, y, n*net.Dim()), ch)
	}
	if err := ZeroGrads(be, net.Params()); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Forward(x, n, true); err != nil {
		t.Fatal(err)
	}
	if err := net.Backward(cb); err != nil {
		t.Fatal(err)
	}
	gc := &gradCheck{be: be, loss: loss, h: h, rtol: 3e-2, floor: floor, coord: 3, r: r}
	for _, p := range net.Params() {
		gt := gradTensor{name: p.Name, buf: p.W, n: p.N, grad: download(t, be, p.G, p.N)}
		if msg := gc.check(t, gt); msg != "" {
			t.Error(msg)
		}
	}
}

func TestNetGradients(t *testing.T) {
	be := newBackend(t)
	t.Run("mlp", func(t *testing.T) {
		net, err := NewMLP(be, MLPOptions{In: 5, Hidden: []int{7, 6}, Dim: 4, MaxBatch: 8, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		netGrad(t, be, net, 6, 1e-2, 2e-4, 1)
	})
	t.Run("ir-resnet-tiny", func(t *testing.T) {
		net, err := NewIRResNet(be, IRResNetOptions{Dim: 5, MaxBatch: 4, Seed: 3, InSize: 8, Widths: []int{2, 3, 4}})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(net.Params()); got != 3*3+3*(3*2+2+2)+2+2+2 {
			t.Errorf("%d parameter tensors", got)
		}
		// With PReLU slopes of 0.25 a finite difference crosses enough
		// kinks in this tiny net to be off by 5-20%; slopes of 1 make the
		// net smooth (the slope gradients are still checked, and the
		// layer test covers slopes ≠ 1).
		for _, p := range net.Params() {
			if strings.HasSuffix(p.Name, "prelu.weight") {
				if err := be.Fill(p.N, 1, p.W); err != nil {
					t.Fatal(err)
				}
			}
		}
		netGrad(t, be, net, 4, 1e-2, 5e-4, 2)
	})
}

// lowered hides a backend's kernels.Convolver, so that convolutions take
// the Im2Col and Gemm path other backends (CUDA) take.
type lowered struct{ kernels.Backend }

// TestConvPathsAgree checks that the ways a convolution can compute its
// gradients agree: on the Im2Col path, a second Backward after one
// Forward (the kept columns were overwritten, so it lowers again) adds the
// same gradient, the untransposed weight-gradient GEMM gives the same
// result, and a net built with RecomputeColumns gives the same gradients
// as one that keeps them; and the Convolver path gives the Im2Col path's
// output and gradients.
func TestConvPathsAgree(t *testing.T) {
	be := lowered{newBackend(t)}
	r := rand.New(rand.NewPCG(8, 8))
	shape := ConvShape{InC: 3, OutC: 4, H: 5, W: 5, K: 3, Stride: 1, Pad: 1, InLayout: kernels.CNHW}
	l, err := NewConv2d(be, Config{MaxBatch: 3, Seed: 4}, "conv", shape)
	must(t, err)
	if l.cv != nil {
		t.Fatal("the wrapped backend still took the Convolver path")
	}
	x := upload(t, be, randn(r, 3*l.InLen(), 1))
	dy := upload(t, be, randn(r, 3*l.OutLen(), 1))
	grads := func(twice, dwT bool) ([]float32, []float32) {
		l.dwT = dwT
		must(t, ZeroGrads(be, l.Params()))
		_, err := l.Forward(x, 3, true)
		must(t, err)
		dx, err := l.Backward(dy, true)
		must(t, err)
		dxs := download(t, be, dx, 3*l.InLen())
		if twice {
			_, err := l.Backward(dy, true)
			must(t, err)
		}
		return download(t, be, l.W.G, l.W.N), dxs
	}
	g1, dx1 := grads(false, true)
	g2, _ := grads(true, true)
	g3, dx3 := grads(false, false)
	for i := range g1 {
		if d := g2[i] - 2*g1[i]; abs32(d) > 1e-4*(1+abs32(g1[i])) {
			t.Fatalf("second backward: dW[%d] = %v, want %v", i, g2[i], 2*g1[i])
		}
		if d := g3[i] - g1[i]; abs32(d) > 1e-4*(1+abs32(g1[i])) {
			t.Fatalf("untransposed dW[%d] = %v, want %v", i, g3[i], g1[i])
		}
	}
	if !equal32(dx1, dx3) {
		t.Error("dx differs between the weight-gradient variants")
	}
	convolverAgrees(t, be.Backend, shape, x, dy, g1, dx1)

	o := IRResNetOptions{Dim: 6, MaxBatch: 3, Seed: 5, InSize: 8, Widths: []int{3, 4}}
	keep, err := NewIRResNet(be, o)
	must(t, err)
	o.RecomputeColumns = true
	recompute, err := NewIRResNet(be, o)
	must(t, err)
	xn := upload(t, be, randn(r, 3*keep.InLen(), 1))
	dyn := upload(t, be, randn(r, 3*keep.Dim(), 1))
	for _, net := range []Net{keep, recompute} {
		_, err := net.Forward(xn, 3, true)
		must(t, err)
		must(t, net.Backward(dyn))
	}
	for i, p := range keep.Params() {
		q := recompute.Params()[i]
		if !equal32(download(t, be, p.G, p.N), download(t, be, q.G, q.N)) {
			t.Errorf("%s: gradients differ with RecomputeColumns", p.Name)
		}
	}
}

// convolverAgrees checks that a convolution on the backend's Convolver
// path (same seed, so the same weights) gives the Im2Col path's weight
// gradient g and input gradient dx for input x and output gradient dy.
func convolverAgrees(t *testing.T, be kernels.Backend, shape ConvShape, x, dy kernels.Buffer, g, dx []float32) {
	t.Helper()
	l, err := NewConv2d(be, Config{MaxBatch: 3, Seed: 4}, "conv", shape)
	must(t, err)
	if l.cv == nil {
		t.Fatalf("%T is not a kernels.Convolver", be)
	}
	must(t, ZeroGrads(be, l.Params()))
	_, err = l.Forward(x, 3, true)
	must(t, err)
	dxb, err := l.Backward(dy, true)
	must(t, err)
	gc, dxc := download(t, be, l.W.G, l.W.N), download(t, be, dxb, 3*l.InLen())
	for i := range g {
		if d := gc[i] - g[i]; abs32(d) > 1e-4*(1+abs32(g[i])) {
			t.Fatalf("Convolver dW[%d] = %v, want %v", i, gc[i], g[i])
		}
	}
	for i := range dx {
		if d := dxc[i] - dx[i]; abs32(d) > 1e-4*(1+abs32(dx[i])) {
			t.Fatalf("Convolver dx[%d] = %v, want %v", i, dxc[i], dx[i])
		}
	}
}

// TestSIMDMatchesGo runs the yardstick at its real widths (32/64/128 on
// 32×32, where the CPU backend takes its direct AVX2 convolutions and
// loops) and with cpu.Options.NoSIMD (lowered convolutions, Go loops) on
// the same weights and inputs: the embeddings and every parameter
// gradient agree up to float32 summation order (relative 1e-4 and 1e-3).
func TestSIMDMatchesGo(t *testing.T) {
	const n = 6
	r := rand.New(rand.NewPCG(10, 10))
	var x, dy []float32
	var outs [2][]float32
	var grads [2][][]float32
	var names []string
	for i, noSIMD := range []bool{false, true} {
		be, err := cpu.New(cpu.Options{NoSIMD: noSIMD})
		must(t, err)
		net, err := NewIRResNet(be, IRResNetOptions{Dim: 16, MaxBatch: n, Seed: 11})
		must(t, err)
		if x == nil {
			x, dy = randn(r, n*net.InLen(), 1), randn(r, n*net.Dim(), 1)
		}
		y, err := net.Forward(upload(t, be, x), n, true)
		must(t, err)
		outs[i] = download(t, be, y, n*net.Dim())
		must(t, ZeroGrads(be, net.Params()))
		must(t, net.Backward(upload(t, be, dy)))
		for _, p := range net.Params() {
			grads[i] = append(grads[i], download(t, be, p.G, p.N))
			if i == 0 {
				names = append(names, p.Name)
			}
		}
	}
	if d := maxRelDiff(outs[0], outs[1]); d > 1e-4 {
		t.Errorf("embeddings differ by %.2g (relative to the largest)", d)
	}
	// Some gradients are 0 but for rounding (a bias before a BatchNorm,
	// which removes it): those are compared with the largest gradient.
	var scale float64
	for _, g := range grads[1] {
		scale = max(scale, maxAbs(g))
	}
	for j := range grads[0] {
		if d := maxDiff(grads[0][j], grads[1][j]) / max(maxAbs(grads[1][j]), 1e-3*scale); d > 1e-3 {
			t.Errorf("gradient of %s differs by %.2g (relative to its largest entry)", names[j], d)
		}
	}
}

// maxRelDiff is max |a−b| over max |b|.
func maxRelDiff(a, b []float32) float64 { return maxDiff(a, b) / max(maxAbs(b), 1e-30) }

// maxDiff is max |a−b|.
func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// maxAbs is max |a|.
func maxAbs(a []float32) float64 {
	var m float64
	for _, v := range a {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}
