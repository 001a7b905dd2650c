package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// phaseEnabled: the real producer → Kafka → the real trainer (FFC step,
// centers on NATS, checkpoints to object storage).
func (b *bench) phaseEnabled(ctx context.Context) (_ result, err error) {
	reg := prometheus.NewRegistry()
	s, p, tr, err := b.startPipeline(ctx, b.names("enabled"), pipeSpec{lead: b.o.lead, set: b.o.settings(b.o.ckptEvery), reg: reg})
	defer s.close(&err, b.log)
	if err != nil {
		return result{}, err
	}
	smp := newSampler(p, tr)
	if err := s.start(ctx, "sampler", smp, false); err != nil {
		return result{}, err
	}
	// measure calls count last at the start and at the end of the window:
	// the step-time histogram at those two moments.
	var snaps [2][2]float64
	pairs, inst, el, err := b.measure(ctx, s, func() (int64, int64) {
		snaps[0] = snaps[1]
		snaps[1][0], snaps[1][1] = histogram(reg, "ffc_trainer_step_seconds")
		return consumed(tr)
	})
	if err != nil {
		return result{}, err
	}
	st := tr.Stats()
	if err := s.stop("sampler", "producer", "trainer"); err != nil {
		return result{}, err
	}
	rows := smp.series()
	sum, n := snaps[1][0]-snaps[0][0], snaps[1][1]-snaps[0][1]
	sps, ips := rates(pairs, inst, el)
	b.rep.printf("### Step enabled: producer → Kafka → trainers.Trainer (FFC step, centers on NATS, checkpoints)\n\n")
	b.rep.printSeries(rows)
	stepsPerSec := float64(pairs) / float64(b.o.batch) / el.Seconds()
	stepTime := time.Duration(0)
	if n > 0 {
		stepTime = time.Duration(sum / n * float64(time.Second))
	}
	share := sum / el.Seconds()
	b.rep.printf("Consumed %.0f samples/s (%.0f images/s) over %s: %.1f steps/s, engine step %s on average, so the engine step took %.0f%% of the time (the rest: assembling batches, publishing centers, checkpoints); %d steps, %d checkpoints, %d centers published (%.0f per step), %d dead letters in the run.\n\n",
		sps, ips, el.Round(time.Millisecond), stepsPerSec, stepTime.Round(time.Microsecond), 100*share, st.Steps, st.Checkpoints, st.Published, float64(st.Published)/float64(max(st.Steps, 1)), st.DeadLetters)
	return result{samplesPerSec: sps, imagesPerSec: ips, note: fmt.Sprintf("%.1f steps/s, engine step %s (%.0f%% of the time); %s", stepsPerSec, stepTime.Round(time.Microsecond), 100*share, bottleneck(rows))}, nil
}
