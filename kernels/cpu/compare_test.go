package cpu

import (
	"os"
	"testing"

	"github.com/ffc-stream/ffc/kernels/kerneltest"
)

// TestCompareOpenBLASvsGo runs the cross-backend comparison of kerneltest
// between two CPU backends: OpenBLAS GEMM on 3 threads against the pure-Go
// GEMM on the default thread count when OpenBLAS is compiled in, else 3
// threads against the default. Besides the GEMMs, the thread counts make
// the parallel chunking (and so the partial-sum orders) differ. Set
// FFC_KERNELS_LARGE=1 to add the trainer's large shapes.
func TestCompareOpenBLASvsGo(t *testing.T) {
	got, err := New(Options{Threads: 3})
	if err != nil {
		t.Fatal(err)
	}
	want, err := New(Options{PureGoGEMM: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Threads() == want.Threads() {
		if want, err = New(Options{PureGoGEMM: true, Threads: 2}); err != nil {
			t.Fatal(err)
		}
	}
	kerneltest.Compare(t, got, want, kerneltest.CompareOptions{Large: os.Getenv("FFC_KERNELS_LARGE") != ""})
}
