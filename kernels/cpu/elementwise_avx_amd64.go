//go:build cgo && amd64

package cpu

// #cgo CFLAGS: -O3
// #include "elementwise_avx.h"
import "C"

import "unsafe"

// simdSupported reports whether the CPU runs the AVX2/FMA kernels
// (conv_direct.c, elementwise_avx.c).
func simdSupported() bool { return C.ffccpu_simd_supported() != 0 }

// fp is the C pointer to s[0]; s must not be empty.
func fp(s []float32) *C.float { return (*C.float)(unsafe.Pointer(&s[0])) }

// avxSum returns Σ x[i] in float64 (x not empty).
func avxSum(x []float32) float64 { return float64(C.ffccpu_sum(fp(x), C.long(len(x)))) }

// avxSqDev returns Σ (x[i] − mu)² in float64 (x not empty).
func avxSqDev(x []float32, mu float64) float64 {
	return float64(C.ffccpu_sqdev(fp(x), C.long(len(x)), C.double(mu)))
}

// avxGradDev returns Σ dy[i] and Σ dy[i]·(x[i] − mu) over len(x) (x not
// empty, len(dy) ≥ len(x)).
func avxGradDev(dy, x []float32, mu float64) (sdy, sdyx float64) {
	r := C.ffccpu_graddev(fp(dy), fp(x), C.long(len(x)), C.double(mu))
	return float64(r.a), float64(r.b)
}

// avxAffine sets y[i] = x[i]·a + b over len(x) (x not empty).
func avxAffine(x []float32, a, b float32, y []float32) {
	C.ffccpu_affine(fp(x), C.long(len(x)), C.float(a), C.float(b), fp(y))
}

// avxAffine2 sets dx[i] = k·dy[i] + kx·x[i] + k0 over len(x) (x not empty).
func avxAffine2(dy, x []float32, k, kx, k0 float32, dx []float32) {
	C.ffccpu_affine2(fp(dy), fp(x), C.long(len(x)), C.float(k), C.float(kx), C.float(k0), fp(dx))
}

// avxPReLU sets y[i] = x[i] where x[i] > 0, else slope·x[i] (x not empty).
func avxPReLU(x []float32, slope float32, y []float32) {
	C.ffccpu_prelu(fp(x), C.long(len(x)), C.float(slope), fp(y))
}

// avxPReLUBackward sets dx[i] = dy[i] where x[i] > 0, else slope·dy[i],
// and returns Σ dy[i]·x[i] over the others, in float64 (x not empty).
func avxPReLUBackward(x, dy []float32, slope float32, dx []float32) float64 {
	return float64(C.ffccpu_prelu_backward(fp(x), fp(dy), C.long(len(x)), C.float(slope), fp(dx)))
}
