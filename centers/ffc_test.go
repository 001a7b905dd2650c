package centers

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// refFFC is the FFC loss in float64, written plainly from SPEC section 2.
func refFFC(pool0, w [][]float64, p [][]float64, targets []int32, m kernels.Margin, k int) float64 {
	set := func(mat [][]float64) float64 {
		var ce, fresh float64
		held, nf := 0, 0
		for r, pr := range p {
			cos := make([]float64, len(mat))
			for j, row := range mat {
				for i := range pr {
					cos[j] += pr[i] * row[i]
				}
			}
			if t := targets[r]; t >= 0 {
				held++
				logits := make([]float64, len(cos))
				for j, c := range cos {
					logits[j] = float64(m.S) * c
				}
				phi, _ := m.Target(cos[t])
				logits[t] = float64(m.S) * phi
				ce += softmaxCE(logits, int(t))
			} else {
				nf++
				s := append([]float64(nil), cos...)
				sort.Sort(sort.Reverse(sort.Float64Slice(s)))
				for _, c := range s[:k] {
					fresh += math.Max(c, 0)
				}
			}
		}
		var out float64
		if held > 0 {
			out += ce / float64(held)
		}
		if nf > 0 {
			out += fresh / float64(nf*k)
		}
		return out
	}
	return set(pool0) + set(w)
}

func TestFFCLossAgainstFloat64AndFiniteDifferences(t *testing.T) {
	for _, margin := range []kernels.Margin{
		{Kind: kernels.CosFace, S: 32, M: 0.4},
		{Kind: kernels.ArcFace, S: 32, M: 0.5},
	} {
		for _, refreshed := range []bool{false, true} {
			// Chunks of probe rows (and second-set blocks) of every size
			// must give the same loss and gradient as one block.
			for _, ch := range []struct{ rows, sub int }{{0, 0}, {3, 0}, {3, 2}, {1, 0}} {
				name := fmt.Sprintf("%s/%s/chunk%d-sub%d", margin.Kind, map[bool]string{false: "no-refresh", true: "refreshed"}[refreshed], ch.rows, ch.sub)
				t.Run(name, func(t *testing.T) {
					checkFFC(t, margin, refreshed, ch.rows, ch.sub)
				})
			}
		}
	}
}

func checkFFC(t *testing.T, margin kernels.Margin, withRefresh bool, chunkRows, sub int) {
	be := newBackend(t)
	rng := rand.New(rand.NewPCG(11, 12))
	const q, d, n = 9, 6, 7
	pool := newPool(t, be, q, d, 16)
	// Permanent inserts of labels 0..6, then (this pass) refresh a few.
	randUnit := func(rows int) []float32 { return unitRows(rng, rows, d) }
	if _, err := pool.Insert(upload(t, be, randUnit(7)), []int64{0, 1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := pool.BeginPass(); err != nil {
		t.Fatal(err)
	}
	if withRefresh {
		if _, err := pool.Insert(upload(t, be, randUnit(3)), []int64{1, 4, 8}); err != nil {
			t.Fatal(err)
		}
	}
	head, err := NewFFC(be, pool, FFCOptions{Margin: margin, TopK: 3, MaxBatch: n, ChunkRows: chunkRows})
	if err != nil {
		t.Fatal(err)
	}
	defer head.Close()
	if want := cmp.Or(chunkRows, n); head.ChunkRows() != want {
		t.Fatalf("ChunkRows() = %d, want %d", head.ChunkRows(), want)
	}
	if sub > 0 {
		head.sub = sub // smaller second-set blocks than the chunk (its buffers fit)
	}

	labels := []int64{1, 4, 0, 100, 8, 101, 6} // 100, 101 fresh; 8 fresh unless refreshed pass inserted it
	pHost := randUnit(n)
	dp, err := be.Alloc(n * d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := head.Loss(upload(t, be, pHost), labels, dp)
	if err != nil {
		t.Fatal(err)
	}
	if got.Held+got.Fresh != n || got.Fresh < 2 {
		t.Fatalf("held %d fresh %d", got.Held, got.Fresh)
	}
	if withRefresh && got.Refreshed == 0 {
		t.Fatal("expected refreshed slots")
	}

	// The float64 reference on the same pool.
	rows := download(t, be, pool.Rows(), 2*q*d)
	refreshedSet := map[int32]bool{}
	for _, s := range pool.RefreshedSlots() {
		refreshedSet[s] = true
	}
	pool0, w := make([][]float64, q), make([][]float64, q)
	for s := 0; s < q; s++ {
		pool0[s] = f64(row(rows, q, d, 0, s))
		w[s] = pool0[s]
		if refreshedSet[int32(s)] {
			w[s] = f64(row(rows, q, d, 1, s))
		}
	}
	targets := make([]int32, n)
	pool.Targets(labels, targets)
	p64 := matrix(pHost, n, d)
	want := refFFC(pool0, w, p64, targets, margin, 3)
	checkRefLoss(t, got.Total, want)

	// Finite differences of the reference against the head's gradient.
	maxErr := fdCheck(p64, download(t, be, dp, n*d), func() float64 {
		return refFFC(pool0, w, p64, targets, margin, 3)
	})
	if maxErr > 2e-3 {
		t.Fatalf("gradient differs from finite differences: max relative error %.2e", maxErr)
	}
	t.Logf("loss %.6f (ref %.6f), max grad error %.1e, held %d fresh %d refreshed %d", got.Total, want, maxErr, got.Held, got.Fresh, got.Refreshed)
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func TestFFCRejectsBadInput(t *testing.T) {
	be := newBackend(t)
	pool := newPool(t, be, 8, 4, 4)
	if _, err := NewFFC(be, pool, FFCOptions{Margin: kernels.Margin{Kind: kernels.CosFace, S: 0}, MaxBatch: 4}); err == nil {
		t.Error("zero scale accepted")
	}
	head, err := NewFFC(be, pool, FFCOptions{Margin: kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4}, MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer head.Close()
	dp, _ := be.Alloc(16)
	if _, err := head.Loss(dp, nil, dp); err == nil {
		t.Error("empty batch accepted")
	}
	if _, err := head.Loss(dp, make([]int64, 5), dp); err == nil {
		t.Error("batch above max accepted")
	}
	// NaN features: the loss is reported as non-finite, not returned.
	nan := float32(math.NaN())
	p := upload(t, be, []float32{nan, 0, 0, 0, 1, 0, 0, 0})
	if _, err := head.Loss(p, []int64{1, 2}, dp); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN features: err = %v, want ErrNonFinite", err)
	}
}

func TestDefaultTopK(t *testing.T) {
	for q, want := range map[int]int{100: 3, 15000: 3, 20000: 4, 50000: 10, 1000000: 10} {
		if got := DefaultTopK(q); got != want {
			t.Errorf("DefaultTopK(%d) = %d, want %d", q, got, want)
		}
	}
}

func TestDefaultChunkRows(t *testing.T) {
	for _, c := range []struct{ q, batch, want int }{
		{1000, 96, 96},       // every row in one chunk
		{100_000, 256, 64},   // 83 rows fit: 4 even chunks
		{100_000, 96, 48},    // 2 chunks
		{100_000, 64, 64},    // one chunk
		{1_000_000, 256, 32}, // at least 32 rows: 8 chunks
		{1_000_000, 100, 25}, // 4 chunks of ≤ 32 rows, spread evenly
		{10, 0, 0},
	} {
		got := DefaultChunkRows(c.q, c.batch)
		if got != c.want {
			t.Errorf("DefaultChunkRows(%d, %d) = %d, want %d", c.q, c.batch, got, c.want)
		}
		if c.batch > 0 && got*c.q > chunkFloats && got > 32 {
			t.Errorf("DefaultChunkRows(%d, %d) = %d holds %d logits, over %d", c.q, c.batch, got, got*c.q, chunkFloats)
		}
	}
}
