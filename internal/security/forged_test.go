package security_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

const dim = 4

func unit(i int) []float32 {
	v := make([]float32, dim)
	v[i%dim] = 1
	return v
}

// testForgedCenters: with the trainer's NATS account leaked but not its
// signing key, a forged center and a forged step commit of a later
// epoch are rejected by a live and a fresh replica (subscriber
// credentials): neither hides nor freezes the real centers.
func testForgedCenters(t *testing.T, tg target) {
	ctx := testutil.Context(t)
	model := "forged" + tg.sfx
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tnc, _ := natsConn(t, tg, tg.m.NATSClient(security.RoleTrainer, false))
	tjs, err := jetstream.New(tnc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := broadcast.NewPublisher(tjs, broadcast.PublisherOptions{Model: model, Codec: broadcast.NewProtoCodec(dim).WithSigner(priv).WithVerifier(pub)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "publisher", p)
	step := func(s int64, ups ...broadcast.Update) {
		t.Helper()
		if err := p.Publish(ctx, s, ups); err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	snc, _ := natsConn(t, tg, tg.m.NATSClient(security.RoleSubscriber, false))
	sjs, err := jetstream.New(snc)
	if err != nil {
		t.Fatal(err)
	}
	verifying := broadcast.ReplicaOptions{Model: model, Codec: broadcast.NewProtoCodec(dim).WithVerifier(pub), Dim: dim}
	replica := func() *broadcast.Replica {
		r, err := broadcast.NewReplica(sjs, verifying)
		if err != nil {
			t.Fatal(err)
		}
		run(t, ctx, "replica", r)
		return r
	}
	live := replica()
	step(0, broadcast.Update{ID: 1, Vector: unit(0), Kind: broadcast.Insert}, broadcast.Update{ID: 2, Vector: unit(1), Kind: broadcast.Insert})
	if err := live.WaitStep(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// The forger holds the trainer's NATS account and a key of its own.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	forger := broadcast.NewProtoCodec(dim).WithSigner(other)
	const far = 999999999
	upd, err := forger.EncodeUpdate(broadcast.Update{Model: model, ID: 1, Vector: unit(3), Step: far, Kind: broadcast.Refresh, Run: "forger", Epoch: 99})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := forger.EncodeCommit(broadcast.Commit{Model: model, Step: far, IDs: []uint64{1}, Time: time.Now(), Run: "forger", Epoch: 99})
	if err != nil {
		t.Fatal(err)
	}
	for subject, b := range map[string][]byte{schemas.CenterSubject(model, 1): upd, schemas.StepSubject(model): cm} {
		if _, err := tjs.Publish(ctx, subject, b); err != nil {
			t.Fatalf("publishing with the leaked account: %v", err)
		}
	}
	step(1, broadcast.Update{ID: 1, Vector: unit(2), Kind: broadcast.Refresh})
	if err := live.WaitStep(ctx, 1); err != nil {
		t.Fatal(err)
	}
	check := func(name string, r *broadcast.Replica) {
		t.Helper()
		c1, ok1 := r.Get(1)
		_, ok2 := r.Get(2)
		if !ok1 || c1.Step != 1 || c1.Vector[2] != 1 || !ok2 {
			t.Errorf("%s replica: id 1 %+v (%v), id 2 present %v: want the real centers", name, c1, ok1, ok2)
		}
		if st := r.Stats(); st.LastStep != 1 || st.Epoch != p.Epoch() {
			t.Errorf("%s replica: stats %+v, want the real epoch %d and step 1", name, st, p.Epoch())
		}
	}
	check("live", live)
	if st := live.Stats(); st.BadSignature != 2 {
		t.Errorf("live replica: %d bad signatures counted, want 2", st.BadSignature)
	}
	check("fresh", replica())
}

// run runs s until the test ends, once it is ready.
func run(t *testing.T, ctx context.Context, name string, s interface {
	Run(context.Context) error
	Close() error
	Ready() <-chan struct{}
}) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { _ = s.Close() })
	if err := stage.WaitReady(ctx, name, s, done); err != nil {
		t.Fatal(err)
	}
}
