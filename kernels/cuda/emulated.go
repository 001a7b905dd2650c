//go:build cgo

package cuda

import (
	"fmt"
	"unsafe"

	"github.com/ffc-stream/ffc/kernels/cuda/internal/emu"
)

// NewEmulated returns a Backend whose device is the CPU emulator of
// kernels/cuda/internal/emu: the same Go code and the same kernels.cu
// source as New, executed on the CPU (one fiber per CUDA thread, blocks one
// at a time, cuBLAS replaced by a column-major reference). It is for tests:
// it checks the kernels' logic, launch configuration and argument passing
// on machines without a GPU, not their speed. TF32 is ignored (products
// are FP32). It counts its device allocations and waits for the stream
// (DeviceCounts).
func NewEmulated(o Options) (*Backend, error) {
	be, err := newBackend(&countingDevice{device: emuDevice{}}, o, 256<<20, 64, "cuda-emulated")
	if err != nil {
		return nil, err
	}
	be.arch = "emulated"
	return be, nil
}

// emuDevice forwards to the emulator; its memory is C heap.
type emuDevice struct{}

func (emuDevice) name() string                        { return "CPU emulator of kernels.cu" }
func (emuDevice) freeBytes() (int64, error)           { return 1 << 40, nil }
func (emuDevice) malloc(bytes int64) (uintptr, error) { return emu.Malloc(bytes) }
func (emuDevice) free(p uintptr) error                { return emu.Free(p) }
func (emuDevice) sync() error                         { return nil }
func (emuDevice) close() error                        { return nil }
func (emuDevice) dtod(dst, src uintptr, bytes int64) error {
	emu.DtoD(dst, src, bytes)
	return nil
}

func (emuDevice) htod(dst uintptr, src unsafe.Pointer, bytes int64) error {
	emu.HtoD(dst, src, bytes)
	return nil
}

func (emuDevice) dtoh(dst unsafe.Pointer, src uintptr, bytes int64) error {
	emu.DtoH(dst, src, bytes)
	return nil
}

func (emuDevice) memsetD32(dst uintptr, v uint32, n int64) error {
	emu.MemsetD32(dst, v, n)
	return nil
}

func (emuDevice) launch(k kernel, g, b dim3, args []uint64) error {
	err := emu.Launch(kernelNames[k], emu.Dim3{X: g.x, Y: g.y, Z: g.z}, emu.Dim3{X: b.x, Y: b.y, Z: b.z}, args)
	if err != nil {
		return fmt.Errorf("launch %s grid %v block %v: %w", k, g, b, err)
	}
	return nil
}

func (emuDevice) sgemm(transA, transB bool, m, n, k int, alpha float32, a uintptr, lda int, b uintptr, ldb int, beta float32, c uintptr, ldc int) error {
	return emu.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func (emuDevice) sgemv(trans bool, m, n int, alpha float32, a uintptr, lda int, x uintptr, beta float32, y uintptr) error {
	return emu.Sgemv(trans, m, n, alpha, a, lda, x, 1, beta, y, 1)
}
