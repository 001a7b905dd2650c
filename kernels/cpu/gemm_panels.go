package cpu

import "sync"

// gemmSplitFlops is the work (2·m·n·k) below which a product runs on the
// calling goroutine alone: smaller ones do not pay for a second goroutine.
const gemmSplitFlops = 1 << 22

// panelAlign rounds the panels' edges so that each keeps whole register
// blocks of the BLAS kernels.
const panelAlign = 16

// openblasPanels computes C = alpha·op(A)·op(B) + beta·C (row-major,
// contiguous) with OpenBLAS single-threaded on up to be.threads panels of
// C, a goroutine each: bands of rows when m ≥ n, else of columns. This is
// the backend's one threading model: goroutines that block when idle,
// instead of OpenBLAS's own threads, which spin between calls and compete
// with the Go work around each product. With Options.BLASThreads the whole
// product goes to OpenBLAS's threads instead.
func (be *Backend) openblasPanels(transA, transB bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) {
	lda, ldb := contiguousLd(transA, transB, m, n, k)
	rows := m >= n
	extent := n
	if rows {
		extent = m
	}
	workers := min(be.threads, extent/panelAlign)
	if be.blasThreads || float64(2*m)*float64(n)*float64(k) < gemmSplitFlops {
		workers = 1
	}
	if workers <= 1 {
		openblasSgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, n)
		return
	}
	step := ((extent+workers-1)/workers + panelAlign - 1) / panelAlign * panelAlign
	panel := func(lo, hi int) {
		if rows {
			aOff := lo * k
			if transA {
				aOff = lo
			}
			openblasSgemm(transA, transB, hi-lo, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[lo*n:], n)
			return
		}
		bOff := lo
		if transB {
			bOff = lo * k
		}
		openblasSgemm(transA, transB, m, hi-lo, k, alpha, a, lda, b[bOff:], ldb, beta, c[lo:], n)
	}
	var wg sync.WaitGroup
	for lo := step; lo < extent; lo += step {
		hi := min(lo+step, extent)
		wg.Add(1)
		go func() {
			defer wg.Done()
			panel(lo, hi)
		}()
	}
	panel(0, min(step, extent))
	wg.Wait()
}
