//go:build cuda

package main

import (
	"log/slog"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cuda"
)

// cudaBuilt tells whether this ffc has the CUDA backend (build tag cuda).
const cudaBuilt = true

// newCUDABackend opens the CUDA backend on the GPU the flags name.
func newCUDABackend(log *slog.Logger, d deviceFlags) (kernels.Backend, error) {
	be, err := cuda.New(cuda.Options{Device: d.gpu, TF32: d.tf32, PoolBytes: int64(d.gpuMemory)})
	if err != nil {
		return nil, err
	}
	log.Info("cuda backend", "name", be.Name(), "gpu", d.gpu, "ptx", be.PTXArch(), "tf32", d.tf32, "gpu_memory", d.gpuMemory.String())
	return be, nil
}
