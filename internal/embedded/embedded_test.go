package embedded

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestStackPersists writes to each server of a stack with a data folder,
// restarts the stack on the same folder and reads everything back.
func TestStackPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := testutil.Context(t)

	run := func(write bool) {
		t.Helper()
		st, err := Start(StackOptions{DataDir: dir})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		defer func() {
			if err := st.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}()

		// Kafka: produce one record, or consume it back after the restart.
		cl, err := kgo.NewClient(kgo.SeedBrokers(st.Kafka.Brokers()...), kgo.ConsumeTopics("persist"), kgo.AllowAutoTopicCreation())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if write {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "persist", Key: []byte("k"), Value: []byte("kafka-value")}).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
		} else {
			fs := cl.PollFetches(ctx)
			if errs := fs.Errors(); len(errs) > 0 {
				t.Fatalf("fetch: %v", errs)
			}
			recs := fs.Records()
			if len(recs) != 1 || string(recs[0].Value) != "kafka-value" {
				t.Fatalf("after restart got %d records, want the one written before", len(recs))
			}
		}

		// NATS JetStream.
		nc, err := nats.Connect(st.NATS.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if write {
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "p.x", []byte("nats-value")); err != nil {
				t.Fatal(err)
			}
		} else {
			s, err := js.Stream(ctx, "P")
			if err != nil {
				t.Fatalf("stream after restart: %v", err)
			}
			m, err := s.GetLastMsgForSubject(ctx, "p.x")
			if err != nil || string(m.Data) != "nats-value" {
				t.Fatalf("after restart: %v %v", m, err)
			}
		}

		// S3.
		ak, sk := st.S3.Credentials()
		mc, err := minio.New(st.S3.Endpoint(), &minio.Options{Creds: credentials.NewStaticV4(ak, sk, "")})
		if err != nil {
			t.Fatal(err)
		}
		body := []byte("s3-value")
		if write {
			if err := mc.MakeBucket(ctx, "persist", minio.MakeBucketOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := mc.PutObject(ctx, "persist", "ids/1/a.png", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
				t.Fatal(err)
			}
		} else {
			o, err := mc.GetObject(ctx, "persist", "ids/1/a.png", minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(o)
			o.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("after restart got %q, %v", got, err)
			}
		}
	}
	run(true)
	run(false)
}

func TestStartErrors(t *testing.T) {
	s, err := StartS3(S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The port is taken: a clear error, not a panic.
	if _, err := StartS3(S3Options{Addr: s.Endpoint()}); err == nil {
		t.Error("second S3 server on a taken port started")
	}
	k, err := StartKafka(KafkaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if len(k.Brokers()) != 1 {
		t.Fatalf("brokers %v", k.Brokers())
	}
}

// TestMain fails the package when a server leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestStackStage runs the stack as a stage: Run starts only the servers
// not left out, Ready says they accept connections, and cancelling Run
// (or Close) stops them.
func TestStackStage(t *testing.T) {
	st := NewStack(StackOptions{NoKafka: true})
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(testutil.Context(t))
	go func() { done <- st.Run(ctx) }()
	if err := stage.WaitReady(ctx, "embedded", st, done); err != nil {
		t.Fatal(err)
	}
	if got := st.Embedded(); len(got) != 2 || got[0] != "nats" || got[1] != "s3" || st.Kafka != nil {
		t.Fatalf("embedded %v, Kafka %v: want nats and s3 only", got, st.Kafka)
	}
	conn, err := net.Dial("tcp", st.S3.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := net.Dial("tcp", st.S3.Endpoint()); err == nil {
		t.Error("S3 still listening after Run ended")
	}
	if err := st.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
}
