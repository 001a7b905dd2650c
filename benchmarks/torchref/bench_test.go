package main

import (
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/engine"
)

// BenchmarkStep times our side of the comparison in-process: one StepFFC
// (two passes of 1.5·B = 96 probe rows against a pool of Q = 1000 slots)
// or StepPlain (N = 10000 classes) of the yardstick IR-ResNet at D = 128,
// B = 64, on the same inputs as the driver's children, with the backend's
// default threads. It reports allocations per step (allocs/op) and probe
// images/s.
//
//	go test -run '^$' -bench Step -benchmem ./benchmarks/torchref/
func BenchmarkStep(b *testing.B) {
	for _, mode := range []string{"ffc", "fc"} {
		b.Run(mode, func(b *testing.B) {
			c := config{Mode: mode, Batch: 64, Dim: 128, Pool: 1000, Classes: 10_000, Seed: 1, LR: 0.1, WeightDecay: 5e-4}
			be, err := cpu.New(cpu.Options{})
			if err != nil {
				b.Fatal(err)
			}
			e, err := engine.New(be, engineOptions(c))
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			step := stepFunc(c, e, rand.New(rand.NewPCG(c.Seed, 11)))
			if _, err := step(); err != nil { // warm-up: first-step allocations
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := step(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(c.imagesPerStep()*b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
