package cpu

import (
	"testing"

	"github.com/ffc-stream/ffc/kernels/kerneltest"
)

// BenchmarkGemm runs the trainer's GEMM shapes on the backend in use and,
// when OpenBLAS is compiled in, on the pure-Go GEMM in the same run.
func BenchmarkGemm(b *testing.B) {
	opts := []Options{{}}
	if HaveOpenBLAS() {
		opts = append(opts, Options{PureGoGEMM: true})
	}
	for _, o := range opts {
		be, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(be.Name(), func(b *testing.B) { kerneltest.BenchmarkGemm(b, be) })
	}
}

// BenchmarkLosses runs the fused margin CE and top-K at B = 256, C = 100000.
func BenchmarkLosses(b *testing.B) {
	be, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	kerneltest.BenchmarkLosses(b, be)
}

// BenchmarkLayers runs im2col/col2im and batch norm at backbone sizes.
func BenchmarkLayers(b *testing.B) {
	be, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	kerneltest.BenchmarkLayers(b, be)
}
