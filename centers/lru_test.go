package centers

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func mustLRU(t *testing.T, q int) *LRU {
	t.Helper()
	l, err := NewLRU(q)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLRUInsertRefreshEvict(t *testing.T) {
	l := mustLRU(t, 3)
	steps := []struct {
		label     int64
		want      GetResult
		wantOrder []int64
	}{
		{10, GetResult{Slot: 0, New: true}, []int64{10}},
		{20, GetResult{Slot: 1, New: true}, []int64{20, 10}},
		{30, GetResult{Slot: 2, New: true}, []int64{30, 20, 10}},
		{10, GetResult{Slot: 0}, []int64{10, 30, 20}},                                             // refresh moves to head
		{40, GetResult{Slot: 1, New: true, Evicted: true, EvictedLabel: 20}, []int64{40, 10, 30}}, // evicts the least recent
		{50, GetResult{Slot: 2, New: true, Evicted: true, EvictedLabel: 30}, []int64{50, 40, 10}},
		{50, GetResult{Slot: 2}, []int64{50, 40, 10}}, // head stays head
	}
	for i, st := range steps {
		got := l.Get(st.label)
		if got != st.want {
			t.Fatalf("step %d Get(%d) = %+v, want %+v", i, st.label, got, st.want)
		}
		if o := l.Order(); !reflect.DeepEqual(o, st.wantOrder) {
			t.Fatalf("step %d order %v, want %v", i, o, st.wantOrder)
		}
	}
	if l.Len() != 3 || l.View(20) != -1 || l.View(30) != -1 || l.View(10) != 0 {
		t.Errorf("after evictions: len %d view(20)=%d view(30)=%d view(10)=%d", l.Len(), l.View(20), l.View(30), l.View(10))
	}
}

func TestLRUViewDoesNotRefresh(t *testing.T) {
	l := mustLRU(t, 2)
	l.Get(1)
	l.Get(2)
	if s := l.View(1); s != 0 {
		t.Fatalf("View(1) = %d", s)
	}
	// Had View refreshed 1, inserting 3 would evict 2.
	if r := l.Get(3); !r.Evicted || r.EvictedLabel != 1 {
		t.Fatalf("Get(3) = %+v, want label 1 evicted (View must not refresh)", r)
	}
	if l.View(99) != -1 {
		t.Error("View of an unknown label should be -1")
	}
}

// snapshot captures everything Rollback must restore.
type lruState struct {
	order  []int64
	slotOf map[int64]int32
	used   int
}

func snap(l *LRU) lruState {
	m := make(map[int64]int32, len(l.slotOf))
	for k, v := range l.slotOf {
		m[k] = v
	}
	return lruState{order: l.Order(), slotOf: m, used: l.used}
}

func TestLRURollbackExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, q := range []int{1, 2, 5, 17, 64} {
		l := mustLRU(t, q)
		for round := 0; round < 200; round++ {
			// Some permanent operations, so the state varies (partly full,
			// full, with evictions).
			for i := 0; i < rng.IntN(4); i++ {
				l.Get(int64(rng.IntN(3 * q)))
			}
			before := snap(l)
			l.Mark()
			for i := 0; i < rng.IntN(3*q+1); i++ {
				l.Get(int64(rng.IntN(3 * q)))
			}
			l.Rollback()
			after := snap(l)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("q=%d round %d: rollback restored %+v, want %+v", q, round, after, before)
			}
			// The list must be consistent both ways.
			var back []int64
			for s := l.tail; s != nilSlot; s = l.prev[s] {
				back = append(back, l.label[s])
			}
			for i, j := 0, len(back)-1; i < j; i, j = i+1, j-1 {
				back[i], back[j] = back[j], back[i]
			}
			if len(back) > 0 && !reflect.DeepEqual(back, after.order) {
				t.Fatalf("q=%d: backward list %v != forward %v", q, back, after.order)
			}
		}
	}
}

func TestLRUCommitKeeps(t *testing.T) {
	l := mustLRU(t, 2)
	l.Get(1)
	l.Mark()
	l.Get(2)
	l.Commit()
	l.Rollback() // nothing journaled any more
	if l.View(2) != 1 {
		t.Fatal("Commit should keep the changes made since Mark")
	}
}

func TestNewLRUInvalid(t *testing.T) {
	if _, err := NewLRU(0); err == nil {
		t.Error("NewLRU(0) should fail")
	}
}
