//go:build !cgo || noopenblas

package cpu

const haveOpenBLAS = false

func openblasSetThreads(int) {}

func openblasSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	panic("cpu: OpenBLAS is not compiled in")
}

func openblasSgemv(transA bool, m, n int, alpha float32, a, x []float32, beta float32, y []float32) {
	panic("cpu: OpenBLAS is not compiled in")
}
