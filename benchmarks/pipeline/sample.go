package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
)

// sample is one row of the time series.
type sample struct {
	t                       time.Duration
	pairs, instances        int64 // produced
	consumed                int64
	lagByID, lagInst        int64
	heldByID, heldInstances bool
}

// sampler records the producer's counters and lag and the trainer's
// consumed count every second. It is a stage of the phase's group, so
// that the group starts and stops it with the pipeline.
type sampler struct {
	stage.Lifecycle
	p  *producers.Producer
	tr *trainers.Trainer

	mu   sync.Mutex
	rows []sample
}

func newSampler(p *producers.Producer, tr *trainers.Trainer) *sampler {
	return &sampler{p: p, tr: tr}
}

// Run samples every second until ctx ends.
func (s *sampler) Run(ctx context.Context) error {
	ctx, end, err := s.Begin(ctx)
	if err != nil {
		return fmt.Errorf("sampler: %w", err)
	}
	defer end()
	s.SetReady()
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		ps, ts := s.p.Stats(), s.tr.Stats()
		s.mu.Lock()
		s.rows = append(s.rows, sample{t: time.Since(start), pairs: ps.ByID.Produced, instances: ps.Instance.Produced,
			consumed: int64(ts.Pairs + ts.Instances), lagByID: ps.ByID.Lag, lagInst: ps.Instance.Lag,
			heldByID: ps.ByID.Blocking, heldInstances: ps.Instance.Blocking})
		s.mu.Unlock()
	}
}

// Close stops Run.
func (s *sampler) Close() error {
	s.Stop()
	return nil
}

// series returns the rows so far.
func (s *sampler) series() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.rows...)
}

// consumed returns the id pairs and instances tr has consumed into
// batches (steps).
func consumed(tr *trainers.Trainer) (pairs, inst int64) {
	st := tr.Stats()
	return int64(st.Pairs), int64(st.Instances)
}

// measure waits for the first consumed sample and the warm-up, then
// counts for the duration, while the stages run. count returns (pairs,
// instances).
func (b *bench) measure(ctx context.Context, s *stages, count func() (int64, int64)) (pairs, inst int64, el time.Duration, err error) {
	if err := s.until(ctx, 90*time.Second, "nothing consumed", func() bool { p, i := count(); return p+i > 0 }); err != nil {
		return 0, 0, 0, fmt.Errorf("measure: %w", err)
	}
	if err := s.wait(ctx, b.o.warmup); err != nil {
		return 0, 0, 0, fmt.Errorf("measure: warm-up: %w", err)
	}
	p0, i0 := count()
	t0 := time.Now()
	if err := s.wait(ctx, b.o.duration); err != nil {
		return 0, 0, 0, fmt.Errorf("measure: %w", err)
	}
	p1, i1 := count()
	return p1 - p0, i1 - i0, time.Since(t0), nil
}

// rates are samples/s and images/s of pairs id pairs and inst instances
// over el.
func rates(pairs, inst int64, el time.Duration) (samples, images float64) {
	s := el.Seconds()
	return float64(pairs+inst) / s, float64(2*pairs+inst) / s
}
