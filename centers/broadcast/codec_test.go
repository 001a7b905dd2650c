package broadcast

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/schemas"
)

func TestProtoCodecRoundTrip(t *testing.T) {
	c := NewProtoCodec(dim)
	for _, u := range []Update{
		{Model: "m", ID: 7, Vector: vec(0.5), Step: 3, Slot: 2, Row: 0, Kind: Insert},
		{Model: "m", ID: 8, Vector: vec(1), Step: 4, Slot: 5, Row: 1, Kind: Refresh},
		{Model: "m", ID: 9, Step: 5, Slot: 5, Kind: Evict},
	} {
		b, err := c.EncodeUpdate(u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.DecodeUpdate(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Vector) == 0 {
			got.Vector = nil
		}
		if !reflect.DeepEqual(got, u) {
			t.Errorf("round trip %+v → %+v", u, got)
		}
	}
	cm := Commit{Model: "m", Step: 9, IDs: []uint64{1, 2}, Time: time.Unix(0, 12345)}
	b, err := c.EncodeCommit(cm)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.DecodeCommit(b); err != nil || !reflect.DeepEqual(got, cm) {
		t.Errorf("commit round trip: %+v, %v", got, err)
	}
	// A vector of the wrong dimension is rejected with a reason.
	b, _ = NewProtoCodec(3).EncodeUpdate(Update{Model: "m", ID: 1, Vector: []float32{1, 2, 3}, Kind: Insert})
	if _, err := c.DecodeUpdate(b); !errors.Is(err, schemas.ErrBadVector) {
		t.Errorf("wrong dimension: %v", err)
	}
}

func TestUpdatesOf(t *testing.T) {
	feats := []float32{1, 2, 3, 4, 5, 6} // two rows of dim 3
	changes := []centers.Change{
		{Kind: centers.Inserted, Label: 7, Slot: 3, Row: 0, Index: 1},
		{Kind: centers.Evicted, Label: 9, Slot: 3, Index: -1},
		{Kind: centers.Refreshed, Label: 8, Slot: 4, Row: 1, Index: 0},
	}
	ups, ev, err := UpdatesOf(changes, feats, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []Update{
		{ID: 7, Slot: 3, Row: 0, Kind: Insert, Vector: []float32{4, 5, 6}},
		{ID: 9, Slot: 3, Kind: Evict},
		{ID: 8, Slot: 4, Row: 1, Kind: Refresh, Vector: []float32{1, 2, 3}},
	}
	if ev != 1 || !reflect.DeepEqual(ups, want) {
		t.Errorf("UpdatesOf: %+v, %d evictions; want %+v, 1", ups, ev, want)
	}
	if _, _, err := UpdatesOf([]centers.Change{{Kind: centers.Inserted, Label: 1, Index: 2}}, feats, 3); err == nil {
		t.Error("a feature row past the features: no error")
	}
}
