package main

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// shortOptions is the short version: 3 trainer kills, one producer kill,
// one fault of each service, the bad-message set, small data.
func shortOptions(stack string) options {
	o := fullOptions()
	o.stack, o.duration, o.seed = stack, 45*time.Second, 0
	o.trainerKills, o.producerKills, o.kafkaFaults, o.natsFaults, o.s3Faults = 3, 1, 1, 1, 1
	o.badPerKind, o.badBursts, o.outage = 3, 2, 3*time.Second
	o.ids, o.batch, o.dim, o.pool, o.ckptEvery, o.partitions = 40, 8, 32, 24, 3, 2
	o.readyTimeout, o.recoveryTimeout, o.drainTimeout = 2*time.Minute, 2*time.Minute, 2*time.Minute
	o.maxUnexpectedExits = 8
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-tags" {
				o.tags = s.Value
			}
		}
	}
	return o
}

// TestChaosShort runs the short chaos suite on the embedded stack and,
// when the real services are configured (FFC_KAFKA_BROKERS, FFC_NATS_URL,
// FFC_S3_ENDPOINT, or FFC_REQUIRE_REAL=1), on a private instance of the
// real ones (deploy/local/services.sh on free ports: restarting them
// disturbs no other test). Every loss, regression and unexpected-exit
// column must be 0.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos suite: builds ffc and runs the pipeline under faults for a few minutes")
	}
	stacks := []string{"embedded"}
	if (os.Getenv("FFC_KAFKA_BROKERS") != "" && os.Getenv("FFC_NATS_URL") != "" && os.Getenv("FFC_S3_ENDPOINT") != "") || os.Getenv("FFC_REQUIRE_REAL") == "1" {
		stacks = append(stacks, "real")
	}
	for _, stack := range stacks {
		t.Run(stack, func(t *testing.T) {
			ctx := testutil.Context(t)
			o := shortOptions(stack)
			o.workDir = t.TempDir()
			var logs bytes.Buffer
			rep, err := run(ctx, o, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
			var table bytes.Buffer
			if rep != nil {
				rep.print(&table)
			}
			t.Logf("report:\n%s", table.String())
			if err != nil {
				t.Fatalf("harness: %v\nlog:\n%s", err, logs.String())
			}
			if len(rep.Faults) == 0 || rep.Audit.Offsets == 0 || rep.Subscriber.Commits == 0 {
				t.Errorf("nothing measured: %d faults, %d offsets, %d commits", len(rep.Faults), rep.Audit.Offsets, rep.Subscriber.Commits)
			}
			for _, f := range rep.Failures() {
				t.Error(f)
			}
			if t.Failed() {
				for _, e := range rep.Exits {
					t.Logf("%s process %d (%s), last lines of %s:\n%s", e.Child, e.Process, e.Status, e.Log, strings.Join(e.Tail, "\n"))
				}
				lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
				t.Logf("harness log (last 40 lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		})
	}
}

// TestBadKinds checks that every bad kind, built from valid messages of
// both topics, is rejected by the trainer's decoder for its reason.
func TestBadKinds(t *testing.T) {
	d := testData(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, k := range badKinds() {
		for _, byID := range []bool{true, false} {
			key, value, err := makeBad(k, d, rng, byID)
			if err != nil {
				t.Fatalf("%s (byID %v): %v", k.name, byID, err)
			}
			if got := decodeReason(value, byID); got != k.reason {
				t.Errorf("%s (byID %v): reason %q, want %q", k.name, byID, got, k.reason)
			}
			if len(key) == 0 {
				t.Errorf("%s: no key", k.name)
			}
			if k.name == badOversized && len(value) <= schemas.DefaultMaxMessageBytes {
				t.Errorf("oversized message of %d bytes", len(value))
			}
		}
		_, valid, err := d.valid(rng, true)
		if err != nil || decodeReason(valid, true) != "" {
			t.Errorf("valid pair rejected: %v %q", err, decodeReason(valid, true))
		}
	}
}

// testData is a small data set in memory (nothing uploaded).
func testData(t *testing.T) *dataset {
	t.Helper()
	d := &dataset{images: map[uint64][]object{}}
	rng := rand.New(rand.NewPCG(3, 4))
	for id := uint64(idBase); id < idBase+3; id++ {
		d.ids = append(d.ids, id)
		for k := range 2 {
			b, err := grayPNG(schemas.DefaultImageSize, rng)
			if err != nil {
				t.Fatal(err)
			}
			d.images[id] = append(d.images[id], object{key: schemas.ImageKey(id, string(rune('a'+k))), png: b})
		}
	}
	return d
}

func TestSchedule(t *testing.T) {
	o := shortOptions("embedded")
	a, b := schedule(o, 42), schedule(o, 42)
	if len(a) != 3+1+1+1+1+2 {
		t.Fatalf("%d events", len(a))
	}
	count := map[string]int{}
	for i, e := range a {
		if e != b[i] {
			t.Errorf("event %d differs for the same seed: %+v, %+v", i, e, b[i])
		}
		if i > 0 && e.at < a[i-1].at {
			t.Errorf("events out of order at %d", i)
		}
		if e.at < o.duration/20 || e.at > o.duration*19/20 {
			t.Errorf("event at %s outside the middle 90%% of %s", e.at, o.duration)
		}
		count[e.kind]++
	}
	if count[faultTrainer] != 3 || count[faultBad] != 2 || count[faultS3] != 1 {
		t.Errorf("counts %v", count)
	}
	if c := schedule(o, 43); c[0] == a[0] && c[1] == a[1] {
		t.Errorf("another seed, the same schedule")
	}
}

func TestShare(t *testing.T) {
	for _, c := range []struct{ n, bursts int }{{50, 10}, {3, 2}, {7, 3}, {1, 4}} {
		sum := 0
		for i := range c.bursts {
			sum += share(c.n, c.bursts, i)
		}
		if sum != c.n {
			t.Errorf("share(%d, %d) sums to %d", c.n, c.bursts, sum)
		}
	}
}

func TestProducerCounts(t *testing.T) {
	text := `# HELP ffc_producer_samples_total Messages acknowledged by Kafka.
# TYPE ffc_producer_samples_total counter
ffc_producer_samples_total{shard="0/1",topic="t.byid"} 120
ffc_producer_samples_total{shard="0/1",topic="t.instance"} 80
ffc_producer_samples_total{shard="0/1",topic="t.deadletter"} 5
ffc_producer_produce_failures_total{shard="0/1",topic="t.byid"} 2
ffc_producer_produce_failures_total{shard="0/1",topic="t.deadletter"} 1
ffc_producer_messages_dropped_total{shard="0/1"} 4
ffc_producer_lag_messages{shard="0/1",topic="t.byid"} 9
`
	acked, dropped := producerCounts(text, "t.byid", "t.instance")
	if acked != 200 || dropped != 7 {
		t.Errorf("acked %d, dropped %d; want 200, 7", acked, dropped)
	}
}

func TestParseDeadLetterKey(t *testing.T) {
	for _, c := range []struct {
		key string
		p   tp
		off int64
		ok  bool
	}{
		{"chaos.ab.byid/3/1234", tp{"chaos.ab.byid", 3}, 1234, true},
		{"samples.instance/0/0", tp{"samples.instance", 0}, 0, true},
		{"ids/1000/0001.png", tp{}, 0, false},
		{"nokey", tp{}, 0, false},
		{"t/x/1", tp{}, 0, false},
	} {
		p, off, ok := parseDeadLetterKey(c.key)
		if ok != c.ok || (ok && (p != c.p || off != c.off)) {
			t.Errorf("%q: %v %d %v", c.key, p, off, ok)
		}
	}
}

// TestSubscriberVersions feeds the subscriber updates and commits and
// checks what it counts as a regression.
func TestSubscriberVersions(t *testing.T) {
	s := newSubscriber("m", 2)
	upd := func(id, epoch, step uint64, kind ffcpb.CenterUpdate_Kind) {
		t.Helper()
		m := &ffcpb.CenterUpdate{Model: "m", Id: id, Epoch: epoch, Step: step, Kind: kind, Run: "r1"}
		subj := "centers.m." + strconv.FormatUint(id, 10)
		if kind == ffcpb.CenterUpdate_EVICT {
			subj = "centers.m.evicted." + strconv.FormatUint(id, 10)
		} else {
			m.Vector = []float32{0.6, 0.8}
		}
		b, err := schemas.EncodeCenterUpdate(m)
		if err != nil {
			t.Fatal(err)
		}
		s.handle(subj, b, time.Now(), 0)
	}
	commit := func(subj string, phase ffcpb.StepCommit_Phase) {
		t.Helper()
		b, err := schemas.EncodeStepCommit(&ffcpb.StepCommit{Model: "m", Step: 1, TimeUnixNano: 1, Run: "r1", Phase: phase})
		if err != nil {
			t.Fatal(err)
		}
		s.handle(subj, b, time.Now(), 0)
	}
	upd(1, 0, 5, ffcpb.CenterUpdate_INSERT)
	upd(1, 0, 5, ffcpb.CenterUpdate_REFRESH) // same version: no regression
	upd(1, 0, 3, ffcpb.CenterUpdate_REFRESH) // regression
	upd(1, 1, 2, ffcpb.CenterUpdate_REFRESH) // newer epoch
	upd(1, 0, 9, ffcpb.CenterUpdate_EVICT)   // older epoch: regression
	upd(2, 0, 1, ffcpb.CenterUpdate_EVICT)
	commit("centers.m.step.r1", ffcpb.StepCommit_COMMIT)
	commit("centers.m.step", ffcpb.StepCommit_BEGIN)
	commit("centers.m.step", ffcpb.StepCommit_COMMIT)
	s.handle("centers.m.7", []byte("junk"), time.Now(), 0)
	st := s.Stats()
	if st.Regressions != 2 || st.RegressedIDs != 1 || st.Updates != 6 || st.Evictions != 2 || st.Commits != 2 || st.StepRecords != 3 || st.DecodeErrors != 1 {
		t.Errorf("stats %+v", st)
	}
	if ids := s.IDsWithCenter(); len(ids) != 1 || ids[0] != 1 {
		t.Errorf("IDs with a center %v, want [1]", ids)
	}
}

// TestFillers checks that the fillers complete whole batches of both
// topics, with one after every partition that has messages left.
func TestFillers(t *testing.T) {
	r := &runner{o: options{batch: 8}, seed: 1, names: names{byID: "b", instance: "i"}, data: testData(t)}
	parts := []tp{{"b", 0}, {"b", 1}, {"i", 0}, {"i", 1}}
	for _, tails := range []map[tp]int64{
		{{"b", 0}: 3, {"i", 1}: 10},
		{{"b", 1}: 0},
		{{"i", 0}: 7, {"i", 1}: 7},
		{},
	} {
		recs, err := r.fillers(parts, tails)
		if err != nil {
			t.Fatal(err)
		}
		var total [2]int64
		perPart := map[tp]int{}
		for p, n := range tails {
			total[r.topicIndex(p.topic)] += n
		}
		for _, rec := range recs {
			total[r.topicIndex(rec.Topic)]++
			perPart[tp{rec.Topic, rec.Partition}]++
			if decodeReason(rec.Value, rec.Topic == "b") != "" {
				t.Errorf("invalid filler")
			}
		}
		if total[0] != total[1] || total[0]%8 != 0 {
			t.Errorf("tails %v: valid left after fillers %v, want equal multiples of 8", tails, total)
		}
		for p := range tails {
			if perPart[p] == 0 {
				t.Errorf("tails %v: no filler after %s", tails, p)
			}
		}
		if len(tails) == 0 && len(recs) != 0 {
			t.Errorf("fillers with nothing left: %d", len(recs))
		}
	}
}

// TestReportFailures checks that each checked column fails the report.
func TestReportFailures(t *testing.T) {
	ok := func() *Report { return &Report{Audit: Audit{Drained: true}} }
	if f := ok().Failures(); len(f) != 0 {
		t.Fatalf("clean report fails: %v", f)
	}
	for name, spoil := range map[string]func(*Report){
		"lost":        func(r *Report) { r.Audit.Lost = 1 },
		"dropped":     func(r *Report) { r.Audit.ProducerDropped = 1 },
		"bad":         func(r *Report) { r.Bad = []BadRow{{Kind: badTruncated, NotDeadLettered: 1}} },
		"ids":         func(r *Report) { r.IDs.Lost = 1 },
		"regressions": func(r *Report) { r.Subscriber.Regressions = 1 },
		"exits":       func(r *Report) { r.Exits = []ExitRecord{{Child: "trainer"}} },
		"stops":       func(r *Report) { r.FailedStops = []string{"x"} },
		"recovery":    func(r *Report) { r.Faults = []FaultRecord{{Kind: faultNATS}} },
		"drain":       func(r *Report) { r.Audit.Drained = false },
		"harness":     func(r *Report) { r.Errors = []string{"x"} },
	} {
		r := ok()
		spoil(r)
		if len(r.Failures()) == 0 {
			t.Errorf("%s: no failure", name)
		}
		r.print(io.Discard)
	}
}
