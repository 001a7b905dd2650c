package trainers

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// TestCommitFailureAfterCheckpoint: the broker refuses the trainer's first
// two offset commits (each after a durable checkpoint). The trainer keeps
// training, the checkpoints hold the offsets, and the next commit catches
// up: at the end the group has committed every message consumed.
func TestCommitFailureAfterCheckpoint(t *testing.T) {
	e, st := embeddedEnv(t)
	e.produce(t, 12, 6*8, 0) // exactly what 6 steps of 8 take

	var refused atomic.Int32
	c := st.Kafka.Cluster()
	c.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.OffsetCommitRequest)
		if req.Group != e.group {
			return nil, nil, false
		}
		if refused.Add(1) >= 2 {
			c.DropControl()
		}
		return refuseCommit(req, kerr.RequestTimedOut), nil, true
	})

	cfg := e.config(6)
	cfg.Settings.CheckpointEvery = 2
	s, _ := run(t, cfg)
	if s.Steps != 6 || s.Checkpoints < 3 || refused.Load() != 2 {
		t.Fatalf("stats %+v, %d commits refused: want 6 steps, ≥ 3 checkpoints, 2 refused commits", s, refused.Load())
	}
	committed := e.committed(t)
	if committed != 2*6*8 {
		t.Errorf("the group committed %d offsets, want all %d consumed", committed, 2*6*8)
	}
}

// TestShutdownCommitsItsCheckpoint: on shutdown the trainer writes a final
// checkpoint and commits its offsets while it still holds the group's
// generation; here that commit is the only one, so the group's offsets
// are exactly what the steps consumed.
func TestShutdownCommitsItsCheckpoint(t *testing.T) {
	e, _ := embeddedEnv(t)
	e.produce(t, 12, 3*8, 0) // 3 steps, then the input stalls
	cfg := e.config(0)
	cfg.Settings.CheckpointEvery, cfg.Settings.CheckpointInterval = 1000, time.Hour
	cfg.IdleCheckpoint = time.Hour // no checkpoint but the final one
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Run(testutil.Context(t)) }()
	testutil.WaitTrue(t, "3 steps", func() bool { return tr.Stats().Steps == 3 })
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := tr.Stats(); s.Checkpoints != 1 {
		t.Errorf("%d checkpoints, want the final one only", s.Checkpoints)
	}
	if n := e.committed(t); n != 2*3*8 {
		t.Errorf("the group committed %d offsets at shutdown, want the %d the steps consumed", n, 2*3*8)
	}
}

// sampleValues encodes n id pairs and n instances of synthetic identities
// over ids [0, 12).
func sampleValues(t *testing.T, n int) (pairs, insts [][]byte) {
	t.Helper()
	g, err := synth.New(synth.Options{Seed: 2, IDs: 12, Alpha: 1, Min: 3, Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	img := func(id uint64, k int) *ffcpb.Image {
		pix, err := g.Image(id, k)
		if err != nil {
			t.Fatal(err)
		}
		return &ffcpb.Image{Key: schemas.ImageKey(id, strconv.Itoa(k)), Png: pngOf(t, pix)}
	}
	for i := range n {
		id := uint64(i % 12)
		p, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: id, First: img(id, 0), Second: img(id, 1), Sequence: uint64(i), Source: "test"})
		if err != nil {
			t.Fatal(err)
		}
		s, err := schemas.EncodeSample(&ffcpb.Sample{Id: id, ImageKey: schemas.ImageKey(id, "2"), ImagePng: img(id, 2).Png, Sequence: uint64(i), Source: "test"})
		if err != nil {
			t.Fatal(err)
		}
		pairs, insts = append(pairs, p), append(insts, s)
	}
	return pairs, insts
}

// writeTo writes values, in order, in one batch, to one partition of
// topic.
func (e *env) writeTo(t *testing.T, topic string, partition int, values ...[]byte) {
	t.Helper()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Value: v}
	}
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, Transport: e.transport, BatchTimeout: 5 * time.Millisecond, BatchBytes: 2 << 20,
		RequiredAcks: kafka.RequireAll, Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return partition })}
	defer w.Close()
	if err := w.WriteMessages(testutil.Context(t), msgs...); err != nil {
		t.Fatalf("write %s/%d: %v", topic, partition, err)
	}
}

// deadLetters reads n records of the dead-letter topic.
func (e *env) deadLetters(t *testing.T, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.dead, GroupID: e.group + "-dl", StartOffset: kafka.FirstOffset, MaxWait: time.Second, MaxBytes: 2 << 20})
	defer r.Close()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(testutil.Context(t))
		if err != nil {
			t.Fatalf("dead letters: %v (after %d)", err, len(out))
		}
		out = append(out, m)
	}
	return out
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, kv := range m.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// TestPoisonMessage (fault 1): a 1,048,500-byte garbage message on the
// instance topic, then 5 good ones on its partition. Its dead letter, the
// whole payload plus headers, is above Kafka's message limit: the trainer
// used to fail the write and stop (a crash loop). Now the dead letter
// carries the reason, the position and a truncated payload with the
// original size, the trainer goes on, and the good messages are trained.
func TestPoisonMessage(t *testing.T) {
	e, _ := embeddedEnv(t)
	pairs, insts := sampleValues(t, 8)
	poison := bytes.Repeat([]byte{0xff}, 1_048_500)
	e.writeTo(t, e.byID, 0, pairs...)
	e.writeTo(t, e.instance, 0, poison) // alone: with more, the batch is above Kafka's limit
	e.writeTo(t, e.instance, 0, insts[:5]...)
	e.writeTo(t, e.instance, 1, insts[5:]...)

	s, _ := run(t, e.config(1))
	if s.Steps != 1 || s.Pairs != 8 || s.Instances != 8 || s.DeadLetters != 1 || s.TruncatedDeadLetters != 1 || s.DeadLetterFailures != 0 {
		t.Errorf("stats %+v: want 1 step of the 8 good pairs and instances, 1 truncated dead letter, no failed one", s)
	}
	if n := e.committed(t); n != 8+1+8 {
		t.Errorf("committed %d offsets, want the 17 consumed (the poison too)", n)
	}
	dl := e.deadLetters(t, 1)[0]
	h := headers(dl)
	want := map[string]string{HeaderReason: schemas.ReasonMalformed, HeaderTopic: e.instance, HeaderPartition: "0", HeaderOffset: "0",
		HeaderOriginalSize: "1048500", HeaderTruncated: "true"}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("dead-letter header %s = %q, want %q", k, h[k], v)
		}
	}
	if len(dl.Value) == 0 || len(dl.Value) >= 512<<10 || !bytes.Equal(dl.Value, poison[:len(dl.Value)]) {
		t.Errorf("dead-letter payload of %d bytes: want a prefix of the poison below 512 KiB", len(dl.Value))
	}
}

// TestDeadLetterWriteRefused (fault 1): the broker refuses every write to
// the dead-letter topic. Each dead letter is retried, then counted as
// failed with its position; the trainer goes on and the rejected
// message's offset advances with the step (before, the trainer stopped).
func TestDeadLetterWriteRefused(t *testing.T) {
	e, st := embeddedEnv(t)
	e.produce(t, 12, 8, 0, []byte("corrupt"))

	var refused atomic.Int32
	c := st.Kafka.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.ProduceRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic != e.dead {
			return nil, nil, false
		}
		refused.Add(1)
		res := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			t := kmsg.NewProduceResponseTopic()
			t.Topic, t.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				p := kmsg.NewProduceResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.NotEnoughReplicas.Code
				t.Partitions = append(t.Partitions, p)
			}
			res.Topics = append(res.Topics, t)
		}
		return res, nil, true
	})
	defer c.DropControl()

	cfg := e.config(1)
	cfg.DeadLetterRetry = Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Tries: 3}
	s, _ := run(t, cfg)
	if s.Steps != 1 || s.DeadLetters != 1 || s.DeadLetterFailures != 1 || s.LastFailedDeadLetter.Topic != e.byID {
		t.Errorf("stats %+v: want 1 step, 1 dead letter whose write failed, on %s", s, e.byID)
	}
	if refused.Load() < 3 {
		t.Errorf("%d dead-letter writes refused: want the 3 tries", refused.Load())
	}
	if n := e.committed(t); n != 8+1+8 {
		t.Errorf("committed %d offsets, want the 17 consumed (the corrupt one too)", n)
	}
}

// TestStorageOutage (fault 2): object storage fails while the trainer
// runs. It keeps training, commits nothing past its last durable
// checkpoint and reports the "storage" condition failing; when storage is
// back, the next checkpoint commits everything and the condition holds.
// Before, the first failed checkpoint stopped the trainer.
func TestStorageOutage(t *testing.T) {
	e, s3, _ := flakyEnv(t)
	cfg := e.config(0)
	cfg.Settings.CheckpointEvery, cfg.Settings.CheckpointInterval = 2, time.Hour
	cfg.StorageRetry = Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Tries: 3}
	r := runAsync(t, cfg)
	tr := r.tr
	gauge := func() float64 {
		var m dto.Metric
		if err := tr.metrics.health.WithLabelValues(CondStorage).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}

	e.produce(t, 12, 2*8, 0)
	e.waitCommitted(t, 2*2*8) // the checkpoint at step 2
	s3.failWhen(func(*http.Request) bool { return true })
	e.produce(t, 12, 4*8, 2*8)
	testutil.WaitTrue(t, "4 more steps whose 2 checkpoints fail", func() bool {
		s := tr.Stats()
		return s.Steps == 6 && s.CheckpointFailures >= 2
	})
	if n := e.committed(t); n != 2*2*8 {
		t.Errorf("committed %d offsets while storage is down, want the %d of the last durable checkpoint", n, 2*2*8)
	}
	if !failing(tr.Health(), CondStorage) || tr.Health().OK() || gauge() != 0 {
		t.Errorf("conditions %+v, gauge %v: want %s failing", tr.Health().Conditions(), gauge(), CondStorage)
	}

	s3.failWhen(nil)
	e.waitCommitted(t, 6*2*8) // the next checkpoint, when the input stalls
	if c, ok := condition(tr.Health(), CondStorage); !ok || !c.OK || gauge() != 1 {
		t.Errorf("condition %+v, gauge %v: want %s ok once a checkpoint succeeded", c, gauge(), CondStorage)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := tr.Stats(); s.Steps != 6 || s.Checkpoints < 3 {
		t.Errorf("stats %+v: want 6 steps and the checkpoints after the outage", s)
	}
}

// TestLostCommitRetriedWhenIdle (found by benchmarks/chaos: a Kafka
// restart lost the commit after the last checkpoint): every commit is
// refused until the input has run out. The producers hold back until the
// group commits, so the trainer must commit its last checkpoint's offsets
// again while idle; before, it waited for a step that never came, and
// producer and trainer stalled for good.
func TestLostCommitRetriedWhenIdle(t *testing.T) {
	e, st := embeddedEnv(t)
	e.produce(t, 12, 4*8, 0) // exactly what 4 steps of 8 take

	var refused atomic.Int32
	var refuse atomic.Bool
	refuse.Store(true)
	c := st.Kafka.Cluster()
	c.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.OffsetCommitRequest)
		if req.Group != e.group || !refuse.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		return refuseCommit(req, kerr.NotCoordinator), nil, true
	})
	defer c.DropControl()

	cfg := e.config(0) // runs until stopped
	cfg.Settings.CheckpointEvery = 4
	cfg.IdleCheckpoint = 100 * time.Millisecond
	r := runAsync(t, cfg)
	testutil.WaitTrue(t, "4 steps and a refused commit", func() bool {
		return r.tr.Stats().Steps == 4 && r.tr.Stats().Checkpoints >= 1 && refused.Load() >= 1
	})
	refuse.Store(false) // Kafka is back; no more input will come
	e.waitCommitted(t, 2*4*8)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// refuseCommit answers an offset commit with err for every partition.
func refuseCommit(req *kmsg.OffsetCommitRequest, err *kerr.Error) *kmsg.OffsetCommitResponse {
	res := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewOffsetCommitResponseTopic()
		t.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetCommitResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, err.Code
			t.Partitions = append(t.Partitions, p)
		}
		res.Topics = append(res.Topics, t)
	}
	return res
}
