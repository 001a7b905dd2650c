package cpu

// The loops of batch normalisation and PReLU over one contiguous run of a
// channel: the AVX2 versions (elementwise_avx.c) where be.simd, the Go
// ones otherwise. Reductions accumulate in float64 either way.

// sum returns Σ x[i].
func (be *Backend) sum(x []float32) float64 {
	if be.simd && len(x) > 0 {
		return avxSum(x)
	}
	return sum4(x)
}

// sqDev returns Σ (x[i] − mu)².
func (be *Backend) sqDev(x []float32, mu float64) float64 {
	if be.simd && len(x) > 0 {
		return avxSqDev(x, mu)
	}
	return sqDev4(x, mu)
}

// gradDev returns Σ dy[i] and Σ dy[i]·(x[i] − mu) (len(dy) ≥ len(x)).
func (be *Backend) gradDev(dy, x []float32, mu float64) (sdy, sdyx float64) {
	if be.simd && len(x) > 0 {
		return avxGradDev(dy[:len(x)], x, mu)
	}
	return gradDev4(dy, x, mu)
}

// affine sets y[i] = x[i]·a + b (len(y) ≥ len(x)).
func (be *Backend) affine(x []float32, a, b float32, y []float32) {
	if be.simd && len(x) > 0 {
		avxAffine(x, a, b, y[:len(x)])
		return
	}
	y = y[:len(x)]
	for i, v := range x {
		y[i] = v*a + b
	}
}

// affine2 sets dx[i] = k·dy[i] + kx·x[i] + k0 (dy and dx as long as x).
func (be *Backend) affine2(dy, x []float32, k, kx, k0 float32, dx []float32) {
	if be.simd && len(x) > 0 {
		avxAffine2(dy[:len(x)], x, k, kx, k0, dx[:len(x)])
		return
	}
	dy, dx = dy[:len(x)], dx[:len(x)]
	for i, v := range x {
		dx[i] = k*dy[i] + kx*v + k0
	}
}

// prelu sets y[i] = x[i] where x[i] > 0, else slope·x[i].
func (be *Backend) prelu(x []float32, slope float32, y []float32) {
	if be.simd && len(x) > 0 {
		avxPReLU(x, slope, y[:len(x)])
		return
	}
	coef := [2]float32{slope, 1} // by positive(v)
	y = y[:len(x)]
	for i, v := range x {
		y[i] = v * coef[positive(v)]
	}
}

// preluBackward sets dx[i] = dy[i] where x[i] > 0, else slope·dy[i], and
// returns Σ dy[i]·x[i] over the others (x[i] ≤ 0 or NaN).
func (be *Backend) preluBackward(x, dy []float32, slope float32, dx []float32) float64 {
	if be.simd && len(x) > 0 {
		return avxPReLUBackward(x, dy[:len(x)], slope, dx[:len(x)])
	}
	coef := [2]float64{float64(slope), 1} // dx/dy by positive(v)
	slopeOf := [2]float64{1, 0}           // whether v adds to dslope
	dy, dx = dy[:len(x)], dx[:len(x)]
	var acc float64
	for i, v := range x {
		g, p := dy[i], positive(v)
		dx[i] = float32(float64(g) * coef[p])
		acc += float64(g) * float64(v) * slopeOf[p]
	}
	return acc
}
