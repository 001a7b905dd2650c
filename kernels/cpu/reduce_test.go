package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestReductions holds the four-way reductions to plain float64 loops, on
// lengths that leave every remainder of the unrolled loop.
func TestReductions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 4, 5, 7, 8, 1001} {
		x, dy := make([]float32, n), make([]float32, n+2)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for i := range dy {
			dy[i] = float32(rng.NormFloat64())
		}
		const mu = 0.3
		var sum, sq, sdy, sdyx float64
		for i, v := range x {
			sum += float64(v)
			sq += (float64(v) - mu) * (float64(v) - mu)
			sdy += float64(dy[i])
			sdyx += float64(dy[i]) * (float64(v) - mu)
		}
		a, b := gradDev4(dy, x, mu)
		for _, c := range []struct {
			name      string
			got, want float64
		}{{"sum4", sum4(x), sum}, {"sqDev4", sqDev4(x, mu), sq}, {"gradDev4 Σdy", a, sdy}, {"gradDev4 Σdy·(x−μ)", b, sdyx}} {
			if math.Abs(c.got-c.want) > 1e-9*(1+math.Abs(c.want)) {
				t.Errorf("n=%d %s = %v, want %v", n, c.name, c.got, c.want)
			}
		}
	}
}

// TestPositive: 1 exactly where v > 0; zeros of both signs, negative
// numbers and NaN give 0.
func TestPositive(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for v, want := range map[float32]int{1: 1, 1e-38: 1, inf: 1, 0: 0, -1: 0, -inf: 0} {
		if got := positive(v); got != want {
			t.Errorf("positive(%v) = %d, want %d", v, got, want)
		}
	}
	if positive(nan) != 0 || positive(float32(math.Copysign(0, -1))) != 0 {
		t.Error("positive(NaN) or positive(−0) is not 0")
	}
}
