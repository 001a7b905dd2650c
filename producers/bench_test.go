package producers

import (
	"log/slog"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// BenchmarkEmit measures the emitting rate against the embedded stack
// with flow control off: both streams over the fixture bucket (20 IDs of
// 1–5 32×32 PNGs), each message fetched from S3, validated, encoded and
// acknowledged by Kafka. One op is one acknowledged message of either
// stream; samples/s is the combined rate.
//
//	go test -run '^$' -bench Emit -benchtime 5000x ./producers/
func BenchmarkEmit(b *testing.B) {
	mc := s3Client(b)
	f := newFixture(b, mc)
	cfg := testConfig(b, mc, f.bucket)
	cfg.MaxLead = -1
	cfg.Concurrency = DefaultConcurrency
	cfg.Log = slog.New(slog.DiscardHandler)
	p := start(b, cfg)

	acked := func() (byid, inst int64) {
		return p.gByID.stats().acked, p.gInst.stats().acked
	}
	testutil.WaitTrue(b, "the streams to flow", func() bool { x, y := acked(); return x > 0 && y > 0 })
	b0, i0 := acked()
	start := time.Now()
	target := b0 + i0
	for b.Loop() {
		target++
		for {
			g := p.gByID
			g.mu.Lock()
			ch := g.changed
			g.mu.Unlock()
			if x, y := acked(); x+y >= target {
				break
			}
			select {
			case <-ch:
			case <-time.After(time.Millisecond): // the instance gate moved
			}
		}
	}
	el := time.Since(start).Seconds()
	b1, i1 := acked()
	b.ReportMetric(float64(b1-b0+i1-i0)/el, "samples/s")
	b.ReportMetric(float64(b1-b0)/el, "pairs/s")
	b.ReportMetric(float64(i1-i0)/el, "instances/s")
}
