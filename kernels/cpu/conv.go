package cpu

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// planeBase returns the offset of the H×W plane of image n, channel c.
func planeBase(g kernels.ConvGeom, n, c int) int {
	if g.Layout == kernels.CNHW {
		return (c*g.N + n) * g.H * g.W
	}
	return (n*g.C + c) * g.H * g.W
}

// validOut returns the range [lo, hi) of output positions o (of out) whose
// input position o·stride − pad + k lies in [0, size).
func validOut(size, out, stride, pad, k int) (lo, hi int) {
	// o·stride ≥ pad − k  and  o·stride ≤ size − 1 + pad − k
	if d := pad - k; d > 0 {
		lo = (d + stride - 1) / stride
	}
	d := size - 1 + pad - k
	if d < 0 {
		return 0, 0
	}
	hi = min(out, d/stride+1)
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

func convBuffers(op string, g kernels.ConvGeom, x, col kernels.Buffer) ([]float32, []float32, error) {
	if err := g.Validate(); err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if err := dims(g.N, g.C, g.H, g.W); err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if err := dims(g.ColRows(), g.ColCols()); err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	xs, err := f32("x", x, g.InLen())
	if err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	cs, err := f32("col", col, g.ColRows()*g.ColCols())
	if err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if overlap(xs, cs) {
		return nil, nil, fmt.Errorf("cpu: %s: %w: x overlaps col", op, kernels.ErrShape)
	}
	return xs, cs, nil
}

// Im2Col lowers x to the column matrix (see kernels.Layers).
func (be *Backend) Im2Col(g kernels.ConvGeom, x, col kernels.Buffer) error {
	xs, cs, err := convBuffers("im2col", g, x, col)
	if err != nil {
		return err
	}
	hw := g.OutH() * g.OutW()
	cols := g.N * hw
	// One item per (column-matrix row, image): a contiguous run of hw.
	items := g.ColRows() * g.N
	be.parallel(items, grainFor(hw), func(lo, hi int) {
		for it := lo; it < hi; it++ {
			r, n := it/g.N, it%g.N
			im2colItem(g, xs, cs[r*cols+n*hw:][:hw], r, n)
		}
	})
	return nil
}

// im2colItem writes the hw = OutH·OutW entries of column-matrix row r
// (channel, kh, kw) for image n into dst.
func im2colItem(g kernels.ConvGeom, xs, dst []float32, r, n int) {
	K, S, P := g.K, g.Stride, g.Pad
	ho, wo := g.OutH(), g.OutW()
	c, kk := r/(K*K), r%(K*K)
	kh, kw := kk/K, kk%K
	src := xs[planeBase(g, n, c):][:g.H*g.W]
	owLo, owHi := validOut(g.W, wo, S, P, kw)
	if S == 1 && wo == g.W {
		im2colShifted(g, src, dst, kh, kw, owLo, owHi)
		return
	}
	for oh := range ho {
		row := dst[oh*wo : (oh+1)*wo]
		ih := oh*S - P + kh
		if ih < 0 || ih >= g.H || owLo >= owHi {
			clear(row)
			continue
		}
		clear(row[:owLo])
		clear(row[owHi:])
		in := src[ih*g.W:][:g.W]
		if S == 1 {
			off := owLo - P + kw
			copy(row[owLo:owHi], in[off:off+owHi-owLo])
			continue
		}
		for ow := owLo; ow < owHi; ow++ {
			row[ow] = in[ow*S-P+kw]
		}
	}
}

// im2colShifted writes one column-matrix row of one image for stride 1
// when the output rows are as wide as the input's (same padding): there
// dst[j] = src[j + shift] with shift = (kh−P)·W + (kw−P) at every valid
// position, so one copy moves the whole run from the first valid position
// to the last, and the positions outside the image (whole rows above and
// below, owLo columns on the left and W − owHi on the right of each row,
// which the copy filled with the neighbouring rows' pixels) are zeroed.
func im2colShifted(g kernels.ConvGeom, src, dst []float32, kh, kw, owLo, owHi int) {
	w, ho := g.W, g.OutH()
	ohLo, ohHi := validOut(g.H, ho, 1, g.Pad, kh)
	if ohLo >= ohHi || owLo >= owHi {
		clear(dst)
		return
	}
	shift := (kh-g.Pad)*w + (kw - g.Pad)
	j0, j1 := ohLo*w+owLo, (ohHi-1)*w+owHi
	copy(dst[j0:j1], src[j0+shift:j1+shift])
	clear(dst[:ohLo*w])
	clear(dst[ohHi*w:])
	for oh := ohLo; oh < ohHi; oh++ {
		row := dst[oh*w : (oh+1)*w]
		clear(row[:owLo])
		clear(row[owHi:])
	}
}

// Col2Im accumulates the column matrix back into dx (overwritten).
func (be *Backend) Col2Im(g kernels.ConvGeom, col, dx kernels.Buffer) error {
	xs, cs, err := convBuffers("col2im", g, dx, col)
	if err != nil {
		return err
	}
	K := g.K
	hw := g.OutH() * g.OutW()
	cols := g.N * hw
	same3 := K == 3 && g.Stride == 1 && g.Pad == 1
	// One item per (channel, image): it owns the plane dx[n][c].
	items := g.C * g.N
	be.parallel(items, grainFor(K*K*hw), func(lo, hi int) {
		for it := lo; it < hi; it++ {
			c, n := it/g.N, it%g.N
			dst := xs[planeBase(g, n, c):][:g.H*g.W]
			src := cs[c*K*K*cols+n*hw:]
			if same3 {
				col2imSame3(g, src, cols, dst)
			} else {
				col2imPlane(g, src, cols, dst)
			}
		}
	})
	return nil
}

// col2imPlane writes one plane of dx by adding every column-matrix row of
// its channel in turn; cs starts at the row of (c, kh 0, kw 0) and image n.
func col2imPlane(g kernels.ConvGeom, cs []float32, cols int, dst []float32) {
	K, S, P := g.K, g.Stride, g.Pad
	ho, wo := g.OutH(), g.OutW()
	clear(dst)
	for kh := range K {
		for kw := range K {
			src := cs[(kh*K+kw)*cols:][:ho*wo]
			owLo, owHi := validOut(g.W, wo, S, P, kw)
			if owLo >= owHi {
				continue
			}
			for oh := range ho {
				ih := oh*S - P + kh
				if ih < 0 || ih >= g.H {
					continue
				}
				row := src[oh*wo : (oh+1)*wo]
				out := dst[ih*g.W:][:g.W]
				if S == 1 {
					off := owLo - P + kw
					o := out[off : off+owHi-owLo]
					for i, v := range row[owLo:owHi] {
						o[i] += v
					}
					continue
				}
				for ow := owLo; ow < owHi; ow++ {
					out[ow*S-P+kw] += row[ow]
				}
			}
		}
	}
}

// col2imSame3 writes one plane of dx for a 3×3 kernel, stride 1, padding 1
// (the output as large as the input) by gathering: each row of dx is set
// from the three column-matrix rows of its centre tap kh = 1, then the
// kh = 0 and kh = 2 taps are added, each pass summing the three kw taps of
// one row at once, so the plane is written three times instead of nine.
// cs starts at the column-matrix row of (c, kh 0, kw 0) and image n.
func col2imSame3(g kernels.ConvGeom, cs []float32, cols int, dst []float32) {
	h, w := g.H, g.W
	for ih := range h {
		out := dst[ih*w:][:w]
		for _, kh := range [3]int{1, 0, 2} {
			oh := ih + 1 - kh
			if oh < 0 || oh >= h {
				continue
			}
			at := func(kw int) []float32 { return cs[(kh*3+kw)*cols+oh*w:][:w] }
			addRow3(out, at(0), at(1), at(2), kh == 1)
		}
	}
}

// addRow3 sets (assign) or adds to out[x] the sum r0[x+1] + r1[x] +
// r2[x−1] over the taps inside the row: the three kw taps of one kernel
// row for stride 1 and padding 1.
func addRow3(out, r0, r1, r2 []float32, assign bool) {
	w := len(out)
	if w == 1 {
		if assign {
			out[0] = r1[0]
		} else {
			out[0] += r1[0]
		}
		return
	}
	first, last := r0[1]+r1[0], r1[w-1]+r2[w-2]
	o, a, b, c := out[1:w-1], r0[2:w], r1[1:w-1], r2[:w-2]
	a, b, c = a[:len(o)], b[:len(o)], c[:len(o)]
	if assign {
		out[0], out[w-1] = first, last
		for i := range o {
			o[i] = a[i] + b[i] + c[i]
		}
		return
	}
	out[0] += first
	out[w-1] += last
	for i := range o {
		o[i] += a[i] + b[i] + c[i]
	}
}

// SwapAxes permutes [a][b][inner] into [b][a][inner].
func (be *Backend) SwapAxes(a, b, inner int, src, dst kernels.Buffer) error {
	if err := dims(a, b, inner); err != nil {
		return fmt.Errorf("cpu: swap axes: %w", err)
	}
	n := a * b * inner
	ss, err := f32("src", src, n)
	if err != nil {
		return fmt.Errorf("cpu: swap axes: %w", err)
	}
	ds, err := f32("dst", dst, n)
	if err != nil {
		return fmt.Errorf("cpu: swap axes: %w", err)
	}
	if overlap(ss, ds) {
		return fmt.Errorf("cpu: swap axes: %w: dst overlaps src", kernels.ErrShape)
	}
	// One item per destination block row j: dst[j][:][:] is contiguous.
	be.parallel(b, grainFor(a*inner), func(lo, hi int) {
		for j := lo; j < hi; j++ {
			out := ds[j*a*inner:][:a*inner]
			if inner == 1 {
				for i := range a {
					out[i] = ss[i*b+j]
				}
				continue
			}
			for i := range a {
				copy(out[i*inner:(i+1)*inner], ss[(i*b+j)*inner:])
			}
		}
	})
	return nil
}

// chanBuffers validates a ChanShape and fetches the full tensors and the
// per-channel vectors.
func chanBuffers(op string, s kernels.ChanShape, full []string, fullB []kernels.Buffer, per []string, perB []kernels.Buffer) ([][]float32, [][]float32, error) {
	if err := s.Validate(); err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	if err := dims(s.Outer, s.C, s.Inner); err != nil {
		return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
	}
	fs := make([][]float32, len(fullB))
	for i, b := range fullB {
		v, err := f32(full[i], b, s.Len())
		if err != nil {
			return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
		}
		fs[i] = v
	}
	ps := make([][]float32, len(perB))
	for i, b := range perB {
		v, err := f32(per[i], b, s.C)
		if err != nil {
			return nil, nil, fmt.Errorf("cpu: %s: %w", op, err)
		}
		ps[i] = v
	}
	return fs, ps, nil
}

// AddChannel adds bias[c] to x[o][c][i].
func (be *Backend) AddChannel(s kernels.ChanShape, bias, x kernels.Buffer) error {
	fs, ps, err := chanBuffers("add channel", s, []string{"x"}, []kernels.Buffer{x}, []string{"bias"}, []kernels.Buffer{bias})
	if err != nil {
		return err
	}
	xs, bs := fs[0], ps[0]
	be.parallel(s.Outer*s.C, grainFor(s.Inner), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			v := bs[p%s.C]
			seg := xs[p*s.Inner : (p+1)*s.Inner]
			for i := range seg {
				seg[i] += v
			}
		}
	})
	return nil
}

// ChannelSum accumulates dst[c] += Σ_{o,i} x[o][c][i].
func (be *Backend) ChannelSum(s kernels.ChanShape, x, dst kernels.Buffer) error {
	fs, ps, err := chanBuffers("channel sum", s, []string{"x"}, []kernels.Buffer{x}, []string{"dst"}, []kernels.Buffer{dst})
	if err != nil {
		return err
	}
	xs, ds := fs[0], ps[0]
	if overlap(xs, ds) {
		return fmt.Errorf("cpu: channel sum: %w: dst overlaps x", kernels.ErrShape)
	}
	be.parallel(s.C, grainFor(s.Outer*s.Inner), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var acc float64
			for o := range s.Outer {
				for _, v := range xs[(o*s.C+c)*s.Inner:][:s.Inner] {
					acc += float64(v)
				}
			}
			ds[c] += float32(acc)
		}
	})
	return nil
}
