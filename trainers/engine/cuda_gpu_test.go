//go:build cuda

package engine_test

// These tests need a GPU: gorgonia.org/cu exits the test binary in its init
// when none is present, so they are built (CI vets them) but only run on a
// GPU machine (benchmarks/gpu/run.sh runs `go test -tags cuda -run GPU`
// here as in kernels/cuda).

import (
	"testing"

	"github.com/ffc-stream/ffc/kernels/cuda"
)

// newGPU returns a CUDA backend on GPU 0 (8 GiB pool unless o says
// otherwise), closed when the test ends.
func newGPU(t testing.TB, o cuda.Options) *cuda.Backend {
	t.Helper()
	if o.PoolBytes == 0 {
		o.PoolBytes = 8 << 30
	}
	be, err := cuda.New(o)
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

// TestGPUEngineMatchesCPU is TestEmulatedEngineMatchesCPU on the GPU.
func TestGPUEngineMatchesCPU(t *testing.T) {
	for _, c := range engineCases() {
		t.Run(c.name, func(t *testing.T) {
			compareEngines(t, newGPU(t, cuda.Options{}), c)
		})
	}
}
