package security_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// createTopics creates the topics through c and returns each topic's
// error (nil: created or already there).
func createTopics(t *testing.T, c *kafka.Client, names ...string) map[string]error {
	t.Helper()
	var cfgs []kafka.TopicConfig
	for _, n := range names {
		cfgs = append(cfgs, kafka.TopicConfig{Topic: n, NumPartitions: 1, ReplicationFactor: 1})
	}
	res, err := c.CreateTopics(testutil.Context(t), &kafka.CreateTopicsRequest{Topics: cfgs})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]error{}
	for _, n := range names {
		if e := res.Errors[n]; e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
			out[n] = e
		} else {
			out[n] = nil
		}
	}
	return out
}

// write writes one message to topic as sec, once.
func write(t *testing.T, tg target, sec security.Kafka, topic string) error {
	t.Helper()
	tr, err := sec.Transport("ffc-security-test")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(tg.brokers...), Topic: topic, Transport: tr, MaxAttempts: 1, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, WriteTimeout: 20 * time.Second}
	defer w.Close()
	return w.WriteMessages(testutil.Context(t), kafka.Message{Key: []byte("k"), Value: []byte("v")})
}

func authzFailed(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "authoriz")
}

// testKafkaPrivileges: the producer creates and writes the sample topics
// only; the trainer reads them, writes the dead-letter topic and commits
// its group, and cannot write a sample.
func testKafkaPrivileges(t *testing.T, tg target) {
	ctx := testutil.Context(t)
	prod, train := role(t, tg, security.RoleProducer), role(t, tg, security.RoleTrainer)
	names := security.DefaultNames()
	samples := names.TopicPrefix + "sec-" + tg.sfx
	errs := createTopics(t, kafkaClient(t, tg, prod), samples, "other-"+tg.sfx)
	if errs[samples] != nil {
		t.Fatalf("producer creating %s: %v", samples, errs[samples])
	}
	if !authzFailed(errs["other-"+tg.sfx]) {
		t.Errorf("producer creating a topic outside %s*: %v, want an authorization failure", names.TopicPrefix, errs["other-"+tg.sfx])
	}
	if e := createTopics(t, kafkaClient(t, tg, role(t, tg, security.RoleAdmin)), names.DeadLetter)[names.DeadLetter]; e != nil {
		t.Fatalf("admin creating %s: %v", names.DeadLetter, e)
	}
	if err := write(t, tg, prod, samples); err != nil {
		t.Fatalf("producer writing %s: %v", samples, err)
	}
	if err := write(t, tg, train, samples); !authzFailed(err) {
		t.Errorf("trainer writing a sample to %s: %v, want an authorization failure", samples, err)
	}
	if err := write(t, tg, prod, names.DeadLetter); !authzFailed(err) {
		t.Errorf("producer writing %s: %v, want an authorization failure", names.DeadLetter, err)
	}
	if err := write(t, tg, train, names.DeadLetter); err != nil {
		t.Errorf("trainer writing %s: %v", names.DeadLetter, err)
	}
	// The trainer reads what the producer wrote and commits its group.
	d, err := train.Dialer("ffc-security-test")
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: tg.brokers, Topic: samples, Partition: 0, Dialer: d, MaxWait: time.Second})
	defer r.Close()
	msg, err := r.ReadMessage(ctx)
	if err != nil || string(msg.Value) != "v" {
		t.Fatalf("trainer reading %s: %q, %v", samples, msg.Value, err)
	}
	// A fresh broker answers group requests with coordinator errors while
	// it loads its offsets topic: those are waited out.
	commit := func(sec security.Kafka) (err error) {
		cl := kafkaClient(t, tg, sec)
		testutil.WaitFor(t, "a group coordinator", func() error {
			res, rerr := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: names.GroupPrefix + "-" + tg.sfx, GenerationID: -1,
				Topics: map[string][]kafka.OffsetCommit{samples: {{Partition: 0, Offset: 1}}}})
			if rerr == nil {
				rerr = res.Topics[samples][0].Error
			}
			if errors.Is(rerr, kafka.NotCoordinatorForGroup) || errors.Is(rerr, kafka.GroupCoordinatorNotAvailable) || errors.Is(rerr, kafka.GroupLoadInProgress) {
				return rerr
			}
			err = rerr
			return nil
		})
		return err
	}
	if err := commit(train); err != nil {
		t.Errorf("trainer committing its group: %v", err)
	}
	if err := commit(prod); !authzFailed(err) {
		t.Errorf("producer committing the trainers' group: %v, want an authorization failure", err)
	}
}
