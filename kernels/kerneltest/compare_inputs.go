package kerneltest

// Random inputs of Compare.

// compareDims are the odd sizes that shapes are drawn from.
var compareDims = []int{1, 3, 17, 33, 65, 127}

func (c *cmp) pick(xs ...int) int { return xs[c.rng.IntN(len(xs))] }

// dim draws a dimension: an odd size, or now and then any size up to 130.
func (c *cmp) dim() int {
	if c.rng.IntN(4) == 0 {
		return 1 + c.rng.IntN(130)
	}
	return compareDims[c.rng.IntN(len(compareDims))]
}

// lengths returns the vector lengths of the elementwise operations: one per
// round (the first rounds small, the others crossing the CPU's threading
// threshold of 32768), 0, and with Large the head's B·Q.
func (c *cmp) lengths() []int {
	var ns []int
	for r := range c.rounds {
		if r%3 == 2 {
			ns = append(ns, 40000+c.rng.IntN(30000))
		} else {
			ns = append(ns, c.pick(1, 3, 17, 33, 65, 127, 1000+c.rng.IntN(1000)))
		}
	}
	ns = append(ns, 0)
	if c.large {
		ns = append(ns, 256*10000)
	}
	return ns
}

func (c *cmp) normal(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(c.rng.NormFloat64())
	}
	return x
}

func (c *cmp) uniform(n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(lo + (hi-lo)*c.rng.Float64())
	}
	return x
}

// signed returns n normal values with about one in eight exactly 0 (the
// kink of ReLU and PReLU).
func (c *cmp) signed(n int) []float32 {
	x := c.normal(n)
	for i := range x {
		if c.rng.IntN(8) == 0 {
			x[i] = 0
		}
	}
	return x
}
