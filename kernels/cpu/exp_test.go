package cpu

import (
	"math"
	"testing"
)

func TestExp32(t *testing.T) {
	worst, at := 0.0, 0.0
	for x := -87.3; x < 88.3; x += 0.000317 {
		x32 := float32(x)
		want := math.Exp(float64(x32))
		if e := math.Abs(float64(exp32(x32))-want) / want; e > worst {
			worst, at = e, float64(x32)
		}
	}
	// Tolerance: 2e-7 relative (a few float32 ulps).
	if worst > 2e-7 {
		t.Errorf("exp32 relative error %.3g at x = %v", worst, at)
	}
	for _, c := range []struct{ x, want float32 }{
		{0, 1}, {-100, 0}, {float32(math.Inf(-1)), 0}, {100, float32(math.Inf(1))}, {float32(math.Inf(1)), float32(math.Inf(1))},
	} {
		if got := exp32(c.x); got != c.want {
			t.Errorf("exp32(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if got := exp32(float32(math.NaN())); got == got {
		t.Errorf("exp32(NaN) = %v, want NaN", got)
	}
}

// TestExpLoops: the written-out exponentials of the softmax loops equal
// exp32 bit for bit, and their sums agree.
func TestExpLoops(t *testing.T) {
	xs := make([]float32, 20001)
	for i := range xs {
		xs[i] = float32(i)/10000 - 1 // [−1, 1]
	}
	for _, c := range []struct{ s, shift float32 }{{32, 32}, {64, 64}, {1, 0}, {64, 30}, {200, 200}} {
		g := make([]float32, len(xs))
		sum := expScaleStore(xs, g, c.s, c.shift)
		sum2 := expScaleSum(xs, c.s, c.shift)
		var want float64
		for i, x := range xs {
			e := exp32(c.s*x - c.shift)
			if g[i] != e {
				t.Fatalf("s=%v shift=%v x=%v: loop %v, exp32 %v", c.s, c.shift, x, g[i], e)
			}
			want += float64(e)
		}
		if math.Abs(sum-want) > 1e-12*want || sum != sum2 {
			t.Errorf("s=%v shift=%v: sums %v, %v, want %v", c.s, c.shift, sum, sum2, want)
		}
	}
}

func BenchmarkExp32(b *testing.B) {
	x := make([]float32, 100000)
	for i := range x {
		x[i] = float32(i%1000)/1000*64 - 64
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += exp32(v)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/elem")
	_ = s
}

func BenchmarkMathExp(b *testing.B) {
	x := make([]float32, 100000)
	for i := range x {
		x[i] = float32(i%1000)/1000*64 - 64
	}
	var s float64
	for b.Loop() {
		for _, v := range x {
			s += math.Exp(float64(v))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(x)), "ns/elem")
	_ = s
}
