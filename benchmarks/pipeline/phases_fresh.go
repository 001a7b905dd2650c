package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
)

// fresh is what happened to one new ID.
type fresh struct {
	id                  uint64
	images              int
	fromFirst, fromAnn  time.Duration
	timedOut            bool
	stepBefore, stepGot int64
}

// phaseFresh: the real producer (a small lead) → Kafka → the real trainer
// → NATS → a broadcast.Replica; new IDs are uploaded and announced one at
// a time while the pipeline runs, and each is timed until it has a center
// in the replica.
func (b *bench) phaseFresh(ctx context.Context) (_ result, err error) {
	t := b.names("fresh")
	s, p, tr, err := b.startPipeline(ctx, t, b.o.freshLead, b.o.freshCkptEvery, false, prometheus.NewRegistry())
	defer s.close(&err, b.log)
	if err != nil {
		return result{}, err
	}
	rp, err := broadcast.NewReplica(b.js, broadcast.ReplicaOptions{Model: t.model, Codec: broadcast.NewProtoCodec(b.o.dim), Dim: b.o.dim,
		Log: b.log.With("component", "replica")})
	if err != nil {
		return result{}, fmt.Errorf("replica: %w", err)
	}
	if err := s.start(ctx, "replica", rp, false); err != nil {
		return result{}, err
	}
	// Warm up: the trainer has stepped and checkpointed at least once.
	if err := s.until(ctx, 90*time.Second, "the trainer did not checkpoint (or the replica saw no step)", func() bool {
		return tr.Stats().Checkpoints > 0 && rp.Stats().LastStep >= 0
	}); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
	smp := newSampler(p, tr)
	if err := s.start(ctx, "sampler", smp, false); err != nil {
		return result{}, err
	}
	var got []fresh
	for i := range b.o.newIDs {
		f, err := b.freshOne(ctx, s, rp, b.o.ids+i)
		if err != nil {
			return result{}, fmt.Errorf("new ID %d: %w", idBase+b.o.ids+i, err)
		}
		got = append(got, f)
	}
	st := tr.Stats()
	if err := s.stop("sampler", "producer", "trainer", "replica"); err != nil {
		return result{}, err
	}
	return b.reportFresh(got, smp.series(), st), nil
}

// freshOne uploads the images of synthetic identity idx, announces it and
// waits (up to --fresh-timeout) for its center in the replica.
func (b *bench) freshOne(ctx context.Context, s *stages, rp *broadcast.Replica, idx int) (fresh, error) {
	f := fresh{id: idBase + uint64(idx), images: b.gen.InstancesOf(uint64(idx)), stepBefore: rp.Stats().LastStep}
	if err := b.putImage(ctx, idx, 0); err != nil {
		return f, err
	}
	landed := time.Now()
	for k := 1; k < f.images; k++ {
		if err := b.putImage(ctx, idx, k); err != nil {
			return f, err
		}
	}
	if err := producers.Announce(ctx, b.mc, b.bucket, f.id); err != nil {
		return f, fmt.Errorf("announce %d: %w", f.id, err)
	}
	announced := time.Now()
	for {
		if c, ok := rp.Get(f.id); ok {
			f.fromFirst, f.fromAnn, f.stepGot = time.Since(landed), time.Since(announced), c.Step
			return f, nil
		}
		if time.Since(landed) > b.o.freshTimeout {
			f.timedOut = true
			return f, nil
		}
		if err := s.wait(ctx, 2*time.Millisecond); err != nil {
			return f, err
		}
	}
}

// reportFresh prints the new IDs' table and the series and returns the
// phase's result.
func (b *bench) reportFresh(got []fresh, rows []sample, st trainers.Stats) result {
	b.rep.printf("### Freshness: new ID's first image in object storage → its center in a NATS replica\n\n")
	b.rep.printf("Producer lead %d, announce/ polled every %s, trainer checkpoint every %d steps; %d new IDs uploaded (all images, then the announcement) one at a time, each after the previous one's center arrived.\n\n",
		b.o.freshLead, b.o.pollInterval, b.o.freshCkptEvery, b.o.newIDs)
	var lat, ann []time.Duration
	timeouts := 0
	b.rep.printf("| new ID | images | first image → center | announcement → center | replica step before → center's step |\n|---:|---:|---:|---:|---|\n")
	for _, f := range got {
		if f.timedOut {
			timeouts++
			b.rep.printf("| %d | %d | timed out (> %s) | — | %d → — |\n", f.id, f.images, b.o.freshTimeout, f.stepBefore)
			continue
		}
		lat, ann = append(lat, f.fromFirst), append(ann, f.fromAnn)
		b.rep.printf("| %d | %d | %s | %s | %d → %d |\n", f.id, f.images, f.fromFirst.Round(time.Millisecond), f.fromAnn.Round(time.Millisecond), f.stepBefore, f.stepGot)
	}
	b.rep.printf("\n")
	b.rep.printSeries(rows)
	r := result{timeouts: timeouts}
	if len(lat) > 0 {
		r.p50, r.p99 = quantile(lat, 0.5), quantile(lat, 0.99)
		r.note = fmt.Sprintf("freshness p50 %s, p99 %s, max %s (announcement → center p50 %s, p99 %s); %d of %d got a center",
			r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), quantile(lat, 1).Round(time.Millisecond),
			quantile(ann, 0.5).Round(time.Millisecond), quantile(ann, 0.99).Round(time.Millisecond), len(lat), len(got))
	} else {
		r.note = fmt.Sprintf("none of the %d new IDs got a center", len(got))
	}
	b.rep.printf("Freshness: %s. Trainer: %d steps, %d checkpoints in the phase.\n\n", r.note, st.Steps, st.Checkpoints)
	return r
}
