package nn

import (
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// BenchmarkIRResNet measures the yardstick backbone (1×32×32, D = 512) at
// batch 64 on the CPU backend, with its two threading models (products
// split into bands across goroutines, OpenBLAS single-threaded; or
// OpenBLAS's own threads, cpu.Options.BLASThreads):
//
//   - fwd+bwd: one training forward and backward of the probe;
//   - ffc-probe+gallery: what an FFC iteration spends per probe batch on the
//     backbone (SPEC's "probe-net images/s"): probe forward+backward, a
//     gallery forward in train mode, zeroing the gradients, an SGD step and
//     the gallery's moving average;
//   - forward-eval: inference only.
//
// images/s counts probe images; GFLOP/s counts the convolution and linear
// FLOPs (backward = 2× forward, minus the input gradient of the first
// convolution, which is not computed).
func BenchmarkIRResNet(b *testing.B) {
	for _, o := range []struct {
		name string
		opts cpu.Options
	}{{"panels", cpu.Options{}}, {"blas-threads", cpu.Options{BLASThreads: true}}} {
		be, err := cpu.New(o.opts) // sets OpenBLAS's process-wide threads for this run
		if err != nil {
			b.Fatal(err)
		}
		b.Run(o.name, func(b *testing.B) { benchIRResNet(b, be) })
	}
}

func benchIRResNet(b *testing.B, be kernels.Backend) {
	const batch = 64
	probe, err := NewIRResNet(be, IRResNetOptions{MaxBatch: batch, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	gallery, err := NewIRResNet(be, IRResNetOptions{MaxBatch: batch, Seed: 1, ForwardOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	x := upload(b, be, randn(r, batch*probe.InLen(), 1))
	dy := upload(b, be, randn(r, batch*probe.Dim(), 0.05))
	fwd := float64(probe.FLOPs())
	stem := probe.Layers()[0].(*Conv2d)
	train := 3*fwd - float64(stem.FLOPs())
	opt := SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}

	cases := []struct {
		name  string
		flops float64 // per image
		step  func() error
	}{
		{"fwd+bwd", train, func() error {
			if _, err := probe.Forward(x, batch, true); err != nil {
				return err
			}
			return probe.Backward(dy)
		}},
		{"ffc-probe+gallery", train + fwd, func() error {
			if err := MovingAverage(be, gallery.Params(), probe.Params(), 0.99); err != nil {
				return err
			}
			if _, err := gallery.Forward(x, batch, true); err != nil {
				return err
			}
			if err := ZeroGrads(be, probe.Params()); err != nil {
				return err
			}
			if _, err := probe.Forward(x, batch, true); err != nil {
				return err
			}
			if err := probe.Backward(dy); err != nil {
				return err
			}
			return opt.Step(be, probe.Params(), 1e-3)
		}},
		{"forward-eval", fwd, func() error {
			_, err := probe.Forward(x, batch, false)
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if err := c.step(); err != nil { // warm up
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu0 := processCPU()
			for b.Loop() {
				if err := c.step(); err != nil {
					b.Fatal(err)
				}
			}
			s := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(batch/s, "images/s")
			b.ReportMetric(c.flops*batch/s/1e9, "GFLOP/s")
			// CPU time per batch: on a shared machine wall time varies
			// with the load, CPU time much less (busy-waiting BLAS
			// threads still inflate it).
			b.ReportMetric((processCPU()-cpu0).Seconds()/float64(b.N), "cpu-s/batch")
			b.ReportMetric(0, "ns/op")
		})
	}
}
