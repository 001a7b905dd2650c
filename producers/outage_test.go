package producers

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

// refuseProduce makes the embedded broker answer the Produce requests
// for topics with NOT_ENOUGH_REPLICAS (a retriable error: nothing is
// appended), the first n of them when n > 0, else every one until heal
// is called. It returns the number refused so far.
func refuseProduce(t *testing.T, topics []string, n int32) (refused *atomic.Int32, heal func()) {
	refused = &atomic.Int32{}
	var healed atomic.Bool
	c := stack.Kafka.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if healed.Load() {
			c.DropControl() // handled normally from now on
			return nil, nil, false
		}
		req := r.(*kmsg.ProduceRequest)
		mine := false
		for _, rt := range req.Topics {
			mine = mine || slices.Contains(topics, rt.Topic)
		}
		if !mine {
			return nil, nil, false
		}
		if k := refused.Add(1); n > 0 && k >= n {
			healed.Store(true)
		}
		res := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			res.Topics = append(res.Topics, st)
		}
		return res, nil, true
	})
	heal = func() { healed.Store(true) }
	t.Cleanup(heal) // the control drops itself at the next Produce request
	return refused, heal
}

// condition returns the health condition name of h.
func condition(h *stage.Health, name string) (stage.Condition, bool) {
	for _, c := range h.Conditions() {
		if c.Name == name {
			return c, true
		}
	}
	return stage.Condition{}, false
}

// TestKafkaOutageNoLoss (fault 3: a Kafka outage dropped messages): while
// the broker refuses the producer's writes, the producer holds both
// streams (it reads nothing more from S3), reports Kafka down on its
// health and in Stats, and retries the refused messages until the broker
// takes them: every message it built ends on the broker, the id pairs
// and samples exactly once each (every sequence number 1..MaxLead once:
// kfake's refusals append nothing, so the at-least-once delivery shows no
// duplicate here), the dead letters too, and none is given up.
func TestKafkaOutageNoLoss(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refuse  int32 // Produce requests refused; 0: until healed
		checkBP bool  // check the backpressure while refused
	}{
		{name: "40 requests refused", refuse: 40},
		{name: "refused until healed", checkBP: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := s3Client(t)
			f := newFixture(t, mc)
			cfg := testConfig(t, mc, f.bucket)
			cfg.MaxLead = 300
			refused, heal := refuseProduce(t, []string{cfg.TopicByID, cfg.TopicInstance, cfg.TopicDeadLetter}, tc.refuse)
			p := start(t, cfg)
			// The stats and the health condition are updated one after the
			// other: wait for both, so that a busy machine cannot read the
			// health in between.
			testutil.WaitTrue(t, "Kafka to be reported down in the stats and the health", func() bool {
				c, _ := condition(p.Health(), CondKafka)
				return p.Stats().Kafka.Down && !c.OK && !p.Health().OK()
			})
			if tc.checkBP {
				checkHeld(t, p, cfg, refused)
				heal()
			}
			testutil.WaitTrue(t, "both streams to reach MaxLead and Kafka to be up", func() bool {
				s := p.Stats()
				return s.ByID.Produced >= int64(cfg.MaxLead) && s.Instance.Produced >= int64(cfg.MaxLead) && !s.Kafka.Down
			})
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, p, cfg, len(f.bad))
			if n := refused.Load(); tc.refuse > 0 && n != tc.refuse {
				t.Errorf("%d Produce requests refused, want %d", n, tc.refuse)
			}
		})
	}
}

// checkHeld: while the broker refuses writes and the producer retries,
// the streams build no new message beyond those already admitted (one
// per worker and one per dispatcher).
func checkHeld(t *testing.T, p *Producer, cfg Config, refused *atomic.Int32) {
	t.Helper()
	s0 := p.Stats()
	r0 := refused.Load()
	testutil.WaitTrue(t, "three more retries to be refused", func() bool {
		return p.Stats().Kafka.Retries >= s0.Kafka.Retries+3 && refused.Load() > r0
	})
	s1 := p.Stats()
	grown := s1.ByID.Sent + s1.Instance.Sent - s0.ByID.Sent - s0.Instance.Sent
	if limit := int64(2 * (cfg.Concurrency + 1)); grown > limit {
		t.Errorf("%d messages built while Kafka refused writes, want at most %d (those admitted before)", grown, limit)
	}
	if !s1.Kafka.Down || s1.Kafka.Pending == 0 || s1.ByID.Failed+s1.Instance.Failed != 0 {
		t.Errorf("kafka %+v, failed %d+%d: want down, messages pending, none given up", s1.Kafka, s1.ByID.Failed, s1.Instance.Failed)
	}
	if v := metricSum(t, p, "ffc_producer_outage"); v != 1 {
		t.Errorf("ffc_producer_outage sums to %v while Kafka refuses writes, want 1 (producer.kafka)", v)
	}
}

// checkDelivered compares what the stopped producer says it built with
// what the broker holds.
func checkDelivered(t *testing.T, p *Producer, cfg Config, deadLetters int) {
	t.Helper()
	st := p.Stats()
	if st.Kafka.Outages < 1 || st.ByID.Retried+st.Instance.Retried == 0 || st.Kafka.Pending != 0 {
		t.Errorf("kafka %+v, retried %d+%d: want an outage, retries and nothing pending", st.Kafka, st.ByID.Retried, st.Instance.Retried)
	}
	for _, s := range []StreamStats{st.ByID, st.Instance} {
		if s.Failed != 0 || s.InFlight != 0 || s.Sent != s.Produced || s.Produced != int64(cfg.MaxLead) {
			t.Errorf("%s: sent %d, produced %d, failed %d, in flight %d: want %d sent and produced, none failed or in flight",
				s.Topic, s.Sent, s.Produced, s.Failed, s.InFlight, cfg.MaxLead)
		}
		recs := readAll(t, s.Topic)
		seqs := make([]uint64, 0, len(recs))
		for _, r := range recs {
			var seq uint64
			if s.Topic == cfg.TopicByID {
				m, err := schemas.DecodeIDPair(r.Value, schemas.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				seq = m.GetSequence()
			} else {
				m, err := schemas.DecodeSample(r.Value, schemas.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				seq = m.GetSequence()
			}
			seqs = append(seqs, seq)
		}
		slices.Sort(seqs)
		want := make([]uint64, s.Sent)
		for i := range want {
			want[i] = uint64(i + 1)
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("%s: the broker holds %d records, want sequence numbers 1..%d once each", s.Topic, len(seqs), s.Sent)
		}
	}
	if n := sum(endOffsets(t, cfg.TopicDeadLetter)); n != int64(deadLetters) {
		t.Errorf("%d dead letters on the broker, want %d", n, deadLetters)
	}
	for name, check := range map[string]func(float64) bool{
		"ffc_producer_produce_failures_total": func(v float64) bool { return v == 0 },
		"ffc_producer_kafka_retried_total":    func(v float64) bool { return v > 0 },
		"ffc_producer_outage":                 func(v float64) bool { return v == 0 },
	} {
		if v := metricSum(t, p, name); !check(v) {
			t.Errorf("%s = %v", name, v)
		}
	}
}

// metricSum is the sum of the series of the producer's metric name.
func metricSum(t *testing.T, p *Producer, name string) float64 {
	t.Helper()
	mfs, err := p.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return v
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestConnectTimeout (fault 7: an unreachable Kafka was waited for
// without end): Run fails after ConnectTimeout with the error of the
// service that is not there, which its health names too.
func TestConnectTimeout(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, c *Config)
		want error
		cond string
	}{
		{"kafka", func(t *testing.T, c *Config) { c.Brokers = []string{testutil.ClosedAddr(t)} }, ErrKafkaUnreachable, CondKafka},
		{"object storage", func(t *testing.T, c *Config) {
			dead, err := minio.New(testutil.ClosedAddr(t), &minio.Options{Creds: credentials.NewStaticV4("a", "b", ""), MaxRetries: 1})
			if err != nil {
				t.Fatal(err)
			}
			c.S3 = dead
		}, ErrObjectStorageUnreachable, CondObjectStorage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, mc, f.bucket)
			cfg.ConnectTimeout = 500 * time.Millisecond
			tc.edit(t, &cfg)
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			err = p.Run(testutil.Context(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Run: %v, want %v", err, tc.want)
			}
			if c, ok := condition(p.Health(), tc.cond); !ok || c.OK || c.Reason == "" {
				t.Errorf("condition %s: %+v, want failing with a reason", tc.cond, c)
			}
		})
	}
}

// TestStoppedWhileConnecting: a producer stopped while it waits for Kafka
// returns nil (a clean stop) and its health says what it waited for.
func TestStoppedWhileConnecting(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.Brokers = []string{testutil.ClosedAddr(t)}
	cfg.ConnectTimeout = -1 // for ever
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testutil.Context(t))
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testutil.WaitTrue(t, "a failed attempt to reach Kafka", func() bool {
		c, _ := condition(p.Health(), CondKafka)
		return !c.OK && c.Reason != "not connected yet"
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run stopped while connecting: %v, want nil", err)
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	if c, _ := condition(p.Health(), CondObjectStorage); !c.OK {
		t.Errorf("object storage %+v, want OK (the bucket was found)", c)
	}
}
