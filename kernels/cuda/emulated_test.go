//go:build cgo

package cuda

import (
	"fmt"
	"testing"

	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/kernels/kerneltest"
)

func newEmulated(t testing.TB, o Options) *Backend {
	t.Helper()
	be, err := NewEmulated(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := be.Close(); err != nil {
			t.Error(err)
		}
	})
	return be
}

// TestEmulatedParity runs the float64-reference parity suite on the
// kernels.cu source through the emulator: with automatic block sizes (64,
// growing to 1024 for long rows) and at fixed 32 and 128 (the tree
// reductions and the top-k merge depend on the block size).
func TestEmulatedParity(t *testing.T) {
	for _, bs := range []int{0, 32, 128} {
		t.Run(fmt.Sprintf("block=%d", bs), func(t *testing.T) {
			kerneltest.Test(t, newEmulated(t, Options{BlockSize: bs, PoolBytes: 1 << 30}))
		})
	}
}

// TestEmulatedCompare runs every operation on the emulated kernels and on
// the CPU backend with fresh random inputs and poisoned outputs.
func TestEmulatedCompare(t *testing.T) {
	ref, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kerneltest.Compare(t, newEmulated(t, Options{PoolBytes: 1 << 30}), ref, kerneltest.CompareOptions{Precision: kerneltest.FP32})
}
