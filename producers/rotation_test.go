package producers

import (
	"fmt"
	"slices"
	"testing"
)

func seqCatalog(t *testing.T, ids, per int) *Catalog {
	t.Helper()
	m := map[uint64][]string{}
	for i := range ids {
		for k := range per {
			m[uint64(100+i)] = append(m[uint64(100+i)], fmt.Sprintf("%04d", k))
		}
	}
	return build(t, m)
}

// TestRotationPasses: every pass is a permutation of the IDs in rotation,
// and passes are reshuffled.
func TestRotationPasses(t *testing.T) {
	c := seqCatalog(t, 50, 1)
	r := newIDRotation(7)
	var passes [][]uint64
	for range 4 {
		var pass []uint64
		for range 50 {
			id, ok := r.next(c)
			if !ok {
				t.Fatal("rotation empty")
			}
			pass = append(pass, id)
		}
		passes = append(passes, pass)
		sorted := slices.Clone(pass)
		slices.Sort(sorted)
		if !slices.Equal(sorted, c.IDs()) {
			t.Fatalf("pass %d is not a permutation of the IDs: %v", len(passes), pass)
		}
	}
	if slices.Equal(passes[0], passes[1]) || slices.Equal(passes[1], passes[2]) {
		t.Error("consecutive passes in the same order: not reshuffled")
	}
	if r.passCount() != 4 {
		t.Errorf("passCount %d, want 4", r.passCount())
	}
}

// TestRotationPriority: a prioritized ID comes next, before the pass
// resumes, and only once; an ID out of rotation is skipped.
func TestRotationPriority(t *testing.T) {
	c := seqCatalog(t, 10, 1)
	r := newIDRotation(1)
	for range 3 {
		r.next(c)
	}
	c.upsert(7, []string{"a"})
	r.prioritize(7)
	r.prioritize(999) // not in the catalog: skipped
	if id, _ := r.next(c); id != 7 {
		t.Fatalf("after prioritize(7), next = %d", id)
	}
	// The rest of the pass: the 7 remaining old IDs, then a new pass with
	// 7 in it.
	seen := map[uint64]int{}
	for range 7 + 11 {
		id, _ := r.next(c)
		seen[id]++
	}
	if seen[7] != 1 || seen[999] != 0 {
		t.Errorf("after its priority turn, 7 seen %d times in the next 18 (want 1), 999 %d", seen[7], seen[999])
	}
	// Dropped IDs leave the rotation mid-pass.
	c.markBad(101, "0000")
	for range 30 {
		if id, _ := r.next(c); id == 101 {
			t.Fatal("all-bad id 101 still emitted")
		}
	}
}

func TestRotationEmpty(t *testing.T) {
	r := newIDRotation(1)
	if _, ok := r.next(newCatalog()); ok {
		t.Fatal("next on an empty catalog")
	}
	e := newEpochs(1)
	if _, _, _, ok := e.next(newCatalog()); ok {
		t.Fatal("epoch next on an empty catalog")
	}
}

// TestEpochsCover: every epoch visits every good image exactly once, in a
// different order, with the epoch number counting up; images added
// mid-epoch join the next one.
func TestEpochsCover(t *testing.T) {
	c := seqCatalog(t, 12, 3)
	c.markBad(105, "0001")
	all := map[string]bool{}
	for _, id := range c.IDs() {
		for _, n := range c.Names(id) {
			if !(id == 105 && n == "0001") {
				all[fmt.Sprint(id, "/", n)] = true
			}
		}
	}
	e := newEpochs(3)
	var orders [][]string
	for epoch := range uint64(3) {
		seen := map[string]int{}
		var order []string
		for range len(all) {
			id, name, got, ok := e.next(c)
			if !ok || got != epoch {
				t.Fatalf("epoch %d: next = %d/%s epoch %d ok %v", epoch, id, name, got, ok)
			}
			k := fmt.Sprint(id, "/", name)
			seen[k]++
			order = append(order, k)
		}
		for k := range all {
			if seen[k] != 1 {
				t.Errorf("epoch %d: %s seen %d times", epoch, k, seen[k])
			}
		}
		if len(seen) != len(all) {
			t.Errorf("epoch %d: %d distinct images, want %d", epoch, len(seen), len(all))
		}
		orders = append(orders, order)
		if epoch == 1 {
			c.upsert(1, []string{"late"}) // planned into epoch 2
			all["1/late"] = true
		}
	}
	if slices.Equal(orders[0], orders[1]) {
		t.Error("epochs 0 and 1 in the same order")
	}
}
