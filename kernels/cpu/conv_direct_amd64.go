//go:build cgo && amd64

package cpu

// #cgo CFLAGS: -O3
// #include "conv_direct.h"
import "C"

// directPad copies c channels of n images of h×w, plane (image i, channel
// k) at src[k·cs + i·ns:], into dst as [c][n][h+2][w+2] with a zero border.
func directPad(src []float32, cs, ns, c, n, h, w int, dst []float32) {
	C.ffccpu_pad3(fp(src), C.long(cs), C.long(ns), C.int(c), C.int(n), C.int(h), C.int(w), fp(dst))
}

// directPack packs w (co × ci·9) for directFwd in dst (pad16(co)·ci·9
// floats), or with flip the weights of the input gradient (pad16(ci)·co·9).
func directPack(w []float32, co, ci int, flip bool, dst []float32) {
	f := 0
	if flip {
		f = 1
	}
	C.ffccpu_pack3(fp(w), C.int(co), C.int(ci), C.int(f), fp(dst))
}

// directFwd sets y[o·ycs + i·yns + p] for oc output channels of n images
// from the padded input x (ic channels of h×w) and packed weights wp,
// with stride s.
func directFwd(x []float32, ic, n, h, w, s int, wp []float32, oc int, y []float32, ycs, yns int) {
	C.ffccpu_fwd3(fp(x), C.int(ic), C.int(n), C.int(h), C.int(w), C.int(s), fp(wp), C.int(oc), fp(y), C.long(ycs), C.long(yns))
}

// directPixMajor writes oc channels of n images of hw pixels, dy[o·cs +
// i·ns + p], pixel-major into dst (n·hw·pad16(oc) floats).
func directPixMajor(dy []float32, cs, ns, oc, n, hw int, dst []float32) {
	C.ffccpu_pixmajor3(fp(dy), C.long(cs), C.long(ns), C.int(oc), C.int(n), C.long(hw), fp(dst))
}

// directDW adds x·dyᵀ over n images, with stride s, to dwT (ic·9 × oc).
func directDW(x []float32, ic, n, h, w, s int, dyT []float32, oc int, dwT []float32) {
	C.ffccpu_dw3(fp(x), C.int(ic), C.int(n), C.int(h), C.int(w), C.int(s), fp(dyT), C.int(oc), fp(dwT))
}

// directPackT packs w (co × ci·9) for directDXS in dst (pad16(ci)·9·co
// floats).
func directPackT(w []float32, co, ci int, dst []float32) {
	C.ffccpu_packt3(fp(w), C.int(co), C.int(ci), fp(dst))
}

// directDXS sets the planes dx[k·cs + i·ns + p] (ic channels of n images
// of h×w) to the input gradient of a 3×3 convolution with padding 1 and
// stride s, from the pixel-major output gradient dyT (oc channels) and the
// weights packed by directPackT, through tile ((h+2)·(w+2)·16 + 16
// floats).
func directDXS(dyT []float32, oc, n, h, w, s int, wt []float32, ic int, dx []float32, cs, ns int, tile []float32) {
	C.ffccpu_dxs3(fp(dyT), C.int(oc), C.int(n), C.int(h), C.int(w), C.int(s), fp(wt), C.int(ic), fp(dx), C.long(cs), C.long(ns), fp(tile))
}
