package producers

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

// stack is the embedded NATS/Kafka/S3 stack shared by the tests of this
// package; each test uses its own bucket and topics.
var stack *embedded.Stack

// TestMain runs the tests on one embedded stack, then checks that no
// goroutine of a producer, a client or a server is left.
func TestMain(m *testing.M) {
	st, err := embedded.Start(embedded.StackOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "embedded stack:", err)
		os.Exit(1)
	}
	stack = st
	code := m.Run()
	if err := st.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "embedded stack close:", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func s3Client(t testing.TB) *minio.Client {
	t.Helper()
	ak, sk := stack.S3.Credentials()
	mc, err := minio.New(stack.S3.Endpoint(), &minio.Options{Creds: credentials.NewStaticV4(ak, sk, "")})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

var uniq atomic.Int64

// unique returns a name no other test uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, uniq.Add(1))
}

// testPNG is a size×size grayscale PNG whose pixels depend on seed.
func testPNG(t testing.TB, size, seed int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			img.SetGray(x, y, color.Gray{Y: uint8(x*7 + y*13 + seed*31)})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func put(t testing.TB, mc *minio.Client, bucket, key string, body []byte) {
	t.Helper()
	_, err := mc.PutObject(context.Background(), bucket, key, bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// fixture is a bucket of IDs with 1–5 small PNGs each and a few bad
// objects.
type fixture struct {
	bucket string
	// names of every image key that parses, by ID (bad ones included).
	names map[uint64][]string
	// bad image keys → the dead-letter reason they must get.
	bad map[string]string
	// goodKeys are the valid image keys.
	goodKeys map[string]bool
	// goodIDs have at least one valid image.
	goodIDs map[uint64]bool
	// skipped is the number of keys under ids/ that do not parse.
	skipped int
}

const (
	idCorrupt   = 1037 // one of its images is not a PNG
	idOversized = 1074 // one of its images is over MaxImageBytes
	idAllBad    = 99   // its only image is 64×64: dropped from rotation
)

// newFixture fills a new bucket: 20 IDs (1000 + 37·i, i < 20, so that
// their lexical and numeric orders differ) with 1 + i%5 images, 32×32
// PNGs named 0000…, plus a corrupt image, an oversized one, an ID whose
// only image has the wrong size, and keys that are not image keys.
func newFixture(t testing.TB, mc *minio.Client) *fixture {
	t.Helper()
	f := &fixture{
		bucket:   unique("bucket"),
		names:    map[uint64][]string{},
		bad:      map[string]string{},
		goodKeys: map[string]bool{},
		goodIDs:  map[uint64]bool{},
	}
	if err := mc.MakeBucket(context.Background(), f.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		id := uint64(1000 + 37*i)
		for k := range 1 + i%5 {
			f.addGood(t, mc, id, fmt.Sprintf("%04d", k), i*10+k)
		}
	}
	// 1037 has 2 images: add a corrupt third.
	f.addBad(t, mc, idCorrupt, "corrupt", []byte("this is not a PNG"), schemas.ReasonBadImage)
	// 1074 has 3: add one that is too large (bytes beyond MaxImageBytes).
	big := append(testPNG(t, 32, 1), bytes.Repeat([]byte{0}, schemas.DefaultMaxImageBytes)...)
	f.addBad(t, mc, idOversized, "huge", big, schemas.ReasonTooLarge)
	f.addBad(t, mc, idAllBad, "0000", testPNG(t, 64, 2), schemas.ReasonBadImage)
	for _, k := range []string{"ids/notanid/0000.png", "ids/7/readme.txt", "ids/007/0000.png", "ids/8/sub/0000.png"} {
		put(t, mc, f.bucket, k, testPNG(t, 32, 3))
		f.skipped++
	}
	put(t, mc, f.bucket, "manifest.json", []byte("{}"))
	return f
}

func (f *fixture) addGood(t testing.TB, mc *minio.Client, id uint64, name string, seed int) {
	put(t, mc, f.bucket, schemas.ImageKey(id, name), testPNG(t, 32, seed))
	f.names[id] = append(f.names[id], name)
	sort.Strings(f.names[id])
	f.goodKeys[schemas.ImageKey(id, name)] = true
	f.goodIDs[id] = true
}

func (f *fixture) addBad(t testing.TB, mc *minio.Client, id uint64, name string, body []byte, reason string) {
	put(t, mc, f.bucket, schemas.ImageKey(id, name), body)
	f.names[id] = append(f.names[id], name)
	sort.Strings(f.names[id])
	f.bad[schemas.ImageKey(id, name)] = reason
}

// testConfig is a Config for the fixture with topics of its own.
func testConfig(t testing.TB, mc *minio.Client, bucket string) Config {
	t.Helper()
	name := unique("t")
	return Config{
		Brokers:         stack.Kafka.Brokers(),
		S3:              mc,
		Bucket:          bucket,
		TopicByID:       name + ".byid",
		TopicInstance:   name + ".instance",
		TopicDeadLetter: name + ".deadletter",
		TopicFresh:      name + ".fresh",
		TrainerGroup:    name + ".trainers",
		Partitions:      4,
		PollInterval:    100 * time.Millisecond,
		FlowInterval:    50 * time.Millisecond,
		Concurrency:     4,
		Seed:            42,
		Source:          "test-" + name,
		Log:             testLogger(t),
	}
}

// testLogger logs warnings and errors to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// start runs a Producer until the test ends and waits until it is ready.
func start(t testing.TB, cfg Config) *Producer {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if err := stage.WaitReady(testutil.Context(t), "producer", p, done); err != nil {
		done <- err
		t.Fatal(err)
	}
	return p
}

// kafkaClient is a client whose metadata cache is fresh: kafka-go's
// transports answer Metadata from a cache refreshed every MetadataTTL,
// which would not know the topics a test just had created.
func kafkaClient(t testing.TB) *kafka.Client {
	tr := &kafka.Transport{MetadataTTL: 50 * time.Millisecond}
	t.Cleanup(tr.CloseIdleConnections)
	return &kafka.Client{Addr: kafka.TCP(stack.Kafka.Brokers()...), Timeout: 30 * time.Second, Transport: tr}
}

// endOffsets returns the end offset of every partition of topic. A
// request that fails (a timeout on a busy machine) is asked again until
// the test's deadline.
func endOffsets(t testing.TB, topic string) map[int]int64 {
	t.Helper()
	cl := kafkaClient(t)
	var out map[int]int64
	testutil.WaitFor(t, "the end offsets of "+topic, func() (err error) {
		out, err = tryEndOffsets(testutil.Context(t), cl, topic)
		return err
	})
	return out
}

func tryEndOffsets(ctx context.Context, cl *kafka.Client, topic string) (map[int]int64, error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("metadata %s: %+v", topic, md.Topics)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range md.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p.ID))
	}
	res, err := cl.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets %s: %w", topic, err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("list offsets %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.LastOffset
	}
	return out, nil
}

func sum(m map[int]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// readFrom reads topic from the given offsets (nil: from the start)
// until want records arrived.
func readFrom(t testing.TB, topic string, from map[int]int64, want int) []*kgo.Record {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(stack.Kafka.Brokers()...), kgo.FetchMaxWait(200 * time.Millisecond)}
	if from == nil {
		opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	} else {
		parts := map[int32]kgo.Offset{}
		for p, o := range from {
			parts[int32(p)] = kgo.NewOffset().At(o)
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t)
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d of %d records by the test's deadline", topic, len(out), want)
		}
		for _, e := range fs.Errors() {
			t.Fatalf("read %s: %v", topic, e.Err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// readAll reads every record the topic holds now.
func readAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	n := sum(endOffsets(t, topic))
	if n == 0 {
		return nil
	}
	return readFrom(t, topic, nil, int(n))
}

// commitEnd commits the topic's end offsets for group, as a trainer that
// consumed everything would. A commit the broker refuses for now (a
// coordinator not available yet, a timeout) is sent again.
func commitEnd(t testing.TB, group, topic string) {
	t.Helper()
	req := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
	for p, o := range endOffsets(t, topic) {
		req.Topics[topic] = append(req.Topics[topic], kafka.OffsetCommit{Partition: p, Offset: o})
	}
	cl := kafkaClient(t)
	testutil.WaitFor(t, "the commit of "+topic+" for "+group, func() error {
		res, err := cl.OffsetCommit(testutil.Context(t), req)
		if err != nil {
			return err
		}
		for _, ps := range res.Topics {
			for _, p := range ps {
				if p.Error != nil {
					return fmt.Errorf("commit %s/%d: %w", topic, p.Partition, p.Error)
				}
			}
		}
		return nil
	})
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
