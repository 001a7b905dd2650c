package centers

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestPoolRemove: a removed label leaves the LRU, its rows are zeroed,
// its slot is reused first, and rollbacks and the saved state keep the
// free slots exactly.
func TestPoolRemove(t *testing.T) {
	be := newBackend(t)
	const q, d = 4, 3
	p := newPool(t, be, q, d, 8)
	g := upload(t, be, []float32{1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4})
	if _, err := p.Insert(g, []int64{10, 11, 12, 13}); err != nil {
		t.Fatal(err)
	}
	c, ok, err := p.Remove(11)
	if err != nil || !ok || c.Kind != Removed || c.Label != 11 || c.Slot != 1 {
		t.Fatalf("Remove(11) = %+v, %v, %v; want Removed of slot 1", c, ok, err)
	}
	if _, ok, _ := p.Remove(11); ok {
		t.Fatal("second Remove(11) reported the label held")
	}
	if p.LRU().View(11) != -1 || p.Len() != 3 || !slices.Equal(p.LRU().Free(), []int32{1}) {
		t.Fatalf("after Remove: view %d, len %d, free %v", p.LRU().View(11), p.Len(), p.LRU().Free())
	}
	if _, held := p.LRU().Label(1); held {
		t.Fatal("Label(1) reports the freed slot in use")
	}
	rows := download(t, be, p.Rows(), 2*q*d)
	for r := range 2 {
		if !slices.Equal(row(rows, q, d, r, 1), make([]float32, d)) {
			t.Fatalf("row %d of the removed slot not zeroed: %v", r, row(rows, q, d, r, 1))
		}
	}
	if err := p.EachCenter(func(label int64, _ int32, _ uint8, _ []float32) error {
		if label == 11 {
			t.Error("EachCenter lists the removed label")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A rollback of an insert into the free slot gives the slot back.
	before := poolSnap(t, be, p)
	p.Mark()
	ch, err := p.Insert(upload(t, be, []float32{5, 5, 5}), []int64{14})
	if err != nil || len(ch) != 1 || ch[0].Kind != Inserted || ch[0].Slot != 1 {
		t.Fatalf("insert after remove: %+v, %v; want an insert into the free slot 1 without eviction", ch, err)
	}
	if err := p.Rollback(); err != nil {
		t.Fatal(err)
	}
	if after := poolSnap(t, be, p); !reflect.DeepEqual(before, after) || !slices.Equal(p.LRU().Free(), []int32{1}) {
		t.Fatalf("rollback after an insert into a free slot: free %v, state differs: %v", p.LRU().Free(), !reflect.DeepEqual(before, after))
	}
	// The state round trip keeps the hole, and both pools go on alike.
	var buf bytes.Buffer
	if err := p.SaveState(&buf); err != nil {
		t.Fatal(err)
	}
	p2 := newPool(t, be, q, d, 8)
	if err := p2.LoadState(&buf); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p2.LRU().Free(), []int32{1}) {
		t.Fatalf("restored free slots %v, want [1]", p2.LRU().Free())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	seed := rng.Uint64()
	for _, pl := range []*Pool{p, p2} {
		r := rand.New(rand.NewPCG(seed, 0))
		for range 3 {
			if err := pl.BeginPass(); err != nil {
				t.Fatal(err)
			}
			insertRandom(t, be, pl, r, 3, 9)
		}
	}
	if a, b := poolSnap(t, be, p), poolSnap(t, be, p2); !reflect.DeepEqual(a, b) {
		t.Fatal("pools diverge after a restore with a free slot")
	}
	p.Mark()
	if _, _, err := p.Remove(10); err == nil {
		t.Fatal("Remove during a pass accepted")
	}
}
