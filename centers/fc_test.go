package centers

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

var (
	cosFace = kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4}
	arcFace = kernels.Margin{Kind: kernels.ArcFace, S: 32, M: 0.5}
)

// refFC is the full FC margin softmax loss in float64, written plainly:
// the mean over the rows of −log softmax(z)_t with z_j = S·cos_j,
// z_t = S·φ(cos_t), cos_j = ⟨p, w_j/‖w_j‖⟩.
func refFC(w, p [][]float64, labels []int, m kernels.Margin) float64 {
	wn := make([][]float64, len(w))
	for j, row := range w {
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		nrm := math.Max(math.Sqrt(ss), normEps)
		wn[j] = make([]float64, len(row))
		for i, v := range row {
			wn[j][i] = v / nrm
		}
	}
	var total float64
	for r, pr := range p {
		z := make([]float64, len(wn))
		for j, row := range wn {
			var c float64
			for i := range pr {
				c += pr[i] * row[i]
			}
			z[j] = float64(m.S) * c
			if j == labels[r] {
				phi, _ := m.Target(c)
				z[j] = float64(m.S) * phi
			}
		}
		total += softmaxCE(z, labels[r])
	}
	return total / float64(len(p))
}

// softmaxCE is the cross-entropy −log softmax(z)_t of the logits z, in
// float64.
func softmaxCE(z []float64, t int) float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, v)
	}
	var sum float64
	for _, v := range z {
		sum += math.Exp(v - mx)
	}
	return -(z[t] - mx - math.Log(sum))
}

// unitRows returns rows×d random rows of unit length.
func unitRows(rng *rand.Rand, rows, d int) []float32 {
	out := make([]float32, rows*d)
	for r := 0; r < rows; r++ {
		var ss float64
		for i := 0; i < d; i++ {
			v := rng.NormFloat64()
			out[r*d+i] = float32(v)
			ss += v * v
		}
		for i := 0; i < d; i++ {
			out[r*d+i] = float32(float64(out[r*d+i]) / math.Sqrt(ss))
		}
	}
	return out
}

// matrix splits a rows×d row-major slice into float64 rows.
func matrix(x []float32, rows, d int) [][]float64 {
	out := make([][]float64, rows)
	for r := range out {
		out[r] = f64(x[r*d : (r+1)*d])
	}
	return out
}

func ints(labels []int64) []int {
	out := make([]int, len(labels))
	for i, l := range labels {
		out[i] = int(l)
	}
	return out
}

func randLabels(rng *rand.Rand, n, classes int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(rng.IntN(classes))
	}
	return out
}

// fdCheck compares grad (flattened like x) with central differences of f
// over every element of x; it returns the largest error relative to
// max(1, |numeric|).
func fdCheck(x [][]float64, grad []float32, f func() float64) float64 {
	const h = 1e-6
	var maxErr float64
	d := len(x[0])
	for r := range x {
		for i := range x[r] {
			orig := x[r][i]
			x[r][i] = orig + h
			up := f()
			x[r][i] = orig - h
			down := f()
			x[r][i] = orig
			num := (up - down) / (2 * h)
			maxErr = math.Max(maxErr, math.Abs(num-float64(grad[r*d+i]))/math.Max(1, math.Abs(num)))
		}
	}
	return maxErr
}

// checkRefLoss fails t unless the loss got is within 1e-4 (relative to
// max(1, |want|)) of the float64 reference want.
func checkRefLoss(t *testing.T, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
		t.Fatalf("loss %v, float64 reference %v", got, want)
	}
}

// checkGrad reports an error on t when fdCheck(x, grad, f) exceeds 2e-3,
// naming the gradient what; it returns that error.
func checkGrad(t *testing.T, what string, x [][]float64, grad []float32, f func() float64) float64 {
	t.Helper()
	maxErr := fdCheck(x, grad, f)
	if maxErr > 2e-3 {
		t.Errorf("%s differs from finite differences: max relative error %.2e", what, maxErr)
	}
	return maxErr
}

// newFC returns a full FC head on be, closed when the test ends.
func newFC(t *testing.T, be kernels.Backend, o FCOptions) *FC {
	t.Helper()
	h, err := NewFC(be, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func TestFCLossAgainstFloat64AndFiniteDifferences(t *testing.T) {
	for _, m := range []kernels.Margin{cosFace, arcFace} {
		t.Run(m.Kind.String(), func(t *testing.T) {
			be := newBackend(t)
			const nc, d, n = 11, 6, 7
			rng := rand.New(rand.NewPCG(3, 4))
			h := newFC(t, be, FCOptions{Classes: nc, Dim: d, Margin: m, MaxBatch: n, Seed: 5})
			labels := []int64{3, 0, 10, 3, 7, 1, 5}
			pHost := unitRows(rng, n, d)
			dp, err := be.Alloc(n * d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Loss(upload(t, be, pHost), labels, dp)
			if err != nil {
				t.Fatal(err)
			}
			if got.Rows != n || got.Classes != nc {
				t.Fatalf("rows %d classes %d", got.Rows, got.Classes)
			}
			w := matrix(download(t, be, h.Weights(), nc*d), nc, d)
			p := matrix(pHost, n, d)
			lab := ints(labels)
			f := func() float64 { return refFC(w, p, lab, m) }
			want := f()
			checkRefLoss(t, got.Loss, want)
			dpErr := checkGrad(t, "dp", p, download(t, be, dp, n*d), f)
			g, err := h.WeightGrad()
			if err != nil {
				t.Fatal(err)
			}
			dwErr := checkGrad(t, "dW", w, download(t, be, g, nc*d), f)
			t.Logf("loss %.6f (ref %.6f), max error dp %.1e dW %.1e", got.Loss, want, dpErr, dwErr)
		})
	}
}

// Two Loss calls before Step add their weight gradients: two equal halves
// give twice the gradient of the mean over their concatenation.
func TestFCAccumulatesOverLossCalls(t *testing.T) {
	be := newBackend(t)
	const nc, d, n = 9, 5, 4
	rng := rand.New(rand.NewPCG(8, 9))
	opts := FCOptions{Classes: nc, Dim: d, Margin: cosFace, MaxBatch: 2 * n, Seed: 1}
	a := newFC(t, be, opts)
	b := newFC(t, be, opts)
	pHost := unitRows(rng, 2*n, d)
	labels := randLabels(rng, 2*n, nc)
	dp, _ := be.Alloc(2 * n * d)
	p1 := upload(t, be, pHost[:n*d])
	p2 := upload(t, be, pHost[n*d:])
	if _, err := a.Loss(p1, labels[:n], dp); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Loss(p2, labels[n:], dp); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Loss(upload(t, be, pHost), labels, dp); err != nil {
		t.Fatal(err)
	}
	ga, err := a.WeightGrad()
	if err != nil {
		t.Fatal(err)
	}
	gb, err := b.WeightGrad()
	if err != nil {
		t.Fatal(err)
	}
	x, y := download(t, be, ga, nc*d), download(t, be, gb, nc*d)
	for i := range x {
		if math.Abs(float64(x[i])-2*float64(y[i])) > 1e-4*math.Max(1, math.Abs(float64(x[i]))) {
			t.Fatalf("element %d: accumulated %v, 2×concatenated %v", i, x[i], 2*y[i])
		}
	}
	if _, err := a.Loss(p1, labels[:n], dp); err == nil {
		t.Error("Loss after WeightGrad accepted")
	}
}

func TestFCStepReducesLoss(t *testing.T) {
	be := newBackend(t)
	const nc, d, n = 40, 16, 32
	rng := rand.New(rand.NewPCG(21, 22))
	h := newFC(t, be, FCOptions{Classes: nc, Dim: d, Margin: cosFace, MaxBatch: n, Seed: 2,
		SGD: kernels.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}})
	p := upload(t, be, unitRows(rng, n, d))
	labels := randLabels(rng, n, nc)
	dp, _ := be.Alloc(n * d)
	var losses []float64
	for step := 0; step < 6; step++ {
		l, err := h.Loss(p, labels, dp)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l.Loss)
		if err := h.Step(0.01); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("losses %.4f", losses)
	for i := 1; i < len(losses); i++ {
		if !(losses[i] < losses[i-1]) {
			t.Fatalf("loss did not decrease at step %d: %v", i, losses)
		}
	}
	if !(losses[len(losses)-1] < 0.8*losses[0]) {
		t.Fatalf("loss fell too little: %v", losses)
	}
}

func TestFCRejectsBadInput(t *testing.T) {
	be := newBackend(t)
	for _, o := range []FCOptions{
		{Classes: 0, Dim: 4, Margin: cosFace, MaxBatch: 2},
		{Classes: 4, Dim: 0, Margin: cosFace, MaxBatch: 2},
		{Classes: 4, Dim: 4, Margin: cosFace, MaxBatch: 0},
		{Classes: 4, Dim: 4, Margin: kernels.Margin{Kind: kernels.CosFace}, MaxBatch: 2},
	} {
		if h, err := NewFC(be, o); err == nil {
			h.Close()
			t.Errorf("options %+v accepted", o)
		}
	}
	const nc, d = 6, 4
	h := newFC(t, be, FCOptions{Classes: nc, Dim: d, Margin: cosFace, MaxBatch: 2, Seed: 1})
	testHeadBadInput(t, be, h, nc, d)
}

// testHeadBadInput checks a head with max batch 2 over nc classes of
// dimension d.
func testHeadBadInput(t *testing.T, be kernels.Backend, h Head, nc, d int) {
	t.Helper()
	p := upload(t, be, []float32{1, 0, 0, 0, 0, 1, 0, 0})
	dp, _ := be.Alloc(2 * d)
	if _, err := h.Loss(p, nil, dp); err == nil {
		t.Error("empty batch accepted")
	}
	if _, err := h.Loss(p, make([]int64, 3), dp); err == nil {
		t.Error("batch above max accepted")
	}
	for _, bad := range [][]int64{{0, -1}, {int64(nc), 0}, {1 << 40, 0}} {
		if _, err := h.Loss(p, bad, dp); err == nil {
			t.Errorf("labels %v accepted", bad)
		}
	}
	before := download(t, be, weightsOf(h), nc*d)
	nan := float32(math.NaN())
	pn := upload(t, be, []float32{nan, 0, 0, 0, 1, 0, 0, 0})
	if _, err := h.Loss(pn, []int64{1, 2}, dp); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN features: err = %v, want ErrNonFinite", err)
	}
	// The failed loss left no gradient behind: Step changes nothing.
	if err := h.Step(0.1); err != nil {
		t.Fatal(err)
	}
	after := download(t, be, weightsOf(h), nc*d)
	for i := range before {
		if before[i] != after[i] {
			t.Fatal("Step after a failed Loss changed the weights")
		}
	}
	if err := h.Step(float32(math.NaN())); err == nil {
		t.Error("NaN learning rate accepted")
	}
	// A good batch still works after the errors.
	if _, err := h.Loss(p, []int64{1, int64(nc - 1)}, dp); err != nil {
		t.Errorf("good batch after errors: %v", err)
	}
}

func weightsOf(h Head) kernels.Buffer {
	switch h := h.(type) {
	case *FC:
		return h.Weights()
	case *PFC:
		return h.Weights()
	}
	return nil
}

func TestFCMemory(t *testing.T) {
	// 4 N×D copies + N norms + B×N logits + 2B.
	if got, want := FCMemory(1000, 8, 4), int64(4*(4*1000*8+1000+4*1000+8)); got != want {
		t.Fatalf("FCMemory = %d, want %d", got, want)
	}
	// 1M classes of 512: 8 GiB of weights-like copies plus 1 GiB of logits.
	if got := FCMemory(1_000_000, 512, 256); got < 9_000_000_000 || got > 9_300_000_000 {
		t.Fatalf("FCMemory(1M) = %d", got)
	}
}

// Step time of the heads at a small size: N = Q = 10k, D = 512, B = 256.
// GFLOP/s counts the matrix products only: FC does three of 2·B·N·D
// (logits, feature gradient, weight gradient); FFC two per logit set.

const benchN, benchD, benchB = 10_000, 512, 256

func BenchmarkFCHead(b *testing.B) {
	be := newBenchBackend(b)
	h, err := NewFC(be, FCOptions{Classes: benchN, Dim: benchD, Margin: cosFace, MaxBatch: benchB,
		SGD: kernels.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	benchHead(b, be, h, 3)
}

func BenchmarkPFCHead(b *testing.B) {
	be := newBenchBackend(b)
	h, err := NewPFC(be, PFCOptions{Classes: benchN, Dim: benchD, Margin: cosFace, MaxBatch: benchB,
		SGD: kernels.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	benchHead(b, be, h, 3*DefaultPFCRate)
}

func benchHead(b *testing.B, be kernels.Backend, h Head, gemms float64) {
	rng := rand.New(rand.NewPCG(1, 2))
	p, err := be.Alloc(benchB * benchD)
	if err != nil {
		b.Fatal(err)
	}
	if err := be.Upload(p, unitRows(rng, benchB, benchD)); err != nil {
		b.Fatal(err)
	}
	dp, _ := be.Alloc(benchB * benchD)
	labels := randLabels(rng, benchB, benchN)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Loss(p, labels, dp); err != nil {
			b.Fatal(err)
		}
		if err := h.Step(0.1); err != nil {
			b.Fatal(err)
		}
	}
	flops := gemms * 2 * benchB * benchN * benchD * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkFFCHead(b *testing.B) {
	be := newBenchBackend(b)
	const q = benchN
	pool, err := NewPool(be, PoolOptions{Slots: q, Dim: benchD, MaxBatch: 2 * benchB, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	h, err := NewFFC(be, pool, FFCOptions{Margin: cosFace, MaxBatch: benchB})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	p, _ := be.Alloc(benchB * benchD)
	dp, _ := be.Alloc(benchB * benchD)
	g, _ := be.Alloc(3 * benchB / 2 * benchD)
	if err := be.Upload(p, unitRows(rng, benchB, benchD)); err != nil {
		b.Fatal(err)
	}
	if err := be.Upload(g, unitRows(rng, 3*benchB/2, benchD)); err != nil {
		b.Fatal(err)
	}
	var sets float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// 1.5·B gallery features: the first half of the batch's labels
		// twice (inserted, then refreshed) and B/2 others; so half the
		// probe rows are held and both logit sets are computed.
		labels := randLabels(rng, benchB, 1<<40)
		gl := append(append(append([]int64(nil), labels[:benchB/2]...), labels[:benchB/2]...), randLabels(rng, benchB/2, 1<<40)...)
		if err := pool.BeginPass(); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Insert(g, gl); err != nil {
			b.Fatal(err)
		}
		out, err := h.Loss(p, labels, dp)
		if err != nil {
			b.Fatal(err)
		}
		sets++
		if out.Refreshed > 0 {
			sets++
		}
	}
	flops := sets * 2 * 2 * benchB * q * benchD
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func newBenchBackend(b *testing.B) kernels.Backend {
	b.Helper()
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	return be
}
