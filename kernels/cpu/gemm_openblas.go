//go:build cgo && !noopenblas

package cpu

// #cgo LDFLAGS: -lopenblas
// #include <cblas.h>
import "C"

import "unsafe"

const haveOpenBLAS = true

// openblasSetThreads sets OpenBLAS's (process-wide) thread count.
func openblasSetThreads(n int) {
	C.openblas_set_num_threads(C.int(n))
}

func transpose(t bool) C.enum_CBLAS_TRANSPOSE {
	if t {
		return C.CblasTrans
	}
	return C.CblasNoTrans
}

// openblasSgemm calls cblas_sgemm on row-major matrices with leading
// dimensions lda, ldb and ldc; a, b and c start at the matrices' first
// elements. Shapes are checked by the caller; m, n, k > 0 and fit in a C
// int.
func openblasSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	C.cblas_sgemm(C.CblasRowMajor, transpose(transA), transpose(transB),
		C.blasint(m), C.blasint(n), C.blasint(k), C.float(alpha),
		(*C.float)(unsafe.Pointer(&a[0])), C.blasint(lda),
		(*C.float)(unsafe.Pointer(&b[0])), C.blasint(ldb), C.float(beta),
		(*C.float)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}

// openblasSgemv calls cblas_sgemv; m, n > 0.
func openblasSgemv(transA bool, m, n int, alpha float32, a, x []float32, beta float32, y []float32) {
	C.cblas_sgemv(C.CblasRowMajor, transpose(transA), C.blasint(m), C.blasint(n), C.float(alpha),
		(*C.float)(unsafe.Pointer(&a[0])), C.blasint(n),
		(*C.float)(unsafe.Pointer(&x[0])), 1, C.float(beta),
		(*C.float)(unsafe.Pointer(&y[0])), 1)
}
