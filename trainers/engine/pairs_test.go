package engine

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels/cpu"
)

// TestAllPairScores: the blockwise Gemm scores every pair once, split by
// class, as a float64 brute force does (more rows than one block).
func TestAllPairScores(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const n, d = pairBlock + 77, 9
	emb := make([]float32, n*d)
	for i := range emb {
		emb[i] = float32(rng.NormFloat64())
	}
	class := make([]int, n)
	for i := range class {
		class[i] = i / 7 // sorted, 7 a class
	}
	gen, imp, err := allPairScores(be, emb, d, class)
	if err != nil {
		t.Fatal(err)
	}
	var wantGen, wantImp []float64
	for i := range n {
		for j := i + 1; j < n; j++ {
			var s float64
			for k := range d {
				s += float64(emb[i*d+k]) * float64(emb[j*d+k])
			}
			if class[i] == class[j] {
				wantGen = append(wantGen, s)
			} else {
				wantImp = append(wantImp, s)
			}
		}
	}
	for _, c := range []struct {
		name string
		got  []float32
		want []float64
	}{{"genuine", gen, wantGen}, {"impostor", imp, wantImp}} {
		if len(c.got) != len(c.want) {
			t.Fatalf("%s: %d pairs, want %d", c.name, len(c.got), len(c.want))
		}
		got := slices.Clone(c.got)
		slices.Sort(got)
		slices.Sort(c.want)
		for i := range got {
			if d := float64(got[i]) - c.want[i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("%s: sorted score %d is %v, want %v", c.name, i, got[i], c.want[i])
			}
		}
	}
	if _, _, err := allPairScores(be, emb[:5], d, class); err == nil {
		t.Error("ragged embeddings: no error")
	}
}

// TestROCExact: TAR at FAR f counts the genuine scores above the
// (⌊f·I⌋+1)-th highest impostor score.
func TestROCExact(t *testing.T) {
	imp := make([]float32, 10000)
	for i := range imp {
		imp[i] = float32(i) / 10000 // 0 … 0.9999
	}
	// At FAR 1e-2 the threshold is the 101st highest, 0.9899: 100
	// impostors score above it. Genuine: 3 above, 1 equal, 1 below.
	gen := []float32{0.995, 0.99, 0.9899, 0.5, 0.9999}
	var res EvalResult
	rocOf(&res, gen, imp)
	want := map[float64]struct {
		tar, thr float64
	}{1e-2: {3.0 / 5, 0.9899}, 1e-3: {1.0 / 5, 0.9989}, 1e-4: {1.0 / 5, 0.9998}}
	for _, p := range res.TAR {
		w := want[p.FAR]
		if d := p.Threshold - w.thr; p.TAR != w.tar || d > 1e-6 || d < -1e-6 {
			t.Errorf("FAR %g: TAR %v at %v, want %v at %v", p.FAR, p.TAR, p.Threshold, w.tar, w.thr)
		}
	}
}
