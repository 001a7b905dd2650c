package trainers

import (
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/embedded"
)

// TestCommitFailureAfterCheckpoint: the broker refuses the trainer's first
// two offset commits (each after a durable checkpoint). The trainer keeps
// training, the checkpoints hold the offsets, and the next commit catches
// up: at the end the group has committed every message consumed.
func TestCommitFailureAfterCheckpoint(t *testing.T) {
	st, err := embedded.Start(embedded.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ak, sk := st.S3.Credentials()
	e := newEnv(t, st.Kafka.Brokers(), st.NATS.URL(), st.S3.Endpoint(), ak, sk)
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
		res := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			t := kmsg.NewOffsetCommitResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewOffsetCommitResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.RequestTimedOut.Code
				t.Partitions = append(t.Partitions, p)
			}
			res.Topics = append(res.Topics, t)
		}
		return res, nil, true
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
