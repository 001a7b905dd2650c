package cpu

// The reductions of the channel kernels (batch norm), in float64 with four
// independent partial sums: a single accumulator makes every addition wait
// for the one before it (a few cycles each), four let them overlap.

// sum4 returns Σ x[i].
func sum4(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
		s2 += float64(x[i+2])
		s3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// sqDev4 returns Σ (x[i] − mu)².
func sqDev4(x []float32, mu float64) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		d0, d1 := float64(x[i])-mu, float64(x[i+1])-mu
		d2, d3 := float64(x[i+2])-mu, float64(x[i+3])-mu
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(x); i++ {
		d := float64(x[i]) - mu
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// gradDev4 returns Σ dy[i] and Σ dy[i]·(x[i] − mu) (len(dy) ≥ len(x)).
func gradDev4(dy, x []float32, mu float64) (sdy, sdyx float64) {
	dy = dy[:len(x)]
	var a0, a1, a2, a3, b0, b1, b2, b3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		g0, g1, g2, g3 := float64(dy[i]), float64(dy[i+1]), float64(dy[i+2]), float64(dy[i+3])
		a0 += g0
		a1 += g1
		a2 += g2
		a3 += g3
		b0 += g0 * (float64(x[i]) - mu)
		b1 += g1 * (float64(x[i+1]) - mu)
		b2 += g2 * (float64(x[i+2]) - mu)
		b3 += g3 * (float64(x[i+3]) - mu)
	}
	for ; i < len(x); i++ {
		g := float64(dy[i])
		a0 += g
		b0 += g * (float64(x[i]) - mu)
	}
	return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)
}
