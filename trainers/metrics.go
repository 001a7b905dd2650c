package trainers

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	steps       prometheus.Counter
	samples     *prometheus.CounterVec
	stepSeconds prometheus.Histogram
	loss        prometheus.Gauge
	poolLen     prometheus.Gauge
	evictions   prometheus.Counter
	published   prometheus.Counter
	deadLetters *prometheus.CounterVec
	ckptTime    prometheus.Gauge
	ckptAge     prometheus.GaugeFunc
	skipped     prometheus.Counter
	// consumerLag: per assigned partition (lagTracker).
	consumerLag *prometheus.GaugeVec

	// Faults survived.
	deadLetterFailures  prometheus.Counter
	deadLetterTruncated prometheus.Counter
	ckptFailures        prometheus.Counter
	pruneFailures       prometheus.Counter
	fetchErrors         prometheus.Counter
	health              *prometheus.GaugeVec
	partitions          prometheus.Gauge

	// The fresh lane.
	fresh     prometheus.Counter
	removed   prometheus.Counter
	forgotten prometheus.Counter
	freshness prometheus.Histogram
}

// newMetrics registers the trainer's series on reg. lastDurable is when
// the last durable checkpoint was written or restored (Unix nanoseconds;
// the start of the run before there is one): ffc_trainer_checkpoint_age_seconds
// is read from it at each scrape.
func newMetrics(reg prometheus.Registerer, lastDurable *atomic.Int64) (*metrics, error) {
	m := &metrics{
		steps:       prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_steps_total", Help: "Training steps taken."}),
		samples:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_trainer_samples_total", Help: "Messages consumed into steps, by topic."}, []string{"topic"}),
		stepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ffc_trainer_step_seconds", Help: "Wall time of one FFC step.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		loss:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_loss", Help: "Loss of the last step (L1 + L2)."}),
		poolLen:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_pool_labels", Help: "Labels in the dynamic class pool."}),
		evictions:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_pool_evictions_total", Help: "Labels evicted from the pool."}),
		published:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_centers_published_total", Help: "Center updates published on NATS."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_trainer_dead_letters_total", Help: "Messages rejected and dead-lettered, by reason."}, []string{"reason"}),
		ckptTime:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_checkpoint_unix_seconds", Help: "Time of the last durable checkpoint."}),
		ckptAge: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ffc_trainer_checkpoint_age_seconds",
			Help: "Seconds since the last durable checkpoint was written or restored (since the run started when there is none yet; with consume-only, since its offsets were last checkpointed)."},
			func() float64 { return time.Since(time.Unix(0, lastDurable.Load())).Seconds() }),
		consumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ffc_trainer_consumer_lag",
			Help: "Messages of an assigned partition not yet trained on: its high watermark minus the trainer's next offset to consume " +
				"(the first message not in a completed step; it runs ahead of the group's committed offset, which waits for a checkpoint). " +
				"High watermarks come with each step's messages and are listed every 5 s; partitions are dropped when a rebalance takes them away."},
			[]string{"topic", "partition"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_steps_skipped_total", Help: "Steps abandoned for a non-finite loss or gradient."}),

		deadLetterFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_dead_letter_failures_total",
			Help: "Rejected messages whose dead-letter write failed after its retries: skipped, logged with their offset."}),
		deadLetterTruncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_dead_letters_truncated_total",
			Help: "Dead-letter records whose payload was truncated to DeadLetterMaxBytes."}),
		ckptFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_checkpoint_failures_total",
			Help: "Checkpoints that failed after their retries (offsets held at the last durable checkpoint)."}),
		pruneFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_checkpoint_prune_failures_total",
			Help: "Prunes of old checkpoints that failed after their retries (not fatal)."}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_fetch_errors_total",
			Help: "Fetch errors of the partition readers (retried with backoff)."}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ffc_trainer_health",
			Help: "1 when the health condition holds, 0 when it fails (storage, kafka, kafka-topics, kafka-fetch)."}, []string{"condition"}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_assigned_partitions",
			Help: "Partitions assigned to this member in the current generation of the group."}),
		fresh: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_fresh_ids_total",
			Help: "New IDs of the fresh lane given a provisional center between steps."}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_removed_ids_total",
			Help: "REMOVE records applied: IDs taken out of the pool, tombstones published."}),
		forgotten: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_forgotten_samples_total",
			Help: "Samples of removed IDs consumed without training on them."}),
		freshness: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ffc_trainer_freshness_seconds",
			Help:    "New ID announced (its marker's time) → its center committed on NATS.",
			Buckets: []float64{0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300}}),
	}
	for _, c := range []prometheus.Collector{m.steps, m.samples, m.stepSeconds, m.loss, m.poolLen, m.evictions, m.published, m.deadLetters, m.ckptTime, m.ckptAge, m.skipped, m.consumerLag,
		m.deadLetterFailures, m.deadLetterTruncated, m.ckptFailures, m.pruneFailures, m.fetchErrors, m.health, m.partitions,
		m.fresh, m.removed, m.forgotten, m.freshness} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
