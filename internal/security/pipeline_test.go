package security_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"image"
	"image/png"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/settings"
)

const pipelineIDs = 12

// testPipeline runs the whole pipeline with each part's least privileges:
// the uploader's images, the producer (producer role) streaming them, the
// trainer (trainer role) training, checkpointing and publishing signed
// centers, and a replica (subscriber role) verifying them. Nothing a
// part needs is refused: every ID gets a center, checkpoints are
// written, nothing is dead-lettered and no health condition fails.
func testPipeline(t *testing.T, tg target) {
	ctx := testutil.Context(t)
	p := "samples.pipe-" + tg.sfx
	bucket, model, group := "ffc-pipe-"+tg.sfx, "pipe"+tg.sfx, "ffc-trainer-pipe-"+tg.sfx
	up := s3Client(t, tg, s3Creds(t, tg, security.RoleUploader))
	if err := up.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("uploader creating the bucket: %v", err)
	}
	for id := 1; id <= pipelineIDs; id++ {
		for k := range 3 {
			b := grayPNG(t, byte(id*7+k))
			if _, err := up.PutObject(ctx, bucket, fmt.Sprintf("ids/%d/%d.png", id, k), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
				t.Fatalf("uploader writing ids/: %v", err)
			}
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	prodTLS, prodSASL, err := role(t, tg, security.RoleProducer).Client()
	if err != nil {
		t.Fatal(err)
	}
	prod, err := producers.New(producers.Config{Brokers: tg.brokers, KafkaTLS: prodTLS, KafkaSASL: prodSASL,
		S3: s3Client(t, tg, s3Creds(t, tg, security.RoleProducer)), Bucket: bucket,
		TopicByID: p + ".byid", TopicInstance: p + ".instance", TopicFresh: p + ".fresh", TopicDeadLetter: security.DefaultNames().DeadLetter,
		TrainerGroup: group, Partitions: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "producer", prod)
	tr := pipelineTrainer(t, tg, trainers.Config{Group: group, TopicByID: p + ".byid", TopicInstance: p + ".instance", TopicFresh: p + ".fresh",
		TopicDeadLetter: security.DefaultNames().DeadLetter, Model: model, Bucket: bucket, SigningKey: priv, MaxSteps: 12})
	snc, _ := natsConn(t, tg, tg.m.NATSClient(security.RoleSubscriber, false))
	sjs, err := jetstream.New(snc)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		t.Fatalf("trainer as the trainer role: %v", err)
	}
	rep, err := broadcast.NewReplica(sjs, broadcast.ReplicaOptions{Model: model, Codec: broadcast.NewProtoCodec(8).WithVerifier(pub), Dim: 8})
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "replica", rep)
	st, rs, ps := tr.Stats(), rep.Stats(), prod.Stats()
	if st.Steps != 12 || st.Checkpoints == 0 || st.DeadLetters != 0 || len(rep.IDs()) == 0 || rs.Rejected != 0 || ps.IDs != pipelineIDs || len(ps.DeadLetters) != 0 {
		t.Errorf("trainer %+v\nreplica %+v (%d IDs)\nproducer catalog %d IDs, dead letters %v: want 12 steps, checkpoints, centers verified, nothing rejected",
			st, rs, len(rep.IDs()), ps.IDs, ps.DeadLetters)
	}
	for _, h := range []struct {
		name string
		ok   bool
		cs   any
	}{{"producer", prod.Health().OK(), prod.Health().Conditions()}, {"trainer", tr.Health().OK(), tr.Health().Conditions()}} {
		if !h.ok {
			t.Errorf("%s health: %+v", h.name, h.cs)
		}
	}
}

// pipelineTrainer is a small mlp trainer of cfg's names with the trainer
// role's Kafka, S3 and NATS credentials.
func pipelineTrainer(t *testing.T, tg target, cfg trainers.Config) *trainers.Trainer {
	t.Helper()
	var err error
	if cfg.KafkaTLS, cfg.KafkaSASL, err = role(t, tg, security.RoleTrainer).Client(); err != nil {
		t.Fatal(err)
	}
	tnc, _ := natsConn(t, tg, tg.m.NATSClient(security.RoleTrainer, false))
	if cfg.JS, err = jetstream.New(tnc); err != nil {
		t.Fatal(err)
	}
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	s := settings.Defaults(settings.Streaming)
	s.Backbone, s.Hidden, s.Dim, s.Batch, s.Pool, s.LR, s.CheckpointEvery = "mlp", []int{32}, 8, 8, 24, 0.05, 4
	cfg.Brokers, cfg.Backend, cfg.Settings = tg.brokers, be, s
	cfg.S3 = s3Client(t, tg, s3Creds(t, tg, security.RoleTrainer))
	tr, err := trainers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// grayPNG is a 32×32 grayscale PNG with a pattern seeded by seed.
func grayPNG(t *testing.T, seed byte) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 32, 32))
	for i := range img.Pix {
		img.Pix[i] = byte(i)*seed + seed
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
