package trainers

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// samples builds encoded messages of synthetic identities.
type samples struct {
	t *testing.T
	g *synth.Generator
}

func newSamples(t *testing.T) samples {
	g, err := synth.New(synth.Options{Seed: 5, IDs: 1000, Alpha: 1, Min: 3, Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	return samples{t: t, g: g}
}

func (s samples) image(id uint64, k int) *ffcpb.Image {
	pix, err := s.g.Image(id, k)
	if err != nil {
		s.t.Fatal(err)
	}
	return &ffcpb.Image{Key: schemas.ImageKey(id, strconv.Itoa(k)), Png: pngOf(s.t, pix)}
}

// pair is an IDPair; announced > 0 makes it a fresh-lane pair.
func (s samples) pair(id uint64, announced int64) []byte {
	b, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: id, First: s.image(id, 0), Second: s.image(id, 1), Source: "test", AnnouncedUnixNano: announced})
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func (s samples) remove(id uint64, at int64) []byte {
	b, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: id, Op: ffcpb.IDPair_REMOVE, Source: "test", AnnouncedUnixNano: at})
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func (s samples) instance(id uint64, k int) []byte {
	img := s.image(id, k)
	b, err := schemas.EncodeSample(&ffcpb.Sample{Id: id, ImageKey: img.Key, ImagePng: img.Png, Source: "test"})
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func (s samples) n(n int, f func(i int) []byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// TestFreshLaneAndRemoval runs the fresh lane on each stack:
//   - a new ID's pair on the fresh lane gets a center on NATS before any
//     step (the id stream is empty: no batch can complete), from the
//     provisional path, and the freshness histogram observes it;
//   - a REMOVE record takes it out of every replica, and every later
//     sample of it — pairs and instances, in this run and after a restart
//     from the checkpoint — is consumed without training (Forgotten), so
//     it never re-enters the pool;
//   - a fresh pair announced after the removal adds it again.
func TestFreshLaneAndRemoval(t *testing.T) {
	for name, mk := range stacks(t) {
		t.Run(name, func(t *testing.T) { testFreshLaneAndRemoval(t, mk(t)) })
	}
}

func testFreshLaneAndRemoval(t *testing.T, e *env) {
	const newID = 500
	s := newSamples(t)
	b := testSettings().Batch
	// Instances only, for two steps: a batch fills its instance half and
	// waits for pairs.
	e.writeTo(t, e.instance, 0, s.n(2*b, func(i int) []byte { return s.instance(uint64(i%12), i%3) })...)
	rep, err := broadcast.NewReplica(e.js, broadcast.ReplicaOptions{Model: e.model, Codec: broadcast.NewProtoCodec(32), Dim: 32})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rep.Run(context.Background()) }()
	defer rep.Close()

	reg := prometheus.NewRegistry()
	cfg := e.config(0)
	cfg.Registry = reg
	tr, stop := start(t, cfg)
	announced := time.Now().UnixNano()
	e.writeTo(t, e.fresh, 1, s.pair(newID, announced))
	testutil.WaitTrue(t, "the new ID's center in the replica", func() bool { _, ok := rep.Get(newID); return ok })
	if st := tr.Stats(); st.Steps != 0 || st.Fresh != 1 {
		t.Fatalf("stats %+v: want the center from the fresh lane before any step", st)
	}
	testutil.WaitTrue(t, "the freshness observation", func() bool { return histCount(t, reg, "ffc_trainer_freshness_seconds") == 1 })

	// B−1 ordinary pairs complete the first batch: the step inserts it.
	e.writeTo(t, e.byID, 0, s.n(b-1, func(i int) []byte { return s.pair(uint64(i%12), 0) })...)
	testutil.WaitTrue(t, "the first step", func() bool { return tr.Stats().Steps == 1 })

	removedAt := time.Now().UnixNano()
	e.writeTo(t, e.fresh, 1, s.remove(newID, removedAt))
	testutil.WaitTrue(t, "the removal in the replica", func() bool { _, ok := rep.Get(newID); return !ok })
	// Pairs and instances of the removed ID, and B pairs of others: one
	// more step, then a batch that can never fill consumes the rest.
	e.writeTo(t, e.byID, 1, s.n(b, func(int) []byte { return s.pair(newID, 0) })...)
	e.writeTo(t, e.instance, 1, s.n(b, func(i int) []byte { return s.instance(newID, i%3) })...)
	e.writeTo(t, e.byID, 2, s.n(b, func(i int) []byte { return s.pair(uint64(i%12), 0) })...)
	testutil.WaitTrue(t, "the removed ID's samples consumed", func() bool {
		st := tr.Stats()
		return st.Forgotten == 2*b && st.Steps == 2
	})
	stop()
	if st := tr.Stats(); st.Removed != 1 || st.Forgotten != 2*b {
		t.Fatalf("stats %+v: want 1 removal and %d samples forgotten", st, 2*b)
	}
	if slices.Contains(tr.PoolIDs(), newID) || !slices.Equal(tr.RemovedIDs(), []uint64{newID}) {
		t.Fatalf("pool %v, removed %v: want %d removed and out of the pool", tr.PoolIDs(), tr.RemovedIDs(), newID)
	}

	// A restart restores the removal: a later pair of the ID is forgotten.
	e.writeTo(t, e.byID, 3, s.pair(newID, 0))
	// The last batch of the first run never ran: its samples (the removed
	// ID's instances) are consumed again, and forgotten again.
	tr2, stop2 := start(t, e.config(0))
	testutil.WaitTrue(t, "the removed ID's samples after the restart", func() bool { return tr2.Stats().Forgotten == b+1 })
	if _, ok := rep.Get(newID); ok {
		t.Fatal("the removed ID came back after the restart")
	}
	// Announced again after its removal: back on NATS.
	e.writeTo(t, e.fresh, 2, s.pair(newID, time.Now().UnixNano()))
	testutil.WaitTrue(t, "the ID added again", func() bool { _, ok := rep.Get(newID); return ok })
	stop2()
	if len(tr2.RemovedIDs()) != 0 {
		t.Fatalf("removed %v after the ID was added again", tr2.RemovedIDs())
	}
}

// TestFreshBurst: a burst of new IDs larger than a batch all get their
// provisional centers at once, before any step (no instance is there: no
// batch can fill), not one batch's worth per step.
func TestFreshBurst(t *testing.T) {
	e, _ := embeddedEnv(t)
	s := newSamples(t)
	b := testSettings().Batch
	tr, stop := start(t, e.config(0))
	now := time.Now().UnixNano()
	e.writeTo(t, e.fresh, 0, s.n(3*b, func(i int) []byte { return s.pair(uint64(700+i), now) })...)
	testutil.WaitTrue(t, "a provisional center for each new ID", func() bool { return tr.Stats().Fresh == 3*b })
	stop()
	if st := tr.Stats(); st.Steps != 0 || st.Fresh != 3*b {
		t.Fatalf("stats %+v: want %d provisional centers and no step", st, 3*b)
	}
}

// start runs a trainer until the returned stop is called (or the test
// ends) and waits until it is ready.
func start(t *testing.T, cfg Config) (*Trainer, func()) {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testutil.Context(t))
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("trainer: %v", err)
		}
		_ = tr.Close()
	}
	t.Cleanup(stop)
	testutil.WaitTrue(t, "the trainer's partitions", func() bool { return tr.Stats().Partitions > 0 })
	return tr, stop
}

// histCount is the sample count of a histogram in reg.
func histCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}
