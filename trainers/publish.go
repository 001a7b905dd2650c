package trainers

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/centers/broadcast"
)

// publishing is the trainer's center publisher running beside Run.
type publishing struct {
	pub    *broadcast.Publisher
	cancel context.CancelFunc
	done   chan error // Run's result
	// announced takes the announcement times of new IDs whose provisional
	// center was just queued; watchFreshness observes each once it is
	// committed.
	announced chan time.Time
	watched   chan struct{} // closed when watchFreshness returns
}

// observe queues a freshness observation; when the queue is full (NATS
// down for long) the observation is dropped, never the center.
func (p *publishing) observe(at time.Time) {
	select {
	case p.announced <- at:
	default:
	}
}

// watchFreshness observes announcement → commit for every queued
// announcement until ctx ends: Flush returns once everything queued
// before it is committed.
func (p *publishing) watchFreshness(ctx context.Context, h prometheus.Observer) {
	defer close(p.watched)
	for {
		var batch []time.Time
		select {
		case <-ctx.Done():
			return
		case at := <-p.announced:
			batch = append(batch, at)
		}
	drain:
		for len(batch) < cap(p.announced) {
			select {
			case at := <-p.announced:
				batch = append(batch, at)
			default:
				break drain
			}
		}
		if p.pub.Flush(ctx) != nil {
			return // ended or fenced
		}
		for _, at := range batch {
			h.Observe(time.Since(at).Seconds())
		}
	}
}

// startPublisher starts the publisher (it takes a new epoch, retrying
// while NATS is unreachable) and queues the restored pool's centers under
// it, so that what a dead run published past its last checkpoint is
// superseded (the IDs the dead run inserted after it are trained again
// from the same offsets).
func (t *Trainer) startPublisher(ctx context.Context, restored int64) error {
	pub, err := broadcast.NewPublisher(t.cfg.JS, broadcast.PublisherOptions{
		Model: t.cfg.Model, Codec: t.codec(), Restored: restored,
		MaxBacklog: max(1<<16, 4*t.set.Pool), Health: t.health, Log: t.cfg.Log,
	})
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &publishing{pub: pub, cancel: cancel, done: make(chan error, 1), announced: make(chan time.Time, 1024), watched: make(chan struct{})}
	go func() { p.done <- pub.Run(pctx) }()
	go p.watchFreshness(pctx, t.metrics.freshness)
	t.mu.Lock()
	t.pub = p
	t.mu.Unlock()
	if err := registerPublisherMetrics(t.cfg.Registry, pub); err != nil {
		t.cfg.Log.Warn("trainer: publisher metrics", "err", err)
	}
	var ups []broadcast.Update
	err = t.eng.Pool().EachCenter(func(label int64, slot int32, row uint8, center []float32) error {
		ups = append(ups, broadcast.Update{ID: uint64(label), Vector: append([]float32(nil), center...), Slot: slot, Row: int32(row), Kind: broadcast.Refresh})
		return nil
	})
	if err != nil {
		return fmt.Errorf("trainer: republish the restored pool: %w", err)
	}
	if len(ups) == 0 {
		return nil
	}
	// The pool is the state after step restored-1, the last the
	// checkpoint covers; training goes on from step restored.
	return pub.Publish(ctx, restored-1, ups)
}

// codec is the center codec: signing (and verifying the step records it
// reads back) with SigningKey when set.
func (t *Trainer) codec() broadcast.ProtoCodec {
	c := broadcast.NewProtoCodec(t.set.Dim)
	if k := t.cfg.SigningKey; k != nil {
		pub, _ := k.Public().(ed25519.PublicKey)
		c = c.WithSigner(k).WithVerifier(pub)
	}
	return c
}

// stopPublisher publishes what is queued (bounded by the publisher's
// acknowledgement timeout while NATS answers) and stops the publisher.
func (t *Trainer) stopPublisher() {
	t.mu.Lock()
	p := t.pub
	t.mu.Unlock()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	flushed := make(chan error, 1)
	go func() { flushed <- p.pub.Flush(ctx) }()
	select {
	case err := <-flushed:
		if err != nil {
			st := p.pub.Stats()
			t.cfg.Log.Warn("trainer: center changes left unpublished at shutdown; the next start republishes its pool", "subjects", st.Backlog, "err", err)
		}
	case err := <-p.done: // fenced, or failed
		p.done <- err
	}
	p.cancel()
	<-p.watched
	if err := <-p.done; err != nil && !errors.Is(err, broadcast.ErrFenced) {
		t.cfg.Log.Warn("trainer: publisher", "err", err)
	}
}

// publishChanges queues a step's center changes. A fenced publisher is
// an error (this trainer is stale and must stop); a shutdown while the
// backlog is full leaves the step unpublished (its checkpoint's pool is
// republished by the next start).
func (t *Trainer) publishChanges(ctx context.Context, step int64, ups []broadcast.Update) error {
	err := t.pub.pub.Publish(ctx, step, ups)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, broadcast.ErrFenced):
		return fmt.Errorf("trainer: step %d: %w", step, err)
	case ctx.Err() != nil:
		t.cfg.Log.Warn("trainer: shutdown while the center backlog is full; step left unpublished", "step", step)
		return nil
	}
	return fmt.Errorf("trainer: step %d: %w", step, err)
}

// countInserted counts the step's pool insertions (bounded memory: the
// IDs themselves are on NATS, not kept here).
func countInserted(changes []centers.Change) int {
	n := 0
	for _, c := range changes {
		if c.Kind == centers.Inserted {
			n++
		}
	}
	return n
}

// registerPublisherMetrics exports the publisher's backlog, staleness,
// epoch and failed attempts.
func registerPublisherMetrics(reg prometheus.Registerer, pub *broadcast.Publisher) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ffc_trainer_centers_backlog",
			Help: "IDs whose center changes wait to be published on NATS"},
			func() float64 { return float64(pub.Stats().Backlog) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ffc_trainer_centers_staleness_seconds",
			Help: "age of the oldest center change not yet published on NATS (0: none)"},
			func() float64 { return pub.Stats().Staleness.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ffc_trainer_epoch",
			Help: "the epoch this trainer holds (fenced; grows at each start of the job)"},
			func() float64 { return float64(pub.Stats().Epoch) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ffc_trainer_centers_publish_failures_total",
			Help: "failed attempts to publish center changes (retried with backoff)"},
			func() float64 { return float64(pub.Stats().Failures) }),
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}
