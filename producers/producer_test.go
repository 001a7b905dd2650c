package producers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ffc-stream/ffc/internal/metricsrv"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

// TestProducerStreams runs one producer over the fixture bucket with
// MaxLead = 3 × the good images and no trainer committing, so that it
// stops by itself, and checks what it wrote.
func TestProducerStreams(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	good := len(f.goodKeys)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 3 * good
	p := start(t, cfg)

	t.Run("catalog", func(t *testing.T) {
		ids := p.Catalog().IDs()
		var want []uint64
		for id := range f.names {
			want = append(want, id)
		}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("catalog IDs %v, want %v", ids, want)
		}
		for id, names := range f.names {
			if got := p.Catalog().Names(id); !slices.Equal(got, names) {
				t.Errorf("id %d: names %q, want %q", id, got, names)
			}
		}
		if got, want := p.Catalog().Images(), good+len(f.bad); got != want {
			t.Errorf("catalog images %d, want %d", got, want)
		}
		if got := p.Stats().SkippedKeys; got != int64(f.skipped) {
			t.Errorf("skipped keys %d, want %d", got, f.skipped)
		}
	})

	testutil.WaitTrue(t, "both streams to reach MaxLead", func() bool {
		s := p.Stats()
		return s.ByID.Produced >= int64(cfg.MaxLead) && s.Instance.Produced >= int64(cfg.MaxLead)
	})

	t.Run("pairs", func(t *testing.T) {
		recs := readAll(t, cfg.TopicByID)
		if len(recs) != cfg.MaxLead {
			t.Fatalf("%d id pairs, want MaxLead = %d", len(recs), cfg.MaxLead)
		}
		goodOf := map[uint64]int{}
		for k := range f.goodKeys {
			id, _, _ := schemas.ParseImageKey(k)
			goodOf[id]++
		}
		count := map[uint64]int{}
		var seqs []uint64
		for _, r := range recs {
			m, err := schemas.DecodeIDPair(r.Value, schemas.Limits{})
			if err != nil {
				t.Fatalf("record at %d/%d: %v", r.Partition, r.Offset, err)
			}
			if string(r.Key) != strconv.FormatUint(m.GetId(), 10) {
				t.Errorf("key %q for id %d", r.Key, m.GetId())
			}
			a, b := m.GetFirst().GetKey(), m.GetSecond().GetKey()
			if !f.goodKeys[a] || !f.goodKeys[b] {
				t.Errorf("id %d: pair %s, %s has an image that is not a good image", m.GetId(), a, b)
			}
			if n := goodOf[m.GetId()]; (a == b) != (n == 1) {
				t.Errorf("id %d has %d good images; pair %s, %s", m.GetId(), n, a, b)
			}
			if m.GetSource() != cfg.Source {
				t.Errorf("source %q, want %q", m.GetSource(), cfg.Source)
			}
			count[m.GetId()]++
			seqs = append(seqs, m.GetSequence())
		}
		// Uniform over IDs: complete passes, then part of one, so every
		// good ID appears k or k+1 times and the bad one never.
		if count[idAllBad] != 0 {
			t.Errorf("id %d (no valid image) emitted %d times", idAllBad, count[idAllBad])
		}
		lo, hi := cfg.MaxLead, 0
		for id := range f.goodIDs {
			lo, hi = min(lo, count[id]), max(hi, count[id])
		}
		if hi-lo > 1 || lo == 0 {
			t.Errorf("per-ID counts range %d..%d over %d passes, want within ±1: %v", lo, hi, p.Stats().Passes, count)
		}
		slices.Sort(seqs)
		if len(slices.Compact(seqs)) != len(recs) {
			t.Errorf("sequence numbers repeat")
		}
	})

	t.Run("instance", func(t *testing.T) {
		recs := readAll(t, cfg.TopicInstance)
		if len(recs) != cfg.MaxLead {
			t.Fatalf("%d samples, want MaxLead = %d", len(recs), cfg.MaxLead)
		}
		perEpoch := map[uint64]map[string]int{}
		for _, r := range recs {
			m, err := schemas.DecodeSample(r.Value, schemas.Limits{})
			if err != nil {
				t.Fatalf("record at %d/%d: %v", r.Partition, r.Offset, err)
			}
			if string(r.Key) != m.GetImageKey() {
				t.Errorf("key %q for image %s", r.Key, m.GetImageKey())
			}
			if perEpoch[m.GetEpoch()] == nil {
				perEpoch[m.GetEpoch()] = map[string]int{}
			}
			perEpoch[m.GetEpoch()][m.GetImageKey()]++
		}
		if len(perEpoch) != 3 {
			t.Fatalf("epochs %d, want 3 (MaxLead = 3 × %d good images)", len(perEpoch), good)
		}
		for e := range uint64(3) {
			keys := perEpoch[e]
			if len(keys) != good {
				t.Errorf("epoch %d covers %d images, want %d", e, len(keys), good)
			}
			for k, n := range keys {
				if !f.goodKeys[k] || n != 1 {
					t.Errorf("epoch %d: %s seen %d times (good: %v)", e, k, n, f.goodKeys[k])
				}
			}
		}
	})

	t.Run("deadletters", func(t *testing.T) {
		recs := readFrom(t, cfg.TopicDeadLetter, nil, len(f.bad))
		got := map[string]string{}
		for _, r := range recs {
			key := header(r, HeaderKey)
			if string(r.Value) != key || string(r.Key) != key {
				t.Errorf("dead letter key %q value %q, want both the object key %q", r.Key, r.Value, key)
			}
			if _, dup := got[key]; dup {
				t.Errorf("%s dead-lettered twice", key)
			}
			got[key] = header(r, HeaderReason)
		}
		for k, reason := range f.bad {
			if got[k] != reason {
				t.Errorf("%s: reason %q, want %q", k, got[k], reason)
			}
		}
		if len(got) != len(f.bad) {
			t.Errorf("dead letters %v, want %v", got, f.bad)
		}
		st := p.Stats()
		if st.DeadLetters[schemas.ReasonBadImage] != 2 || st.DeadLetters[schemas.ReasonTooLarge] != 1 {
			t.Errorf("dead-letter counts %v, want bad_image 2, too_large 1", st.DeadLetters)
		}
		if st.BadImages != len(f.bad) {
			t.Errorf("bad images %d, want %d", st.BadImages, len(f.bad))
		}
	})

	t.Run("metrics", func(t *testing.T) {
		mfs, err := p.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, mf := range mfs {
			seen[mf.GetName()] = true
		}
		for _, name := range []string{"ffc_producer_samples_total", "ffc_producer_dead_letters_total", "ffc_producer_lag_messages",
			"ffc_producer_catalog_ids", "ffc_producer_catalog_images", "ffc_producer_new_ids_total"} {
			if !seen[name] {
				t.Errorf("metric %s missing", name)
			}
		}
		// Served by the commands' metrics stage.
		srv, err := metricsrv.New(metricsrv.Options{Addr: "127.0.0.1:0", Gatherer: p.Gatherer()})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Run(context.Background()) }()
		defer func() {
			if err := errors.Join(srv.Close(), <-served); err != nil {
				t.Error(err)
			}
		}()
		if err := stage.WaitReady(testutil.Context(t), "metrics", srv, served); err != nil {
			served <- err
			t.Fatal(err)
		}
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := cl.Get("http://" + srv.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		for _, line := range []string{
			fmt.Sprintf(`ffc_producer_samples_total{shard="0/1",topic=%q} %d`, cfg.TopicByID, cfg.MaxLead),
			fmt.Sprintf(`ffc_producer_lag_messages{shard="0/1",topic=%q} %d`, cfg.TopicInstance, cfg.MaxLead),
			`ffc_producer_dead_letters_total{reason="too_large",shard="0/1"} 1`,
			fmt.Sprintf(`ffc_producer_catalog_ids{shard="0/1"} %d`, len(f.names)),
		} {
			if !strings.Contains(string(body), line+"\n") {
				t.Errorf("/metrics lacks %q", line)
			}
		}
	})
}

// TestNewIDAnnounced uploads and announces a new ID while the producer
// runs (flow control off) and expects it in the id stream, with two
// distinct images.
func TestNewIDAnnounced(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = -1
	cfg.PollInterval = 500 * time.Millisecond // the default
	// Pace the stream so the test reads it comfortably on a busy machine.
	cfg.MaxInFlight = 4
	p := start(t, cfg)
	testutil.WaitTrue(t, "the id stream to flow", func() bool { return p.Stats().ByID.Produced > 50 })

	// An ID that sorts before every other one, lexically and numerically.
	const newID = 1
	if p.Catalog().Names(newID) != nil {
		t.Fatal("new id already in the catalog")
	}
	from := endOffsets(t, cfg.TopicByID)
	f.addGood(t, mc, newID, "0000", 500)
	f.addGood(t, mc, newID, "0001", 501)
	if err := Announce(context.Background(), mc, f.bucket, newID); err != nil {
		t.Fatal(err)
	}
	announced := time.Now()

	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Kafka.Brokers()...), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.TopicByID: offsets(from)}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testutil.Context(t)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("new id %d not in %s by the test's deadline (stats %+v)", newID, cfg.TopicByID, p.Stats())
		}
		var hit *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if hit == nil && string(r.Key) == strconv.Itoa(newID) {
				hit = r
			}
		})
		if hit == nil {
			continue
		}
		// The record's timestamp is when the producer built it. How soon
		// is measured by benchmarks/pipeline (its freshness phase), not
		// asserted here: a busy machine may take any time.
		t.Logf("new id produced %v after its announcement", hit.Timestamp.Sub(announced).Round(time.Millisecond))
		m, err := schemas.DecodeIDPair(hit.Value, schemas.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if m.GetFirst().GetKey() == m.GetSecond().GetKey() {
			t.Errorf("pair of the new id repeats %s", m.GetFirst().GetKey())
		}
		break
	}
	if got := p.Catalog().Names(newID); !slices.Equal(got, []string{"0000", "0001"}) {
		t.Errorf("catalog names of the new id %q", got)
	}
	if st := p.Stats(); st.NewIDs != 1 {
		t.Errorf("NewIDs %d, want 1", st.NewIDs)
	}
}

func offsets(m map[int]int64) map[int32]kgo.Offset {
	out := map[int32]kgo.Offset{}
	for p, o := range m {
		out[int32(p)] = kgo.NewOffset().At(o)
	}
	return out
}

// TestRescanFindsUnannounced: an ID uploaded without an announcement
// enters rotation at the next rescan.
func TestRescanFindsUnannounced(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 8
	cfg.RescanInterval = 300 * time.Millisecond
	p := start(t, cfg)
	f.addGood(t, mc, 5, "0000", 600)
	testutil.WaitTrue(t, "the rescan to find id 5", func() bool { return p.Catalog().Names(5) != nil })
	if st := p.Stats(); st.NewIDs != 1 || st.IDs != len(f.names) {
		t.Errorf("after rescan: NewIDs %d, IDs %d; want 1, %d", st.NewIDs, st.IDs, len(f.names))
	}
}

// TestFlowControl: with nobody committing, each topic stops at MaxLead
// messages; once the trainer group commits, the producer resumes and
// stops again MaxLead past the commit.
func TestFlowControl(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 40
	p := start(t, cfg)

	for _, topic := range []string{cfg.TopicByID, cfg.TopicInstance} {
		testutil.WaitTrue(t, topic+" to reach MaxLead", func() bool { return sum(endOffsets(t, topic)) >= int64(cfg.MaxLead) })
	}
	waitMeasurements(t, p, 20) // nothing more may come in 20 lag measurements
	for _, topic := range []string{cfg.TopicByID, cfg.TopicInstance} {
		// The gate bounds the lag itself, so not even one writer batch
		// goes past MaxLead.
		if end := sum(endOffsets(t, topic)); end != int64(cfg.MaxLead) {
			t.Errorf("%s: end offset %d with nobody committing, want MaxLead = %d", topic, end, cfg.MaxLead)
		}
	}
	st := p.Stats()
	if !st.ByID.Blocking || st.ByID.Lag != int64(cfg.MaxLead) {
		t.Errorf("byid stats %+v: want blocking with lag %d", st.ByID, cfg.MaxLead)
	}

	// The trainers consume the id stream and commit: it resumes; the
	// instance stream stays held.
	commitEnd(t, cfg.TrainerGroup, cfg.TopicByID)
	testutil.WaitTrue(t, "the id stream to resume", func() bool {
		return sum(endOffsets(t, cfg.TopicByID)) >= int64(2*cfg.MaxLead)
	})
	waitMeasurements(t, p, 10)
	if end := sum(endOffsets(t, cfg.TopicByID)); end != int64(2*cfg.MaxLead) {
		t.Errorf("%s: end offset %d after one commit, want 2 × MaxLead = %d", cfg.TopicByID, end, 2*cfg.MaxLead)
	}
	if end := sum(endOffsets(t, cfg.TopicInstance)); end != int64(cfg.MaxLead) {
		t.Errorf("%s: end offset %d without a commit, want MaxLead = %d", cfg.TopicInstance, end, cfg.MaxLead)
	}
}

// waitMeasurements waits until the producer has measured the lag n more
// times: what the gates allow has been decided n times over.
func waitMeasurements(t *testing.T, p *Producer, n int64) {
	t.Helper()
	from := p.Stats().LagMeasurements
	testutil.WaitTrue(t, fmt.Sprintf("%d lag measurements", n), func() bool { return p.Stats().LagMeasurements >= from+n })
}

// TestShards: two producers on one bucket, shards 0/2 and 1/2, split the
// IDs exactly: disjoint catalogs that cover the bucket, and each emits
// only its own IDs on both streams.
func TestShards(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	var ps []*Producer
	var cfgs []Config
	for i := range 2 {
		cfg := testConfig(t, mc, f.bucket)
		cfg.Shard = Shard{Index: i, Count: 2}
		cfg.Source = fmt.Sprintf("shard-%d", i)
		cfg.MaxLead = 30
		cfgs = append(cfgs, cfg)
		ps = append(ps, start(t, cfg))
	}
	owner := map[uint64]int{}
	for i, p := range ps {
		for _, id := range p.Catalog().IDs() {
			if j, dup := owner[id]; dup {
				t.Errorf("id %d in shards %d and %d", id, j, i)
			}
			owner[id] = i
		}
	}
	for id := range f.names {
		if _, ok := owner[id]; !ok {
			t.Errorf("id %d in no shard", id)
		}
	}
	if len(owner) != len(f.names) {
		t.Errorf("shards hold %d IDs, bucket %d", len(owner), len(f.names))
	}
	for i, p := range ps {
		if p.Catalog().Len() == 0 || p.Catalog().Len() == len(f.names) {
			t.Errorf("shard %d holds %d of %d IDs: not split", i, p.Catalog().Len(), len(f.names))
		}
	}
	for i, cfg := range cfgs {
		testutil.WaitTrue(t, "both shards to fill their topics", func() bool {
			s := ps[i].Stats()
			return s.ByID.Produced >= int64(cfg.MaxLead) && s.Instance.Produced >= int64(cfg.MaxLead)
		})
		for _, r := range readAll(t, cfg.TopicByID) {
			m, err := schemas.DecodeIDPair(r.Value, schemas.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if owner[m.GetId()] != i || m.GetSource() != cfg.Source {
				t.Errorf("shard %d emitted id %d of shard %d (source %s)", i, m.GetId(), owner[m.GetId()], m.GetSource())
			}
		}
		for _, r := range readAll(t, cfg.TopicInstance) {
			m, err := schemas.DecodeSample(r.Value, schemas.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if owner[m.GetId()] != i {
				t.Errorf("shard %d emitted image %s of shard %d", i, m.GetImageKey(), owner[m.GetId()])
			}
		}
	}
}

// TestRunErrors: Run fails at start on a missing bucket, and New on bad
// configs.
func TestRunErrors(t *testing.T) {
	mc := s3Client(t)
	cfg := testConfig(t, mc, unique("missing"))
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t)
	if err := p.Run(ctx); err == nil {
		t.Fatal("Run on a missing bucket: no error")
	}
	if err := p.Run(ctx); !errors.Is(err, stage.ErrRunTwice) {
		t.Fatalf("second Run: %v, want %v", err, stage.ErrRunTwice)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
