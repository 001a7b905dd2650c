package producers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/listoffsets"
)

// gate is the flow control of one topic. It admits a message only while
// an upper bound of the topic's lag stays below maxLead:
//
//	bound = measured + (acked − ackedAtMeasure) + inflight
//
// measured is the lag (Σ end − committed) from the last measurement,
// acked counts messages the broker acknowledged (ackedAtMeasure is its
// value just before that measurement's end offsets were read, so a
// message acknowledged meanwhile is counted twice, never zero times), and
// inflight counts messages admitted and not yet acknowledged or given up.
// The lag can therefore never exceed maxLead, however stale the
// measurement: the trainers' commits only lower it. inflight is also
// bounded by maxInFlight, flow control or not. While held (Kafka refuses
// writes) it admits nothing, so the stream reads nothing from S3.
type gate struct {
	maxLead     int64 // < 0: no flow control
	maxInFlight int64

	mu             sync.Mutex
	measuredOK     bool
	measured       int64
	ackedAtMeasure int64
	acked          int64
	inflight       int64
	failed         int64
	held           bool
	changed        chan struct{} // closed and replaced on every change
	blockedSince   time.Time
	blocked        time.Duration

	// sent counts the messages handed to the writer; retried those
	// written again after Kafka refused them.
	sent, retried atomic.Int64
}

func newGate(maxLead, maxInFlight int) *gate {
	return &gate{maxLead: int64(maxLead), maxInFlight: int64(maxInFlight), changed: make(chan struct{})}
}

func (g *gate) broadcast() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// bound is the lag upper bound; g.mu held.
func (g *gate) bound() int64 {
	return g.measured + (g.acked - g.ackedAtMeasure) + g.inflight
}

// open reports whether one more message may go; g.mu held.
func (g *gate) open() bool {
	if g.held || g.inflight >= g.maxInFlight {
		return false
	}
	if g.maxLead < 0 {
		return true
	}
	return g.measuredOK && g.bound() < g.maxLead
}

// admit blocks until one more message may be written, and reserves it.
func (g *gate) admit(ctx context.Context) error {
	g.mu.Lock()
	for !g.open() {
		if g.blockedSince.IsZero() {
			g.blockedSince = time.Now()
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
		g.mu.Lock()
	}
	if !g.blockedSince.IsZero() {
		g.blocked += time.Since(g.blockedSince)
		g.blockedSince = time.Time{}
	}
	g.inflight++
	g.mu.Unlock()
	return nil
}

// done settles n admitted messages: acknowledged or given up.
func (g *gate) done(n int, ok bool) {
	g.mu.Lock()
	g.inflight -= int64(n)
	if ok {
		g.acked += int64(n)
	} else {
		g.failed += int64(n)
	}
	g.broadcast()
	g.mu.Unlock()
}

// release gives back an admission that produced no message.
func (g *gate) release() {
	g.mu.Lock()
	g.inflight--
	g.broadcast()
	g.mu.Unlock()
}

// hold stops (on) or resumes admissions.
func (g *gate) hold(on bool) {
	g.mu.Lock()
	g.held = on
	g.broadcast()
	g.mu.Unlock()
}

// beginMeasure returns the acknowledged count to pass to setMeasured; call
// it before reading the end offsets.
func (g *gate) beginMeasure() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.acked
}

// setMeasured installs a lag measured after beginMeasure returned acked.
func (g *gate) setMeasured(lag, acked int64) {
	g.mu.Lock()
	g.measured, g.ackedAtMeasure, g.measuredOK = lag, acked, true
	g.broadcast()
	g.mu.Unlock()
}

// gateStats is a snapshot for Stats.
type gateStats struct {
	lag, bound, acked, inflight, failed int64
	sent, retried                       int64
	measured, held                      bool
	blocked                             time.Duration
	blocking                            bool
}

func (g *gate) stats() gateStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := gateStats{lag: g.measured, bound: g.bound(), acked: g.acked, inflight: g.inflight, failed: g.failed,
		sent: g.sent.Load(), retried: g.retried.Load(), measured: g.measuredOK, held: g.held, blocked: g.blocked}
	if !g.blockedSince.IsZero() {
		s.blocked += time.Since(g.blockedSince)
		s.blocking = true
	}
	return s
}

// lagMeter measures the lag of topics behind a consumer group with
// kafka-go's version-negotiating client and transport (Metadata,
// ListOffsets, OffsetFetch), which work with Kafka 4.x as with kfake.
type lagMeter struct {
	client    *kafka.Client
	transport kafka.RoundTripper
	addr      net.Addr
	group     string
	topics    []string
	// partitions per topic, refreshed every partitionRefreshEvery measurements and
	// after an error.
	partitions   map[string][]int
	measurements int
}

const partitionRefreshEvery = 50

// measure returns Σ over partitions of (end − committed) per topic, a
// committed offset of −1 (none yet) counting from the log start.
func (m *lagMeter) measure(ctx context.Context) (map[string]int64, error) {
	if m.partitions == nil || m.measurements%partitionRefreshEvery == 0 {
		if err := m.refresh(ctx); err != nil {
			return nil, err
		}
	}
	m.measurements++
	lag, err := m.lag(ctx)
	if err != nil {
		m.partitions = nil
	}
	return lag, err
}

func (m *lagMeter) refresh(ctx context.Context) error {
	md, err := m.client.Metadata(ctx, &kafka.MetadataRequest{Topics: m.topics})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	parts := map[string][]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
		}
	}
	for _, t := range m.topics {
		if len(parts[t]) == 0 {
			return fmt.Errorf("metadata: topic %s has no partitions", t)
		}
	}
	m.partitions = parts
	return nil
}

// offsets returns the offsets of every partition at ts (kafka.FirstOffset
// or kafka.LastOffset), by topic and partition.
func (m *lagMeter) offsets(ctx context.Context, ts int64) (map[string]map[int]int64, error) {
	// kafka.Client.ListOffsets files each answer by the timestamp in the
	// response, and Kafka answers earliest and latest queries alike with
	// timestamp −1: the protocol request, sent through the transport
	// (which splits it by partition leader), gives the offsets as they are.
	req := &listoffsets.Request{ReplicaID: -1}
	for t, ps := range m.partitions {
		rt := listoffsets.RequestTopic{Topic: t}
		for _, p := range ps {
			rt.Partitions = append(rt.Partitions, listoffsets.RequestPartition{Partition: int32(p), CurrentLeaderEpoch: -1, Timestamp: ts})
		}
		req.Topics = append(req.Topics, rt)
	}
	msg, err := m.transport.RoundTrip(ctx, m.addr, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	res, ok := msg.(*listoffsets.Response)
	if !ok {
		return nil, fmt.Errorf("list offsets: unexpected response %T", msg)
	}
	out := map[string]map[int]int64{}
	for _, t := range res.Topics {
		if out[t.Topic] == nil {
			out[t.Topic] = map[int]int64{}
		}
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return nil, fmt.Errorf("list offsets of %s/%d: %w", t.Topic, p.Partition, kafka.Error(p.ErrorCode))
			}
			out[t.Topic][int(p.Partition)] = p.Offset
		}
	}
	return out, nil
}

func (m *lagMeter) lag(ctx context.Context) (map[string]int64, error) {
	first, err := m.offsets(ctx, kafka.FirstOffset)
	if err != nil {
		return nil, err
	}
	committed, err := m.committed(ctx)
	if err != nil {
		return nil, err
	}
	// The end offsets last: acknowledged messages counted in them are also
	// counted by the gate since beginMeasure, so the bound errs high.
	end, err := m.offsets(ctx, kafka.LastOffset)
	if err != nil {
		return nil, err
	}
	lag := map[string]int64{}
	for t, ps := range m.partitions {
		var sum int64
		for _, p := range ps {
			e, ok := end[t][p]
			if !ok {
				return nil, fmt.Errorf("list offsets: no end offset for %s/%d", t, p)
			}
			from := first[t][p]
			if c, ok := committed[t][p]; ok && c > from {
				from = c
			}
			if e > from {
				sum += e - from
			}
		}
		lag[t] = sum
	}
	return lag, nil
}

// committed returns the group's committed offsets (partitions without
// one are absent).
func (m *lagMeter) committed(ctx context.Context) (map[string]map[int]int64, error) {
	res, err := m.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: m.group, Topics: m.partitions})
	if err != nil {
		return nil, fmt.Errorf("offset fetch (group %s): %w", m.group, err)
	}
	if res.Error != nil && !errors.Is(res.Error, kafka.GroupIdNotFound) {
		return nil, fmt.Errorf("offset fetch (group %s): %w", m.group, res.Error)
	}
	out := map[string]map[int]int64{}
	for t, ps := range res.Topics {
		out[t] = map[int]int64{}
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("offset fetch (group %s) of %s/%d: %w", m.group, t, p.Partition, p.Error)
			}
			if p.CommittedOffset >= 0 {
				out[t][p.Partition] = p.CommittedOffset
			}
		}
	}
	return out, nil
}
