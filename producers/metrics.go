package producers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/schemas"
)

// metrics are the Producer's Prometheus series, all labelled with the
// shard ("i/n") so that producers sharing a registry stay apart.
type metrics struct {
	samples     *prometheus.CounterVec // by topic, acknowledged
	failures    *prometheus.CounterVec // by topic, given up
	retried     *prometheus.CounterVec // by topic, written again after Kafka refused them
	outage      *prometheus.GaugeVec   // by health condition, 1 while it fails
	s3Retries   prometheus.Counter
	deadLetters *prometheus.CounterVec // by reason
	lag         *prometheus.GaugeVec   // by topic
	newIDs      prometheus.Counter
	skippedKeys prometheus.Counter
	badMarkers  prometheus.Counter
	rescans     prometheus.Counter
	freshPairs  prometheus.Counter
	removedIDs  prometheus.Counter
	// Bucket notifications: messages read, event records of the bucket,
	// rejected ones by kind, failed reads.
	notifications     prometheus.Counter
	notifyEvents      prometheus.Counter
	badNotifications  *prometheus.CounterVec
	notifyFetchErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, p *Producer) (*metrics, error) {
	cl := prometheus.Labels{"shard": p.cfg.Shard.String()}
	m := &metrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_producer_samples_total", ConstLabels: cl,
			Help: "Messages acknowledged by Kafka, by topic (id pairs, instance samples, dead letters)."}, []string{"topic"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_producer_produce_failures_total", ConstLabels: cl,
			Help: "Messages given up, by topic: Kafka rejected the message itself, or still refused it when the producer stopped (never during an outage: refused messages are retried)."}, []string{"topic"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_producer_kafka_retried_total", ConstLabels: cl,
			Help: "Messages written again after Kafka refused them, by topic."}, []string{"topic"}),
		outage: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ffc_producer_outage", ConstLabels: cl,
			Help: "1 while the health condition fails (producer.kafka: Kafka unreachable or refusing writes, the streams held; producer.object-storage; producer.lag; producer.started: not started yet), else 0."}, []string{"condition"}),
		s3Retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_s3_retries_total", ConstLabels: cl,
			Help: "Object-storage requests retried after a transient error."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_producer_dead_letters_total", ConstLabels: cl,
			Help: "Objects that failed validation and were sent to the dead-letter topic, by reason."}, []string{"reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ffc_producer_lag_messages", ConstLabels: cl,
			Help: "Messages of the topic not yet committed by the trainer group (Σ end − committed offset), last measured."}, []string{"topic"}),
		newIDs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_new_ids_total", ConstLabels: cl,
			Help: "IDs put into rotation after the initial listing (announced or found by a rescan)."}),
		skippedKeys: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_skipped_keys_total", ConstLabels: cl,
			Help: "Distinct objects under ids/ that are not ids/<id>/<name>.png (each counted once per run)."}),
		badMarkers: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_bad_markers_total", ConstLabels: cl,
			Help: "Distinct keys under announce/ that are not announce/<20-digit unix nanos>-<id>[.remove] (each counted once per run)."}),
		rescans: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_rescans_total", ConstLabels: cl,
			Help: "Full listings of ids/ completed after the first."}),
		freshPairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_fresh_pairs_total", ConstLabels: cl,
			Help: "Pairs of new IDs handed to the writer on the fresh lane."}),
		removedIDs: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_removed_ids_total", ConstLabels: cl,
			Help: "Removal markers of this shard's IDs handled: the ID left the catalog and a REMOVE record went to the fresh lane."}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_notifications_total", ConstLabels: cl,
			Help: "Bucket notification messages read from the notification topic."}),
		notifyEvents: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_notification_events_total", ConstLabels: cl,
			Help: "Event records of this bucket in the notification messages."}),
		badNotifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_producer_bad_notifications_total", ConstLabels: cl,
			Help: "Notification messages or records rejected, by kind (json: not an event message; record: an event record without a name or key; key: an object key that does not unescape)."}, []string{"kind"}),
		notifyFetchErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_producer_notification_fetch_errors_total", ConstLabels: cl,
			Help: "Reads of the notification topic that failed (retried with backoff; polling goes on)."}),
	}
	for _, k := range notifyBadKinds {
		m.badNotifications.WithLabelValues(k)
	}
	for _, r := range schemas.Reasons() {
		m.deadLetters.WithLabelValues(r)
	}
	for _, t := range []string{p.cfg.TopicByID, p.cfg.TopicInstance, p.cfg.TopicFresh, p.cfg.TopicDeadLetter} {
		m.samples.WithLabelValues(t)
		m.failures.WithLabelValues(t)
		m.retried.WithLabelValues(t)
	}
	for _, c := range []string{CondStarted, CondKafka, CondObjectStorage, CondLag} {
		m.outage.WithLabelValues(c)
	}
	for _, t := range []string{p.cfg.TopicByID, p.cfg.TopicInstance, p.cfg.TopicFresh} {
		m.lag.WithLabelValues(t)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: cl}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl}, f)
	}
	blocked := func(topic string, g *gate) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ffc_producer_flow_blocked_seconds_total",
			Help:        "Time the stream (or the fresh lane) waited for the trainers (flow control) or for the writer (in-flight bound).",
			ConstLabels: prometheus.Labels{"shard": p.cfg.Shard.String(), "topic": topic}},
			func() float64 { return g.stats().blocked.Seconds() })
	}
	cs := []prometheus.Collector{
		m.samples, m.failures, m.retried, m.outage, m.s3Retries, m.deadLetters, m.lag, m.newIDs, m.skippedKeys,
		m.badMarkers, m.rescans, m.freshPairs, m.removedIDs,
		m.notifications, m.notifyEvents, m.badNotifications, m.notifyFetchErrors,
		gauge("ffc_producer_kafka_pending_messages", "Messages Kafka refused that wait for a retry.",
			func() float64 { return float64(p.out.npend.Load()) }),
		gauge("ffc_producer_catalog_ids", "IDs in this producer's catalog (its shard of the bucket).",
			func() float64 { return float64(p.cat.Len()) }),
		gauge("ffc_producer_catalog_images", "Images in this producer's catalog, bad ones included.",
			func() float64 { return float64(p.cat.Images()) }),
		gauge("ffc_producer_catalog_bad_images", "Images in the catalog that failed validation.",
			func() float64 { return float64(p.cat.BadImages()) }),
		gauge("ffc_producer_catalog_bytes", "Memory held by the catalog index.",
			func() float64 { return float64(p.cat.MemBytes()) }),
		counter("ffc_producer_id_passes_total", "Passes over the IDs begun by the id stream.",
			func() float64 { return float64(p.rot.passCount()) }),
		gauge("ffc_producer_instance_epoch", "Current epoch of the instance stream (from 0).",
			func() float64 { return float64(p.epoch.Load()) }),
		blocked(p.cfg.TopicByID, p.gByID),
		blocked(p.cfg.TopicInstance, p.gInst),
		blocked(p.cfg.TopicFresh, p.gFresh),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
