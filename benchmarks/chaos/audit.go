package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ffc-stream/ffc/schemas"
)

// Audit accounts for every offset of the two sample topics after the
// drain.
type Audit struct {
	// Drained: the group's committed offsets reached the end offsets.
	Drained    bool   `json:"drained"`
	DrainError string `json:"drain_error,omitempty"`
	// Fillers are valid messages written to complete the last batch.
	Fillers int `json:"fillers"`

	Offsets int64 `json:"offsets"` // every offset of both sample topics
	Valid   int64 `json:"valid"`
	Invalid int64 `json:"invalid"`
	// Trained: valid, below the committed offset and below the newest
	// checkpoint's offset.
	Trained int64 `json:"trained"`
	// DeadLettered: invalid and on the dead-letter topic with a reason.
	DeadLettered int64 `json:"dead_lettered"`
	// ValidDeadLettered: valid, yet dead-lettered (accounted for).
	ValidDeadLettered int64 `json:"valid_dead_lettered"`

	// The unaccounted for (lost): at or above the committed offset; valid
	// but not covered by the newest checkpoint; invalid without a dead
	// letter with a reason.
	NotDrained             int64 `json:"not_drained"`
	NotCheckpointed        int64 `json:"not_checkpointed"`
	InvalidNotDeadLettered int64 `json:"invalid_not_dead_lettered"`

	CheckpointStep    uint64 `json:"checkpoint_step"`
	DeadLetterRecords int64  `json:"dead_letter_records"` // the trainer's (key topic/partition/offset)
	// ProducerDeadLetters are the producer's dead letters (bad objects).
	ProducerDeadLetters int64 `json:"producer_dead_letters"`

	// ProducerAcked is what the producer's processes reported acknowledged
	// on the sample topics (scraped before each kill and at the end), and
	// ProducerInTopics the messages of its source in them: an acknowledged
	// message missing from Kafka is lost.
	ProducerAcked        int64 `json:"producer_acked"`
	ProducerInTopics     int64 `json:"producer_in_topics"`
	ProducerAckedMissing int64 `json:"producer_acked_missing"`
	// ProducerDropped is what the producer reported giving up on.
	ProducerDropped int64 `json:"producer_dropped"`

	// Lost sums the unaccounted for offsets and the acknowledged messages
	// missing from Kafka.
	Lost     int64    `json:"lost"`
	Examples []string `json:"examples,omitempty"`
}

func (a *Audit) example(format string, args ...any) {
	if len(a.Examples) < 8 {
		a.Examples = append(a.Examples, fmt.Sprintf(format, args...))
	}
}

// deadLetter is one trainer dead letter.
type deadLetter struct{ reason string }

// readDeadLetters reads the dead-letter topic: the trainer's by the
// topic/partition/offset of their key, and the count of the others.
func (r *runner) readDeadLetters(ctx context.Context) (map[tp]map[int64]deadLetter, int64, error) {
	parts, err := r.kafka.partitions(ctx, r.names.dead)
	if err != nil {
		return nil, 0, err
	}
	first, err := r.kafka.offsets(ctx, parts, -2)
	if err != nil {
		return nil, 0, err
	}
	end, err := r.kafka.offsets(ctx, parts, -1)
	if err != nil {
		return nil, 0, err
	}
	out := map[tp]map[int64]deadLetter{}
	var others int64
	err = r.kafka.read(ctx, first, end, func(rec *kgo.Record) {
		p, off, ok := parseDeadLetterKey(string(rec.Key))
		if !ok {
			others++
			return
		}
		var reason string
		for _, h := range rec.Headers {
			if h.Key == "reason" {
				reason = string(h.Value)
			}
		}
		if out[p] == nil {
			out[p] = map[int64]deadLetter{}
		}
		if d, seen := out[p][off]; !seen || d.reason == "" {
			out[p][off] = deadLetter{reason: reason}
		}
	})
	return out, others, err
}

// parseDeadLetterKey reads "topic/partition/offset".
func parseDeadLetterKey(k string) (tp, int64, bool) {
	i := strings.LastIndexByte(k, '/')
	if i < 0 {
		return tp{}, 0, false
	}
	j := strings.LastIndexByte(k[:i], '/')
	if j <= 0 {
		return tp{}, 0, false
	}
	p, err1 := strconv.ParseInt(k[j+1:i], 10, 32)
	o, err2 := strconv.ParseInt(k[i+1:], 10, 64)
	if err1 != nil || err2 != nil || strings.HasPrefix(k, "ids/") {
		return tp{}, 0, false
	}
	return tp{k[:j], int32(p)}, o, true
}

// latestCheckpoint returns the step and offsets of the newest complete
// checkpoint (a manifest.pb under checkpoints/<model>/).
func (r *runner) latestCheckpoint(ctx context.Context) (uint64, map[tp]int64, error) {
	prefix := "checkpoints/" + r.names.model + "/"
	var best uint64
	var offs map[tp]int64
	for obj := range r.mc.ListObjects(ctx, r.names.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return 0, nil, fmt.Errorf("list %s: %w", prefix, obj.Err)
		}
		if !strings.HasSuffix(obj.Key, "/manifest.pb") {
			continue
		}
		o, err := r.mc.GetObject(ctx, r.names.bucket, obj.Key, minio.GetObjectOptions{})
		if err != nil {
			return 0, nil, fmt.Errorf("get %s: %w", obj.Key, err)
		}
		b, err := io.ReadAll(o)
		_ = o.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("read %s: %w", obj.Key, err)
		}
		m, err := schemas.DecodeCheckpointManifest(b, schemas.Limits{})
		if err != nil {
			return 0, nil, fmt.Errorf("manifest %s: %w", obj.Key, err)
		}
		if offs != nil && m.GetStep() < best {
			continue
		}
		best, offs = m.GetStep(), map[tp]int64{}
		for _, t := range m.GetOffsets() {
			for _, p := range t.GetPartitions() {
				offs[tp{t.GetTopic(), p.GetPartition()}] = p.GetOffset()
			}
		}
	}
	if offs == nil {
		return 0, nil, errors.New("no complete checkpoint")
	}
	return best, offs, nil
}

// drain waits until the trainer can take no further step, writes the
// valid fillers that complete its last batch, and waits until the group's
// committed offsets reach the end offsets.
func (r *runner) drain(ctx context.Context, a *Audit) error {
	parts, err := r.kafka.partitions(ctx, r.names.byID, r.names.instance)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	tails, err := r.waitIdle(ctx, parts)
	if err != nil {
		return err
	}
	recs, err := r.fillers(parts, tails)
	if err != nil {
		return err
	}
	a.Fillers = len(recs)
	if err := r.kafka.produce(ctx, recs).FirstErr(); err != nil {
		return fmt.Errorf("drain: fillers: %w", err)
	}
	state := "fillers written"
	return pollUntil(ctx, func() (bool, error) {
		committed, err := r.kafka.committed(ctx, r.names.group, parts)
		if err != nil {
			return false, fmt.Errorf("drain: %s: %w", state, err)
		}
		end, err := r.kafka.offsets(ctx, parts, -1)
		if err != nil {
			return false, fmt.Errorf("drain: %s: %w", state, err)
		}
		var behind []string
		for _, p := range parts {
			if committed[p] < end[p] {
				behind = append(behind, fmt.Sprintf("%s: committed %d < end %d", p, committed[p], end[p]))
			}
		}
		state = strings.Join(behind, "; ")
		return len(behind) == 0, nil
	}, func() string { return "drain: " + state })
}

// waitIdle waits until the valid messages left of one topic are fewer
// than a batch (the trainer can take no further step), and returns them
// per partition.
func (r *runner) waitIdle(ctx context.Context, parts []tp) (map[tp]int64, error) {
	var tails map[tp]int64
	state := "no measurement yet"
	err := pollUntil(ctx, func() (bool, error) {
		committed, _, t, err := r.tails(ctx, parts)
		if err != nil {
			return false, fmt.Errorf("drain: %s: %w", state, err)
		}
		var left [2]int64
		for p, n := range t {
			left[r.topicIndex(p.topic)] += n
		}
		tails = t
		state = fmt.Sprintf("%d valid pairs and %d valid instances at or above the group's committed offsets (a step's worth or more: not yet trained, or trained and not committed)", left[0], left[1])
		if min(left[0], left[1]) >= int64(r.o.batch) {
			return false, nil
		}
		r.log.Info("drain: no further step possible", "valid_pairs_left", left[0], "valid_instances_left", left[1], "committed", fmt.Sprint(committed))
		return true, nil
	}, func() string { return "drain: " + state })
	return tails, err
}

// pollUntil calls check on every tick until it reports done or fails;
// when ctx ends (also inside check) it fails with what state says.
func pollUntil(ctx context.Context, check func() (bool, error), state func() string) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := check()
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w", state(), ctx.Err())
		case err != nil:
			return err
		case done:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", state(), ctx.Err())
		case <-tick.C:
		}
	}
}

// tails returns the committed and end offsets and, per partition with
// messages left, the valid ones among them.
func (r *runner) tails(ctx context.Context, parts []tp) (committed, end, valid map[tp]int64, err error) {
	if committed, err = r.kafka.committed(ctx, r.names.group, parts); err != nil {
		return nil, nil, nil, err
	}
	if end, err = r.kafka.offsets(ctx, parts, -1); err != nil {
		return nil, nil, nil, err
	}
	valid = map[tp]int64{}
	for _, p := range parts {
		if end[p] > committed[p] {
			valid[p] = 0
		}
	}
	err = r.kafka.read(ctx, committed, end, func(rec *kgo.Record) {
		if decodeReason(rec.Value, rec.Topic == r.names.byID) == "" {
			valid[tp{rec.Topic, rec.Partition}]++
		}
	})
	return committed, end, valid, err
}

// fillers are the valid messages that make both topics' valid messages
// left a multiple k·B (the same k), with at least one after the last
// message of every partition with messages left, so that the trainer's
// last step takes everything.
func (r *runner) fillers(parts []tp, tails map[tp]int64) ([]*kgo.Record, error) {
	if len(tails) == 0 {
		return nil, nil
	}
	var need [2]int64 // byid, instance: valid left + one per partition with a tail
	var left [2]int64
	for p, n := range tails {
		i := r.topicIndex(p.topic)
		left[i] += n
		need[i] += n + 1
	}
	b := int64(r.o.batch)
	k := (max(need[0], need[1]) + b - 1) / b
	rng := rand.New(rand.NewPCG(r.seed, 0xf111))
	var recs []*kgo.Record
	for i, topic := range []string{r.names.byID, r.names.instance} {
		count := k*b - left[i]
		var order []tp // tail partitions first, then all, round robin
		for _, p := range parts {
			if _, ok := tails[p]; ok && p.topic == topic {
				order = append(order, p)
			}
		}
		for _, p := range parts {
			if p.topic == topic {
				order = append(order, p)
			}
		}
		for j := range count {
			p := order[int(j)%len(order)]
			key, value, err := r.data.valid(rng, i == 0)
			if err != nil {
				return nil, fmt.Errorf("filler: %w", err)
			}
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p.partition, Key: key, Value: value})
		}
	}
	return recs, nil
}

func (r *runner) topicIndex(topic string) int {
	if topic == r.names.byID {
		return 0
	}
	return 1
}
