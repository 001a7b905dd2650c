//go:build !cuda

package main

import (
	"log/slog"

	"github.com/ffc-stream/ffc/kernels"
)

// cudaBuilt tells whether this ffc has the CUDA backend (build tag cuda).
const cudaBuilt = false

// newCUDABackend is not available without the cuda build tag: kernels/cuda
// links gorgonia.org/cu, which exits at start on a machine without a GPU, so
// the default build must not import it.
func newCUDABackend(*slog.Logger, deviceFlags) (kernels.Backend, error) {
	return nil, errNoCUDA
}
