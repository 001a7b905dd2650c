package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestEmbeddedFaults breaks each embedded service and checks that it
// failed while broken and works again after the fault.
func TestEmbeddedFaults(t *testing.T) {
	ctx := testutil.Context(t)
	e, err := startEmbedded(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	}()
	a, err := newKafkaAdmin(e.endpoints().brokers, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	topic := "chaos-test"
	if _, err := a.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.produce(ctx, []*kgo.Record{{Topic: topic, Partition: 0, Value: []byte("x")}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	parts, err := a.partitions(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: "g", GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 1}}}})
	if err != nil || res.Topics[topic][0].Error != nil {
		t.Fatalf("offset commit: %v %+v", err, res)
	}
	check := func(what string) {
		t.Helper()
		if c, err := a.committed(ctx, "g", parts); err != nil || c[tp{topic, 0}] != 1 {
			t.Fatalf("%s: committed offsets %v, %v; want 1", what, c, err)
		}
		end, err := a.offsets(ctx, parts, -1)
		if err != nil || end[tp{topic, 0}] != 1 {
			t.Fatalf("%s: end offsets %v, %v", what, end, err)
		}
	}
	check("before the faults")
	for _, svc := range []string{svcKafka, svcNATS, svcS3} {
		how, err := e.fault(ctx, svc, 200*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", svc, err)
		}
		t.Logf("%s: %s", svc, how)
		check("after the " + svc + " fault")
	}
}
