package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// goSgemm is the pure-Go GEMM (gonum), compiled in every build so that it
// can be compared with OpenBLAS. Shapes are checked by the caller; m, n,
// k > 0.
func goSgemm(transA, transB bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) {
	ta, lda := blas.NoTrans, k
	if transA {
		ta, lda = blas.Trans, m
	}
	tb, ldb := blas.NoTrans, n
	if transB {
		tb, ldb = blas.Trans, k
	}
	gonum.Implementation{}.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n)
}

// goSgemv is the pure-Go GEMV (gonum); m, n > 0.
func goSgemv(transA bool, m, n int, alpha float32, a, x []float32, beta float32, y []float32) {
	t := blas.NoTrans
	if transA {
		t = blas.Trans
	}
	gonum.Implementation{}.Sgemv(t, m, n, alpha, a, n, x, 1, beta, y, 1)
}
