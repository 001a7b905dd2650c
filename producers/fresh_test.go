package producers

import (
	"bytes"
	"cmp"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// freshRecords decodes the records of the fresh lane.
func freshRecords(t *testing.T, recs []*kgo.Record) []*ffcpb.IDPair {
	t.Helper()
	var out []*ffcpb.IDPair
	for _, r := range recs {
		m, err := schemas.DecodeIDPair(r.Value, schemas.Limits{})
		if err != nil {
			t.Fatalf("fresh record %s: %v", r.Key, err)
		}
		if string(r.Key) != strconv.FormatUint(m.GetId(), 10) {
			t.Errorf("fresh record of id %d has key %q", m.GetId(), r.Key)
		}
		out = append(out, m)
	}
	return out
}

// TestFreshLaneBypassesLead: with both streams held at MaxLead (nobody
// consumes), a newly announced ID's FreshPairs pairs still reach the
// fresh lane at once, carrying the marker's time, and the id stream
// stays held.
func TestFreshLaneBypassesLead(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 8
	p := start(t, cfg)
	for _, topic := range []string{cfg.TopicByID, cfg.TopicInstance} {
		testutil.WaitTrue(t, topic+" to reach MaxLead", func() bool { return sum(endOffsets(t, topic)) >= int64(cfg.MaxLead) })
	}
	testutil.WaitTrue(t, "the id stream to be held", func() bool { return p.Stats().ByID.Blocking })

	const newID = 1
	f.addGood(t, mc, newID, "0000", 700)
	f.addGood(t, mc, newID, "0001", 701)
	at := time.Now()
	put(t, mc, f.bucket, AnnounceKey(at, newID), nil)

	testutil.WaitTrue(t, "the fresh pairs to be acknowledged", func() bool { return p.Stats().Fresh.Produced >= DefaultFreshPairs })
	pairs := freshRecords(t, readAll(t, cfg.TopicFresh))
	if len(pairs) != DefaultFreshPairs {
		t.Fatalf("%d records on the fresh lane, want %d", len(pairs), DefaultFreshPairs)
	}
	for _, m := range pairs {
		if m.GetId() != newID || m.GetOp() != ffcpb.IDPair_PAIR || m.GetAnnouncedUnixNano() != at.UnixNano() ||
			!strings.HasPrefix(m.GetFirst().GetKey(), "ids/1/") || m.GetSource() != cfg.Source {
			t.Errorf("fresh record id %d op %v announced %d first %s source %s; want id %d, PAIR, announced %d, source %s",
				m.GetId(), m.GetOp(), m.GetAnnouncedUnixNano(), m.GetFirst().GetKey(), m.GetSource(), newID, at.UnixNano(), cfg.Source)
		}
	}
	if end := sum(endOffsets(t, cfg.TopicByID)); end != int64(cfg.MaxLead) {
		t.Errorf("%s: end offset %d, want MaxLead %d (the id stream held)", cfg.TopicByID, end, cfg.MaxLead)
	}
	if st := p.Stats(); st.FreshPairs != DefaultFreshPairs || st.NewIDs != 1 {
		t.Errorf("FreshPairs %d, NewIDs %d; want %d, 1", st.FreshPairs, st.NewIDs, DefaultFreshPairs)
	}
}

// seqRec is a stream record's producer sequence and ID.
type seqRec struct{ seq, id uint64 }

// TestRemovalMarker: a removal marker (its objects left in place, so
// that only the marker can stop the ID) takes the ID out of the catalog
// and of both streams and sends a REMOVE record on the fresh lane; an
// announcement older than the removal does not add it back, a newer one
// does, with fresh pairs carrying the newer time.
func TestRemovalMarker(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = -1
	cfg.MaxInFlight = 4
	// One worker per stream: the only job that can still send the ID
	// after the removal is the one in progress then.
	cfg.Concurrency = 1
	cfg.RescanInterval = -1
	cfg.AnnounceLookback = time.Minute
	p := start(t, cfg)
	const gone = 1148 // 5 images
	if len(f.names[gone]) != 5 {
		t.Fatalf("fixture: id %d has %d images", gone, len(f.names[gone]))
	}
	testutil.WaitTrue(t, "both streams to flow", func() bool {
		st := p.Stats()
		return st.ByID.Produced > 20 && st.Instance.Produced > 20
	})

	at := time.Now()
	put(t, mc, f.bucket, RemovalKey(at, gone), nil)
	testutil.WaitTrue(t, "the removal to be handled", func() bool { return p.Stats().RemovedIDs == 1 })
	if names := p.Catalog().Names(gone); names != nil {
		t.Fatalf("removed id still in the catalog with %q", names)
	}
	// Offsets first, then sequences: a message numbered after the
	// snapshot is written after the offsets were read.
	fromB, fromI := endOffsets(t, cfg.TopicByID), endOffsets(t, cfg.TopicInstance)
	sB, sI := p.seqByID.Load(), p.seqInst.Load()

	testutil.WaitTrue(t, "the REMOVE record to be acknowledged", func() bool { return p.Stats().Fresh.Produced >= 1 })
	recs := freshRecords(t, readAll(t, cfg.TopicFresh))
	if len(recs) != 1 || recs[0].GetId() != gone || recs[0].GetOp() != ffcpb.IDPair_REMOVE ||
		recs[0].GetAnnouncedUnixNano() != at.UnixNano() || recs[0].GetFirst() != nil || recs[0].GetSource() != cfg.Source {
		t.Fatalf("fresh lane %v, want one REMOVE of id %d at %d", recs, gone, at.UnixNano())
	}

	// The records of a stream numbered after the snapshot: 200 of them,
	// of which only the first (by number) may come from the job in
	// progress at the removal (one worker per stream: every later job
	// looks its ID up in the catalog after the removal).
	checkGone := func(topic string, from map[int]int64, after uint64, decode func([]byte) (seqRec, error)) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Kafka.Brokers()...), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets(from)}))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx := testutil.Context(t)
		var got []seqRec
		for len(got) < 200 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("%s: %d messages after the removal by the test's deadline, want 200", topic, len(got))
			}
			for _, e := range fs.Errors() {
				t.Fatalf("read %s: %v", topic, e.Err)
			}
			for _, r := range fs.Records() {
				s, err := decode(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				if s.seq > after {
					got = append(got, s)
				}
			}
		}
		slices.SortFunc(got, func(a, b seqRec) int { return cmp.Compare(a.seq, b.seq) })
		for _, s := range got[1:] {
			if s.id == gone {
				t.Errorf("%s: message %d of the removed id %d", topic, s.seq, gone)
			}
		}
	}
	checkGone(cfg.TopicByID, fromB, sB, func(b []byte) (seqRec, error) {
		m, err := schemas.DecodeIDPair(b, schemas.Limits{})
		return seqRec{m.GetSequence(), m.GetId()}, err
	})
	checkGone(cfg.TopicInstance, fromI, sI, func(b []byte) (seqRec, error) {
		m, err := schemas.DecodeSample(b, schemas.Limits{})
		return seqRec{m.GetSequence(), m.GetId()}, err
	})

	// An announcement older than the removal, then a newer one (the ID
	// uploaded again): a poll lists them in this order.
	put(t, mc, f.bucket, AnnounceKey(at.Add(-time.Second), gone), nil)
	again := time.Now()
	if !again.After(at) {
		again = at.Add(time.Millisecond)
	}
	put(t, mc, f.bucket, AnnounceKey(again, gone), nil)
	testutil.WaitTrue(t, "the id to be added again", func() bool { return p.Catalog().Names(gone) != nil })
	testutil.WaitTrue(t, "its fresh pairs", func() bool { return p.Stats().Fresh.Produced >= 1+DefaultFreshPairs })
	recs = freshRecords(t, readAll(t, cfg.TopicFresh))
	if len(recs) != 1+DefaultFreshPairs {
		t.Fatalf("%d records on the fresh lane, want 1 + %d", len(recs), DefaultFreshPairs)
	}
	for _, m := range recs[1:] {
		if m.GetId() != gone || m.GetOp() != ffcpb.IDPair_PAIR || m.GetAnnouncedUnixNano() != again.UnixNano() {
			t.Errorf("after the new announcement: id %d op %v announced %d, want %d PAIR announced %d",
				m.GetId(), m.GetOp(), m.GetAnnouncedUnixNano(), gone, again.UnixNano())
		}
	}
	if st := p.Stats(); st.NewIDs != 1 {
		t.Errorf("NewIDs %d, want 1 (the older announcement must not add the id back)", st.NewIDs)
	}
}

// lockedBuffer is a log sink read while the producer writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the JSON log records.
func (l *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.b.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestBadKeysWarnedOnce: the fixture's non-image keys under ids/ and a
// malformed marker are warned about and counted once, however many
// listings and polls see them.
func TestBadKeysWarnedOnce(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	const badMarker = AnnouncePrefix + "not-a-marker"
	put(t, mc, f.bucket, badMarker, nil)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 8
	cfg.RescanInterval = 20 * time.Millisecond
	cfg.PollInterval = 20 * time.Millisecond
	// The watcher forgets handled markers after 1 ms: every poll lists the
	// bad marker again.
	cfg.AnnounceLookback = time.Millisecond
	var logs lockedBuffer
	cfg.Log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := start(t, cfg)
	testutil.WaitTrue(t, "3 rescans and 3 polls", func() bool { return p.Stats().Rescans >= 3 && p.polls.Load() >= 3 })

	warned := map[string]int{}
	for _, r := range logs.records(t) {
		if k, ok := r["key"].(string); ok {
			warned[k]++
		}
	}
	bad := []string{"ids/notanid/0000.png", "ids/7/readme.txt", "ids/007/0000.png", "ids/8/sub/0000.png", badMarker}
	for _, k := range bad {
		if warned[k] != 1 {
			t.Errorf("%s warned %d times, want once", k, warned[k])
		}
	}
	if st := p.Stats(); st.SkippedKeys != int64(f.skipped) || st.BadMarkers != 1 {
		t.Errorf("SkippedKeys %d, BadMarkers %d; want %d, 1 (each bad key counted once)", st.SkippedKeys, st.BadMarkers, f.skipped)
	}
}

// TestOnceSet: keys are counted and warned about once; past its bound
// the set counts every time and warns no more.
func TestOnceSet(t *testing.T) {
	s := newOnceSet(2)
	for _, tc := range []struct {
		key         string
		count, warn bool
	}{
		{"a", true, true}, {"a", false, false}, {"b", true, true}, {"c", true, false}, {"c", true, false}, {"b", false, false},
	} {
		if c, w := s.see(tc.key); c != tc.count || w != tc.warn {
			t.Errorf("see(%q) = %v, %v; want %v, %v", tc.key, c, w, tc.count, tc.warn)
		}
	}
}

// TestRemovalsSentAgainAtStart: at start, the REMOVE record of every ID
// whose newest marker is a removal older than the lookback is sent
// again (one a stopped producer may have lost); an ID announced after
// its removal is left alone, and a removal within the lookback is sent
// once, by the polls.
func TestRemovalsSentAgainAtStart(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.AnnounceLookback = time.Minute
	now := time.Now()
	const old, readded, recent = 999001, 999002, 999003
	put(t, mc, f.bucket, RemovalKey(now.Add(-time.Hour), old), nil)
	put(t, mc, f.bucket, RemovalKey(now.Add(-3*time.Hour), readded), nil)
	put(t, mc, f.bucket, AnnounceKey(now.Add(-2*time.Hour), readded), nil)
	put(t, mc, f.bucket, RemovalKey(now, recent), nil)
	p := start(t, cfg)
	testutil.WaitTrue(t, "two REMOVE records acknowledged", func() bool { return p.Stats().Fresh.Produced >= 2 })
	recs := freshRecords(t, readAll(t, cfg.TopicFresh))
	got := map[uint64]int64{}
	for _, r := range recs {
		if r.GetOp() != ffcpb.IDPair_REMOVE {
			t.Fatalf("fresh record %v: want only REMOVE records", r)
		}
		got[r.GetId()] = r.GetAnnouncedUnixNano()
	}
	want := map[uint64]int64{old: now.Add(-time.Hour).UnixNano(), recent: now.UnixNano()}
	if len(recs) != 2 || !maps.Equal(got, want) {
		t.Fatalf("REMOVE records %v (%d), want %v", got, len(recs), want)
	}
	if st := p.Stats(); st.RemovedIDs != 2 {
		t.Fatalf("RemovedIDs %d, want 2", st.RemovedIDs)
	}
}
