package monitoring

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/metricsrv"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// Topics of the test's trainer (2 partitions each).
const (
	topicByID, topicInstance, topicFresh, topicDead = "mon.byid", "mon.instance", "mon.fresh", "mon.deadletter"
	// samples written: 3 steps of batchSize pairs and instances.
	batchSize, samples = 8, 3 * 8
)

// startTrainer runs a small trainer on an embedded stack with 3 steps'
// worth of samples waiting and its metrics served on a loopback port, as
// `ffc train --metrics-addr` does, until the test ends. It returns the
// metrics address once the trainer has taken 2 steps.
func startTrainer(t *testing.T) string {
	t.Helper()
	st, err := embedded.Start(embedded.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	tr := &kafka.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	writeSamples(t, st.Kafka.Brokers(), tr)
	cfg := trainerConfig(t, st)
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	trn, err := trainers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metricsrv.New(metricsrv.Options{Addr: "127.0.0.1:0", Gatherer: reg, Health: []*stage.Health{trn.Health()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testutil.Context(t))
	done := make(chan error, 2)
	go func() { done <- trn.Run(ctx) }()
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("trainer or metrics server: %v", err)
			}
		}
		_ = trn.Close()
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("ended before the metrics server was ready: %v", err)
	}
	testutil.WaitTrue(t, "2 trainer steps", func() bool { return trn.Stats().Steps >= 2 })
	return srv.Addr()
}

// trainerConfig is a small streaming trainer (an mlp on 32×32 inputs) on
// st's NATS and S3.
func trainerConfig(t *testing.T, st *embedded.Stack) trainers.Config {
	t.Helper()
	ak, sk := st.S3.Credentials()
	mc, err := minio.New(st.S3.Endpoint(), &minio.Options{Creds: credentials.NewStaticV4(ak, sk, "")})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(st.NATS.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	set := settings.Defaults(settings.Streaming)
	set.Backbone, set.Hidden, set.Dim, set.Batch, set.Pool, set.LR, set.CheckpointEvery = "mlp", []int{64}, 32, batchSize, 40, 0.05, 2
	return trainers.Config{Brokers: st.Kafka.Brokers(), Model: "monitoring", Backend: be, S3: mc, Bucket: "ffc-monitoring", JS: js,
		Group: "ffc-monitoring", TopicByID: topicByID, TopicInstance: topicInstance, TopicDeadLetter: topicDead, TopicFresh: topicFresh,
		Settings: set, IdleCheckpoint: 500 * time.Millisecond}
}

// writeSamples creates the topics and writes samples id pairs and
// instances of 12 synthetic identities.
func writeSamples(t *testing.T, brokers []string, tr *kafka.Transport) {
	t.Helper()
	ctx := testutil.Context(t)
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 15 * time.Second, Transport: tr}
	var topics []kafka.TopicConfig
	for _, name := range []string{topicByID, topicInstance, topicFresh, topicDead} {
		topics = append(topics, kafka.TopicConfig{Topic: name, NumPartitions: 2, ReplicationFactor: 1})
	}
	if _, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics}); err != nil {
		t.Fatal(err)
	}
	g, err := synth.New(synth.Options{Seed: 2, IDs: 12, Alpha: 1, Min: 3, Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	img := func(id uint64, k int) *ffcpb.Image {
		pix, err := g.Image(id, k)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, &image.Gray{Pix: pix, Stride: 32, Rect: image.Rect(0, 0, 32, 32)}); err != nil {
			t.Fatal(err)
		}
		return &ffcpb.Image{Key: schemas.ImageKey(id, strconv.Itoa(k)), Png: buf.Bytes()}
	}
	var pairs, insts []kafka.Message
	for i := range samples {
		id := uint64(i % 12)
		p, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: id, First: img(id, 0), Second: img(id, 1), Sequence: uint64(i), Source: "test"})
		if err != nil {
			t.Fatal(err)
		}
		s, err := schemas.EncodeSample(&ffcpb.Sample{Id: id, ImageKey: schemas.ImageKey(id, "2"), ImagePng: img(id, 2).Png, Sequence: uint64(i), Source: "test"})
		if err != nil {
			t.Fatal(err)
		}
		key := []byte(strconv.Itoa(i))
		pairs, insts = append(pairs, kafka.Message{Key: key, Value: p}), append(insts, kafka.Message{Key: key, Value: s})
	}
	for topic, msgs := range map[string][]kafka.Message{topicByID: pairs, topicInstance: insts} {
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond,
			RequiredAcks: kafka.RequireAll, Transport: tr}
		err := w.WriteMessages(ctx, msgs...)
		w.Close()
		if err != nil {
			t.Fatalf("write %s: %v", topic, err)
		}
	}
}
