package producers

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// done is a context that has ended: admit with it takes an open slot and
// fails at once where it would block.
var done = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// admitN admits as many messages as the gate allows without blocking.
func admitN(g *gate) int {
	n := 0
	for g.admit(done) == nil {
		n++
	}
	return n
}

func TestGate(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		maxLead, maxInFlight  int
		measured              bool
		lag                   int64
		ackBefore, ackBetween int // acknowledged before beginMeasure, between it and setMeasured
		want                  int
	}{
		{"closed before the first measurement", 10, 100, false, 0, 0, 0, 0},
		{"empty topic", 10, 100, true, 0, 0, 0, 10},
		{"lag below max", 10, 100, true, 4, 0, 0, 6},
		{"lag at max", 10, 100, true, 10, 0, 0, 0},
		{"lag over max (a group reset)", 10, 100, true, 25, 0, 0, 0},
		{"acks during the measurement count twice", 10, 100, true, 3, 0, 2, 5},
		{"in-flight bound", 100, 4, true, 0, 0, 0, 4},
		{"flow control off", -1, 7, false, 0, 0, 0, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(tc.maxLead, tc.maxInFlight)
			// Messages written before the measurement (already in lag).
			for range tc.ackBefore + tc.ackBetween {
				g.inflight++
			}
			g.done(tc.ackBefore, true)
			acked := g.beginMeasure()
			g.done(tc.ackBetween, true)
			if tc.measured {
				g.setMeasured(tc.lag, acked)
			}
			if got := admitN(g); got != tc.want {
				t.Errorf("admitted %d, want %d (stats %+v)", got, tc.want, g.stats())
			}
		})
	}
}

// TestGateBoundsLag simulates a broker and a trainer that never commits:
// whatever the timing of measurements and acknowledgements, the messages
// written never exceed maxLead.
func TestGateBoundsLag(t *testing.T) {
	const maxLead = 50
	g := newGate(maxLead, 1000)
	g.setMeasured(0, 0)
	written := int64(0) // the topic's end offset
	var pending int     // admitted, not yet acknowledged
	for step := range 2000 {
		switch step % 7 {
		case 0, 3: // a measurement: the end offsets are what was written
			a := g.beginMeasure()
			g.setMeasured(written, a)
		case 1, 4, 5:
			if pending > 0 {
				written++ // the broker appends, then acknowledges
				pending--
				g.done(1, true)
			}
		default:
			if g.admit(done) == nil {
				pending++
			}
		}
		if written+int64(pending) > maxLead {
			t.Fatalf("step %d: %d written + %d pending > MaxLead %d", step, written, pending, maxLead)
		}
	}
	if written < maxLead-1 {
		t.Errorf("only %d written: the gate held too early", written)
	}
	// The trainer commits everything: lag 0, the gate reopens.
	a := g.beginMeasure()
	g.setMeasured(0, a)
	if n := admitN(g); n != maxLead-pending {
		t.Errorf("after the commit admitted %d, want %d", n, maxLead-pending)
	}
}

func TestGateRelease(t *testing.T) {
	g := newGate(2, 10)
	g.setMeasured(0, 0)
	if admitN(g) != 2 {
		t.Fatal("want 2 admitted")
	}
	g.release()
	if admitN(g) != 1 {
		t.Fatal("a released admission was not given back")
	}
	admitted := make(chan error, 1)
	go func() { admitted <- g.admit(context.Background()) }()
	testutil.WaitTrue(t, "admit to block on the full gate", func() bool { return g.stats().blocking })
	select {
	case <-admitted:
		t.Fatal("admitted over MaxLead")
	default:
	}
	g.release()
	if err := <-admitted; err != nil { // a blocked admit wakes on release
		t.Fatal(err)
	}
	if s := g.stats(); s.blocked <= 0 || s.blocking {
		t.Errorf("blocked time %v, blocking %v: want > 0, no longer blocking", s.blocked, s.blocking)
	}
}

// TestLagMeter measures a topic's lag against the embedded broker: with
// no committed offset the lag counts from the log start (which deleted
// records move), then from the committed offset.
func TestLagMeter(t *testing.T) {
	topic, group := unique("lag"), unique("group")
	ctx := testutil.Context(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Kafka.Brokers()...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, 2, 1
	create.Topics = append(create.Topics, ct)
	if _, err := create.RequestWith(ctx, cl); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		r := &kgo.Record{Partition: int32(i % 2), Value: []byte{byte(i)}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	tr := &kafka.Transport{MetadataTTL: 50 * time.Millisecond}
	defer tr.CloseIdleConnections()
	addr := kafka.TCP(stack.Kafka.Brokers()...)
	m := &lagMeter{client: &kafka.Client{Addr: addr, Transport: tr}, transport: tr, addr: addr, group: group, topics: []string{topic}}
	check := func(want int64) {
		t.Helper()
		var lag map[string]int64
		testutil.WaitFor(t, "a lag measurement (the new topic in the transport's metadata)", func() (err error) {
			lag, err = m.measure(ctx)
			return err
		})
		if lag[topic] != want {
			t.Errorf("lag %d, want %d", lag[topic], want)
		}
	}
	check(10) // 5 + 5, nothing committed

	del := kmsg.NewPtrDeleteRecordsRequest()
	dt := kmsg.NewDeleteRecordsRequestTopic()
	dt.Topic = topic
	dp := kmsg.NewDeleteRecordsRequestTopicPartition()
	dp.Partition, dp.Offset = 0, 3
	dt.Partitions = append(dt.Partitions, dp)
	del.Topics = append(del.Topics, dt)
	if _, err := del.RequestWith(ctx, cl); err != nil {
		t.Fatal(err)
	}
	check(7) // partition 0 starts at 3 now: 2 + 5

	commitEnd(t, group, topic) // 5 and 5
	check(0)
	for i := range 4 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 2)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	check(4)
}
