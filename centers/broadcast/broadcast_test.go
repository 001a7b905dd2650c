package broadcast

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
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

func TestPublishBootstrapLive(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	pub, err := NewPublisher(ctx, js, PublisherOptions{Model: "m1", Codec: jsonCodec{}})
	if err != nil {
		t.Fatal(err)
	}
	// Steps 0–2 before the replica starts: id 1 updated three times, id 2
	// once, id 3 inserted then evicted.
	steps := [][]Update{
		{{ID: 1, Vector: vec(1), Kind: Insert}, {ID: 2, Vector: vec(2), Kind: Insert}, {ID: 3, Vector: vec(3), Kind: Insert}},
		{{ID: 1, Vector: vec(11), Kind: Refresh}},
		{{ID: 3, Kind: Evict}, {ID: 1, Vector: vec(21), Kind: Refresh}},
	}
	for s, ups := range steps {
		if err := pub.PublishStep(ctx, int64(s), ups); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := NewReplica(js, ReplicaOptions{Model: "m1", Codec: jsonCodec{}, Dim: dim})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rep.Run(rctx) }()
	if err := stage.WaitReady(ctx, "replica", rep, done); err != nil {
		t.Fatal(err)
	}
	c1, _ := rep.Get(1)
	c3, ok3 := rep.Get(3)
	if c1.Step != 2 || c1.Vector[0] == 0 || !ok3 || c3.InPool {
		t.Fatalf("after bootstrap: id1 %+v, id3 %+v (want id1 at step 2, id3 kept but out of the pool)", c1, c3)
	}
	if got := rep.IDs(); len(got) != 3 {
		t.Fatalf("ids %v", got)
	}

	// Live: a step without its commit is not applied; with it, it is.
	b, _ := jsonCodec{}.EncodeUpdate(Update{Model: "m1", ID: 2, Vector: vec(-5), Step: 3, Kind: Refresh, Run: pub.Run()})
	if _, err := js.Publish(ctx, schemas.CenterSubject("m1", 2), b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pending update", func() bool { return rep.Stats().Pending == 1 })
	if c2, _ := rep.Get(2); c2.Step != 0 {
		t.Fatalf("uncommitted step applied: %+v", c2)
	}
	if err := pub.PublishStep(ctx, 4, []Update{{ID: 4, Vector: vec(4), Kind: Insert}}); err != nil {
		t.Fatal(err)
	}
	if err := rep.WaitStep(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if c2, _ := rep.Get(2); c2.Step != 3 {
		t.Fatalf("step 3 update should be applied by the step 4 commit: %+v", c2)
	}

	// Steps never go backwards: a republished older step is ignored.
	if err := pub.PublishStep(ctx, 1, []Update{{ID: 1, Vector: vec(-1), Kind: Refresh}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stale update counted", func() bool { return rep.Stats().Stale == 1 })
	if c1, _ := rep.Get(1); c1.Step != 2 {
		t.Fatalf("id 1 went back to step %d", c1.Step)
	}

	// A malformed message is rejected and counted, not fatal.
	if _, err := js.Publish(ctx, schemas.CenterSubject("m1", 9), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, schemas.CenterSubject("m1", 9), mustJSON(t, Update{ID: 9, Vector: []float32{1}, Kind: Insert, Step: 9, Run: pub.Run()})); err != nil {
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
	for id := uint64(0); id < 500; id++ {
		if r.pending["r"] == nil {
			r.pending["r"] = map[int64][]Update{}
		}
		r.pending["r"][1] = append(r.pending["r"][1], Update{ID: id, Vector: rv(), Step: 1, Kind: Insert, Run: "r"})
	}
	r.applyThrough("r", 1)
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

// TestReplicaSurvivesServerRestart restarts the NATS server under a live
// replica: it reconnects and applies the steps published afterwards.
func TestReplicaSurvivesServerRestart(t *testing.T) {
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
	pub, err := NewPublisher(ctx, js, PublisherOptions{Model: "r", Codec: jsonCodec{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishStep(ctx, 0, []Update{{ID: 1, Vector: vec(1), Kind: Insert}}); err != nil {
		t.Fatal(err)
	}
	rep, _ := NewReplica(js, ReplicaOptions{Model: "r", Codec: jsonCodec{}, Dim: dim})
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	defer func() { rep.Close(); <-done }()
	if err := stage.WaitReady(ctx, "replica", rep, done); err != nil {
		t.Fatal(err)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv2, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	// Publish after the restart, retrying while the client reconnects.
	waitFor(t, "publish after restart", func() bool {
		return pub.PublishStep(ctx, 1, []Update{{ID: 2, Vector: vec(2), Kind: Insert}}) == nil
	})
	waitFor(t, "replica to apply step 1 after the restart", func() bool { return rep.Stats().LastStep == 1 })
	if _, ok := rep.Get(2); !ok {
		t.Fatal("id 2 missing after restart")
	}
	if c, _ := rep.Get(1); c.Step != 0 {
		t.Fatalf("id 1 changed: %+v", c)
	}
}

// TestCrashedRunTailNeverLands: a run that published updates of a step but
// died before committing it; a new run commits the same step number. The
// dead run's updates are dropped, the new run's applied.
func TestCrashedRunTailNeverLands(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	dead, err := NewPublisher(ctx, js, PublisherOptions{Model: "c", Codec: jsonCodec{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.PublishStep(ctx, 0, []Update{{ID: 1, Vector: vec(1), Kind: Insert}}); err != nil {
		t.Fatal(err)
	}
	// Step 1 of the dead run: updates only, no commit.
	for _, id := range []uint64{1, 2} {
		b, _ := jsonCodec{}.EncodeUpdate(Update{Model: "c", ID: id, Vector: vec(-9), Step: 1, Kind: Refresh, Run: dead.Run()})
		if _, err := js.Publish(ctx, schemas.CenterSubject("c", id), b); err != nil {
			t.Fatal(err)
		}
	}
	next, err := NewPublisher(ctx, js, PublisherOptions{Model: "c", Codec: jsonCodec{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.PublishStep(ctx, 1, []Update{{ID: 3, Vector: vec(3), Kind: Insert}}); err != nil {
		t.Fatal(err)
	}
	for _, live := range []bool{false, true} { // bootstrap from the stream, and live
		rep, err := NewReplica(js, ReplicaOptions{Model: "c", Codec: jsonCodec{}, Dim: dim})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- rep.Run(ctx) }()
		if err := stage.WaitReady(ctx, "replica", rep, done); err != nil {
			t.Fatal(err)
		}
		if live {
			if err := next.PublishStep(ctx, 2, []Update{{ID: 4, Vector: vec(4), Kind: Insert}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "step 2", func() bool { return rep.Stats().LastStep == 2 })
		}
		c1, _ := rep.Get(1)
		_, has2 := rep.Get(2)
		_, has3 := rep.Get(3)
		if c1.Step != 0 || has2 || !has3 {
			t.Errorf("live=%v: id1 %+v, id2 present %v, id3 present %v: the dead run's step 1 must not land", live, c1, has2, has3)
		}
		rep.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
