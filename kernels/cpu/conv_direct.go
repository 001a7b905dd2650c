package cpu

import "github.com/ffc-stream/ffc/kernels"

// directBlockFloats bounds the padded input (and, backward, the padded and
// pixel-major output gradient) one worker of a direct convolution holds
// per block of images: 64k floats (256 KiB), within the L2 cache.
const directBlockFloats = 1 << 16

// directMinChannels is the fewest input channels a direct convolution
// takes: below it (the stem's one channel) the per-block overhead of the
// kernels exceeds their gain over the lowered product.
const directMinChannels = 8

// useDirect reports whether a convolution takes the direct 3×3 kernels
// (conv_direct.c): 3×3, padding 1, at least directMinChannels input
// channels, on a CPU with AVX2 and FMA, unless Options.NoSIMD.
func (be *Backend) useDirect(g kernels.ConvGeom) bool {
	return be.simd && g.K == 3 && g.Pad == 1 && g.C >= be.directMinC
}

// directImages is the images per block of a direct convolution whose
// padded planes have ch channels (the larger side backward).
func (be *Backend) directImages(g kernels.ConvGeom, ch int) int {
	per := ch * (g.H + 2) * (g.W + 2)
	return max(1, min(g.N, be.directFloats/per))
}

// planeStrides returns the distance between channels and between images
// of the planes of an input in layout g.Layout.
func planeStrides(g kernels.ConvGeom) (cs, ns int) {
	hw := g.H * g.W
	if g.Layout == kernels.CNHW {
		return g.N * hw, hw
	}
	return hw, g.C * hw
}

func pad16(n int) int { return (n + 15) / 16 * 16 }

// convForwardDirect is ConvForward on the direct kernels: the weights are
// packed once, and each worker pads a block of images and convolves it.
func (be *Backend) convForwardDirect(g kernels.ConvGeom, outC int, ws, xs, ys []float32) {
	packed := be.scratch.get(pad16(outC) * g.C * 9)
	defer be.scratch.put(packed)
	directPack(ws, outC, g.C, false, packed)
	hw, nb := g.OutH()*g.OutW(), be.directImages(g, g.C)
	cs, ns := planeStrides(g)
	blocks := (g.N + nb - 1) / nb
	be.parallel(blocks, 1, func(lo, hi int) {
		xp := be.scratch.get(g.C * nb * (g.H + 2) * (g.W + 2))
		defer be.scratch.put(xp)
		for blk := lo; blk < hi; blk++ {
			n0, n1 := blk*nb, min((blk+1)*nb, g.N)
			directPad(xs[planeBase(g, n0, 0):], cs, ns, g.C, n1-n0, g.H, g.W, xp)
			directFwd(xp, g.C, n1-n0, g.H, g.W, g.Stride, packed, outC, ys[n0*hw:], g.N*hw, hw)
		}
	})
}

// convBackwardDirect is ConvBackward on the direct kernels: per block of
// images, the weight gradient (transposed, into the worker's part) from
// the padded input and the pixel-major output gradient; the input
// gradient at stride 1 as a forward pass of the padded output gradient
// with the weights transposed and flipped, at larger strides by scattering
// each output-gradient pixel to its taps (directDXS).
func (be *Backend) convBackwardDirect(g kernels.ConvGeom, outC int, ws, xs, dys, dws, dxs []float32) {
	var packed []float32
	if dxs != nil {
		packed = be.scratch.get(pad16(g.C) * outC * 9)
		defer be.scratch.put(packed)
		if g.Stride == 1 {
			directPack(ws, outC, g.C, true, packed)
		} else {
			directPackT(ws, outC, g.C, packed)
		}
	}
	rows, hw, hwp := g.ColRows(), g.OutH()*g.OutW(), (g.H+2)*(g.W+2)
	nb := be.directImages(g, max(g.C, outC))
	blocks := (g.N + nb - 1) / nb
	parts := make([][]float32, be.threads)
	be.parallelChunks(blocks, 1, func(chunk, lo, hi int) {
		xp := be.scratch.get(max(max(g.C, outC)*nb*hwp, 16*hwp+16))
		defer be.scratch.put(xp)
		dyT := be.scratch.get(nb * hw * pad16(outC))
		defer be.scratch.put(dyT)
		part := be.workerPart(parts, chunk, rows*outC)
		for blk := lo; blk < hi; blk++ {
			n0, n1 := blk*nb, min((blk+1)*nb, g.N)
			be.convBackwardDirectBlock(g, outC, xs, dys, part, dxs, packed, xp, dyT, n0, n1)
		}
	})
	be.addPartsTransposed(parts, rows, outC, dws)
}

// convBackwardDirectBlock runs images [n0, n1) of convBackwardDirect with
// the worker's buffers xp (padded planes, or the tile of directDXS) and
// dyT (pixel-major output gradient); packed holds the weights packed for
// the input gradient.
func (be *Backend) convBackwardDirectBlock(g kernels.ConvGeom, outC int, xs, dys, part, dxs, packed, xp, dyT []float32, n0, n1 int) {
	hw, m := g.OutH()*g.OutW(), n1-n0
	cs, ns := planeStrides(g)
	directPad(xs[planeBase(g, n0, 0):], cs, ns, g.C, m, g.H, g.W, xp)
	directPixMajor(dys[n0*hw:], g.N*hw, hw, outC, m, hw, dyT)
	directDW(xp, g.C, m, g.H, g.W, g.Stride, dyT, outC, part)
	switch {
	case dxs == nil:
	case g.Stride == 1:
		directPad(dys[n0*hw:], g.N*hw, hw, outC, m, g.H, g.W, xp)
		directFwd(xp, outC, m, g.H, g.W, 1, packed, g.C, dxs[planeBase(g, n0, 0):], cs, ns)
	default:
		directDXS(dyT, outC, m, g.H, g.W, g.Stride, packed, g.C, dxs[planeBase(g, n0, 0):], cs, ns, xp)
	}
}

// workerPart returns a zeroed scratch buffer of n floats for the weight
// gradient of worker chunk, recorded in parts for addPartsTransposed.
func (be *Backend) workerPart(parts [][]float32, chunk, n int) []float32 {
	part := be.scratch.get(n)
	clear(part)
	parts[chunk] = part
	return part
}

// addPartsTransposed adds the workers' weight gradients, each rows × outC,
// transposed into dws (outC × rows), and returns them to the scratch list.
func (be *Backend) addPartsTransposed(parts [][]float32, rows, outC int, dws []float32) {
	for _, p := range parts {
		if p == nil {
			continue
		}
		for r := range rows {
			for o, v := range p[r*outC : (r+1)*outC] {
				dws[o*rows+r] += v
			}
		}
		be.scratch.put(p)
	}
}
