package engine

import (
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// BenchmarkStep times one training step of the yardstick IR-ResNet (D =
// 128, B = 64) as benchmarks/torchref runs it: ffc is StepFFC against a
// pool of Q = 1000 slots (two passes of 1.5·B = 96 probe rows), fc is
// StepPlain over N = 10000 classes. It reports allocations per step
// (allocs/op) and probe images/s.
//
//	go test -run '^$' -bench Step -benchmem ./trainers/engine/
func BenchmarkStep(b *testing.B) {
	for _, head := range []string{HeadFFC, HeadFC} {
		b.Run(head, func(b *testing.B) {
			o := Options{
				Backbone: "irresnet", Dim: 128, Head: head, Batch: 64, Pool: 1000, Classes: 10_000, Seed: 1,
				Margin:   kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4},
				SGD:      nn.SGD{Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true},
				Schedule: nn.Schedule{Kind: "constant", BaseLR: 0.1},
			}
			if head == HeadFC {
				o.Pool = 0
			}
			e, err := New(testBackend(b), o)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			images := func(rows int) []float32 {
				x := make([]float32, rows*e.InLen())
				for i := range x {
					x[i] = float32(2*rng.Float64() - 1)
				}
				return x
			}
			labels := func(n int) []int64 {
				l := make([]int64, n)
				for i := range l {
					l[i] = int64(rng.IntN(o.Classes))
				}
				return l
			}
			// x = [a1; h1], y = [a2; h2]: B ids, then two halves of B
			// instances, as the dual loader makes them.
			ids, inst := labels(o.Batch), labels(o.Batch)
			xl := append(append([]int64(nil), ids...), inst[:o.Batch/2]...)
			yl := append(append([]int64(nil), ids...), inst[o.Batch/2:]...)
			x, y := images(len(xl)), images(len(yl))
			pl := labels(o.Batch)
			step := func() error {
				if head == HeadFFC {
					_, err := e.StepFFC(x, xl, y, yl)
					return err
				}
				_, err := e.StepPlain(x[:o.Batch*e.InLen()], pl)
				return err
			}
			if err := step(); err != nil { // warm-up: first-step allocations
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := step(); err != nil {
					b.Fatal(err)
				}
			}
			perStep := o.Batch
			if head == HeadFFC {
				perStep = 2 * len(xl)
			}
			b.ReportMetric(float64(perStep*b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
