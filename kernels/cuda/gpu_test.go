//go:build cuda

package cuda

// These tests need a GPU: gorgonia.org/cu exits the test binary in its init
// when none is present, so they are built (CI vets them) but only run on a
// GPU machine (benchmarks/gpu/run.sh runs `go test -tags cuda -run GPU`).
// The engine against the CPU engine on the GPU is TestGPUEngineMatchesCPU
// in trainers/engine.

import (
	"testing"

	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/kernels/kerneltest"
)

func newGPU(t testing.TB, o Options) *Backend {
	t.Helper()
	if o.PoolBytes == 0 {
		o.PoolBytes = 8 << 30
	}
	be, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := be.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("%s, PTX %s, block %d", be.Name(), be.PTXArch(), be.BlockSize())
	return be
}

// TestGPUParity runs the float64-reference parity suite on the GPU.
func TestGPUParity(t *testing.T) {
	kerneltest.Test(t, newGPU(t, Options{}))
}

// TestGPUCompare runs every operation on the GPU and on the CPU backend
// with fresh random inputs and poisoned outputs, in FP32 and with TF32
// tensor cores for the products.
func TestGPUCompare(t *testing.T) {
	ref, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("fp32", func(t *testing.T) {
		kerneltest.Compare(t, newGPU(t, Options{}), ref, kerneltest.CompareOptions{Precision: kerneltest.FP32, Large: true})
	})
	t.Run("tf32", func(t *testing.T) {
		kerneltest.Compare(t, newGPU(t, Options{TF32: true}), ref, kerneltest.CompareOptions{Precision: kerneltest.TF32, Large: true})
	})
}

func BenchmarkGPUGemm(b *testing.B) {
	for _, tf32 := range []bool{false, true} {
		be := newGPU(b, Options{TF32: tf32})
		name := "fp32"
		if tf32 {
			name = "tf32"
		}
		b.Run(name, func(b *testing.B) { kerneltest.BenchmarkGemm(b, be) })
	}
}

func BenchmarkGPULosses(b *testing.B) { kerneltest.BenchmarkLosses(b, newGPU(b, Options{})) }

func BenchmarkGPULayers(b *testing.B) { kerneltest.BenchmarkLayers(b, newGPU(b, Options{})) }
