package broadcast

import (
	"crypto/ed25519"
	"crypto/rand"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

// TestSignedCenters: with the trainer signing and the subscribers
// verifying, what someone with NATS access but not the trainer's key
// publishes — a center and a step commit of a newer epoch signed with
// another key, an unsigned update — is rejected and counted by every
// replica; the forged commit neither fences the real publisher nor
// freezes the ID in a live replica nor hides real centers from a fresh
// one.
func TestSignedCenters(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	dir := t.TempDir()
	privPath, pubPath := filepath.Join(dir, "centers.key"), filepath.Join(dir, "centers.pub")
	if err := GenerateKeys(privPath, pubPath); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeys(privPath, pubPath); err == nil {
		t.Fatal("GenerateKeys overwrote an existing private key")
	}
	priv, err := LoadSigningKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	const model = "signed"
	pub1, _ := runPub(t, ctx, js, PublisherOptions{Model: model, Codec: NewProtoCodec(dim).WithSigner(priv).WithVerifier(pub)})
	verifying := ReplicaOptions{Model: model, Codec: NewProtoCodec(dim).WithVerifier(pub), Dim: dim}
	live, _ := runReplicaWith(t, ctx, js, verifying)
	publishStep(t, ctx, pub1, 0, []Update{{ID: 1, Vector: vec(1), Kind: Insert}, {ID: 2, Vector: vec(2), Kind: Insert}})
	if err := live.WaitStep(ctx, 0); err != nil {
		t.Fatal(err)
	}

	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	forger := NewProtoCodec(dim).WithSigner(otherKey)
	send := func(subject string) func([]byte, error) {
		return func(b []byte, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, subject, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	const far = 999999999
	send(schemas.CenterSubject(model, 1))(forger.EncodeUpdate(Update{Model: model, ID: 1, Vector: vec(9), Step: far, Kind: Refresh, Run: "forger", Epoch: 99}))
	send(schemas.StepSubject(model))(forger.EncodeCommit(Commit{Model: model, Step: far, IDs: []uint64{1}, Time: time.Now(), Run: "forger", Epoch: 99}))
	send(schemas.CenterSubject(model, 3))(NewProtoCodec(dim).EncodeUpdate(Update{Model: model, ID: 3, Vector: vec(7), Step: far, Kind: Insert, Run: "forger", Epoch: 99}))

	// The real trainer goes on: not fenced by the forged record, and ID 1
	// is not frozen at the forged version.
	publishStep(t, ctx, pub1, 1, []Update{{ID: 1, Vector: vec(3), Kind: Refresh}})
	if err := live.WaitStep(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if st := pub1.Stats(); st.Forged != 1 {
		t.Errorf("publisher stats %+v: want the forged record counted once", st)
	}
	check := func(name string, r *Replica) {
		t.Helper()
		c1, ok1 := r.Get(1)
		c2, ok2 := r.Get(2)
		_, ok3 := r.Get(3)
		if !ok1 || c1.Step != 1 || c1.Epoch != pub1.Epoch() || math.Abs(float64(c1.Vector[0])-3/math.Sqrt(10)) > 1e-6 || !ok2 || c2.Step != 0 || ok3 {
			t.Errorf("%s: id 1 %+v (%v), id 2 %+v (%v), id 3 present %v: want the real centers only", name, c1, ok1, c2, ok2, ok3)
		}
		if st := r.Stats(); st.Epoch != pub1.Epoch() || st.LastStep != 1 {
			t.Errorf("%s: stats %+v: want the real epoch %d and step 1", name, st, pub1.Epoch())
		}
	}
	check("live", live)
	if st := live.Stats(); st.BadSignature != 2 || st.Unsigned != 1 || st.Rejected != 3 {
		t.Errorf("live stats %+v: want 2 bad signatures and 1 unsigned message rejected", st)
	}
	fresh, _ := runReplicaWith(t, ctx, js, verifying)
	check("fresh", fresh)
	if st := fresh.Stats(); st.Unsigned != 1 {
		t.Errorf("fresh stats %+v: want the unsigned update rejected", st)
	}
}
