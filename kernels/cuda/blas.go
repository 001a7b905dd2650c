package cuda

import (
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
)

// gemmDims checks the dimensions of a product: non-negative and within the
// 32-bit integers cuBLAS takes.
func gemmDims(m, n, k int) error {
	if err := dims(m, n, k); err != nil {
		return fmt.Errorf("m=%d n=%d k=%d: %w", m, n, k, err)
	}
	if int64(m)*int64(k) > math.MaxInt32 || int64(k)*int64(n) > math.MaxInt32 || int64(m)*int64(n) > math.MaxInt32 {
		// Element offsets inside cuBLAS are 64-bit, but our kernels' are
		// not everywhere: keep every operand below 2³¹ elements.
		return fmt.Errorf("%w: m=%d n=%d k=%d: an operand exceeds 2³¹ elements", kernels.ErrShape, m, n, k)
	}
	return nil
}

// scaleInto sets c = beta·c over n elements (beta = 0 clears NaNs too).
func (be *Backend) scaleInto(beta float32, c *buffer, n int) error {
	switch beta {
	case 1:
		return nil
	case 0:
		return be.launch1(kFill, int64(n), ptr(c), i(n), f(0))
	}
	return be.launch1(kScale, int64(n), ptr(c), i(n), f(beta))
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices with
// one column-major cuBLAS call on the transposes: Cᵀ = op(B)ᵀ·op(A)ᵀ.
func (be *Backend) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b kernels.Buffer, beta float32, c kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "gemm"
	if err := gemmDims(m, n, k); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	ab, err := be.f32("a", a, m*k)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	bb, err := be.f32("b", b, k*n)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	cb, err := be.f32("c", c, m*n)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if overlap(cb, m*n, ab, m*k) || overlap(cb, m*n, bb, k*n) {
		return fmt.Errorf("cuda: %s: %w: c overlaps a or b", op, kernels.ErrShape)
	}
	if m == 0 || n == 0 {
		return nil
	}
	if k == 0 || alpha == 0 {
		return wrap(op, be.scaleInto(beta, cb, m*n))
	}
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	return wrap(op, be.dev.sgemm(transB, transA, n, m, k, alpha, bb.ptr, ldb, ab.ptr, lda, beta, cb.ptr, n))
}

// Gemv computes y = alpha·op(A)·x + beta·y with A m×n row-major, i.e. the
// n×m column-major matrix Aᵀ for cuBLAS.
func (be *Backend) Gemv(transA bool, m, n int, alpha float32, a, x kernels.Buffer, beta float32, y kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	const op = "gemv"
	if err := gemmDims(m, n, 1); err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	lx, ly := n, m
	if transA {
		lx, ly = m, n
	}
	ab, err := be.f32("a", a, m*n)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	xb, err := be.f32("x", x, lx)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	yb, err := be.f32("y", y, ly)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if overlap(yb, ly, ab, m*n) || overlap(yb, ly, xb, lx) {
		return fmt.Errorf("cuda: %s: %w: y overlaps a or x", op, kernels.ErrShape)
	}
	if ly == 0 {
		return nil
	}
	if lx == 0 || alpha == 0 {
		return wrap(op, be.scaleInto(beta, yb, ly))
	}
	return wrap(op, be.dev.sgemv(!transA, n, m, alpha, ab.ptr, n, xb.ptr, beta, yb.ptr))
}

// wrap prefixes a device error with the operation.
func wrap(op string, err error) error {
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	return nil
}
