package trainers

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestSignedCenters: a trainer with a signing key signs every center and
// step commit: a replica verifying with its public key applies them all,
// one verifying with another key rejects them all.
func TestSignedCenters(t *testing.T) {
	e, _ := embeddedEnv(t)
	e.produce(t, 12, 2*8, 0)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	replica := func(key ed25519.PublicKey) *broadcast.Replica {
		r, err := broadcast.NewReplica(e.js, broadcast.ReplicaOptions{Model: e.model, Codec: broadcast.NewProtoCodec(32).WithVerifier(key), Dim: 32})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = r.Run(context.Background()) }()
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	good, bad := replica(pub), replica(otherPub)
	cfg := e.config(2)
	cfg.SigningKey = priv
	s, _ := run(t, cfg)
	if err := good.WaitStep(testutil.Context(t), int64(s.Steps-1)); err != nil {
		t.Fatal(err)
	}
	if st := good.Stats(); st.IDs != 12 || st.Rejected != 0 {
		t.Errorf("replica with the trainer's key: %+v, want the 12 IDs and nothing rejected", st)
	}
	testutil.WaitTrue(t, "the other replica to reject the trainer's messages", func() bool { return bad.Stats().BadSignature > 0 })
	if st := bad.Stats(); st.IDs != 0 || st.Applied != 0 {
		t.Errorf("replica with another key: %+v, want nothing applied", st)
	}
}
