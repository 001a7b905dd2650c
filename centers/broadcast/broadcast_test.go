package broadcast

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

// jsonCodec is a test codec; the pipeline uses the protobuf one.
type jsonCodec struct{}

func (jsonCodec) EncodeUpdate(u Update) ([]byte, error) { return json.Marshal(u) }
func (jsonCodec) DecodeUpdate(b []byte) (Update, error) {
	var u Update
	err := json.Unmarshal(b, &u)
	if err == nil && u.Kind == 0 {
		err = errors.New("no kind")
	}
	return u, err
}
func (jsonCodec) EncodeCommit(c Commit) ([]byte, error) { return json.Marshal(c) }
func (jsonCodec) DecodeCommit(b []byte) (Commit, error) {
	var c Commit
	return c, json.Unmarshal(b, &c)
}

const dim = 4

func setup(t *testing.T) (jetstream.JetStream, *embedded.NATS) {
	t.Helper()
	srv, err := embedded.StartNATS(embedded.NATSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, srv
}

func vec(v float32) []float32 { return []float32{v, 1, 0, 0} }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitTrue(t, what, cond)
}

// TestMain fails the package when a replica's goroutines outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runPub starts a publisher as a stage and waits until it holds its
// epoch; its Run error arrives on the returned channel.
func runPub(t *testing.T, ctx context.Context, js jetstream.JetStream, opts PublisherOptions) (*Publisher, <-chan error) {
	t.Helper()
	if opts.Codec == nil {
		opts.Codec = jsonCodec{}
	}
	pub, err := NewPublisher(js, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pub.Run(ctx) }()
	t.Cleanup(func() { _ = pub.Close() })
	if err := stage.WaitReady(ctx, "publisher", pub, done); err != nil {
		t.Fatal(err)
	}
	return pub, done
}

// publishStep queues one step and waits until it is committed.
func publishStep(t *testing.T, ctx context.Context, pub *Publisher, step int64, ups []Update) {
	t.Helper()
	if err := pub.Publish(ctx, step, ups); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func runReplica(t *testing.T, ctx context.Context, js jetstream.JetStream, model string) (*Replica, <-chan error) {
	t.Helper()
	return runReplicaWith(t, ctx, js, ReplicaOptions{Model: model, Codec: jsonCodec{}, Dim: dim})
}

func runReplicaWith(t *testing.T, ctx context.Context, js jetstream.JetStream, opts ReplicaOptions) (*Replica, <-chan error) {
	t.Helper()
	rep, err := NewReplica(js, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	t.Cleanup(func() { _ = rep.Close() })
	if err := stage.WaitReady(ctx, "replica", rep, done); err != nil {
		t.Fatal(err)
	}
	return rep, done
}

func TestPublishBootstrapLive(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	pub, _ := runPub(t, ctx, js, PublisherOptions{Model: "m1"})
	if pub.Epoch() != 1 {
		t.Fatalf("first start took epoch %d, want 1", pub.Epoch())
	}
	// Steps 0–2 before the replica starts: id 1 updated three times, id 2
	// once, id 3 inserted then evicted.
	steps := [][]Update{
		{{ID: 1, Vector: vec(1), Kind: Insert}, {ID: 2, Vector: vec(2), Kind: Insert}, {ID: 3, Vector: vec(3), Kind: Insert}},
		{{ID: 1, Vector: vec(11), Kind: Refresh}},
		{{ID: 3, Kind: Evict}, {ID: 1, Vector: vec(21), Kind: Refresh}},
	}
	for s, ups := range steps {
		publishStep(t, ctx, pub, int64(s), ups)
	}
	rctx, rcancel := context.WithCancel(ctx)
	rep, done := runReplica(t, rctx, js, "m1")
	c1, _ := rep.Get(1)
	c3, ok3 := rep.Get(3)
	if c1.Step != 2 || c1.Epoch != 1 || c1.Vector[0] == 0 || !ok3 || c3.InPool {
		t.Fatalf("after bootstrap: id1 %+v, id3 %+v (want id1 at (1, 2), id3 kept but out of the pool)", c1, c3)
	}
	if got := rep.IDs(); len(got) != 3 {
		t.Fatalf("ids %v", got)
	}

	// Live: an update without its commit is not applied; with it, it is.
	b, _ := jsonCodec{}.EncodeUpdate(Update{Model: "m1", ID: 2, Vector: vec(-5), Step: 3, Kind: Refresh, Run: pub.RunName(), Epoch: 1})
	if _, err := js.Publish(ctx, schemas.CenterSubject("m1", 2), b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pending update", func() bool { return rep.Stats().Pending == 1 })
	if c2, _ := rep.Get(2); c2.Step != 0 {
		t.Fatalf("uncommitted step applied: %+v", c2)
	}
	publishStep(t, ctx, pub, 4, []Update{{ID: 4, Vector: vec(4), Kind: Insert}})
	if err := rep.WaitStep(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if c2, _ := rep.Get(2); c2.Step != 3 {
		t.Fatalf("step 3 update should be applied by the step 4 commit: %+v", c2)
	}

	// Versions never go backwards: a republished older step is ignored.
	publishStep(t, ctx, pub, 1, []Update{{ID: 1, Vector: vec(-1), Kind: Refresh}})
	waitFor(t, "stale update counted", func() bool { return rep.Stats().Stale == 1 })
	if c1, _ := rep.Get(1); c1.Step != 2 {
		t.Fatalf("id 1 went back to step %d", c1.Step)
	}

	// A malformed message is rejected and counted, not fatal.
	if _, err := js.Publish(ctx, schemas.CenterSubject("m1", 9), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, schemas.CenterSubject("m1", 9), mustJSON(t, Update{ID: 9, Vector: []float32{1}, Kind: Insert, Step: 9, Run: pub.RunName(), Epoch: 1})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rejections", func() bool { return rep.Stats().Rejected == 2 })

	// Exact search finds the nearest center.
	m, err := rep.Search([]float32{4, 1, 0, 0}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m[0].ID != 4 {
		t.Fatalf("search %+v: want id 4 first", m)
	}
	if _, err := rep.Search([]float32{1}, 1); err == nil {
		t.Error("query of the wrong dimension accepted")
	}
	rcancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after its context ended: %v, want nil", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSearchExact compares Search with a brute-force scan over many IDs.
func TestSearchExact(t *testing.T) {
	r, err := NewReplica(nil, ReplicaOptions{Model: "m", Codec: jsonCodec{}, Dim: 8})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	rv := func() []float32 {
		v := make([]float32, 8)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	v := Version{Epoch: 1, Step: 1}
	for id := uint64(0); id < 500; id++ {
		r.pending[v] = append(r.pending[v], Update{ID: id, Vector: rv(), Step: 1, Epoch: 1, Kind: Insert, Run: "r"})
	}
	r.record(Commit{Step: 1, Epoch: 1, Phase: PhaseCommit})
	for trial := 0; trial < 20; trial++ {
		q := rv()
		got, err := r.Search(q, 5)
		if err != nil {
			t.Fatal(err)
		}
		bestID, best := uint64(0), -2.0
		for _, id := range r.IDs() {
			c, _ := r.Get(id)
			var s, qq float64
			for i := range q {
				s += float64(c.Vector[i]) * float64(q[i])
				qq += float64(q[i]) * float64(q[i])
			}
			if s/math.Sqrt(qq) > best {
				best, bestID = s/math.Sqrt(qq), id
			}
		}
		if got[0].ID != bestID || len(got) != 5 || got[1].Score > got[0].Score {
			t.Fatalf("search %+v, brute force best %d (%.4f)", got, bestID, best)
		}
	}
}

func TestModelNames(t *testing.T) {
	for name, ok := range map[string]bool{"glyphs-ci": true, "m_1": true, "": false, "a.b": false, "a*": false, "a b": false} {
		if err := ValidateModel(name); (err == nil) != ok {
			t.Errorf("ValidateModel(%q) = %v", name, err)
		}
	}
}

// TestNATSOutage (issue 12, fault 4) restarts the NATS server under a
// live publisher and replica: the publisher keeps the newest change per
// ID while NATS is down (reporting it: health, failures, staleness),
// publishes it when NATS returns, and the replica applies it.
func TestNATSOutage(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL())
	port, _ := strconv.Atoi(u.Port())
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := testutil.Context(t)
	health := &stage.Health{}
	pub, _ := runPub(t, ctx, js, PublisherOptions{Model: "r", Health: health, AckTimeout: time.Second, MaxRetryWait: 200 * time.Millisecond})
	publishStep(t, ctx, pub, 0, []Update{{ID: 1, Vector: vec(1), Kind: Insert}})
	rep, _ := runReplica(t, ctx, js, "r")

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Three steps while NATS is down: id 2 twice (the newest is kept).
	for s, ups := range [][]Update{
		{{ID: 2, Vector: vec(2), Kind: Insert}},
		{{ID: 2, Vector: vec(22), Kind: Refresh}, {ID: 3, Vector: vec(3), Kind: Insert}},
	} {
		if err := pub.Publish(ctx, int64(s+1), ups); err != nil {
			t.Fatalf("publish while NATS is down: %v", err)
		}
	}
	waitFor(t, "health to report NATS failing", func() bool { return !health.OK() && pub.Stats().Failures > 0 })
	if st := pub.Stats(); st.Backlog != 2 || st.Staleness <= 0 {
		t.Fatalf("while down: %+v, want 2 subjects waiting and a staleness", st)
	}
	srv2, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !health.OK() || pub.Stats().Staleness != 0 {
		t.Fatalf("after the flush: health %+v, stats %+v", health.Conditions(), pub.Stats())
	}
	if err := rep.WaitStep(ctx, 2); err != nil {
		t.Fatal(err)
	}
	c2, _ := rep.Get(2)
	if c2.Step != 2 || c2.Vector[0] <= c2.Vector[1] {
		t.Fatalf("id 2 = %+v, want the step 2 value", c2)
	}
	if c, _ := rep.Get(1); c.Step != 0 {
		t.Fatalf("id 1 changed: %+v", c)
	}
}

// TestBacklogBounded: Publish waits while the backlog is full, keeping
// the newest value per ID.
func TestBacklogBounded(t *testing.T) {
	js, srv := setup(t)
	ctx := testutil.Context(t)
	pub, _ := runPub(t, ctx, js, PublisherOptions{Model: "b", MaxBacklog: 2, AckTimeout: time.Second})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for s := range 3 { // one ID, three steps: one subject
		if err := pub.Publish(ctx, int64(s), []Update{{ID: 1, Vector: vec(float32(s)), Kind: Refresh}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, 3, []Update{{ID: 2, Vector: vec(2), Kind: Insert}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flusher to fail once", func() bool { return pub.Stats().Failures > 0 })
	if st := pub.Stats(); st.Backlog != 2 {
		t.Fatalf("backlog %d, want 2", st.Backlog)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := pub.Publish(cctx, 4, []Update{{ID: 3, Vector: vec(3), Kind: Insert}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish into a full backlog returned %v, want it to wait (context canceled)", err)
	}
}

// TestZombieFenced: a trainer that comes back after a later start of the
// job has taken the epoch cannot publish.
func TestZombieFenced(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	old, oldDone := runPub(t, ctx, js, PublisherOptions{Model: "z"})
	publishStep(t, ctx, old, 5, []Update{{ID: 1, Vector: vec(1), Kind: Insert}})
	next, _ := runPub(t, ctx, js, PublisherOptions{Model: "z", Restored: 3})
	if next.Epoch() != old.Epoch()+1 {
		t.Fatalf("epochs %d then %d", old.Epoch(), next.Epoch())
	}
	rep, _ := runReplica(t, ctx, js, "z")
	if err := old.Publish(ctx, 6, []Update{{ID: 1, Vector: vec(-6), Kind: Refresh}}); err != nil {
		t.Fatal(err)
	}
	if err := <-oldDone; !errors.Is(err, ErrFenced) {
		t.Fatalf("zombie's Run returned %v, want ErrFenced", err)
	}
	if err := old.Publish(ctx, 7, nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("zombie's Publish returned %v, want ErrFenced", err)
	}
	publishStep(t, ctx, next, 4, []Update{{ID: 2, Vector: vec(2), Kind: Insert}})
	if err := rep.WaitStep(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if c, _ := rep.Get(1); c.Step != 5 || c.Vector[0] < 0 {
		t.Fatalf("id 1 = %+v: the zombie's step 6 landed", c)
	}
	if c, _ := rep.Get(2); c.Epoch != next.Epoch() {
		t.Fatalf("id 2 = %+v", c)
	}
}

// TestRestartSupersedes (issue 12, faults 5 and 10): a job that died
// after publishing step 9 and a restart that restored step 3. The dead
// job's uncommitted tail never lands in a live replica, the restart's
// lower steps supersede (epoch first), and no subscriber sees a version
// go backwards.
func TestRestartSupersedes(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	dead, _ := runPub(t, ctx, js, PublisherOptions{Model: "c"})
	publishStep(t, ctx, dead, 9, []Update{{ID: 1, Vector: vec(1), Kind: Insert}, {ID: 2, Vector: vec(2), Kind: Insert}})
	live, _ := runReplica(t, ctx, js, "c")
	var mu sync.Mutex
	var seen []Update // an independent subscriber: every center message
	sub, err := js.Conn().Subscribe(schemas.CentersPrefix("c")+"*", func(m *nats.Msg) {
		if u, err := (jsonCodec{}).DecodeUpdate(m.Data); err == nil {
			mu.Lock()
			seen = append(seen, u)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// Step 10 of the dead job: updates only, its COMMIT never came.
	b, _ := jsonCodec{}.EncodeUpdate(Update{Model: "c", ID: 1, Vector: vec(-9), Step: 10, Kind: Refresh, Run: dead.RunName(), Epoch: dead.Epoch()})
	if _, err := js.Publish(ctx, schemas.CenterSubject("c", 1), b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dead tail to be pending", func() bool { return live.Stats().Pending == 1 })
	dead.Close()

	next, _ := runPub(t, ctx, js, PublisherOptions{Model: "c", Restored: 3})
	publishStep(t, ctx, next, 4, []Update{{ID: 2, Vector: vec(20), Kind: Refresh}, {ID: 3, Vector: vec(3), Kind: Insert}})
	if err := live.WaitStep(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if st := live.Stats(); st.Dropped != 1 || st.Epoch != 2 || st.Pending != 0 {
		t.Fatalf("live replica %+v: want the dead tail dropped, epoch 2", st)
	}
	c1, _ := live.Get(1)
	c2, _ := live.Get(2)
	if c1.Step != 9 || c1.Vector[0] < 0 || c2.Epoch != 2 || c2.Step != 4 {
		t.Fatalf("live: id1 %+v, id2 %+v", c1, c2)
	}
	// A replica that bootstraps now sees the same versions for ids 2 and 3.
	fresh, _ := runReplica(t, ctx, js, "c")
	for _, id := range []uint64{2, 3} {
		a, _ := live.Get(id)
		b, _ := fresh.Get(id)
		if a.Epoch != b.Epoch || a.Step != b.Step {
			t.Errorf("id %d: live %v/%d, fresh %v/%d", id, a.Epoch, a.Step, b.Epoch, b.Step)
		}
	}
	if err := nc(js).Flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	last := map[uint64]Version{}
	for _, u := range seen {
		if u.Version().Less(last[u.ID]) {
			t.Errorf("id %d went from %+v back to %+v", u.ID, last[u.ID], u.Version())
		}
		last[u.ID] = u.Version()
	}
}

func nc(js jetstream.JetStream) *nats.Conn { return js.Conn() }

// TestBootstrapMidStep (issue 12, fault 6): a replica (ffc centers get)
// that starts while the trainer is between a step's updates and its
// COMMIT holds every ID with a center in the stream: the stream's last
// values are applied at bootstrap, not held for a COMMIT that the stream
// no longer keeps.
func TestBootstrapMidStep(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	pub, _ := runPub(t, ctx, js, PublisherOptions{Model: "g"})
	var first []Update
	for id := uint64(1); id <= 5; id++ {
		first = append(first, Update{ID: id, Vector: vec(float32(id)), Kind: Insert})
	}
	publishStep(t, ctx, pub, 0, first)
	// Step 1 in flight: its updates are in the stream, its COMMIT is not.
	for id := uint64(6); id <= 8; id++ {
		b, _ := jsonCodec{}.EncodeUpdate(Update{Model: "g", ID: id, Vector: vec(float32(id)), Step: 1, Kind: Insert, Run: pub.RunName(), Epoch: pub.Epoch()})
		if _, err := js.Publish(ctx, schemas.CenterSubject("g", id), b); err != nil {
			t.Fatal(err)
		}
	}
	rep, _ := runReplica(t, ctx, js, "g")
	if got := rep.IDs(); len(got) != 8 {
		t.Fatalf("replica bootstrapped mid-step holds ids %v, want 1..8", got)
	}
}
