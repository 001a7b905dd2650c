package trainers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"image"
	"image/png"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type env struct {
	mc      *minio.Client
	js      jetstream.JetStream
	be      kernels.Backend
	brokers []string
	// transport holds the test's own Kafka connections (closed at the
	// end, so goleak sees none left).
	transport *kafka.Transport
	// Unique names, so runs against long-lived real servers do not mix.
	bucket, model, byID, instance, dead, fresh, group string
}

// stacks returns the embedded stack and, when FFC_KAFKA_BROKERS,
// FFC_NATS_URL and FFC_S3_ENDPOINT are set, the real servers.
func stacks(t *testing.T) map[string]func(*testing.T) *env {
	out := map[string]func(*testing.T) *env{"embedded": func(t *testing.T) *env {
		e, _ := embeddedEnv(t)
		return e
	}}
	if b, n, s := os.Getenv("FFC_KAFKA_BROKERS"), os.Getenv("FFC_NATS_URL"), os.Getenv("FFC_S3_ENDPOINT"); b != "" && n != "" && s != "" {
		out["real"] = func(t *testing.T) *env {
			return newEnv(t, strings.Split(b, ","), n, s, os.Getenv("FFC_S3_ACCESS_KEY"), os.Getenv("FFC_S3_SECRET_KEY"))
		}
	} else if os.Getenv("FFC_REQUIRE_REAL") == "1" {
		t.Fatal("FFC_REQUIRE_REAL=1 but FFC_KAFKA_BROKERS, FFC_NATS_URL or FFC_S3_ENDPOINT is unset")
	}
	return out
}

// embeddedEnv is an env on an embedded stack of the test's own.
func embeddedEnv(t *testing.T) (*env, *embedded.Stack) {
	t.Helper()
	st, err := embedded.Start(embedded.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ak, sk := st.S3.Credentials()
	return newEnv(t, st.Kafka.Brokers(), st.NATS.URL(), st.S3.Endpoint(), ak, sk), st
}

func newEnv(t *testing.T, brokers []string, natsURL, s3, ak, sk string) *env {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	sfx := hex.EncodeToString(rnd[:])
	e := &env{brokers: brokers, bucket: "ffc-test-" + sfx, model: "test-" + sfx, byID: "byid-" + sfx, instance: "instance-" + sfx, dead: "dead-" + sfx, fresh: "fresh-" + sfx, group: "trainer-" + sfx}
	// A transport of the test's own, whose idle connections (kept alive
	// by a real MinIO) end with the test.
	ht, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ht.CloseIdleConnections)
	mc, err := minio.New(s3, &minio.Options{Creds: credentials.NewStaticV4(ak, sk, ""), Transport: ht})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.MakeBucket(context.Background(), e.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	e.mc, e.js, e.be = mc, js, be
	// Topics with 4 partitions each (kafka.Client negotiates versions).
	tr := &kafka.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	e.transport = tr
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 15 * time.Second, Transport: tr}
	var topics []kafka.TopicConfig
	for _, name := range []string{e.byID, e.instance, e.dead, e.fresh} {
		topics = append(topics, kafka.TopicConfig{Topic: name, NumPartitions: 4, ReplicationFactor: 1})
	}
	if _, err := cl.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: topics}); err != nil {
		t.Fatal(err)
	}
	return e
}

func pngOf(t *testing.T, pix []byte) []byte {
	t.Helper()
	img := &image.Gray{Pix: pix, Stride: 32, Rect: image.Rect(0, 0, 32, 32)}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// produce writes n id pairs and n instances over ids [0, ids) of
// synthetic identities, plus the given raw messages on samples.byid.
func (e *env) produce(t *testing.T, ids, n, from int, raw ...[]byte) {
	t.Helper()
	g, err := synth.New(synth.Options{Seed: 2, IDs: uint64(ids), Alpha: 1, Min: 3, Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	img := func(id, k int) *ffcpb.Image {
		pix, err := g.Image(uint64(id), k)
		if err != nil {
			t.Fatal(err)
		}
		return &ffcpb.Image{Key: schemas.ImageKey(uint64(id), strconv.Itoa(k)), Png: pngOf(t, pix)}
	}
	var pairs, inst []kafka.Message
	for _, r := range raw { // first, so they are consumed early
		pairs = append(pairs, kafka.Message{Key: []byte("raw"), Value: r})
	}
	for i := from; i < from+n; i++ {
		id := i % ids
		b, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: uint64(id), First: img(id, 0), Second: img(id, 1), Sequence: uint64(i), Source: "test"})
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, kafka.Message{Key: []byte(strconv.Itoa(id)), Value: b})
		k := i % 3
		s, err := schemas.EncodeSample(&ffcpb.Sample{Id: uint64(id), ImageKey: schemas.ImageKey(uint64(id), strconv.Itoa(k)), ImagePng: img(id, k).Png, Sequence: uint64(i), Source: "test"})
		if err != nil {
			t.Fatal(err)
		}
		inst = append(inst, kafka.Message{Key: []byte(strconv.Itoa(i)), Value: s})
	}
	ctx := testutil.Context(t)
	for topic, msgs := range map[string][]kafka.Message{e.byID: pairs, e.instance: inst} {
		w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond, Transport: e.transport}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce %s: %v", topic, err)
		}
		w.Close()
	}
}

// testSettings are small streaming settings: an mlp on 32×32 inputs.
func testSettings() settings.Settings {
	s := settings.Defaults(settings.Streaming)
	s.Backbone, s.Hidden, s.Dim, s.Batch, s.Pool, s.LR, s.CheckpointEvery = "mlp", []int{64}, 32, 8, 40, 0.05, 4
	return s
}

func (e *env) config(steps int) Config {
	return Config{
		Brokers: e.brokers, Model: e.model, Backend: e.be, S3: e.mc, Bucket: e.bucket, JS: e.js,
		Group: e.group, TopicByID: e.byID, TopicInstance: e.instance, TopicDeadLetter: e.dead, TopicFresh: e.fresh,
		Settings: testSettings(), MaxSteps: steps,
	}
}

func run(t *testing.T, cfg Config) (Stats, []uint64) {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	return tr.Stats(), tr.PoolIDs()
}

func TestTrainerStreamsCheckpointsAndResumes(t *testing.T) {
	for name, mk := range stacks(t) {
		t.Run(name, func(t *testing.T) { testStreamsCheckpointsAndResumes(t, mk(t)) })
	}
}

func testStreamsCheckpointsAndResumes(t *testing.T, e *env) {
	corrupt := []byte("this is not a protobuf IDPair")
	// A valid IDPair whose version field (field 1, varint: 0x08 0x01) says 99.
	badVersion, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: 1, Source: "test"})
	if err != nil || badVersion[0] != 0x08 || badVersion[1] != 0x01 {
		t.Fatalf("unexpected encoding %x: %v", badVersion, err)
	}
	badVersion[1] = 99
	// Exactly what the two runs take (6 steps of 8, then 5 of 12): every
	// message, the two bad ones too, is consumed whatever order the
	// partitions are read in.
	e.produce(t, 20, 6*8+5*12, 0, corrupt, badVersion)

	rep, err := broadcast.NewReplica(e.js, broadcast.ReplicaOptions{Model: e.model, Codec: broadcast.NewProtoCodec(32), Dim: 32})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rep.Run(context.Background()) }()
	defer rep.Close()

	s1, ids1 := run(t, e.config(6))
	if s1.Steps != 6 || s1.StartStep != 0 || s1.Checkpoints < 2 {
		t.Fatalf("first run: %+v", s1)
	}
	// A restart cannot resize the pool: refused with the reason.
	big := e.config(5)
	big.Settings.Pool = 64
	tr, err := New(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(testutil.Context(t)); err == nil || !strings.Contains(err.Error(), "cannot be resized") {
		t.Errorf("restart with --pool 64 over a pool of 40: %v, want refused", err)
	}
	tr.Close()
	// Second run, with another batch and no --pool: restores step 6, the
	// offsets and the pool of 40 slots, and continues.
	cfg := e.config(5)
	cfg.Settings.Batch, cfg.Settings.Pool = 12, 0
	tr, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	s2, ids2 := tr.Stats(), tr.PoolIDs()
	if s2.StartStep != 6 || s2.Steps != 5 || s2.Pairs != 5*12 {
		t.Fatalf("second run: %+v, want start step 6 and 5 steps of 12 pairs", s2)
	}
	if set := tr.Settings(); set.Pool != 40 || set.Batch != 12 {
		t.Errorf("resumed settings: pool %d, batch %d; want the checkpoint's 40 slots and batch 12", set.Pool, set.Batch)
	}
	// Every ID in either run's pool got a center on NATS, the second
	// run's under its own, newer epoch.
	if err := rep.WaitStep(testutil.Context(t), 10); err != nil {
		t.Fatal(err)
	}
	inserted := s1.Inserted + s2.Inserted
	if st := rep.Stats(); st.LastStep != 10 || st.Epoch != 2 || st.IDs > inserted || st.IDs < len(ids2) || st.Stale != 0 || len(ids2) < 10 {
		t.Fatalf("replica %+v: want step 10 of epoch 2, at most the %d inserted IDs and at least the %d in the pool, no stale updates", st, inserted, len(ids2))
	}
	for _, id := range append(ids1, ids2...) {
		if c, ok := rep.Get(id); !ok || len(c.Vector) != 32 {
			t.Errorf("pool id %d has no center on NATS", id)
		}
	}
	for _, id := range ids2 {
		if c, _ := rep.Get(id); c.Epoch != 2 {
			t.Errorf("id %d of the second run's pool is at epoch %d", id, c.Epoch)
		}
	}
	// The bad messages went to the dead-letter topic with their reasons.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.dead, GroupID: e.group + "-dl", StartOffset: kafka.FirstOffset, MaxWait: time.Second})
	defer r.Close()
	ctx := testutil.Context(t)
	reasons := map[string]bool{}
	for len(reasons) < 2 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("dead letters: %v (got %v)", err, reasons)
		}
		for _, h := range m.Headers {
			if h.Key == "reason" {
				reasons[string(h.Value)] = true
			}
		}
	}
	if !reasons["malformed"] || !reasons["unknown_version"] {
		t.Errorf("dead-letter reasons %v, want malformed and unknown_version", reasons)
	}
	if s1.DeadLetters+s2.DeadLetters < 2 {
		t.Errorf("dead letters counted: %d + %d", s1.DeadLetters, s2.DeadLetters)
	}
}

func TestTrainerConfigErrors(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"no brokers":     func(c *Config) { c.Brokers = nil },
		"fc head":        func(c *Config) { c.Settings.Head = "fc" },
		"odd batch":      func(c *Config) { c.Settings.Batch = 7 },
		"no model":       func(c *Config) { c.Model = "" },
		"model subject":  func(c *Config) { c.Model = "a.b" },
		"small pool":     func(c *Config) { c.Settings.Pool = 9 },
		"instances only": func(c *Config) { c.Settings.DualLoader = false },
	} {
		c := Config{Brokers: []string{"x"}, Model: "m", Backend: fakeBackend{}, S3: &minio.Client{}, Bucket: "b", JS: fakeJS{}, Settings: testSettings()}
		if _, err := New(c); err != nil {
			t.Fatalf("the base config: %v", err)
		}
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

type fakeBackend struct{ kernels.Backend }
type fakeJS struct{ jetstream.JetStream }

// TestConsumeOnly: the ingest path without the engine consumes whole
// batches, commits their offsets and writes no checkpoint.
func TestConsumeOnly(t *testing.T) {
	e, _ := embeddedEnv(t)
	// Exactly what 3 batches take: every message, the corrupt one too, is
	// consumed whatever order the partitions are read in.
	e.produce(t, 10, 24, 0, []byte("corrupt"))
	cfg := Config{Brokers: e.brokers, Model: e.model, Group: e.group, TopicByID: e.byID, TopicInstance: e.instance, TopicDeadLetter: e.dead, TopicFresh: e.fresh,
		Settings: testSettings(), MaxSteps: 3, ConsumeOnly: true}
	s, _ := run(t, cfg)
	if s.Steps != 3 || s.Pairs != 24 || s.Instances != 24 || s.DeadLetters != 1 || s.Checkpoints != 0 || s.Published != 0 {
		t.Errorf("stats %+v: want 3 batches of 8 pairs and 8 instances, 1 dead letter, no checkpoint, nothing published", s)
	}
	committed := e.committed(t)
	if committed != 24+1+24 { // the pairs, the corrupt one and the instances
		t.Errorf("committed %d offsets, want all 49", committed)
	}
	for obj := range e.mc.ListObjects(testutil.Context(t), e.bucket, minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("object %s written", obj.Key)
	}
}

// committed is the sum over the topics' 4 partitions of the offsets the
// group has committed.
func (e *env) committed(t *testing.T) int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(e.brokers...), Transport: e.transport}
	res, err := cl.OffsetFetch(testutil.Context(t), &kafka.OffsetFetchRequest{GroupID: e.group, Topics: map[string][]int{e.byID: {0, 1, 2, 3}, e.instance: {0, 1, 2, 3}}})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, ps := range res.Topics {
		for _, p := range ps {
			n += max(p.CommittedOffset, 0)
		}
	}
	return n
}
