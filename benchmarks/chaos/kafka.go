package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/listoffsets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

func (t tp) String() string { return fmt.Sprintf("%s/%d", t.topic, t.partition) }

// kafkaAdmin reads partitions, offsets and commits with kafka-go's
// version-negotiating client (as the producer's flow control does), and
// writes and reads records with franz-go.
type kafkaAdmin struct {
	log       *slog.Logger
	brokers   []string
	transport *kafka.Transport
	client    *kafka.Client
	addr      net.Addr
	writer    *kgo.Client
}

func newKafkaAdmin(brokers []string, log *slog.Logger) (*kafkaAdmin, error) {
	addr := kafka.TCP(brokers...)
	// The writer: records up to 4 MiB before compression, gzip-compressed
	// (so an oversized message of highly compressible bytes fits Kafka's
	// own limit), to the partition each record names.
	w, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.GzipCompression()), kgo.ProducerBatchMaxBytes(4<<20), kgo.ProducerLinger(0))
	if err != nil {
		return nil, fmt.Errorf("kafka writer: %w", err)
	}
	a := &kafkaAdmin{log: log, brokers: brokers, addr: addr, writer: w}
	a.reconnect()
	return a, nil
}

// reconnect replaces the transport (and its pooled connections and
// cached metadata): after an error, as Kafka may have restarted.
func (a *kafkaAdmin) reconnect() {
	if a.transport != nil {
		a.transport.CloseIdleConnections()
	}
	a.transport = &kafka.Transport{ClientID: "ffc-chaos"}
	a.client = &kafka.Client{Addr: a.addr, Transport: a.transport, Timeout: 30 * time.Second}
}

func (a *kafkaAdmin) close() {
	a.writer.Close()
	a.transport.CloseIdleConnections()
}

// retry runs op with backoff until it succeeds or ctx ends, with a new
// transport after each failure: Kafka may be recovering from a fault.
func retry[T any](ctx context.Context, a *kafkaAdmin, op func() (T, error)) (T, error) {
	var last error
	attempt := 0
	v, err := backoff.Retry(ctx, func() (T, error) {
		attempt++
		v, err := op()
		if err != nil {
			last = err
			a.log.Info("kafka: retrying", "attempt", attempt, "err", err)
			a.reconnect()
		}
		return v, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 3 * time.Second}),
		backoff.WithMaxElapsedTime(0))
	if err != nil && last != nil && !errors.Is(err, last) {
		err = fmt.Errorf("%w (last attempt: %w)", err, last)
	}
	return v, err
}

// partitions lists the partitions of topics (every topic must have some).
func (a *kafkaAdmin) partitions(ctx context.Context, topics ...string) ([]tp, error) {
	return retry(ctx, a, func() ([]tp, error) {
		md, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		var out []tp
		seen := map[string]bool{}
		for _, t := range md.Topics {
			if t.Error != nil {
				return nil, fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
			}
			for _, p := range t.Partitions {
				out = append(out, tp{t.Name, int32(p.ID)})
				seen[t.Name] = true
			}
		}
		for _, t := range topics {
			if !seen[t] {
				return nil, fmt.Errorf("topic %s has no partitions yet", t)
			}
		}
		return out, nil
	})
}

// offsets returns the first (ts kafka.FirstOffset) or end (kafka.LastOffset)
// offset of each partition. kafka.Client.ListOffsets files answers by
// their timestamp, which Kafka sets to −1 for both: the protocol request
// gives them as they are.
func (a *kafkaAdmin) offsets(ctx context.Context, parts []tp, ts int64) (map[tp]int64, error) {
	return retry(ctx, a, func() (map[tp]int64, error) {
		req := &listoffsets.Request{ReplicaID: -1}
		idx := map[string]int{}
		for _, p := range parts {
			i, ok := idx[p.topic]
			if !ok {
				i = len(req.Topics)
				idx[p.topic] = i
				req.Topics = append(req.Topics, listoffsets.RequestTopic{Topic: p.topic})
			}
			req.Topics[i].Partitions = append(req.Topics[i].Partitions, listoffsets.RequestPartition{Partition: p.partition, CurrentLeaderEpoch: -1, Timestamp: ts})
		}
		msg, err := a.transport.RoundTrip(ctx, a.addr, req)
		if err != nil {
			return nil, fmt.Errorf("list offsets: %w", err)
		}
		res, ok := msg.(*listoffsets.Response)
		if !ok {
			return nil, fmt.Errorf("list offsets: unexpected response %T", msg)
		}
		out := map[tp]int64{}
		for _, t := range res.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return nil, fmt.Errorf("list offsets of %s/%d: %w", t.Topic, p.Partition, kafka.Error(p.ErrorCode))
				}
				out[tp{t.Topic, p.Partition}] = p.Offset
			}
		}
		for _, p := range parts {
			if _, ok := out[p]; !ok {
				return nil, fmt.Errorf("list offsets: no answer for %s", p)
			}
		}
		return out, nil
	})
}

// committed returns the group's committed offsets (0 where none).
func (a *kafkaAdmin) committed(ctx context.Context, group string, parts []tp) (map[tp]int64, error) {
	topics := map[string][]int{}
	for _, p := range parts {
		topics[p.topic] = append(topics[p.topic], int(p.partition))
	}
	return retry(ctx, a, func() (map[tp]int64, error) {
		res, err := a.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: topics})
		if err != nil {
			return nil, fmt.Errorf("offset fetch (group %s): %w", group, err)
		}
		if res.Error != nil && !errors.Is(res.Error, kafka.GroupIdNotFound) {
			return nil, fmt.Errorf("offset fetch (group %s): %w", group, res.Error)
		}
		out := map[tp]int64{}
		for _, p := range parts {
			out[p] = 0
		}
		for t, ps := range res.Topics {
			for _, p := range ps {
				if p.Error != nil {
					return nil, fmt.Errorf("offset fetch (group %s) of %s/%d: %w", group, t, p.Partition, p.Error)
				}
				if p.CommittedOffset > 0 {
					out[tp{t, int32(p.Partition)}] = p.CommittedOffset
				}
			}
		}
		return out, nil
	})
}

// produce writes records (each naming its topic and partition); each
// result holds the record with its offset, or the error.
func (a *kafkaAdmin) produce(ctx context.Context, recs []*kgo.Record) kgo.ProduceResults {
	if len(recs) == 0 {
		return nil
	}
	return a.writer.ProduceSync(ctx, recs...)
}

// read calls fn for every record of each partition from from[p] up to
// (not including) to[p].
func (a *kafkaAdmin) read(ctx context.Context, from, to map[tp]int64, fn func(*kgo.Record)) error {
	want := map[string]map[int32]kgo.Offset{}
	left := map[tp]bool{}
	for p, end := range to {
		start := from[p]
		if start >= end {
			continue
		}
		if want[p.topic] == nil {
			want[p.topic] = map[int32]kgo.Offset{}
		}
		want[p.topic][p.partition] = kgo.NewOffset().At(start)
		left[p] = true
	}
	if len(left) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.brokers...), kgo.ConsumePartitions(want), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return fmt.Errorf("kafka reader: %w", err)
	}
	defer cl.Close()
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.Canceled) {
				return fmt.Errorf("read %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		var done []tp
		fs.EachRecord(func(r *kgo.Record) {
			p := tp{r.Topic, r.Partition}
			if !left[p] || r.Offset >= to[p] {
				return
			}
			fn(r)
			if r.Offset == to[p]-1 {
				done = append(done, p)
			}
		})
		for _, p := range done {
			delete(left, p)
		}
	}
	return nil
}
