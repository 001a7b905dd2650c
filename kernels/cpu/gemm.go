package cpu

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/ffc-stream/ffc/kernels"
)

// overlap reports whether two slices share any element.
func overlap(a, b []float32) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0 := uintptr(unsafe.Pointer(&a[0]))
	b0 := uintptr(unsafe.Pointer(&b[0]))
	const sz = unsafe.Sizeof(float32(0))
	return a0 < b0+uintptr(len(b))*sz && b0 < a0+uintptr(len(a))*sz
}

// scaleInto sets c = beta·c, with beta = 0 clearing NaNs too.
func (be *Backend) scaleInto(beta float32, c []float32) {
	if beta == 1 {
		return
	}
	be.parallel(len(c), minWork, func(lo, hi int) {
		s := c[lo:hi]
		if beta == 0 {
			clear(s)
			return
		}
		for i := range s {
			s[i] *= beta
		}
	})
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C (row-major).
func (be *Backend) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b kernels.Buffer, beta float32, c kernels.Buffer) error {
	if err := gemmDims(m, n, k); err != nil {
		return fmt.Errorf("cpu: gemm: %w", err)
	}
	as, err := f32("a", a, m*k)
	if err != nil {
		return fmt.Errorf("cpu: gemm: %w", err)
	}
	bs, err := f32("b", b, k*n)
	if err != nil {
		return fmt.Errorf("cpu: gemm: %w", err)
	}
	cs, err := f32("c", c, m*n)
	if err != nil {
		return fmt.Errorf("cpu: gemm: %w", err)
	}
	if overlap(cs, as) || overlap(cs, bs) {
		return fmt.Errorf("cpu: gemm: %w: c overlaps a or b", kernels.ErrShape)
	}
	if m == 0 || n == 0 {
		return nil
	}
	if k == 0 || alpha == 0 {
		be.scaleInto(beta, cs)
		return nil
	}
	if be.openblas {
		be.openblasPanels(transA, transB, m, n, k, alpha, as, bs, beta, cs)
	} else {
		lda, ldb := contiguousLd(transA, transB, m, n, k)
		goSgemm(transA, transB, m, n, k, alpha, as, lda, bs, ldb, beta, cs, n)
	}
	return nil
}

// gemmDims checks the dimensions of a product: non-negative, products
// without overflow, and within the 32-bit integers BLAS takes.
func gemmDims(m, n, k int) error {
	if err := dims(m, n, k); err != nil {
		return fmt.Errorf("m=%d n=%d k=%d: %w", m, n, k, err)
	}
	if m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 {
		return fmt.Errorf("%w: m=%d n=%d k=%d exceed int32", kernels.ErrShape, m, n, k)
	}
	return nil
}

// Gemv computes y = alpha·op(A)·x + beta·y with A m×n row-major.
func (be *Backend) Gemv(transA bool, m, n int, alpha float32, a, x kernels.Buffer, beta float32, y kernels.Buffer) error {
	if err := gemmDims(m, n, 1); err != nil {
		return fmt.Errorf("cpu: gemv: %w", err)
	}
	lx, ly := n, m
	if transA {
		lx, ly = m, n
	}
	as, err := f32("a", a, m*n)
	if err != nil {
		return fmt.Errorf("cpu: gemv: %w", err)
	}
	xs, err := f32("x", x, lx)
	if err != nil {
		return fmt.Errorf("cpu: gemv: %w", err)
	}
	ys, err := f32("y", y, ly)
	if err != nil {
		return fmt.Errorf("cpu: gemv: %w", err)
	}
	if overlap(ys, as) || overlap(ys, xs) {
		return fmt.Errorf("cpu: gemv: %w: y overlaps a or x", kernels.ErrShape)
	}
	if ly == 0 {
		return nil
	}
	if lx == 0 || alpha == 0 {
		be.scaleInto(beta, ys)
		return nil
	}
	if be.openblas {
		openblasSgemv(transA, m, n, alpha, as, xs, beta, ys)
	} else {
		goSgemv(transA, m, n, alpha, as, xs, beta, ys)
	}
	return nil
}
