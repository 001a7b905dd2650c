package cpu

import (
	"testing"

	"github.com/ffc-stream/ffc/kernels/kerneltest"
)

// BenchmarkGemm runs the trainer's GEMM shapes on the backend in use and,
// when OpenBLAS is compiled in, with OpenBLAS's own threads
// (BLASThreads) and on the pure-Go GEMM in the same run.
func BenchmarkGemm(b *testing.B) {
	opts := []Options{{}}
	if HaveOpenBLAS() {
		opts = append(opts, Options{BLASThreads: true}, Options{PureGoGEMM: true})
	}
	for _, o := range opts {
		be, err := New(o) // sets OpenBLAS's process-wide threads for this run
		if err != nil {
			b.Fatal(err)
		}
		name := be.Name()
		if o.BLASThreads {
			name += "-blas-threads"
		}
		b.Run(name, func(b *testing.B) { kerneltest.BenchmarkGemm(b, be) })
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
