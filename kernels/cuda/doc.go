// Package cuda implements [kernels.Backend] on an NVIDIA GPU: matrix
// products through cuBLAS (optionally with TF32 tensor cores), every other
// operation as a custom kernel from kernels.cu, compiled to PTX for sm_80
// and sm_90 (`make ptx`, embedded with go:embed) and launched through
// gorgonia.org/cu.
//
// The GPU path is behind the build tag cuda (New): gorgonia.org/cu exits the
// process in its init when no GPU is present, so nothing built without the
// tag imports it. Building it needs cuda.h and cublas_v2.h (Debian's
// nvidia-cuda-dev) and links only libcuda; cuBLAS is opened at run time
// (libcublas.so, .so.13, .so.12 or .so.11 on the library path, or the file
// named by FFC_CUBLAS), so one binary runs with the CUDA 11, 12 or 13
// libraries of the GPU machine. Without the tag the package still holds the whole backend
// logic (shape checks, the memory pool, launch configuration), and
// NewEmulated runs it against kernels/cuda/internal/emu, which compiles the
// same kernels.cu as C++ and executes it on the CPU: the parity suite runs
// the real kernel source in every CI build, though not on a GPU.
//
// # Memory
//
// Device memory comes from one pool allocated when the backend starts
// (Options.PoolBytes); Alloc and Free only move offsets in a host-side free
// list, so no step allocates device memory. The LRU and id→slot bookkeeping
// of the class pool stay on the host: only slot indices (IndexBuffer) cross
// to the device.
//
// # Ordering
//
// Every operation is queued on one stream, in call order. Upload returns
// once its source has been staged; Download, Sum, AllFinite and
// FirstNonFinite wait for the stream; Sync waits and reports the first
// asynchronous error. FirstNonFinite (kernels.FiniteChecker) checks many
// buffers with one wait, so a training step checks all its gradients at
// once.
//
// Operations that take indices (MarginSoftmaxCE targets, GatherRows,
// ScatterRows) check them, so an out-of-range index is an error wrapping
// kernels.ErrIndex as on the CPU. The backend keeps a host copy of every
// index buffer (what UploadIndex wrote), and checks that copy without
// waiting. Only indices written by TopK are unknown to the host (it knows
// they are below TopK's cols): where they might be out of range they are
// checked on the device, which waits. With Options.SkipIndexChecks nothing
// is checked and the kernels skip or zero such rows instead.
//
// A Backend is safe for concurrent use; its operations are serialised.
package cuda
