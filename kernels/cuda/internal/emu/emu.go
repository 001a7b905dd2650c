//go:build cgo

package emu

/*
#cgo CXXFLAGS: -std=c++20 -O2
#include <stdlib.h>
#include "emu_api.h"
*/
import "C"

import (
	_ "embed" // selftest.cu, so that editing it invalidates the build cache
	"errors"
	"fmt"
	"unsafe"
)

// selftestSource is selftest.cu. Embedding it makes it an input of the build
// cache key, which the #include in emu.cc alone does not.
//
//go:embed selftest.cu
var selftestSource string

var (
	// ErrInvalid reports an invalid call: unknown kernel, wrong argument
	// count, bad launch dimensions, a pointer outside device memory, an
	// invalid BLAS parameter.
	ErrInvalid = errors.New("emu: invalid call")
	// ErrDivergence reports a block whose threads did not all reach the
	// same barrier.
	ErrDivergence = errors.New("emu: barrier divergence")
)

// Dim3 is a CUDA launch dimension.
type Dim3 struct{ X, Y, Z int }

// errBuf receives the message of a failed C call.
type errBuf [512]C.char

func (e *errBuf) p() *C.char { return &e[0] }

func (e *errBuf) n() C.size_t { return C.size_t(len(e)) }

// check turns the status of a C call into an error.
func check(rc C.int, e *errBuf) error {
	msg := C.GoString(&e[0])
	switch rc {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	case 2:
		return fmt.Errorf("%w: %s", ErrDivergence, msg)
	default:
		return fmt.Errorf("emu: %s", msg)
	}
}

// must panics on the failure of a copy or memset, which has no error
// result: it means a bug in the caller (memory outside any allocation).
func must(op string, rc C.int, e *errBuf) {
	if err := check(rc, e); err != nil {
		panic(fmt.Sprintf("emu.%s: %v", op, err))
	}
}

// Malloc allocates bytes of zeroed device memory, 256-byte aligned. As with
// cuMemAlloc, bytes must be positive.
func Malloc(bytes int64) (uintptr, error) {
	var p C.uintptr_t
	var e errBuf
	if err := check(C.emu_malloc(C.int64_t(bytes), &p, e.p(), e.n()), &e); err != nil {
		return 0, err
	}
	return uintptr(p), nil
}

// Free releases memory returned by Malloc; any other address is an error.
func Free(p uintptr) error {
	var e errBuf
	return check(C.emu_free(C.uintptr_t(p), e.p(), e.n()), &e)
}

// HtoD copies bytes from host memory to device memory. It panics if the
// destination range is not inside one live allocation.
func HtoD(dst uintptr, src unsafe.Pointer, bytes int64) {
	var e errBuf
	must("HtoD", C.emu_htod(C.uintptr_t(dst), src, C.int64_t(bytes), e.p(), e.n()), &e)
}

// DtoH copies bytes from device memory to host memory. It panics if the
// source range is not inside one live allocation.
func DtoH(dst unsafe.Pointer, src uintptr, bytes int64) {
	var e errBuf
	must("DtoH", C.emu_dtoh(dst, C.uintptr_t(src), C.int64_t(bytes), e.p(), e.n()), &e)
}

// DtoD copies bytes between device ranges, which may overlap (memmove). It
// panics if either range is not inside one live allocation.
func DtoD(dst, src uintptr, bytes int64) {
	var e errBuf
	must("DtoD", C.emu_dtod(C.uintptr_t(dst), C.uintptr_t(src), C.int64_t(bytes), e.p(), e.n()), &e)
}

// MemsetD32 sets n 32-bit words at dst to v. It panics if dst is not 4-byte
// aligned or the words are not inside one live allocation.
func MemsetD32(dst uintptr, v uint32, n int64) {
	var e errBuf
	must("MemsetD32", C.emu_memset_d32(C.uintptr_t(dst), C.uint32_t(v), C.int64_t(n), e.p(), e.n()), &e)
}

// Launch runs kernel name over grid x block and returns when it is done.
// args holds one slot per kernel parameter (see the package documentation).
func Launch(name string, grid, block Dim3, args []uint64) error {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	g := [3]C.int64_t{C.int64_t(grid.X), C.int64_t(grid.Y), C.int64_t(grid.Z)}
	b := [3]C.int64_t{C.int64_t(block.X), C.int64_t(block.Y), C.int64_t(block.Z)}
	var argp *C.uint64_t
	if len(args) > 0 {
		argp = (*C.uint64_t)(unsafe.Pointer(&args[0]))
	}
	var e errBuf
	return check(C.emu_launch(cname, &g[0], &b[0], argp, C.int64_t(len(args)), e.p(), e.n()), &e)
}

// Names returns the name of every kernel Launch knows.
func Names() []string {
	n := int(C.emu_num_kernels())
	names := make([]string, n)
	for i := range names {
		names[i] = C.GoString(C.emu_kernel_name(C.int(i)))
	}
	return names
}

// KernelsSource returns the bytes of kernels/cuda/kernels.cu compiled into
// this build, and false if the file was absent at build time. A test can
// compare them with the file to detect a stale build cache.
func KernelsSource() ([]byte, bool) {
	var n C.size_t
	p := C.emu_kernels_source(&n)
	if p == nil {
		return nil, false
	}
	return C.GoBytes(unsafe.Pointer(p), C.int(n)), true
}

func cbool(v bool) C.int {
	if v {
		return 1
	}
	return 0
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C exactly as cublasSgemm:
// column-major operands, op(A) m x k, op(B) k x n, C m x n, op = transpose
// when trans is set; C is not read when beta is 0.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a uintptr, lda int, b uintptr, ldb int, beta float32, c uintptr, ldc int) error {
	var e errBuf
	return check(C.emu_sgemm(cbool(transA), cbool(transB), C.int64_t(m), C.int64_t(n), C.int64_t(k),
		C.float(alpha), C.uintptr_t(a), C.int64_t(lda), C.uintptr_t(b), C.int64_t(ldb),
		C.float(beta), C.uintptr_t(c), C.int64_t(ldc), e.p(), e.n()), &e)
}

// Sgemv computes y = alpha*op(A)*x + beta*y exactly as cublasSgemv: A is
// column-major m x n, op(A) is A or (trans) its transpose, increments may be
// negative but not 0; y is not read when beta is 0.
func Sgemv(trans bool, m, n int, alpha float32, a uintptr, lda int, x uintptr, incx int, beta float32, y uintptr, incy int) error {
	var e errBuf
	return check(C.emu_sgemv(cbool(trans), C.int64_t(m), C.int64_t(n), C.float(alpha),
		C.uintptr_t(a), C.int64_t(lda), C.uintptr_t(x), C.int64_t(incx), C.float(beta),
		C.uintptr_t(y), C.int64_t(incy), e.p(), e.n()), &e)
}
