package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/trainers"
)

// phaseDisabled: the real producer → Kafka → the real trainer with
// ConsumeOnly (consumption, validation, dead letters, batch assembly and
// offset commits; no engine step).
func (b *bench) phaseDisabled(ctx context.Context) (_ result, err error) {
	s, p, tr, err := b.startPipeline(ctx, b.names("disabled"),
		pipeSpec{lead: b.o.lead, set: b.o.settings(b.o.ckptEvery), consumeOnly: true, reg: prometheus.NewRegistry()})
	defer s.close(&err, b.log)
	if err != nil {
		return result{}, err
	}
	smp := newSampler(p, tr)
	if err := s.start(ctx, "sampler", smp, false); err != nil {
		return result{}, err
	}
	pairs, inst, el, err := b.measure(ctx, s, func() (int64, int64) { return consumed(tr) })
	if err != nil {
		return result{}, err
	}
	ps, ts := p.Stats(), tr.Stats()
	if err := s.stop("sampler", "producer", "trainer"); err != nil {
		return result{}, err
	}
	rows := smp.series()
	sps, ips := rates(pairs, inst, el)
	b.rep.printf("### Step disabled: producer → Kafka → trainers.Trainer with ConsumeOnly (decode, validate, assemble, commit; no step)\n\n")
	b.rep.printSeries(rows)
	b.rep.printf("Consumed %.0f samples/s (%.0f images/s) over %s: %d id pairs + %d instances in %d batches; %d dead letters in the run. The producer wrote %d id pairs and %d instances, held by flow control %s (byid) and %s (instance) in all.\n\n",
		sps, ips, el.Round(time.Millisecond), pairs, inst, (pairs+inst)/int64(2*b.o.batch), ts.DeadLetters,
		ps.ByID.Produced, ps.Instance.Produced, ps.ByID.Blocked.Round(time.Millisecond), ps.Instance.Blocked.Round(time.Millisecond))
	return result{samplesPerSec: sps, imagesPerSec: ips, note: bottleneck(rows)}, nil
}

// phaseConsume: the ConsumeOnly trainer alone over topics filled
// directly.
func (b *bench) phaseConsume(ctx context.Context) (_ result, err error) {
	t := b.names("consume")
	if err := b.provision(ctx, t); err != nil {
		return result{}, err
	}
	wrote, wel, err := b.fill(ctx, t, b.o.consumeMsgs)
	if err != nil {
		return result{}, err
	}
	tr, err := b.trainer(t, b.o.settings(b.o.ckptEvery), true, prometheus.NewRegistry())
	if err != nil {
		return result{}, err
	}
	s := b.stages(ctx)
	defer s.close(&err, b.log)
	t0 := time.Now()
	if err := s.start(ctx, "trainer", tr, false); err != nil {
		return result{}, err
	}
	total := int64(2 * (b.o.consumeMsgs / b.o.batch) * b.o.batch)
	w, err := consumeWindow(ctx, s, tr, total, 90*time.Second+b.o.duration)
	if err != nil {
		return result{}, fmt.Errorf("consume: %w", err)
	}
	if err := s.stop("trainer"); err != nil {
		return result{}, err
	}
	if w.first.IsZero() || !w.last.After(w.first) {
		return result{}, errors.New("the trainer consumed nothing")
	}
	el := w.last.Sub(w.first)
	sps := float64(w.lastN-w.firstN) / el.Seconds()
	fillRate := float64(wrote) / wel.Seconds()
	b.rep.printf("### Consume only: Kafka → trainers.Trainer with ConsumeOnly, no producer\n\n")
	b.rep.printf("Filled the topics with %d id pairs + %d instances in %s (one kafka-go writer per topic: %.0f messages/s). Consumed %d of them (whole batches) in %s after joining the group (%s): %.0f samples/s (%.0f images/s) from the first batch to the last; %d dead letters.\n\n",
		wrote/2, wrote/2, wel.Round(time.Millisecond), fillRate, w.lastN, w.last.Sub(t0).Round(time.Millisecond), w.first.Sub(t0).Round(time.Millisecond), sps, 1.5*sps, tr.Stats().DeadLetters)
	return result{samplesPerSec: sps, imagesPerSec: 1.5 * sps, fillPerSec: fillRate, note: fmt.Sprintf("consumption alone (id pairs = instances); topic fill %.0f messages/s", fillRate)}, nil
}

// window is when consumption was first and last seen to advance, with the
// samples consumed by then.
type window struct {
	first, last   time.Time
	firstN, lastN int64
}

// consumeWindow follows tr until it has consumed total samples, nothing
// more arrived for 3 s after the first batch, or limit has passed.
func consumeWindow(ctx context.Context, s *stages, tr *trainers.Trainer, total int64, limit time.Duration) (window, error) {
	var w window
	t0 := time.Now()
	for w.lastN < total && time.Since(t0) < limit {
		if err := s.wait(ctx, 20*time.Millisecond); err != nil {
			return w, err
		}
		p, i := consumed(tr)
		if n := p + i; n > w.lastN {
			if w.first.IsZero() {
				w.first, w.firstN = time.Now(), n
			}
			w.last, w.lastN = time.Now(), n
		}
		if !w.first.IsZero() && time.Since(w.last) > 3*time.Second {
			break
		}
	}
	return w, nil
}
