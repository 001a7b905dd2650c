package centers

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

func newPFC(t *testing.T, be kernels.Backend, o PFCOptions) *PFC {
	t.Helper()
	h, err := NewPFC(be, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// checkSample checks that s is ascending, in [0, nc), holds every label and
// has max(k, distinct labels) classes.
func checkSample(t *testing.T, s []int32, labels []int64, nc, k int) {
	t.Helper()
	distinct := map[int64]bool{}
	for _, l := range labels {
		distinct[l] = true
	}
	if want := max(k, len(distinct)); len(s) != want {
		t.Fatalf("sample of %d classes, want %d (k %d, %d distinct labels)", len(s), want, k, len(distinct))
	}
	for i, c := range s {
		if c < 0 || int(c) >= nc || (i > 0 && c <= s[i-1]) {
			t.Fatalf("sample not ascending in [0, %d): %v", nc, s)
		}
	}
	for l := range distinct {
		if _, ok := slices.BinarySearch(s, int32(l)); !ok {
			t.Fatalf("label %d missing from the sample %v", l, s)
		}
	}
}

func TestPFCSampleKeepsEveryPositive(t *testing.T) {
	be := newBackend(t)
	const d = 4
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		nc, batch int
		rate      float64
	}{
		{1000, 64, 0.1},  // k = 100 > distinct labels
		{300, 64, 0.1},   // k = 30 < distinct labels: all positives kept
		{257, 16, 0.9},   // dense sample (drawn by exclusion)
		{64, 16, 0.5},    // exactly half
		{5, 3, 0.000001}, // k = 1
	} {
		h := newPFC(t, be, PFCOptions{Classes: c.nc, Dim: d, Margin: cosFace, MaxBatch: c.batch, Rate: c.rate, Seed: 9})
		if got, want := h.SampleSize(), int(math.Ceil(c.rate*float64(c.nc))); got != want {
			t.Fatalf("N %d rate %v: sample size %d, want %d", c.nc, c.rate, got, want)
		}
		p := upload(t, be, unitRows(rng, c.batch, d))
		dp, _ := be.Alloc(c.batch * d)
		for it := 0; it < 200; it++ {
			n := 1 + rng.IntN(c.batch)
			labels := randLabels(rng, n, c.nc)
			if it%7 == 0 { // heavy duplicates
				for i := range labels {
					labels[i] = labels[i] % 3
				}
			}
			out, err := h.Loss(p, labels, dp)
			if err != nil {
				t.Fatal(err)
			}
			checkSample(t, h.Sample(), labels, c.nc, h.SampleSize())
			if out.Classes != len(h.Sample()) {
				t.Fatalf("HeadLoss.Classes %d, sample %d", out.Classes, len(h.Sample()))
			}
			h.Invalidate()
			if h.Sample() != nil {
				t.Fatal("sample survives Invalidate")
			}
		}
	}
}

// The negatives are uniform: with positives {0..9} of N = 100 and k = 30,
// every other class is in the sample with probability 20/90.
func TestPFCSampleIsUniformAndDeterministic(t *testing.T) {
	be := newBackend(t)
	const nc, d, draws = 100, 2, 3000
	mk := func() *PFC {
		return newPFC(t, be, PFCOptions{Classes: nc, Dim: d, Margin: cosFace, MaxBatch: 10, Rate: 0.3, Seed: 77})
	}
	a, b := mk(), mk()
	labels := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	p := upload(t, be, unitRows(rand.New(rand.NewPCG(1, 1)), 10, d))
	dp, _ := be.Alloc(10 * d)
	count := make([]int, nc)
	for it := 0; it < draws; it++ {
		for _, h := range []*PFC{a, b} {
			if _, err := h.Loss(p, labels, dp); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(a.Sample(), b.Sample()) {
			t.Fatal("same seed, different samples")
		}
		for _, c := range a.Sample() {
			count[c]++
		}
		a.Invalidate()
		b.Invalidate()
	}
	want := draws * 20.0 / 90
	sd := math.Sqrt(draws * (20.0 / 90) * (70.0 / 90))
	for c := 10; c < nc; c++ {
		if math.Abs(float64(count[c])-want) > 5*sd {
			t.Fatalf("class %d sampled %d times, want %.0f ± %.0f", c, count[c], want, sd)
		}
	}
}

func TestPFCLossAgainstFloat64AndFiniteDifferences(t *testing.T) {
	for _, m := range []kernels.Margin{cosFace, arcFace} {
		t.Run(m.Kind.String(), func(t *testing.T) {
			be := newBackend(t)
			const nc, d, n = 40, 6, 7
			rng := rand.New(rand.NewPCG(13, 14))
			// Plain SGD, lr 1: the step subtracts the gradient itself.
			h := newPFC(t, be, PFCOptions{Classes: nc, Dim: d, Margin: m, MaxBatch: n, Rate: 0.25, Seed: 3})
			labels := []int64{3, 0, 39, 3, 17, 1, 25}
			pHost := unitRows(rng, n, d)
			dp, _ := be.Alloc(n * d)
			w0 := download(t, be, h.Weights(), nc*d)
			got, err := h.Loss(upload(t, be, pHost), labels, dp)
			if err != nil {
				t.Fatal(err)
			}
			sample := slices.Clone(h.Sample())
			checkSample(t, sample, labels, nc, 10)
			if got.Classes != 10 {
				t.Fatalf("classes %d, want 10", got.Classes)
			}
			// The reference: full FC over the sampled rows, targets remapped.
			ws := make([][]float64, len(sample))
			for j, c := range sample {
				ws[j] = f64(w0[int(c)*d : (int(c)+1)*d])
			}
			remap := make([]int, n)
			for i, l := range labels {
				remap[i], _ = slices.BinarySearch(sample, int32(l))
			}
			p := matrix(pHost, n, d)
			f := func() float64 { return refFC(ws, p, remap, m) }
			want := f()
			checkRefLoss(t, got.Loss, want)
			dpErr := checkGrad(t, "dp", p, download(t, be, dp, n*d), f)
			if err := h.Step(1); err != nil {
				t.Fatal(err)
			}
			w1 := download(t, be, h.Weights(), nc*d)
			v1 := download(t, be, h.Momentum(), nc*d)
			in := map[int]bool{}
			for _, c := range sample {
				in[int(c)] = true
			}
			grad := make([]float32, 0, len(sample)*d)
			for c := 0; c < nc; c++ {
				for i := c * d; i < (c+1)*d; i++ {
					if !in[c] {
						if w1[i] != w0[i] || v1[i] != 0 {
							t.Fatalf("class %d outside the sample changed", c)
						}
						continue
					}
					g := w0[i] - w1[i]
					grad = append(grad, g)
					if math.Abs(float64(v1[i]-g)) > 1e-6*math.Max(1, math.Abs(float64(g))) {
						t.Fatalf("momentum of class %d: %v, gradient %v", c, v1[i], g)
					}
				}
			}
			dwErr := checkGrad(t, "dW", ws, grad, f)
			t.Logf("loss %.6f (ref %.6f), max error dp %.1e dW %.1e", got.Loss, want, dpErr, dwErr)
		})
	}
}

// With rate 1 the sample is every class in order, and Partial FC computes
// bit for bit what FC does, momentum, weight decay and Nesterov included.
func TestPFCRateOneEqualsFC(t *testing.T) {
	be := newBackend(t)
	const nc, d, n = 37, 8, 12
	sgd := kernels.SGD{Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true}
	fc := newFC(t, be, FCOptions{Classes: nc, Dim: d, Margin: arcFace, MaxBatch: n, SGD: sgd, Seed: 4})
	pfc := newPFC(t, be, PFCOptions{Classes: nc, Dim: d, Margin: arcFace, MaxBatch: n, SGD: sgd, Seed: 4, Rate: 1})
	rng := rand.New(rand.NewPCG(31, 32))
	dp1, _ := be.Alloc(n * d)
	dp2, _ := be.Alloc(n * d)
	for step := 0; step < 4; step++ {
		p := upload(t, be, unitRows(rng, n, d))
		labels := randLabels(rng, n, nc)
		a, err := fc.Loss(p, labels, dp1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pfc.Loss(p, labels, dp2)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("step %d: FC %+v, Partial FC %+v", step, a, b)
		}
		if !slices.Equal(download(t, be, dp1, n*d), download(t, be, dp2, n*d)) {
			t.Fatalf("step %d: dp differs", step)
		}
		if err := fc.Step(0.1); err != nil {
			t.Fatal(err)
		}
		if err := pfc.Step(0.1); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(download(t, be, fc.Weights(), nc*d), download(t, be, pfc.Weights(), nc*d)) {
		t.Fatal("weights differ")
	}
	if !slices.Equal(download(t, be, fc.Momentum(), nc*d), download(t, be, pfc.Momentum(), nc*d)) {
		t.Fatal("momentum differs")
	}
}

// The full-softmax loss (float64 reference over all N classes) of a fixed
// batch falls over a few Partial FC steps.
func TestPFCStepReducesLoss(t *testing.T) {
	be := newBackend(t)
	const nc, d, n = 60, 16, 24
	rng := rand.New(rand.NewPCG(41, 42))
	h := newPFC(t, be, PFCOptions{Classes: nc, Dim: d, Margin: cosFace, MaxBatch: n, Rate: 0.2, Seed: 2,
		SGD: kernels.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}})
	pHost := unitRows(rng, n, d)
	p := upload(t, be, pHost)
	labels := randLabels(rng, n, nc)
	dp, _ := be.Alloc(n * d)
	full := func() float64 {
		return refFC(matrix(download(t, be, h.Weights(), nc*d), nc, d), matrix(pHost, n, d), ints(labels), cosFace)
	}
	first := full()
	losses := []float64{first}
	for step := 0; step < 6; step++ {
		if _, err := h.Loss(p, labels, dp); err != nil {
			t.Fatal(err)
		}
		if err := h.Step(0.01); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, full())
	}
	t.Logf("full-softmax losses %.4f", losses)
	if last := losses[len(losses)-1]; !(last < 0.8*first) {
		t.Fatalf("loss fell too little: %v", losses)
	}
}

func TestPFCSecondLossBeforeStep(t *testing.T) {
	be := newBackend(t)
	const nc, d = 50, 4
	h := newPFC(t, be, PFCOptions{Classes: nc, Dim: d, Margin: cosFace, MaxBatch: 2, Rate: 0.1, Seed: 1})
	p := upload(t, be, []float32{1, 0, 0, 0, 0, 1, 0, 0})
	dp, _ := be.Alloc(2 * d)
	if _, err := h.Loss(p, []int64{7, 9}, dp); err != nil {
		t.Fatal(err)
	}
	s := slices.Clone(h.Sample())
	var outside int64
	for c := int64(0); c < nc; c++ {
		if _, ok := slices.BinarySearch(s, int32(c)); !ok {
			outside = c
			break
		}
	}
	if _, err := h.Loss(p, []int64{9, 7}, dp); err != nil {
		t.Fatalf("second loss with sampled labels: %v", err)
	}
	if !slices.Equal(s, h.Sample()) {
		t.Fatal("second Loss redrew the sample")
	}
	if _, err := h.Loss(p, []int64{7, outside}, dp); err == nil {
		t.Fatal("second Loss with a label outside the sample accepted")
	}
	if err := h.Step(0.1); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Loss(p, []int64{7, outside}, dp); err != nil {
		t.Fatalf("Loss after Step: %v", err)
	}
}

func TestPFCRejectsBadInput(t *testing.T) {
	be := newBackend(t)
	for _, r := range []float64{-0.1, 1.5, math.NaN()} {
		if h, err := NewPFC(be, PFCOptions{Classes: 8, Dim: 4, Margin: cosFace, MaxBatch: 2, Rate: r}); err == nil {
			h.Close()
			t.Errorf("rate %v accepted", r)
		}
	}
	if h, err := NewPFC(be, PFCOptions{Classes: 0, Dim: 4, Margin: cosFace, MaxBatch: 2}); err == nil {
		h.Close()
		t.Error("zero classes accepted")
	}
	const nc, d = 6, 4
	h := newPFC(t, be, PFCOptions{Classes: nc, Dim: d, Margin: cosFace, MaxBatch: 2, Rate: 0.5, Seed: 1})
	testHeadBadInput(t, be, h, nc, d)
}

func TestPFCMemory(t *testing.T) {
	// 1M classes, rate 0.1: 2 N×D copies, 3 sample copies of 100k rows,
	// B×100k logits.
	got := PFCMemory(1_000_000, 512, 256, 0)
	want := int64(4 * (2*1_000_000*512 + 3*100_000*512 + 256*100_000))
	if got < want || got > want+want/100 {
		t.Fatalf("PFCMemory = %d, want about %d", got, want)
	}
	// Small N: the sample capacity is the batch (all positives distinct).
	if got, want := pfcCapacity(100, 64, 0.1), 64; got != want {
		t.Fatalf("capacity %d, want %d", got, want)
	}
	if got, want := sampleSize(10_000, 0.1), 1000; got != want {
		t.Fatalf("sampleSize = %d, want %d", got, want)
	}
}
