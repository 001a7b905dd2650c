package kerneltest

import (
	"fmt"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// GemmShape is one benchmarked product C[M×N] = op(A)·op(B) with inner
// dimension K.
type GemmShape struct {
	Name           string
	M, N, K        int
	TransA, TransB bool
}

// GemmShapes returns the products of the trainer: the FFC/FC head at B = 256,
// D = 512 against Q = 10000 slots (forward logits and the feature
// gradient), and the yardstick backbone's convolutions at batch 64
// (forward W·col, weight gradient dY·colᵀ, input gradient Wᵀ·dY) and its
// Linear(128·8·8 → 512).
func GemmShapes() []GemmShape {
	return []GemmShape{
		{Name: "head-logits-B256-D512-Q10000", M: 256, N: 10000, K: 512, TransB: true},
		{Name: "head-dfeat-B256-Q10000-D512", M: 256, N: 512, K: 10000},
		{Name: "head-logits-B64-D512-Q100000", M: 64, N: 100000, K: 512, TransB: true},
		{Name: "head-dfeat-B64-Q100000-D512", M: 64, N: 512, K: 100000},
		{Name: "head-logits-B256-D512-Q100000", M: 256, N: 100000, K: 512, TransB: true},
		{Name: "head-dfeat-B256-Q100000-D512", M: 256, N: 512, K: 100000},
		{Name: "conv1-fwd-32x9x65536", M: 32, N: 64 * 1024, K: 9},
		{Name: "res32-fwd-32x288x65536", M: 32, N: 64 * 1024, K: 288},
		{Name: "down64-fwd-64x288x16384", M: 64, N: 64 * 256, K: 288},
		{Name: "res64-fwd-64x576x16384", M: 64, N: 64 * 256, K: 576},
		{Name: "down128-fwd-128x576x4096", M: 128, N: 64 * 64, K: 576},
		{Name: "res128-fwd-128x1152x4096", M: 128, N: 64 * 64, K: 1152},
		{Name: "res64-dW-64x576x16384", M: 64, N: 576, K: 64 * 256, TransB: true},
		{Name: "res64-dcol-576x16384x64", M: 576, N: 64 * 256, K: 64, TransA: true},
		{Name: "linear-fwd-64x512x8192", M: 64, N: 512, K: 8192, TransB: true},
	}
}

// BenchmarkGemm benchmarks the GemmShapes on be and reports GFLOP/s
// (2·M·N·K per product).
func BenchmarkGemm(b *testing.B, be kernels.Backend) {
	for _, s := range GemmShapes() {
		b.Run(s.Name, func(b *testing.B) {
			a, bb, c := alloc(b, be, s.M*s.K), alloc(b, be, s.K*s.N), alloc(b, be, s.M*s.N)
			fill(b, be, a, 0.01)
			fill(b, be, bb, 0.02)
			for b.Loop() {
				if err := be.Gemm(s.TransA, s.TransB, s.M, s.N, s.K, 1, a, bb, 0, c); err != nil {
					b.Fatal(err)
				}
			}
			if err := be.Sync(); err != nil {
				b.Fatal(err)
			}
			flops := 2 * float64(s.M) * float64(s.N) * float64(s.K) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkLosses benchmarks the fused margin softmax CE (forward +
// gradient in place) and top-K at B = 256 rows of C = 100000 cosines.
func BenchmarkLosses(b *testing.B, be kernels.Backend) {
	const rows, cols = 256, 100000
	cosHost := make([]float32, rows*cols)
	for i := range cosHost {
		// Deterministic values in [−0.5, 0.5) without a random source.
		cosHost[i] = float32((i*7919)%100003)/100003 - 0.5
	}
	tg := make([]int32, rows)
	for r := range tg {
		tg[r] = int32((r * 389) % cols)
	}
	cos := alloc(b, be, rows*cols)
	grad := alloc(b, be, rows*cols)
	loss := alloc(b, be, rows)
	tb, err := be.AllocIndex(rows)
	if err != nil {
		b.Fatal(err)
	}
	if err := be.Upload(cos, cosHost); err != nil {
		b.Fatal(err)
	}
	if err := be.UploadIndex(tb, tg); err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B) {
		if err := be.Sync(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
	}
	for _, m := range []kernels.Margin{{Kind: kernels.CosFace, S: 32, M: 0.4}, {Kind: kernels.ArcFace, S: 32, M: 0.5}} {
		b.Run(fmt.Sprintf("margin-ce-%v-B%d-C%d", m.Kind, rows, cols), func(b *testing.B) {
			for b.Loop() {
				if err := be.MarginSoftmaxCE(rows, cols, m, cos, tb, 1.0/rows, grad, loss); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
	for _, k := range []int{3, 10} {
		vals := alloc(b, be, rows*k)
		idx, err := be.AllocIndex(rows * k)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("topk-k%d-B%d-C%d", k, rows, cols), func(b *testing.B) {
			for b.Loop() {
				if err := be.TopK(rows, cols, k, cos, vals, idx); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(fmt.Sprintf("fresh-loss-k%d-B%d-C%d", k, rows, cols), func(b *testing.B) {
			for b.Loop() {
				if err := be.FreshTopKLoss(rows, cols, k, cos, nil, 1/float32(rows*k), grad, loss); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}

// BenchmarkLayers benchmarks the non-GEMM layer operations at the sizes of
// the yardstick backbone at batch 64.
func BenchmarkLayers(b *testing.B, be kernels.Backend) {
	for _, g := range []kernels.ConvGeom{
		{N: 64, C: 32, H: 32, W: 32, K: 3, Stride: 1, Pad: 1, Layout: kernels.CNHW},
		{N: 64, C: 64, H: 16, W: 16, K: 3, Stride: 1, Pad: 1, Layout: kernels.CNHW},
		{N: 64, C: 32, H: 32, W: 32, K: 3, Stride: 2, Pad: 1, Layout: kernels.CNHW},
	} {
		x, col := alloc(b, be, g.InLen()), alloc(b, be, g.ColRows()*g.ColCols())
		name := fmt.Sprintf("C%d-H%d-S%d", g.C, g.H, g.Stride)
		b.Run("im2col-"+name, func(b *testing.B) {
			for b.Loop() {
				if err := be.Im2Col(g, x, col); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(4 * g.ColRows() * g.ColCols()))
		})
		b.Run("col2im-"+name, func(b *testing.B) {
			for b.Loop() {
				if err := be.Col2Im(g, col, x); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(4 * g.ColRows() * g.ColCols()))
		})
	}
	for _, s := range []kernels.ChanShape{{Outer: 1, C: 32, Inner: 64 * 1024}, {Outer: 64, C: 512, Inner: 1}} {
		n := s.Len()
		x, y, dy := alloc(b, be, n), alloc(b, be, n), alloc(b, be, n)
		fill(b, be, x, 0.5)
		pc := make([]kernels.Buffer, 6)
		for i := range pc {
			pc[i] = alloc(b, be, s.C)
		}
		fill(b, be, pc[0], 1)
		name := fmt.Sprintf("%dx%dx%d", s.Outer, s.C, s.Inner)
		b.Run("batchnorm-train-"+name, func(b *testing.B) {
			for b.Loop() {
				if err := be.BatchNormTrain(s, 1e-5, 0.1, x, pc[0], pc[1], y, pc[2], pc[3], nil, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(8 * n))
		})
		b.Run("batchnorm-backward-"+name, func(b *testing.B) {
			for b.Loop() {
				if err := be.BatchNormBackward(s, x, pc[0], pc[2], pc[3], dy, y, pc[4], pc[5]); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(12 * n))
		})
		benchPReLU(b, be, s, name)
	}
}

// benchPReLU runs PReLU and its backward on inputs of mixed signs in no
// pattern (as activations are), so a branch per element mispredicts.
func benchPReLU(b *testing.B, be kernels.Backend, s kernels.ChanShape, name string) {
	n := s.Len()
	host := make([]float32, n)
	r := uint64(88172645463325252)
	for i := range host {
		r ^= r << 13 // xorshift64: signs in no pattern a predictor can learn
		r ^= r >> 7
		r ^= r << 17
		host[i] = float32(r>>40)/(1<<24) - 0.5
	}
	x, y, dy, dx := alloc(b, be, n), alloc(b, be, n), alloc(b, be, n), alloc(b, be, n)
	slope, dslope := alloc(b, be, s.C), alloc(b, be, s.C)
	if err := be.Upload(x, host); err != nil {
		b.Fatal(err)
	}
	fill(b, be, dy, 0.01)
	fill(b, be, slope, 0.25)
	b.Run("prelu-"+name, func(b *testing.B) {
		for b.Loop() {
			if err := be.PReLU(s, x, slope, y); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(8 * n))
	})
	b.Run("prelu-backward-"+name, func(b *testing.B) {
		for b.Loop() {
			if err := be.PReLUBackward(s, x, slope, dy, dx, dslope); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(12 * n))
	})
}

func alloc(b *testing.B, be kernels.Backend, n int) kernels.Buffer {
	b.Helper()
	buf, err := be.Alloc(n)
	if err != nil {
		b.Fatal(err)
	}
	return buf
}

func fill(b *testing.B, be kernels.Backend, x kernels.Buffer, v float32) {
	b.Helper()
	if err := be.Fill(x.Len(), v, x); err != nil {
		b.Fatal(err)
	}
}
