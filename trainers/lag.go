package trainers

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// lagPollInterval is how often a generation asks Kafka for the high
// watermarks of its partitions (one ListOffsets request for all of them).
const lagPollInterval = 5 * time.Second

// partKey names one partition of a topic.
type partKey struct {
	topic     string
	partition int
}

// lagTracker feeds ffc_trainer_consumer_lag: per assigned partition, its
// high watermark minus the trainer's next offset to consume (that of the
// first message not yet in a completed step; the log start when the
// group had no offset yet). High watermarks come with the messages of
// each step (kafka-go reports the one of the fetch they came in) and from
// a ListOffsets every lagPollInterval, which covers partitions no step
// has read from yet and the wait of messages in the readers' buffers.
type lagTracker struct {
	gauge *prometheus.GaugeVec
	mu    sync.Mutex
	// next: the assigned partitions, each with its next offset to consume
	// (< 0: unknown, the group had none); hwm and start: their high
	// watermark and log start offset, once known.
	next  map[partKey]int64
	hwm   map[partKey]int64
	start map[partKey]int64
}

func newLagTracker(g *prometheus.GaugeVec) *lagTracker {
	return &lagTracker{gauge: g, next: map[partKey]int64{}, hwm: map[partKey]int64{}, start: map[partKey]int64{}}
}

// assign starts a generation with these partitions and their first
// offsets: the series of every other partition are removed.
func (l *lagTracker) assign(parts map[partKey]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.next {
		if _, ok := parts[k]; !ok {
			l.gauge.DeleteLabelValues(k.topic, strconv.Itoa(k.partition))
			delete(l.hwm, k)
			delete(l.start, k)
		}
	}
	l.next = parts
	for k := range parts {
		l.setLocked(k)
	}
}

// consumed records a completed step: next is the partition's next offset
// to consume, hwm the high watermark its messages came with.
func (l *lagTracker) consumed(k partKey, next, hwm int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.next[k]; !ok {
		return
	}
	l.next[k] = next
	l.hwm[k] = max(l.hwm[k], hwm)
	l.setLocked(k)
}

// offsets records the log start and high watermark of k, as listed.
func (l *lagTracker) offsets(k partKey, start, hwm int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.next[k]; !ok {
		return // no longer assigned
	}
	l.start[k] = start
	l.hwm[k] = max(l.hwm[k], hwm)
	l.setLocked(k)
}

// assigned lists the assigned partitions by topic.
func (l *lagTracker) assigned() map[string][]kafka.OffsetRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]kafka.OffsetRequest{}
	for k := range l.next {
		out[k.topic] = append(out[k.topic], kafka.FirstOffsetOf(k.partition), kafka.LastOffsetOf(k.partition))
	}
	return out
}

// setLocked sets the lag of k once its high watermark and a position are
// known: hwm − max(next, log start), never below 0.
func (l *lagTracker) setLocked(k partKey) {
	hwm, ok := l.hwm[k]
	if !ok {
		return
	}
	pos, known := l.next[k], l.next[k] >= 0
	if s, ok := l.start[k]; ok {
		pos, known = max(pos, s), true
	}
	if !known {
		return
	}
	l.gauge.WithLabelValues(k.topic, strconv.Itoa(k.partition)).Set(float64(max(hwm-pos, 0)))
}

// startLag lists the offsets of the generation's partitions once before
// its first step (so every assigned partition has its lag from the
// start; bounded by lagPollInterval), then every lagPollInterval in a
// goroutine of the generation. A failure is logged at debug level and
// tried again at the next tick: fetch errors are the readers' to report.
func (t *Trainer) startLag(g *generation) {
	cl := &kafka.Client{Addr: kafka.TCP(t.cfg.Brokers...), Timeout: min(t.cfg.KafkaTimeout, lagPollInterval), Transport: t.transport}
	list := func() {
		ctx, cancel := context.WithTimeout(g.ctx, lagPollInterval)
		defer cancel()
		if err := t.listLag(ctx, cl); err != nil && g.ctx.Err() == nil {
			t.cfg.Log.Debug("trainer: listing the partitions' offsets for the lag failed", "err", err)
		}
	}
	list()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		tick := time.NewTicker(lagPollInterval)
		defer tick.Stop()
		for {
			select {
			case <-g.ctx.Done():
				return
			case <-tick.C:
				list()
			}
		}
	}()
}

// listLag lists the log start and high watermark of every assigned
// partition into the lag tracker.
func (t *Trainer) listLag(ctx context.Context, cl *kafka.Client) error {
	req := t.lag.assigned()
	if len(req) == 0 {
		return nil
	}
	res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return fmt.Errorf("trainer: list offsets: %w", err)
	}
	for topic, ps := range res.Topics {
		for _, p := range ps {
			if p.Error == nil && p.FirstOffset >= 0 && p.LastOffset >= 0 {
				t.lag.offsets(partKey{topic, p.Partition}, p.FirstOffset, p.LastOffset)
			}
		}
	}
	return nil
}
