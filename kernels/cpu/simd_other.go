//go:build !cgo || !amd64

package cpu

// Without cgo on amd64 there are no AVX2/FMA kernels (simdSupported is
// false, so none of these is called): convolutions take the lowered path
// of conv_blocked.go, and batch norm and PReLU their Go loops.

func simdSupported() bool { return false }

func directPad(src []float32, cs, ns, c, n, h, w int, dst []float32) { panic("cpu: no AVX2 kernels") }

func directPack(w []float32, co, ci int, flip bool, dst []float32) { panic("cpu: no AVX2 kernels") }

func directFwd(x []float32, ic, n, h, w, s int, wp []float32, oc int, y []float32, ycs, yns int) {
	panic("cpu: no AVX2 kernels")
}

func directPixMajor(dy []float32, cs, ns, oc, n, hw int, dst []float32) {
	panic("cpu: no AVX2 kernels")
}

func directDW(x []float32, ic, n, h, w, s int, dyT []float32, oc int, dwT []float32) {
	panic("cpu: no AVX2 kernels")
}

func avxSum(x []float32) float64 { panic("cpu: no AVX2 kernels") }

func avxSqDev(x []float32, mu float64) float64 { panic("cpu: no AVX2 kernels") }

func avxGradDev(dy, x []float32, mu float64) (sdy, sdyx float64) { panic("cpu: no AVX2 kernels") }

func avxAffine(x []float32, a, b float32, y []float32) { panic("cpu: no AVX2 kernels") }

func avxAffine2(dy, x []float32, k, kx, k0 float32, dx []float32) { panic("cpu: no AVX2 kernels") }

func avxPReLU(x []float32, slope float32, y []float32) { panic("cpu: no AVX2 kernels") }

func avxPReLUBackward(x, dy []float32, slope float32, dx []float32) float64 {
	panic("cpu: no AVX2 kernels")
}

func directPackT(w []float32, co, ci int, dst []float32) { panic("cpu: no AVX2 kernels") }

func directDXS(dyT []float32, oc, n, h, w, s int, wt []float32, ic int, dx []float32, cs, ns int, tile []float32) {
	panic("cpu: no AVX2 kernels")
}
