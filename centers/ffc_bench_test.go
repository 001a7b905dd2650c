package centers

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// BenchmarkFFCLoss times one FFC Loss call as benchmarks/heads runs it
// (B = 256 probe rows, D = 512, 1.5·B gallery features inserted this pass
// with B/2 refreshed, half the probe rows held): the head alone, without
// the pool's inserts, at the default chunk of probe rows (0) and larger
// ones, which hold more logits. It reports allocations per call.
//
//	go test -run '^$' -bench FFCLoss -benchmem ./centers/
func BenchmarkFFCLoss(b *testing.B) {
	const d, batch = 512, 256
	for _, c := range []struct{ q, chunk int }{{10_000, 0}, {100_000, 0}, {100_000, 64}, {100_000, 86}, {100_000, 128}, {100_000, 256}} {
		q := c.q
		b.Run(fmt.Sprintf("Q=%d/chunk=%d", q, c.chunk), func(b *testing.B) {
			be := newBackend(b)
			ins := 3 * batch / 2
			pool := newPool(b, be, q, d, ins)
			rng := rand.New(rand.NewPCG(1, 2))
			labels := make([]int64, ins)
			for i := range labels {
				labels[i] = int64(i % batch) // the first B/2 labels twice: refreshed
				if i >= batch {
					labels[i] = int64(i - batch/2)
				}
			}
			if _, err := pool.Insert(upload(b, be, unitRows(rng, ins, d)), labels); err != nil {
				b.Fatal(err)
			}
			head, err := NewFFC(be, pool, FFCOptions{Margin: kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4}, MaxBatch: batch, ChunkRows: c.chunk})
			if err != nil {
				b.Fatal(err)
			}
			defer head.Close()
			probe := make([]int64, batch)
			for i := range probe {
				probe[i] = int64(i) // rows ≥ 3B/4 are fresh
				if i >= batch/2 {
					probe[i] = int64(1_000_000 + i)
				}
			}
			p := upload(b, be, unitRows(rng, batch, d))
			dp, err := be.Alloc(batch * d)
			if err != nil {
				b.Fatal(err)
			}
			out, err := head.Loss(p, probe, dp)
			if err != nil {
				b.Fatal(err)
			}
			if out.Refreshed == 0 || out.Held == 0 || out.Fresh == 0 {
				b.Fatalf("want refreshed, held and fresh rows: %+v", out)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := head.Loss(p, probe, dp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(2*2*batch*q*d)/b.Elapsed().Seconds()*float64(b.N)/1e9, "GFLOP/s")
		})
	}
}
