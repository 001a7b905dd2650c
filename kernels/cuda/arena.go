package cuda

import (
	"fmt"
	"sort"
)

// arenaAlign is the alignment of every allocation in bytes (cuMemAlloc's is
// 256; it also keeps float4 and double accesses aligned).
const arenaAlign = 256

// arena hands out byte ranges of one device allocation: a first-fit free
// list kept sorted by offset and coalesced on free. It does no device calls,
// so Alloc/Free during training cost no device allocation.
type arena struct {
	size  int64
	free  []span          // sorted by off, no two adjacent
	used  map[int64]int64 // off → size of live allocations
	inUse int64
	peak  int64
}

type span struct{ off, size int64 }

func newArena(size int64) *arena {
	size &^= arenaAlign - 1
	a := &arena{size: size, used: map[int64]int64{}}
	if size > 0 {
		a.free = []span{{0, size}}
	}
	return a
}

// alloc returns the offset of bytes (rounded up to arenaAlign) of free
// space. A zero-byte request still takes one aligned unit, so every buffer
// has a distinct address.
func (a *arena) alloc(bytes int64) (int64, error) {
	if bytes < 0 {
		return 0, fmt.Errorf("arena: negative size %d", bytes)
	}
	need := max(arenaAlign, (bytes+arenaAlign-1)&^(arenaAlign-1))
	for i, s := range a.free {
		if s.size < need {
			continue
		}
		off := s.off
		if s.size == need {
			a.free = append(a.free[:i], a.free[i+1:]...)
		} else {
			a.free[i] = span{s.off + need, s.size - need}
		}
		a.used[off] = need
		a.inUse += need
		a.peak = max(a.peak, a.inUse)
		return off, nil
	}
	return 0, fmt.Errorf("%w: %d bytes requested, %d of %d in use, largest free block %d (raise the pool size)",
		ErrOutOfMemory, bytes, a.inUse, a.size, a.largest())
}

// release returns the allocation at off to the free list.
func (a *arena) release(off int64) error {
	size, ok := a.used[off]
	if !ok {
		return fmt.Errorf("arena: no allocation at offset %d", off)
	}
	delete(a.used, off)
	a.inUse -= size
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].off > off })
	a.free = append(a.free, span{})
	copy(a.free[i+1:], a.free[i:])
	a.free[i] = span{off, size}
	// Coalesce with the next, then the previous span.
	if i+1 < len(a.free) && a.free[i].off+a.free[i].size == a.free[i+1].off {
		a.free[i].size += a.free[i+1].size
		a.free = append(a.free[:i+1], a.free[i+2:]...)
	}
	if i > 0 && a.free[i-1].off+a.free[i-1].size == a.free[i].off {
		a.free[i-1].size += a.free[i].size
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
	return nil
}

func (a *arena) largest() int64 {
	var m int64
	for _, s := range a.free {
		m = max(m, s.size)
	}
	return m
}
