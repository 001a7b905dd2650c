package trainers

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// flakyS3 is an S3 server (gofakes3) that fails the requests its rule
// picks with 503 Service Unavailable: object storage down, switched on
// and off by the test.
type flakyS3 struct {
	srv    *httptest.Server
	rule   atomic.Pointer[func(*http.Request) bool]
	failed atomic.Int64 // requests failed
	served atomic.Int64 // requests served
}

func startFlakyS3(t *testing.T) *flakyS3 {
	t.Helper()
	h := gofakes3.New(s3mem.New(), gofakes3.WithoutVersioning()).Server()
	f := &flakyS3{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rule := f.rule.Load(); rule != nil && (*rule)(r) {
			f.failed.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected outage</Message></Error>`)
			return
		}
		f.served.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// failWhen makes the requests rule picks fail (nil: none).
func (f *flakyS3) failWhen(rule func(*http.Request) bool) {
	if rule == nil {
		f.rule.Store(nil)
		return
	}
	f.rule.Store(&rule)
}

// failNext makes the next n requests fail.
func (f *flakyS3) failNext(n int64) {
	var left atomic.Int64
	left.Store(n)
	f.failWhen(func(*http.Request) bool { return left.Add(-1) >= 0 })
}

func (f *flakyS3) endpoint() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// client is a MinIO client of f that does not retry on its own, so that
// every retry is the trainer's.
func (f *flakyS3) client(t *testing.T) *minio.Client {
	t.Helper()
	ht, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ht.CloseIdleConnections)
	mc, err := minio.New(f.endpoint(), &minio.Options{Creds: credentials.NewStaticV4("ak", "sk", ""), Transport: ht, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

// flakyEnv is an env on the embedded Kafka and NATS whose object storage
// is a flakyS3.
func flakyEnv(t *testing.T) (*env, *flakyS3, *embedded.Stack) {
	t.Helper()
	st, err := embedded.Start(embedded.StackOptions{NoS3: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := startFlakyS3(t)
	e := newEnv(t, st.Kafka.Brokers(), st.NATS.URL(), f.endpoint(), "ak", "sk")
	e.mc = f.client(t)
	return e, f, st
}

// condition is the named condition of h (ok false when it is unset).
func condition(h *stage.Health, name string) (stage.Condition, bool) {
	for _, c := range h.Conditions() {
		if c.Name == name {
			return c, true
		}
	}
	return stage.Condition{}, false
}

// failing reports whether h has the condition name set and failing.
func failing(h *stage.Health, name string) bool {
	c, ok := condition(h, name)
	return ok && !c.OK
}

// running is a trainer whose Run runs in the background until the test
// ends.
type running struct {
	tr   *Trainer
	done chan error
	once sync.Once
	err  error
}

func runAsync(t *testing.T, cfg Config) *running {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{tr: tr, done: make(chan error, 1)}
	go func() { r.done <- tr.Run(testutil.Context(t)) }()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// wait returns Run's error once it has ended.
func (r *running) wait() error {
	r.once.Do(func() { r.err = <-r.done })
	return r.err
}

// stop closes the trainer and returns Run's error.
func (r *running) stop() error {
	_ = r.tr.Close()
	return r.wait()
}

// TestTopicsCreatedAfterStart (fault 9): a trainer started before its
// topics exist — on a broker that does not create topics on demand, as a
// production Kafka — says so in Health, then trains the topics once they
// are created and produced to. Before, its member joined with no
// partition (or failed to join) and idled silently.
func TestTopicsCreatedAfterStart(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	st, err := embedded.Start(embedded.StackOptions{NoKafka: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ak, sk := st.S3.Credentials()
	e := newEnv(t, c.ListenAddrs(), st.NATS.URL(), st.S3.Endpoint(), ak, sk)
	e.byID, e.instance, e.fresh = "late-"+e.byID, "late-"+e.instance, "late-"+e.fresh // not created yet

	r := runAsync(t, e.config(2))
	tr := r.tr
	testutil.WaitTrue(t, "the trainer to report its topics missing", func() bool { return failing(tr.Health(), CondTopics) })

	cl := &kafka.Client{Addr: kafka.TCP(e.brokers...), Transport: e.transport}
	res, err := cl.CreateTopics(testutil.Context(t), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: e.byID, NumPartitions: 4, ReplicationFactor: 1}, {Topic: e.instance, NumPartitions: 4, ReplicationFactor: 1},
		{Topic: e.fresh, NumPartitions: 4, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range res.Errors {
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	e.produce(t, 12, 2*8, 0)
	if err := r.wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := tr.Stats()
	if s.Steps != 2 || s.Pairs != 16 || s.Instances != 16 || s.Partitions != 12 {
		t.Errorf("stats %+v: want 2 steps of 8 pairs and 8 instances from the 12 partitions (4 of the fresh lane)", s)
	}
	if c, ok := condition(tr.Health(), CondTopics); !ok || !c.OK {
		t.Errorf("condition %s: %+v, want ok once the topics exist", CondTopics, c)
	}
	if n := e.committed(t); n != 2*2*8 {
		t.Errorf("committed %d offsets, want %d", n, 2*2*8)
	}
}

// TestConnectTimeout (fault 7, trainer side): with no Kafka listening,
// Run gives up after ConnectTimeout with ErrKafkaUnreachable instead of
// retrying forever or failing at once.
func TestConnectTimeout(t *testing.T) {
	e, _ := embeddedEnv(t)
	addr := testutil.ClosedAddr(t)

	cfg := e.config(1)
	cfg.Brokers, cfg.ConnectTimeout = []string{addr}, time.Second
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	err = tr.Run(testutil.Context(t))
	if !errors.Is(err, ErrKafkaUnreachable) {
		t.Fatalf("Run: %v, want an error wrapping ErrKafkaUnreachable", err)
	}
	if !failing(tr.Health(), CondKafka) {
		t.Errorf("conditions %+v: want %s failing", tr.Health().Conditions(), CondKafka)
	}
	select {
	case <-tr.Ready():
		t.Error("ready without Kafka")
	default:
	}
}

// TestFetchErrorsDoNotEndTheRun (broker faults): the broker answers the
// first fetches of the instance topic with a storage error. The readers
// retry, count and report it, and the run trains everything; before, the
// first fetch error ended Run.
func TestFetchErrorsDoNotEndTheRun(t *testing.T) {
	e, st := embeddedEnv(t)
	e.produce(t, 12, 2*8, 0)
	const refusals = 3
	var refused atomic.Int32
	c := st.Kafka.Cluster()
	c.ControlKey(int16(kmsg.Fetch), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.FetchRequest)
		res := req.ResponseKind().(*kmsg.FetchResponse)
		hit := false
		for _, rt := range req.Topics {
			if rt.Topic != e.instance {
				continue
			}
			hit = true
			t := kmsg.NewFetchResponseTopic()
			t.Topic, t.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				p := kmsg.NewFetchResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.KafkaStorageError.Code
				t.Partitions = append(t.Partitions, p)
			}
			res.Topics = append(res.Topics, t)
		}
		if !hit || len(req.Topics) != 1 {
			return nil, nil, false
		}
		if refused.Add(1) >= refusals {
			c.DropControl()
		}
		return res, nil, true
	})
	s, _ := run(t, e.config(2))
	if s.Steps != 2 || s.Instances != 16 || s.FetchErrors < 1 || refused.Load() != refusals {
		t.Errorf("stats %+v, %d fetches refused: want 2 steps of 8 instances, the fetch errors counted, %d refused", s, refused.Load(), refusals)
	}
}

// waitCommitted waits until the group has committed n offsets.
func (e *env) waitCommitted(t *testing.T, n int64) {
	t.Helper()
	testutil.WaitFor(t, "the group's commits", func() error {
		if got := e.committed(t); got != n {
			return fmt.Errorf("committed %d offsets, want %d", got, n)
		}
		return nil
	})
}

// TestBrokerRestart (broker outages after start): the broker stops while
// the trainer runs and comes back on the same address with its data. The
// trainer reports Kafka failing meanwhile, rejoins and trains what is
// produced after the restart; it never stops.
func TestBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	k, err := embedded.StartKafka(embedded.KafkaOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	_, port, err := net.SplitHostPort(k.Brokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Start(embedded.StackOptions{NoKafka: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ak, sk := st.S3.Credentials()
	e := newEnv(t, k.Brokers(), st.NATS.URL(), st.S3.Endpoint(), ak, sk)

	cfg := e.config(0)
	cfg.Settings.CheckpointEvery, cfg.Settings.CheckpointInterval = 2, time.Hour
	r := runAsync(t, cfg)
	tr := r.tr
	e.produce(t, 12, 2*8, 0)
	e.waitCommitted(t, 2*2*8)

	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitTrue(t, "the trainer to report Kafka failing", func() bool { return failing(tr.Health(), CondKafka) })
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := embedded.StartKafka(embedded.KafkaOptions{Port: p, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k2.Close() })
	e.transport = &kafka.Transport{} // the old one's connections went with the broker
	t.Cleanup(e.transport.CloseIdleConnections)

	e.produce(t, 12, 2*8, 2*8)
	e.waitCommitted(t, 4*2*8)
	if c, ok := condition(tr.Health(), CondKafka); !ok || !c.OK {
		t.Errorf("condition %+v: want %s ok after the restart", c, CondKafka)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := tr.Stats(); s.Steps != 4 {
		t.Errorf("stats %+v: want the 4 steps produced before and after the restart", s)
	}
}

// TestIdleMember (fault 9): a member of a group with more members than
// partitions holds none. It says so (a warning, the assigned-partitions
// gauge at 0, Stats) instead of idling silently, while the other member
// holds every partition.
func TestIdleMember(t *testing.T) {
	e, _ := embeddedEnv(t)
	e.byID, e.instance, e.fresh = "one-"+e.byID, "one-"+e.instance, "one-"+e.fresh
	cl := &kafka.Client{Addr: kafka.TCP(e.brokers...), Transport: e.transport}
	if _, err := cl.CreateTopics(testutil.Context(t), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: e.byID, NumPartitions: 1, ReplicationFactor: 1}, {Topic: e.instance, NumPartitions: 1, ReplicationFactor: 1},
		{Topic: e.fresh, NumPartitions: 1, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}
	a := runAsync(t, e.config(0)).tr
	cfg := e.config(0)
	cfg.Model = e.model + "-b"
	b := runAsync(t, cfg).tr
	gauge := func(tr *Trainer) float64 {
		var m dto.Metric
		if err := tr.metrics.partitions.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	for _, tr := range []*Trainer{a, b} {
		select {
		case <-tr.Ready(): // joined the group
		case <-testutil.Context(t).Done():
			t.Fatal("a member never joined")
		}
	}
	testutil.WaitFor(t, "one member with the three partitions, the other with none", func() error {
		pa, pb := a.Stats().Partitions, b.Stats().Partitions
		if pa+pb != 3 || pa*pb != 0 || gauge(a)+gauge(b) != 3 || gauge(a)*gauge(b) != 0 {
			return fmt.Errorf("partitions %d and %d, gauges %v and %v", pa, pb, gauge(a), gauge(b))
		}
		return nil
	})
}

// TestStorageUnreachableAtStart: object storage that does not answer at
// start is retried for ConnectTimeout, reported (CondStorage), then Run
// fails with ErrStorageUnreachable; when it answers within the wait, the
// trainer starts.
func TestStorageUnreachableAtStart(t *testing.T) {
	e, f, _ := flakyEnv(t)
	f.failWhen(func(*http.Request) bool { return true })
	cfg := e.config(1)
	cfg.ConnectTimeout = time.Second
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(testutil.Context(t)); !errors.Is(err, ErrStorageUnreachable) {
		t.Fatalf("Run: %v, want an error wrapping ErrStorageUnreachable", err)
	}
	if !failing(tr.Health(), CondStorage) {
		t.Errorf("conditions %+v: want %s failing", tr.Health().Conditions(), CondStorage)
	}

	f.failNext(3) // storage answers after three refusals
	e.produce(t, 5, 8, 0)
	cfg.ConnectTimeout = time.Minute
	tr2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if err := tr2.Run(testutil.Context(t)); err != nil {
		t.Fatalf("Run with storage answering after 3 refusals: %v", err)
	}
	if st := tr2.Stats(); st.Steps != 1 || f.failed.Load() < 3 {
		t.Fatalf("stats %+v after %d refused requests", st, f.failed.Load())
	}
}
