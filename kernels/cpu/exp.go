package cpu

import "math"

// exp32 is e^x in float32 arithmetic (Cephes expf: Cody–Waite reduction by
// ln 2 and a degree-5 polynomial), relative error below 2e-7 on
// [−87.3, 88.3]; 0 below that range, +Inf above it, NaN for NaN. It is
// several times cheaper than math.Exp, which dominates the softmax.
func exp32(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
		magic = 12582912 // 1.5·2²³: adding it rounds to an integer
	)
	if x < -87.33 {
		return 0
	}
	if x > 88.37 {
		return float32(math.Inf(1))
	}
	t := x*log2e + magic
	n := int32(math.Float32bits(t)) - 0x4B400000 // round(x·log2 e)
	fn := t - magic
	r := x - fn*c1
	r -= fn * c2
	p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	p = p*(r*r) + r + 1
	return p * math.Float32frombits(uint32(n+127)<<23)
}
