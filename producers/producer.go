package producers

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/schemas"
)

// Producer publishes a bucket's images to Kafka: the id stream and the
// instance stream, under flow control, with new IDs put into rotation as
// they are announced and their first pairs sent on the fresh lane, and
// removed IDs forgotten. Create it with New, run it with Run.
type Producer struct {
	cfg  Config
	log  *slog.Logger
	seed uint64

	maxImageBytes, maxMessageBytes int

	reg      prometheus.Registerer
	gatherer prometheus.Gatherer
	met      *metrics

	cat                  *Catalog
	rot                  *idRotation
	gByID, gInst, gFresh *gate
	epoch                atomic.Uint64
	// seqByID numbers the IDPair messages of both lanes (id stream and
	// fresh lane); seqInst the Samples.
	seqByID     atomic.Uint64
	seqInst     atomic.Uint64
	newIDs      atomic.Int64
	skippedKeys atomic.Int64
	badMarkers  atomic.Int64
	rescans     atomic.Int64
	polls       atomic.Int64 // polls of announce/ done (a test waits on it)

	// fresh holds the queues of the fresh-lane workers (fresh.go);
	// freshPairs and removedIDs count their work.
	fresh      []chan freshJob
	freshPairs atomic.Int64
	removedIDs atomic.Int64
	// markers takes the marker keys that bucket notifications report to
	// the watcher (notify.go); notes counts the notifications.
	markers chan string
	notes   notifyCounters
	// warned holds the bad keys (objects, markers) and notification
	// problems already warned about, so each is logged once per run.
	warned *onceSet

	dlMu     sync.Mutex
	dlCounts map[string]int64

	transport *kafka.Transport
	client    *kafka.Client
	writer    *kafka.Writer
	// retryWriter writes the messages Kafka refused again, synchronously.
	retryWriter *kafka.Writer
	out         *outbox
	// measurements counts the lag measurements taken (a test waits on it).
	measurements atomic.Int64
	lagFailing   bool // the flow goroutine's view of CondLag

	health     *stage.Health
	s3Mu       sync.Mutex
	s3Down     atomic.Bool
	s3Retries  atomic.Int64
	s3Failures atomic.Int64

	stage.Lifecycle
}

// New validates cfg (after defaults) and returns a Producer; it connects
// to nothing until Run. Its metrics are registered on cfg.Registry, or on
// a registry of its own (see Gatherer).
func New(cfg Config) (*Producer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Producer{
		cfg:      cfg,
		log:      cfg.Log.With("component", "producer", "shard", cfg.Shard.String()),
		seed:     cfg.Seed,
		cat:      newCatalog(),
		gByID:    newGate(cfg.MaxLead, cfg.MaxInFlight),
		gInst:    newGate(cfg.MaxLead, cfg.MaxInFlight),
		gFresh:   newGate(cfg.FreshMaxLead, cfg.MaxInFlight),
		fresh:    newFreshQueues(cfg.Concurrency),
		markers:  make(chan string, markerQueueLen),
		warned:   newOnceSet(maxWarnedKeys),
		dlCounts: map[string]int64{},
		out:      newOutbox(),
	}
	if p.seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		p.seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	p.rot = newIDRotation(p.seed)
	lim := schemas.DefaultLimits()
	p.maxImageBytes, p.maxMessageBytes = lim.MaxImageBytes, lim.MaxMessageBytes
	if cfg.Limits.MaxImageBytes > 0 {
		p.maxImageBytes = cfg.Limits.MaxImageBytes
	}
	if cfg.Limits.MaxMessageBytes > 0 {
		p.maxMessageBytes = cfg.Limits.MaxMessageBytes
	}
	if cfg.Registry != nil {
		p.reg = cfg.Registry
		p.gatherer, _ = cfg.Registry.(prometheus.Gatherer)
	} else {
		r := prometheus.NewRegistry()
		p.reg, p.gatherer = r, r
	}
	met, err := newMetrics(p.reg, p)
	if err != nil {
		return nil, fmt.Errorf("producers: register metrics: %w", err)
	}
	p.met = met
	// Not ready until Run has reached both services and started the
	// streams. The changes are logged by setCond, not by Health.
	p.health = &stage.Health{OnChange: func(name string, ok bool) { p.met.outage.WithLabelValues(name).Set(b2f(!ok)) }}
	p.health.Set(CondStarted, false, "starting")
	p.health.Set(CondKafka, false, "not connected yet")
	p.health.Set(CondObjectStorage, false, "not connected yet")
	p.s3Down.Store(true)
	return p, nil
}

// setCond sets a health condition and logs its change: a failure at warn
// level with its reason, a condition that holds (again) at info level.
func (p *Producer) setCond(name string, ok bool, reason string) {
	if !p.health.Set(name, ok, reason) || name == CondStarted {
		return
	}
	if !ok {
		p.log.Warn("health: "+name+" failing", "reason", reason)
		return
	}
	p.log.Info("health: " + name + " ok")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Health is the producer's live readiness: CondStarted, CondKafka,
// CondObjectStorage and, once a lag measurement failed, CondLag. The commands serve it on
// /readyz (internal/metricsrv).
func (p *Producer) Health() *stage.Health { return p.health }

// Ready (from stage.Lifecycle) is closed once Run has created the topics,
// listed the catalog and started both streams.

// Close stops Run and waits for it: the writer is flushed and closed and
// the Kafka connections released.
func (p *Producer) Close() error {
	p.Stop()
	return nil
}

// Catalog is the producer's view of the bucket (its shard of the IDs).
func (p *Producer) Catalog() *Catalog { return p.cat }

// Gatherer returns the registry the metrics are on when it can be
// gathered (always when Config.Registry was nil), else nil.
func (p *Producer) Gatherer() prometheus.Gatherer { return p.gatherer }

// Run waits for the bucket and for Kafka (for up to ConnectTimeout each),
// creates the topics if missing, lists the bucket, then emits both
// streams and the fresh lane, watches for new and removed IDs (polling
// announce/ and, with NotifyTopic, reading bucket notifications) and
// measures the lag until ctx ends. It
// returns nil when ctx ends — after a good start or while still waiting
// for a service (Health says which) — and an error when the start fails
// (bucket missing, ErrKafkaUnreachable, ErrObjectStorageUnreachable, ...).
// Once started, an outage of Kafka or object storage is not fatal: the
// streams wait and what failed is retried. Run may be called once.
func (p *Producer) Run(ctx context.Context) (err error) {
	ctx, end, err := p.Begin(ctx)
	if err != nil {
		return fmt.Errorf("producers: %w", err)
	}
	defer end()
	defer func() {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // stopped while starting
		}
	}()
	c := p.cfg
	// kafka-go answers Metadata from a cache: a short TTL lets a topic
	// that another producer created just now show up quickly.
	p.transport = &kafka.Transport{ClientID: "ffc-producer", MetadataTTL: 2 * time.Second, TLS: c.KafkaTLS, SASL: c.KafkaSASL}
	defer p.transport.CloseIdleConnections()
	p.client = &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: c.KafkaTimeout, Transport: p.transport}
	start := time.Now()
	if err := p.start(ctx); err != nil {
		return err
	}
	return p.stream(ctx, start)
}

// start waits for the bucket, creates the topics and lists the bucket.
func (p *Producer) start(ctx context.Context) error {
	c := p.cfg
	storage := "object storage at " + c.S3.EndpointURL().Host
	err := p.connect(ctx, storage, ErrObjectStorageUnreachable, CondObjectStorage, func(ctx context.Context) error {
		ok, err := c.S3.BucketExists(ctx, c.Bucket)
		switch {
		case err != nil && !s3Transient(err):
			return backoff.Permanent(fmt.Errorf("bucket %s: %w", c.Bucket, err))
		case err != nil:
			return fmt.Errorf("bucket %s: %w", c.Bucket, err)
		case !ok:
			return backoff.Permanent(fmt.Errorf("bucket %s does not exist", c.Bucket))
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.s3OK()
	if err := p.ensureTopics(ctx); err != nil {
		return err
	}
	start := time.Now()
	var nx index
	err = p.connect(ctx, storage, ErrObjectStorageUnreachable, CondObjectStorage, func(ctx context.Context) (err error) {
		nx, err = listAll(ctx, c.S3, c.Bucket, c.Shard, p.newSkipLog())
		if err != nil && !s3Transient(err) {
			return backoff.Permanent(err)
		}
		return err
	})
	if err != nil {
		return err
	}
	p.cat.replace(nx)
	p.log.Info("catalog listed", "bucket", c.Bucket, "ids", p.cat.Len(), "images", p.cat.Images(),
		"index_bytes", p.cat.MemBytes(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// stream runs the writers, both streams, the fresh lane, the watcher,
// the notifications, the rescans, the flow control and the retries until
// ctx ends, then flushes.
func (p *Producer) stream(ctx context.Context, start time.Time) error {
	c := p.cfg
	// The async writer retries a batch a few times; a batch it gives up
	// on goes to the outbox, which retries it for as long as Run runs.
	p.writer = &kafka.Writer{
		Addr: kafka.TCP(c.Brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		Async: true, BatchSize: 256, BatchTimeout: 5 * time.Millisecond,
		MaxAttempts: 3, WriteBackoffMin: 100 * time.Millisecond, WriteBackoffMax: time.Second,
		Transport: p.transport, Completion: p.completed,
	}
	// The same partitioning (by key), one attempt per call: runRetry
	// paces the retries.
	p.retryWriter = &kafka.Writer{
		Addr: kafka.TCP(c.Brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		BatchSize: 256, BatchTimeout: 5 * time.Millisecond, MaxAttempts: 1, Transport: p.transport,
	}
	meter := &lagMeter{client: p.client, transport: p.transport, addr: p.client.Addr, group: c.TrainerGroup}
	for _, l := range p.lanes() {
		meter.topics = append(meter.topics, l.topic)
	}
	p.measure(ctx, meter)

	var wg sync.WaitGroup
	spawn := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	spawn(func(ctx context.Context) { p.runFlow(ctx, meter) })
	spawn(newWatcher(p, start).run)
	spawn(p.runFresh)
	if c.NotifyTopic != "" {
		spawn(p.runNotify)
	}
	if c.RescanInterval > 0 {
		spawn(p.runRescan)
	}
	spawn(p.runRetry)
	spawn(p.runByID)
	spawn(p.runInstance)
	p.SetReady()
	p.setCond(CondStarted, true, "")
	p.log.Info("producing", "byid", c.TopicByID, "instance", c.TopicInstance, "fresh", c.TopicFresh, "deadletter", c.TopicDeadLetter,
		"notify", c.NotifyTopic, "trainer_group", c.TrainerGroup, "max_lead", c.MaxLead, "fresh_max_lead", c.FreshMaxLead, "source", c.Source)
	wg.Wait()
	// The async writer's last batches may be refused: flush after it.
	var errs []error
	if err := p.writer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("producers: close writer: %w", err))
	}
	p.flush(ctx)
	if err := p.retryWriter.Close(); err != nil {
		errs = append(errs, fmt.Errorf("producers: close retry writer: %w", err))
	}
	return errors.Join(errs...)
}

// every calls f at each tick of an interval ticker (the first after one
// interval) until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

// runFlow measures the lag every FlowInterval.
func (p *Producer) runFlow(ctx context.Context, meter *lagMeter) {
	every(ctx, p.cfg.FlowInterval, func() { p.measure(ctx, meter) })
}

// measure takes one lag measurement and opens or closes the gates.
func (p *Producer) measure(ctx context.Context, meter *lagMeter) {
	lanes := p.lanes()
	acked := make([]int64, len(lanes))
	for i, l := range lanes {
		acked[i] = l.gate.beginMeasure()
	}
	mctx, cancel := context.WithTimeout(ctx, p.cfg.KafkaTimeout)
	defer cancel()
	lag, err := meter.measure(mctx)
	if err != nil {
		if ctx.Err() == nil {
			p.lagFailing = true
			p.setCond(CondLag, false, "measuring the trainers' lag failed; flow control holds the streams until it works: "+err.Error())
		}
		return
	}
	if p.lagFailing {
		p.lagFailing = false
		p.setCond(CondLag, true, "")
	}
	defer p.measurements.Add(1)
	for i, l := range lanes {
		l.gate.setMeasured(lag[l.topic], acked[i])
		p.met.lag.WithLabelValues(l.topic).Set(float64(lag[l.topic]))
	}
}

// runRescan lists the whole bucket every RescanInterval.
func (p *Producer) runRescan(ctx context.Context) {
	every(ctx, p.cfg.RescanInterval, func() {
		if err := p.rescan(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("rescan failed", "err", err)
		}
	})
}

// rescan lists ids/ and installs the result, putting IDs it finds for the
// first time into rotation with priority (and on the fresh lane, with
// the time they were found as their announcement time). An ID removed
// (removal marker) while the listing ran stays out even if the listing
// saw it.
func (p *Producer) rescan(ctx context.Context) error {
	start := time.Now()
	p.cat.beginRescan()
	nx, err := retryS3(ctx, p, func() (index, error) {
		return listAll(ctx, p.cfg.S3, p.cfg.Bucket, p.cfg.Shard, p.newSkipLog())
	})
	if err != nil {
		p.cat.endRescan()
		return err
	}
	added, removed := p.cat.replace(nx)
	p.rescans.Add(1)
	p.met.rescans.Inc()
	found := time.Now().UnixNano()
	for _, id := range added {
		p.newID(ctx, id, "rescan", found)
	}
	p.log.Info("rescanned", "ids", p.cat.Len(), "images", p.cat.Images(), "new_ids", len(added),
		"removed_ids", removed, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// addID puts an ID's images into the catalog; announced is when the ID
// was announced (Unix nanoseconds).
func (p *Producer) addID(ctx context.Context, id uint64, names []string, why string, announced int64) {
	added, changed := p.cat.upsert(id, names)
	switch {
	case added:
		p.newID(ctx, id, why, announced)
	case changed:
		p.log.Info("id updated", "id", id, "images", len(names), "by", why)
	}
}

// newID puts a new ID at the head of the id rotation and hands it to
// the fresh lane, which writes FreshPairs pairs of it to TopicFresh
// outside the id stream's lead. It blocks while the fresh lane's queue
// is full (never drops), until ctx ends.
func (p *Producer) newID(ctx context.Context, id uint64, why string, announced int64) {
	p.rot.prioritize(id)
	p.newIDs.Add(1)
	p.met.newIDs.Inc()
	p.log.Info("new id in rotation", "id", id, "by", why)
	p.enqueueFresh(ctx, freshJob{id: id, nanos: announced})
}

// newSkipLog returns the skipLog of one listing: each bad key is counted
// and warned about once per run (see onceSet).
func (p *Producer) newSkipLog() *skipLog {
	return &skipLog{log: p.log, maxLogs: 10, onSkip: func(key string) (count, warn bool) {
		if count, warn = p.warned.see("object:" + key); count {
			p.skippedKeys.Add(1)
			p.met.skippedKeys.Inc()
		}
		return count, warn
	}}
}

// StreamStats describes one stream.
type StreamStats struct {
	Topic string
	// Sent is the messages built from S3 objects and handed to the
	// writer; Produced those Kafka acknowledged; Failed those given up
	// (Kafka rejected the message itself, or Kafka still refused it when
	// Run ended: never while Run runs); InFlight those admitted and not
	// settled (Kafka refused them and they wait for a retry, included).
	// Retried counts the messages written again after Kafka refused them.
	Sent, Produced, Failed, InFlight, Retried int64
	// Lag is the last measured Σ over partitions of end − committed offset
	// of the trainer group (LagMeasured is false before the first
	// measurement). LagBound is the bound flow control holds below
	// MaxLead, which also counts what was written since.
	Lag, LagBound int64
	LagMeasured   bool
	// Blocked is the total time flow control (or the in-flight bound, or
	// a Kafka outage) held the stream; Blocking says it holds it now.
	Blocked  time.Duration
	Blocking bool
}

// KafkaStats describes the writes Kafka refused.
type KafkaStats struct {
	// Down is true while Kafka refuses writes: the streams are held and
	// the refused messages retried. Outages counts the times it began.
	Down    bool
	Outages int64
	// Pending is the refused messages that wait for a retry (or are
	// being retried); Retries counts the retry writes made.
	Pending, Retries int64
}

// Stats is a snapshot of a Producer.
type Stats struct {
	// The catalog: IDs, images (bad ones included), images that failed
	// validation.
	IDs, Images, BadImages int
	// NewIDs counts IDs put into rotation after the initial listing;
	// FreshPairs the pairs of them handed to the writer on the fresh lane;
	// RemovedIDs the removal markers of owned IDs handled (each one sends
	// a REMOVE record on the fresh lane).
	NewIDs, FreshPairs, RemovedIDs int64
	// SkippedKeys counts the distinct objects under ids/ that are not
	// image keys (each once per run, however often it is listed, up to
	// maxWarnedKeys distinct bad keys; past that each listing counts
	// them again); BadMarkers the distinct malformed keys under announce/.
	SkippedKeys, BadMarkers int64
	// Rescans counts the full listings of ids/ completed after the first.
	Rescans int64
	// Passes is the number of id-stream passes begun; Epoch the current
	// instance epoch.
	Passes, Epoch uint64
	// ByID, Instance and Fresh are the id stream, the instance stream and
	// the fresh lane (pairs of new IDs and REMOVE records).
	ByID, Instance, Fresh StreamStats
	// Notify describes the bucket notifications read (NotifyTopic).
	Notify NotifyStats
	// DeadLetters counts rejected objects by schemas.Reason.
	DeadLetters map[string]int64
	// LagMeasurements counts the lag measurements that succeeded.
	LagMeasurements int64
	Kafka           KafkaStats
	// S3Retries counts object-storage requests retried after a transient
	// error; S3Failures those that still failed after their retries.
	S3Retries, S3Failures int64
}

// Stats returns a snapshot.
func (p *Producer) Stats() Stats {
	stream := func(topic string, g *gate) StreamStats {
		s := g.stats()
		return StreamStats{Topic: topic, Sent: s.sent, Produced: s.acked, Failed: s.failed, InFlight: s.inflight, Retried: s.retried,
			Lag: s.lag, LagBound: s.bound, LagMeasured: s.measured, Blocked: s.blocked, Blocking: s.blocking}
	}
	st := Stats{
		IDs: p.cat.Len(), Images: p.cat.Images(), BadImages: p.cat.BadImages(),
		NewIDs: p.newIDs.Load(), FreshPairs: p.freshPairs.Load(), RemovedIDs: p.removedIDs.Load(),
		SkippedKeys: p.skippedKeys.Load(), BadMarkers: p.badMarkers.Load(), Rescans: p.rescans.Load(),
		Passes: p.rot.passCount(), Epoch: p.epoch.Load(),
		ByID:            stream(p.cfg.TopicByID, p.gByID),
		Instance:        stream(p.cfg.TopicInstance, p.gInst),
		Fresh:           stream(p.cfg.TopicFresh, p.gFresh),
		Notify:          p.notes.stats(),
		DeadLetters:     map[string]int64{},
		LagMeasurements: p.measurements.Load(),
		Kafka: KafkaStats{Down: p.out.down.Load(), Outages: p.out.outages.Load(),
			Pending: p.out.npend.Load(), Retries: p.out.rounds.Load()},
		S3Retries: p.s3Retries.Load(), S3Failures: p.s3Failures.Load(),
	}
	p.dlMu.Lock()
	for k, v := range p.dlCounts {
		st.DeadLetters[k] = v
	}
	p.dlMu.Unlock()
	return st
}
