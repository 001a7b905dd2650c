package broadcast

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

// TestTombstone: a tombstone removes the ID from a live replica and from
// a fresh one (it replaces the center on its subject), an older update
// cannot bring it back, a newer one does, and the protobuf codec carries
// it.
func TestTombstone(t *testing.T) {
	js, _ := setup(t)
	ctx := testutil.Context(t)
	pub, _ := runPub(t, ctx, js, PublisherOptions{Model: "tomb", Codec: NewProtoCodec(dim)})
	live, _ := runReplicaCodec(t, ctx, js, "tomb")
	publishStep(t, ctx, pub, 0, []Update{{ID: 1, Vector: vec(1), Kind: Insert}, {ID: 2, Vector: vec(2), Kind: Insert}})
	publishStep(t, ctx, pub, 1, []Update{{ID: 1, Kind: Tombstone}})
	if err := live.WaitStep(ctx, 1); err != nil {
		t.Fatal(err)
	}
	check := func(name string, r *Replica, wantIDs int) {
		t.Helper()
		if _, ok := r.Get(1); ok {
			t.Errorf("%s: Get(1) found the removed ID", name)
		}
		if _, ok := r.Get(2); !ok {
			t.Errorf("%s: Get(2) lost the other ID", name)
		}
		if ids := r.IDs(); len(ids) != wantIDs {
			t.Errorf("%s: IDs %v, want %d", name, ids, wantIDs)
		}
		m, err := r.Search(vec(1), 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range m {
			if x.ID == 1 {
				t.Errorf("%s: Search returned the removed ID", name)
			}
		}
		if st := r.Stats(); st.IDs != wantIDs || st.Tombstones != 1 {
			t.Errorf("%s: stats %+v, want %d IDs and 1 tombstone", name, st, wantIDs)
		}
	}
	check("live", live, 1)
	fresh, _ := runReplicaCodec(t, ctx, js, "tomb")
	check("fresh", fresh, 1)
	// The stream no longer holds the removed center's vector.
	msg, err := js.Stream(ctx, StreamName("tomb"))
	if err != nil {
		t.Fatal(err)
	}
	last, err := msg.GetLastMsgForSubject(ctx, schemas.CenterSubject("tomb", 1))
	if err != nil {
		t.Fatal(err)
	}
	if u, err := NewProtoCodec(dim).DecodeUpdate(last.Data); err != nil || u.Kind != Tombstone || len(u.Vector) != 0 {
		t.Fatalf("last message of the removed ID's subject: %+v, %v; want a tombstone without a vector", u, err)
	}
	// An update older than the tombstone does not bring it back...
	live.mu.Lock()
	live.apply(Update{ID: 1, Vector: vec(9), Kind: Refresh, Step: 0, Epoch: pub.Epoch()})
	live.mu.Unlock()
	check("live after a stale update", live, 1)
	// ...a newer one (the ID added again) does.
	publishStep(t, ctx, pub, 2, []Update{{ID: 1, Vector: vec(7), Kind: Insert}})
	if err := live.WaitStep(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if c, ok := live.Get(1); !ok || c.Step != 2 || !c.InPool {
		t.Fatalf("re-added ID: %+v, %v", c, ok)
	}
	if st := live.Stats(); st.IDs != 2 {
		t.Fatalf("IDs after the re-add: %d, want 2", st.IDs)
	}
}

func runReplicaCodec(t *testing.T, ctx context.Context, js jetstream.JetStream, model string) (*Replica, <-chan error) {
	t.Helper()
	return runReplicaWith(t, ctx, js, ReplicaOptions{Model: model, Codec: NewProtoCodec(dim), Dim: dim})
}
