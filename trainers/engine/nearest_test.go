package engine

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels/cpu"
)

// TestNearest compares the blockwise Gemm argmax with a float64 brute
// force over more queries than one block.
func TestNearest(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const d, n, m = 17, nearestBlock + 45, 301
	q, c := make([]float32, n*d), make([]float32, m*d)
	for i := range q {
		q[i] = float32(rng.NormFloat64())
	}
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	got, err := Nearest(be, q, c, d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		best, arg := math.Inf(-1), -1
		for j := range m {
			var s float64
			for k := range d {
				s += float64(q[i*d+k]) * float64(c[j*d+k])
			}
			if s > best {
				best, arg = s, j
			}
		}
		if got[i] != arg {
			t.Fatalf("query %d: nearest %d, want %d", i, got[i], arg)
		}
	}
	for _, tc := range []struct {
		name string
		q, c []float32
		d    int
	}{{"ragged", q[:5], c, d}, {"no centers", q, nil, d}, {"zero dim", q, c, 0}} {
		if _, err := Nearest(be, tc.q, tc.c, tc.d); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
