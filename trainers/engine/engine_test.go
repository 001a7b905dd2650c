package engine

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// memImages is an in-memory data set of synthetic identities: per class,
// the last instance is held out (identification), and classes from
// openFrom on are the open set.
type memImages struct {
	size  int
	imgs  [][]byte
	metas []dataset.Meta
}

func (m *memImages) Len() int                { return len(m.imgs) }
func (m *memImages) ImageSize() int          { return m.size }
func (m *memImages) Meta(i int) dataset.Meta { return m.metas[i] }
func (m *memImages) ReadImage(i int, dst []byte) (dataset.Meta, error) {
	copy(dst, m.imgs[i])
	return m.metas[i], nil
}

func synthSet(t testing.TB, classes, perClass, openFrom int) *memImages {
	t.Helper()
	g, err := synth.New(synth.Options{Seed: 5, IDs: uint64(classes), Alpha: 1, Min: perClass, Max: perClass, Size: 32})
	if err != nil {
		t.Fatal(err)
	}
	m := &memImages{size: 32}
	for c := 0; c < classes; c++ {
		for k := 0; k < perClass; k++ {
			img, err := g.Image(uint64(c), k)
			if err != nil {
				t.Fatal(err)
			}
			split := dataset.SplitTrain
			switch {
			case c >= openFrom:
				split = dataset.SplitOpenset
			case k == perClass-1:
				split = dataset.SplitHeldout
			}
			m.imgs = append(m.imgs, img)
			m.metas = append(m.metas, dataset.Meta{Class: c, Source: k, Split: split})
		}
	}
	return m
}

func testBackend(t testing.TB) kernels.Backend {
	t.Helper()
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return be
}

func mlpOptions(head string) Options {
	return Options{
		Backbone: "mlp", InLen: 32 * 32, Hidden: []int{128}, Dim: 64, Head: head,
		Batch: 16, Pool: 64, Classes: 60, PFCRate: 0.2,
		Margin:   kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4},
		SGD:      nn.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true},
		Schedule: nn.Schedule{Kind: "step", BaseLR: 0.1, TotalSteps: 150, Gamma: 0.1, Milestones: []int{120}},
		Seed:     3,
	}
}

// TestLearnsSynthetic trains each head briefly on synthetic identities
// with the mlp backbone and checks the loss goes down and held-out
// identification is far above chance.
func TestLearnsSynthetic(t *testing.T) {
	ds := synthSet(t, 60, 6, 50) // 50 train classes (chance 2%), 10 open-set classes
	for _, head := range []string{HeadFFC, HeadFC, HeadPFC} {
		t.Run(head, func(t *testing.T) {
			be := testBackend(t)
			e, err := New(be, mlpOptions(head))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			res, err := Train(context.Background(), e, ds, TrainOptions{Steps: 150, DualLoader: true, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := Evaluate(context.Background(), e, ds, EvalOptions{ImpostorPairs: 5000})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: loss %.3f → %.3f, top-1 %.2f (chance %.2f), TAR@1e-2 %.2f, %.0f img/s", head, res.FirstLoss, res.LastLoss, ev.Top1, ev.ChanceTop1, ev.TAR[0].TAR, res.ImagesPerS)
			if res.Skipped != 0 || res.Steps != 150 {
				t.Errorf("steps %d skipped %d", res.Steps, res.Skipped)
			}
			if !(res.LastLoss < 0.8*res.FirstLoss) {
				t.Errorf("loss %.3f → %.3f: did not go down by 20%%", res.FirstLoss, res.LastLoss)
			}
			if ev.Top1 < 10*ev.ChanceTop1 {
				t.Errorf("top-1 %.3f is not far above chance %.3f", ev.Top1, ev.ChanceTop1)
			}
		})
	}
}

// TestFFCStepPoolSemantics checks the dual batch: after a step the pool
// holds exactly the x labels (the y insert was rolled back).
func TestFFCStepPoolSemantics(t *testing.T) {
	be := testBackend(t)
	e, err := New(be, mlpOptions(HeadFFC))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n, in := 8, 32*32
	x, y := sinCos(n * in)
	xl := []int64{1, 2, 3, 4, 5, 6, 7, 8}
	yl := []int64{1, 2, 3, 4, 50, 60, 70, 80}
	st, err := e.StepFFC(x, xl, y, yl)
	if err != nil {
		t.Fatal(err)
	}
	if st.PoolLen != 8 || len(st.Changes) != 8 {
		t.Fatalf("pool %d, changes %d: want the 8 x labels", st.PoolLen, len(st.Changes))
	}
	for _, l := range yl[4:] {
		if e.Pool().LRU().View(l) >= 0 {
			t.Errorf("label %d of the rolled-back y insert is in the pool", l)
		}
	}
	// L2: probe(x) against the pool holding y's labels: x labels 5..8 are
	// fresh. L1: probe(y) against the pool holding x's labels: 50..80 are
	// fresh.
	if st.L1.Fresh != 4 || st.L2.Fresh != 4 || st.L1.Held != 4 || st.L2.Held != 4 {
		t.Errorf("L1 held/fresh %d/%d, L2 %d/%d: want 4/4 each", st.L1.Held, st.L1.Fresh, st.L2.Held, st.L2.Fresh)
	}
}

// sinCos returns n floats of sines and n of cosines: inputs for a step.
func sinCos(n int) (x, y []float32) {
	x, y = make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], y[i] = float32(math.Sin(float64(i))), float32(math.Cos(float64(i)))
	}
	return x, y
}

func TestStepRejectsBadInput(t *testing.T) {
	be := testBackend(t)
	e, err := New(be, mlpOptions(HeadFFC))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in := 32 * 32
	good := make([]float32, 2*in)
	if _, err := e.StepFFC(good[:in+1], []int64{1, 2}, good, []int64{1, 2}); err == nil {
		t.Error("wrong image size accepted")
	}
	if _, err := e.StepFFC(nil, nil, nil, nil); err == nil {
		t.Error("empty batch accepted")
	}
	if _, err := e.StepFFC(good, []int64{1, 2}, good[:in], []int64{1}); err == nil {
		t.Error("halves of different sizes accepted")
	}
	// NaN input: skipped, state kept.
	bad := append([]float32(nil), good...)
	bad[17] = float32(math.NaN())
	before := e.Pool().Len()
	if _, err := e.StepFFC(bad, []int64{1, 2}, good, []int64{1, 2}); !errors.Is(err, ErrSkipped) {
		t.Errorf("NaN input: err = %v, want ErrSkipped", err)
	}
	if e.Pool().Len() != before || e.StepCount() != 0 {
		t.Error("a skipped step changed the pool or the step count")
	}
	// Pool too small for the batch: refused with the reason.
	o := mlpOptions(HeadFFC)
	o.Pool = 10
	if _, err := New(be, o); err == nil {
		t.Error("pool below 1.5·batch accepted")
	}
	// FC labels out of range: a clear error, no panic.
	fc, err := New(be, mlpOptions(HeadFC))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if _, err := fc.StepPlain(good, []int64{1, 60}); err == nil {
		t.Error("FC label out of range accepted")
	}
}

// TestCheckpointRoundTrip: an engine restored from a checkpoint embeds
// exactly as the one that wrote it (weights and BatchNorm statistics).
func TestCheckpointRoundTrip(t *testing.T) {
	ds := synthSet(t, 30, 4, 25)
	be := testBackend(t)
	e, err := New(be, mlpOptions(HeadFFC))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := Train(context.Background(), e, ds, TrainOptions{Steps: 20, DualLoader: true}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := e.SaveCheckpoint(dir); err != nil {
		t.Fatal(err)
	}
	e2, err := New(be, mlpOptions(HeadFFC))
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.LoadProbe(dir); err != nil {
		t.Fatal(err)
	}
	a, err := embedAll(context.Background(), e, ds, evalImages(ds, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	var reports []dataset.Progress
	b, err := embedAll(context.Background(), e2, ds, evalImages(ds, 0), func(p dataset.Progress) { reports = append(reports, p) })
	if err != nil {
		t.Fatal(err)
	}
	if n := len(reports); n == 0 || !reports[n-1].Final || reports[n-1].Done != int64(ds.Len()) || reports[n-1].Total != int64(ds.Len()) ||
		(n > 1 && (reports[0].Final || reports[0].Done >= reports[n-1].Done)) {
		t.Errorf("embedding progress %+v: want rising reports ending with a final %d/%d", reports, ds.Len(), ds.Len())
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("embedding %d differs after restore: %v vs %v", i, a[i], b[i])
		}
	}
	o := mlpOptions(HeadFFC)
	o.Dim = 32
	e3, err := New(be, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e3.Close()
	if err := e3.LoadProbe(dir); err == nil {
		t.Error("checkpoint of another architecture loaded")
	}
}

// TestStatePartsResume: an engine restored from its state parts takes the
// next step exactly as the original does.
func TestStatePartsResume(t *testing.T) {
	ds := synthSet(t, 30, 4, 25)
	be := testBackend(t)
	mk := func() *Engine {
		e, err := New(be, mlpOptions(HeadFFC))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		return e
	}
	a := mk()
	if _, err := Train(context.Background(), a, ds, TrainOptions{Steps: 7, DualLoader: true}); err != nil {
		t.Fatal(err)
	}
	saved := map[string][]byte{}
	for _, p := range a.StateParts() {
		var buf bytes.Buffer
		if err := p.Save(&buf); err != nil {
			t.Fatalf("save %s: %v", p.Name, err)
		}
		saved[p.Name] = buf.Bytes()
	}
	b := mk()
	for _, p := range b.StateParts() {
		if err := p.Load(bytes.NewReader(saved[p.Name])); err != nil {
			t.Fatalf("load %s: %v", p.Name, err)
		}
	}
	if b.StepCount() != 7 {
		t.Fatalf("restored step %d", b.StepCount())
	}
	n, in := 8, 32*32
	x, y := make([]float32, n*in), make([]float32, n*in)
	for i := range x {
		x[i], y[i] = float32(math.Sin(float64(i)*0.1)), float32(math.Cos(float64(i)*0.07))
	}
	xl := []int64{0, 1, 2, 3, 4, 5, 6, 7}
	yl := []int64{0, 1, 2, 3, 10, 11, 12, 13}
	sa, err := a.StepFFC(x, xl, y, yl)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.StepFFC(x, xl, y, yl)
	if err != nil {
		t.Fatal(err)
	}
	if sa.Loss != sb.Loss || sa.PoolLen != sb.PoolLen || len(sa.Changes) != len(sb.Changes) {
		t.Fatalf("resumed step differs: loss %v vs %v, pool %d vs %d", sa.Loss, sb.Loss, sa.PoolLen, sb.PoolLen)
	}
}

// TestGradsFinite: the gradient check names the first parameter whose
// gradient holds a NaN or Inf, on a backend with and without
// kernels.FiniteChecker.
func TestGradsFinite(t *testing.T) {
	be := testBackend(t)
	for _, b := range []kernels.Backend{be, struct{ kernels.Backend }{be}} {
		e, err := New(b, mlpOptions(HeadFFC))
		if err != nil {
			t.Fatal(err)
		}
		params := e.probe.Params()
		for _, p := range params {
			if err := b.Fill(p.N, 0, p.G); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.gradsFinite(); err != nil {
			t.Fatalf("zero gradients: %v", err)
		}
		for _, k := range []int{len(params) - 1, 1} {
			p := params[k]
			g := make([]float32, p.N)
			g[p.N-1] = float32(math.Inf(1))
			if err := b.Upload(p.G, g); err != nil {
				t.Fatal(err)
			}
			err := e.gradsFinite()
			if !errors.Is(err, centers.ErrNonFinite) || !strings.Contains(err.Error(), "gradient of "+p.Name+":") {
				t.Errorf("Inf in the gradient of %s: %v, want ErrNonFinite naming it", p.Name, err)
			}
		}
		e.Close()
	}
}
