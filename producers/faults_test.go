package producers

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// failCreateTopics makes the embedded broker answer the next n
// CreateTopics requests for topic with code, and counts them.
func failCreateTopics(topic string, n int, code int16) *atomic.Int32 {
	var seen atomic.Int32
	c := stack.Kafka.Cluster()
	c.ControlKey(int16(kmsg.CreateTopics), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.CreateTopicsRequest)
		mine := false
		for _, t := range req.Topics {
			mine = mine || t.Topic == topic
		}
		c.KeepControl()
		if !mine {
			return nil, nil, false
		}
		// KeepControl sticks to the function: drop it explicitly.
		c.KeepControl()
		if seen.Add(1) >= int32(n) {
			c.DropControl()
		}
		res := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic, rt.ErrorCode = t.Topic, code
			res.Topics = append(res.Topics, rt)
		}
		return res, nil, true
	})
	return &seen
}

// TestTopicsRetried: topic creation that times out on the broker (as on a
// busy host) is retried with backoff, and the producer starts.
func TestTopicsRetried(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 8
	seen := failCreateTopics(cfg.TopicByID, 3, kerr.RequestTimedOut.Code)
	p := start(t, cfg)
	if n := seen.Load(); n != 3 {
		t.Errorf("%d CreateTopics requests failed, want 3 retried", n)
	}
	testutil.WaitTrue(t, "the id stream to flow", func() bool { return p.Stats().ByID.Produced > 0 })
}

// TestTopicsPermanentError: an error the broker calls permanent (a bad
// replication factor) ends Run at once with the broker's reason.
func TestTopicsPermanentError(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	seen := failCreateTopics(cfg.TopicByID, 1, kerr.InvalidReplicationFactor.Code)
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Run(testutil.Context(t))
	if err == nil || !strings.Contains(err.Error(), "Replication Factor") {
		t.Fatalf("Run: %v, want the invalid replication factor", err)
	}
	if n := seen.Load(); n != 1 {
		t.Errorf("%d CreateTopics requests, want 1 (no retry)", n)
	}
}

// TestFlowHoldsWhileLagUnknown: while the trainers' committed offsets
// cannot be read (OffsetFetch fails), flow control holds the streams even
// after the trainers commit; once they can be read again, the id stream
// resumes up to MaxLead past the commit.
func TestFlowHoldsWhileLagUnknown(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 30
	p := start(t, cfg)
	testutil.WaitTrue(t, "the id stream to reach MaxLead", func() bool { return p.Stats().ByID.Produced >= int64(cfg.MaxLead) })

	var failed atomic.Int32
	heal := make(chan struct{})
	c := stack.Kafka.Cluster()
	c.ControlKey(int16(kmsg.OffsetFetch), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.OffsetFetchRequest)
		if req.Group != cfg.TrainerGroup {
			c.KeepControl()
			return nil, nil, false
		}
		c.KeepControl()
		select {
		case <-heal:
			c.DropControl() // handled normally from now on
			return nil, nil, false
		default:
		}
		failed.Add(1)
		return nil, errors.New("injected: connection closed"), true
	})
	commitEnd(t, cfg.TrainerGroup, cfg.TopicByID)
	testutil.WaitTrue(t, "5 failed lag measurements", func() bool { return failed.Load() >= 5 })
	if end := sum(endOffsets(t, cfg.TopicByID)); end != int64(cfg.MaxLead) {
		t.Errorf("%s: end offset %d while the lag is unknown, want MaxLead = %d", cfg.TopicByID, end, cfg.MaxLead)
	}
	close(heal)
	testutil.WaitTrue(t, "the id stream to resume", func() bool { return sum(endOffsets(t, cfg.TopicByID)) >= int64(2*cfg.MaxLead) })
}
