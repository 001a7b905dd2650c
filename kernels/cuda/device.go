package cuda

import (
	"errors"
	"unsafe"
)

// ErrOutOfMemory reports that the backend's device memory pool cannot hold
// a requested buffer.
var ErrOutOfMemory = errors.New("device memory pool exhausted")

// dim3 is a launch dimension.
type dim3 struct{ x, y, z int }

// device is what the backend needs from a GPU (gorgonia.org/cu and cuBLAS,
// device_cu.go) or from the CPU emulator (emulated.go). Addresses are device
// addresses; every call is made with the backend's lock held.
type device interface {
	// name describes the device, e.g. "NVIDIA H100 80GB HBM3 (sm_90)".
	name() string
	// freeBytes is the free device memory before the pool is allocated.
	freeBytes() (int64, error)
	malloc(bytes int64) (uintptr, error)
	free(p uintptr) error
	// htod copies host memory to the device; src may be reused on return.
	htod(dst uintptr, src unsafe.Pointer, bytes int64) error
	// dtoh copies device memory to the host after all queued work.
	dtoh(dst unsafe.Pointer, src uintptr, bytes int64) error
	dtod(dst, src uintptr, bytes int64) error
	memsetD32(dst uintptr, v uint32, n int64) error
	// launch queues kernel k (an index into kernelNames) with one 8-byte
	// slot per parameter.
	launch(k kernel, grid, block dim3, args []uint64) error
	// sgemm and sgemv have cuBLAS's column-major semantics.
	sgemm(transA, transB bool, m, n, k int, alpha float32, a uintptr, lda int, b uintptr, ldb int, beta float32, c uintptr, ldc int) error
	sgemv(trans bool, m, n int, alpha float32, a uintptr, lda int, x uintptr, beta float32, y uintptr) error
	sync() error
	close() error
}

// kernel indexes kernelNames.
type kernel int

// The kernels of kernels.cu, in FFC_KERNELS order.
const (
	kFill kernel = iota
	kAdd
	kMul
	kScale
	kAddScalar
	kAxpby
	kReLU
	kReLUBackward
	kSumPartial
	kNonfinitePartial
	kSumFinal
	kSGD
	kIm2Col
	kCol2Im
	kSwapAxes
	kAddChannel
	kChannelSum
	kBNTrain
	kBNInfer
	kBNBackward
	kPReLU
	kPReLUBackward
	kL2Norm
	kL2NormBackward
	kGatherRows
	kScatterOwner
	kScatterRows
	kCheckIndex
	kMarginCE
	kTopK
	kFreshTopK
	numKernels
)

// kernelNames are the extern "C" names in kernels.cu (checked by a test
// against the source and its FFC_KERNELS list).
var kernelNames = [numKernels]string{
	kFill:             "ffc_fill",
	kAdd:              "ffc_add",
	kMul:              "ffc_mul",
	kScale:            "ffc_scale",
	kAddScalar:        "ffc_add_scalar",
	kAxpby:            "ffc_axpby",
	kReLU:             "ffc_relu",
	kReLUBackward:     "ffc_relu_backward",
	kSumPartial:       "ffc_sum_partial",
	kNonfinitePartial: "ffc_nonfinite_partial",
	kSumFinal:         "ffc_sum_final",
	kSGD:              "ffc_sgd",
	kIm2Col:           "ffc_im2col",
	kCol2Im:           "ffc_col2im",
	kSwapAxes:         "ffc_swap_axes",
	kAddChannel:       "ffc_add_channel",
	kChannelSum:       "ffc_channel_sum",
	kBNTrain:          "ffc_bn_train",
	kBNInfer:          "ffc_bn_infer",
	kBNBackward:       "ffc_bn_backward",
	kPReLU:            "ffc_prelu",
	kPReLUBackward:    "ffc_prelu_backward",
	kL2Norm:           "ffc_l2norm",
	kL2NormBackward:   "ffc_l2norm_backward",
	kGatherRows:       "ffc_gather_rows",
	kScatterOwner:     "ffc_scatter_owner",
	kScatterRows:      "ffc_scatter_rows",
	kCheckIndex:       "ffc_check_index",
	kMarginCE:         "ffc_margin_ce",
	kTopK:             "ffc_topk",
	kFreshTopK:        "ffc_fresh_topk",
}

// String is the kernel's name.
func (k kernel) String() string {
	if k >= 0 && k < numKernels {
		return kernelNames[k]
	}
	return "kernel?"
}
