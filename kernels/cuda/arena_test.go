package cuda

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestArena: random allocations and frees never overlap, stay inside the
// pool, and coalesce back to one free span.
func TestArena(t *testing.T) {
	const size = 1 << 20
	a := newArena(size)
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[int64]int64{}
	for range 5000 {
		if len(live) > 0 && rng.IntN(3) == 0 {
			for off := range live {
				if err := a.release(off); err != nil {
					t.Fatal(err)
				}
				delete(live, off)
				break
			}
			continue
		}
		n := int64(rng.IntN(20000))
		off, err := a.alloc(n)
		if errors.Is(err, ErrOutOfMemory) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if off%arenaAlign != 0 || off < 0 || off+n > size {
			t.Fatalf("alloc(%d) = %d: misaligned or outside the pool", n, off)
		}
		for o, m := range live {
			if off < o+m && o < off+max(n, 1) {
				t.Fatalf("alloc(%d) = %d overlaps [%d, %d)", n, off, o, o+m)
			}
		}
		live[off] = max(n, 1)
	}
	for off := range live {
		if err := a.release(off); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.free) != 1 || a.free[0] != (span{0, size}) || a.inUse != 0 {
		t.Fatalf("after freeing everything: free list %v, in use %d", a.free, a.inUse)
	}
	if err := a.release(12345); err == nil {
		t.Error("releasing an unknown offset succeeded")
	}
	if _, err := a.alloc(size + 1); !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("alloc over the pool size: %v, want ErrOutOfMemory", err)
	}
}
