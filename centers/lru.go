package centers

import (
	"fmt"
	"slices"
)

// nilSlot marks the end of the recency list and "no slot".
const nilSlot int32 = -1

// LRU maps labels (identity IDs) to the Q slots of the class pool and keeps
// them in order of recency of insertion or refresh. It is host-side
// bookkeeping only: the pool rows live wherever the compute backend keeps
// them, and only slot indices cross over.
//
// Get inserts or refreshes a label (and, when full, evicts the least
// recently inserted-or-refreshed one and reuses its slot); View looks a
// label up without touching recency. Between Mark and Rollback every change
// is journaled so Rollback restores the exact previous state: the map, the
// recency order and the free slots.
type LRU struct {
	capacity int
	slotOf   map[int64]int32
	label    []int64 // slot → label; meaningful for slots < used
	prev     []int32 // recency list over slots; head is the most recent
	next     []int32
	head     int32
	tail     int32
	used     int // slots [0, used) have been handed out; free slots are taken in order
	// free are slots below used whose label was removed (Remove),
	// ascending; Get takes the lowest one before any other slot.
	free []int32

	recording bool
	journal   []lruUndo
}

type lruUndo struct {
	slot int32
	// moved: the slot was moved to the head from between prev and next.
	moved      bool
	prev, next int32
	// inserted into a free slot (evicted == false) or into the slot of the
	// evicted label (evicted == true).
	evicted      bool
	evictedLabel int64
	// fromFree: the free slot came from the free list (its first entry).
	fromFree bool
}

// NewLRU returns an empty LRU with the given number of slots.
func NewLRU(capacity int) (*LRU, error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("lru: capacity %d: want at least 1 slot", capacity)
	}
	l := &LRU{
		capacity: capacity,
		slotOf:   make(map[int64]int32, capacity),
		label:    make([]int64, capacity),
		prev:     make([]int32, capacity),
		next:     make([]int32, capacity),
		head:     nilSlot,
		tail:     nilSlot,
	}
	return l, nil
}

// Cap is the number of slots.
func (l *LRU) Cap() int { return l.capacity }

// Len is the number of labels held.
func (l *LRU) Len() int { return len(l.slotOf) }

// View returns the slot of label, or -1 when it is not held, without
// changing recency.
func (l *LRU) View(label int64) int32 {
	if s, ok := l.slotOf[label]; ok {
		return s
	}
	return nilSlot
}

// Label returns the label in slot s and whether the slot is in use.
func (l *LRU) Label(s int32) (int64, bool) {
	if s < 0 || int(s) >= l.used {
		return 0, false
	}
	if got, ok := l.slotOf[l.label[s]]; !ok || got != s {
		return 0, false // freed by Remove
	}
	return l.label[s], true
}

// Remove drops label and frees its slot (the next insertion takes the
// lowest free slot); it reports the slot and whether label was held. It
// must not be called between Mark and Rollback.
func (l *LRU) Remove(label int64) (int32, bool) {
	s, ok := l.slotOf[label]
	if !ok {
		return nilSlot, false
	}
	l.unlink(s)
	delete(l.slotOf, label)
	i, _ := slices.BinarySearch(l.free, s)
	l.free = slices.Insert(l.free, i, s)
	return s, true
}

// Free returns the slots freed by Remove and not reused, ascending.
func (l *LRU) Free() []int32 { return slices.Clone(l.free) }

// GetResult tells what Get did.
type GetResult struct {
	Slot int32
	// New is true when the label was not held before (it was inserted).
	New bool
	// Evicted is true when inserting the label evicted EvictedLabel from
	// Slot.
	Evicted      bool
	EvictedLabel int64
}

// Get returns the slot of label and makes it the most recent. A label not
// held is inserted into a free slot or, when all slots are used, into the
// slot of the least recently inserted-or-refreshed label, which is evicted.
func (l *LRU) Get(label int64) GetResult {
	if s, ok := l.slotOf[label]; ok {
		if l.recording {
			l.journal = append(l.journal, lruUndo{slot: s, moved: true, prev: l.prev[s], next: l.next[s]})
		}
		l.moveToHead(s)
		return GetResult{Slot: s}
	}
	res := GetResult{New: true}
	fromFree := false
	switch {
	case len(l.free) > 0:
		res.Slot, fromFree = l.free[0], true
		l.free = l.free[1:]
	case l.used < l.capacity:
		res.Slot = int32(l.used)
		l.used++
	default:
		s := l.tail
		res.Slot, res.Evicted, res.EvictedLabel = s, true, l.label[s]
		l.unlink(s)
		delete(l.slotOf, l.label[s])
	}
	if l.recording {
		l.journal = append(l.journal, lruUndo{slot: res.Slot, evicted: res.Evicted, evictedLabel: res.EvictedLabel, fromFree: fromFree})
	}
	l.label[res.Slot] = label
	l.slotOf[label] = res.Slot
	l.pushHead(res.Slot)
	return res
}

// Mark starts journaling changes so that Rollback can undo them. Marks do
// not nest: a second Mark discards the journal of the first.
func (l *LRU) Mark() {
	l.recording = true
	l.journal = l.journal[:0]
}

// Rollback undoes every Get since Mark, newest first, and stops journaling.
func (l *LRU) Rollback() {
	for i := len(l.journal) - 1; i >= 0; i-- {
		u := l.journal[i]
		s := u.slot
		switch {
		case u.moved:
			// s is the head now; put it back between prev and next, which
			// are again its neighbours because everything after this
			// entry has been undone.
			if u.prev == nilSlot {
				continue // it was the head already
			}
			l.unlink(s)
			l.linkBetween(s, u.prev, u.next)
		default:
			delete(l.slotOf, l.label[s])
			l.unlink(s)
			switch {
			case u.evicted:
				l.label[s] = u.evictedLabel
				l.slotOf[u.evictedLabel] = s
				l.linkBetween(s, l.tail, nilSlot) // the evicted label was the tail
			case u.fromFree:
				l.free = slices.Insert(l.free, 0, s) // it was the lowest
			default:
				l.used-- // free slots are taken in order, so s == used-1
			}
		}
	}
	l.Commit()
}

// Commit stops journaling and keeps the changes since Mark.
func (l *LRU) Commit() {
	l.recording = false
	l.journal = l.journal[:0]
}

// Order returns the labels from most to least recent (for tests and
// checkpoints).
func (l *LRU) Order() []int64 {
	out := make([]int64, 0, len(l.slotOf))
	for s := l.head; s != nilSlot; s = l.next[s] {
		out = append(out, l.label[s])
	}
	return out
}

func (l *LRU) moveToHead(s int32) {
	if l.head == s {
		return
	}
	l.unlink(s)
	l.pushHead(s)
}

func (l *LRU) pushHead(s int32) { l.linkBetween(s, nilSlot, l.head) }

// linkBetween inserts s between p and n (nilSlot for the ends).
func (l *LRU) linkBetween(s, p, n int32) {
	l.join(p, s)
	l.join(s, n)
}

func (l *LRU) unlink(s int32) {
	l.join(l.prev[s], l.next[s])
	l.prev[s], l.next[s] = nilSlot, nilSlot
}

// join makes n follow p (nilSlot for the ends: p == nilSlot makes n the
// head, n == nilSlot makes p the tail).
func (l *LRU) join(p, n int32) {
	if p == nilSlot {
		l.head = n
	} else {
		l.next[p] = n
	}
	if n == nilSlot {
		l.tail = p
	} else {
		l.prev[n] = p
	}
}
