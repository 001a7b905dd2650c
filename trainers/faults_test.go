package trainers

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/testutil"
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
