package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// goSgemm is the pure-Go GEMM (gonum), compiled in every build so that it
// can be compared with OpenBLAS, on row-major matrices with leading
// dimensions lda, ldb and ldc. Shapes are checked by the caller; m, n,
// k > 0.
func goSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	gonum.Implementation{}.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// contiguousLd is the leading dimensions of op(A) (m×k) and op(B) (k×n)
// stored contiguously, row-major; C's is n.
func contiguousLd(transA, transB bool, m, n, k int) (lda, ldb int) {
	lda, ldb = k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	return lda, ldb
}

// goSgemv is the pure-Go GEMV (gonum); m, n > 0.
func goSgemv(transA bool, m, n int, alpha float32, a, x []float32, beta float32, y []float32) {
	t := blas.NoTrans
	if transA {
		t = blas.Trans
	}
	gonum.Implementation{}.Sgemv(t, m, n, alpha, a, n, x, 1, beta, y, 1)
}
