//go:build cgo

package engine_test

// The engine on the CUDA backend's kernels, run by the CPU emulator of
// kernels/cuda (cgo), against the engine on the CPU backend.

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/kernels/cuda"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// TestEmulatedEngineMatchesCPU trains the same engine (same seed, same
// batches) on the CPU backend and on the emulated CUDA backend and compares
// every step's loss and the final embeddings: the backend composes with the
// networks, the Dynamic Class Pool and the heads as the CPU one does
// (in-place gradients, views, gathers and scatters of pool rows).
func TestEmulatedEngineMatchesCPU(t *testing.T) {
	for _, c := range engineCases() {
		t.Run(c.name, func(t *testing.T) {
			em, err := cuda.NewEmulated(cuda.Options{PoolBytes: 512 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer em.Close()
			before, ok := em.DeviceCounts()
			if !ok {
				t.Fatal("cuda.NewEmulated does not count device calls")
			}
			compareEngines(t, em, c)
			after, _ := em.DeviceCounts()
			// The pool is the only device allocation: training steps only
			// move offsets in it.
			if after.Mallocs != 1 {
				t.Errorf("%d device allocations, want 1 (the pool)", after.Mallocs)
			}
			// Waits for the stream do not grow with the number of
			// parameters or of pool rows moved. A plain step reads its
			// loss and checks the gradients (2); an FFC step checks the
			// probe features and reads up to two losses in each of its two
			// passes, then checks the gradients (at most 7). The final
			// Embed reads once.
			perStep := 2
			if c.opts.Head == engine.HeadFFC {
				perStep = 7
			}
			got, most := after.Waits-before.Waits, c.steps*perStep+1
			if got > most {
				t.Errorf("%d waits for the stream in %d steps and an embed, want at most %d", got, c.steps, most)
			}
			t.Logf("%d waits for the stream in %d steps and an embed (at most %d allowed)", got, c.steps, most)
		})
	}
}

type engineCase struct {
	name  string
	opts  engine.Options
	steps int
}

// engineCases are small engines of every head and both backbones.
func engineCases() []engineCase {
	base := engine.Options{
		Backbone: "mlp", InLen: 64, Hidden: []int{48}, Dim: 32,
		Batch: 8, Pool: 24, Classes: 40, PFCRate: 0.3,
		Margin:   kernels.Margin{Kind: kernels.ArcFace, S: 32, M: 0.5},
		SGD:      nn.SGD{Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true},
		Schedule: nn.Schedule{Kind: "step", BaseLR: 0.1, TotalSteps: 100, Gamma: 0.1, Milestones: []int{80}},
		Seed:     7,
	}
	with := func(o engine.Options, head string) engine.Options { o.Head = head; return o }
	irres := base
	irres.Backbone, irres.InLen, irres.Hidden, irres.Batch, irres.Pool = "irresnet", 1024, nil, 4, 8
	return []engineCase{
		{"mlp/ffc", with(base, engine.HeadFFC), 6},
		{"mlp/fc", with(base, engine.HeadFC), 4},
		{"mlp/pfc", with(base, engine.HeadPFC), 4},
		{"irresnet/ffc", with(irres, engine.HeadFFC), 2},
	}
}

// compareEngines trains c on the CPU backend and on be with the same seed
// and batches, and compares each step's loss and the final embeddings.
func compareEngines(t *testing.T, be kernels.Backend, c engineCase) {
	t.Helper()
	ref, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := runEngine(t, ref, c.opts, c.steps)
	got := runEngine(t, be, c.opts, c.steps)
	for s := range want.losses {
		if d := math.Abs(got.losses[s] - want.losses[s]); d > 1e-3*max(1, math.Abs(want.losses[s])) {
			t.Errorf("step %d: loss %.6f on %s, %.6f on %s", s, got.losses[s], be.Name(), want.losses[s], ref.Name())
		}
	}
	var num, den float64
	for k := range want.embed {
		d := float64(got.embed[k] - want.embed[k])
		num += d * d
		den += float64(want.embed[k]) * float64(want.embed[k])
	}
	if e := math.Sqrt(num / den); !(e < 2e-3) {
		t.Errorf("embeddings after %d steps differ: relative error %.3g", c.steps, e)
	}
	t.Logf("losses %v (%s) %v (%s)", want.losses, ref.Name(), got.losses, be.Name())
}

type engineRun struct {
	losses []float64
	embed  []float32
}

func runEngine(t *testing.T, be kernels.Backend, o engine.Options, steps int) engineRun {
	t.Helper()
	e, err := engine.New(be, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	rng := rand.New(rand.NewPCG(11, 12))
	batch := func(n int) ([]float32, []int64) {
		x := make([]float32, n*o.InLen)
		for k := range x {
			x[k] = float32(rng.NormFloat64())
		}
		l := make([]int64, n)
		for k := range l {
			l[k] = int64(rng.IntN(o.Classes))
		}
		return x, l
	}
	var r engineRun
	for range steps {
		var st engine.StepStats
		if o.Head == engine.HeadFFC {
			x, xl := batch(o.Batch)
			y, _ := batch(o.Batch)
			st, err = e.StepFFC(x, xl, y, xl)
		} else {
			x, l := batch(o.Batch)
			st, err = e.StepPlain(x, l)
		}
		if err != nil {
			t.Fatalf("%s: step %d: %v", be.Name(), len(r.losses), err)
		}
		r.losses = append(r.losses, st.Loss)
	}
	x, _ := batch(o.Batch)
	r.embed = make([]float32, o.Batch*o.Dim)
	if err := e.Embed(x, o.Batch, r.embed); err != nil {
		t.Fatal(err)
	}
	return r
}
