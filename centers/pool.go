package centers

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
)

// ChangeKind says what happened to a class center.
type ChangeKind int

const (
	// Inserted: a label not in the pool got a slot (row 0).
	Inserted ChangeKind = iota + 1
	// Refreshed: a label already in the pool got a new gallery feature.
	Refreshed
	// Evicted: a label lost its slot to an inserted one.
	Evicted
	// Removed: a label was removed on request (Pool.Remove): its slot is
	// free and its rows are zeroed.
	Removed
)

func (k ChangeKind) String() string {
	switch k {
	case Inserted:
		return "insert"
	case Refreshed:
		return "refresh"
	case Evicted:
		return "evict"
	case Removed:
		return "remove"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one change of the pool made by Insert, in order.
type Change struct {
	Kind  ChangeKind
	Label int64
	Slot  int32
	// Row (0 or 1) written for Inserted and Refreshed; Index is the position
	// of the feature in the inserted batch (−1 for Evicted).
	Row   int
	Index int
}

// PoolOptions configures NewPool.
type PoolOptions struct {
	// Slots is Q, the number of class slots.
	Slots int
	// Dim is D, the feature dimension.
	Dim int
	// MaxBatch bounds the features one pass inserts in total (between Mark
	// and Rollback, too); it sizes the scratch buffers.
	MaxBatch int
	// Seed makes the random unit vectors the pool starts with reproducible.
	Seed uint64
}

// Pool is the Dynamic Class Pool of FFC: pool[2][Q][D] rows on the compute
// backend, and on the host the LRU label→slot map, the pos bit of every
// slot and the slots refreshed in the current pass.
//
// Inserting a gallery feature g with label l: when l is not held, it gets a
// slot s from the LRU (evicting the least recently inserted-or-refreshed
// label when full), pool[0][s] = g and pos[s] = 1; when l is held, its slot
// becomes the most recent, pool[pos[s]][s] = g, pos[s] ^= 1 and s is marked
// refreshed in this pass. So a class's two rows hold its two most recent
// gallery features; nothing is averaged.
//
// Between Mark and Rollback every change — rows, LRU order, pos bits,
// refreshed marks — is journaled, and Rollback restores the exact state.
type Pool struct {
	be       kernels.Backend
	q, d     int
	maxBatch int

	rows kernels.Buffer // 2·Q·D: pool[r][s] is row r·Q+s
	lru  *LRU
	pos  []uint8
	// refreshed marks slots refreshed in the current pass; refreshedList
	// holds them in order so BeginPass clears only those.
	refreshed     []bool
	refreshedList []int32

	recording  bool
	slotUndo   []slotUndo
	backup     kernels.Buffer // maxBatch·D rows saved before being overwritten
	backupIdx  []int32        // their row indices, in write order
	idx        kernels.IndexBuffer
	idxHost    []int32
	swapA      kernels.Buffer      // maxBatch·D: pool[0] rows of the refreshed slots
	swapB      kernels.Buffer      // maxBatch·D: their pool[1] rows
	swapIdx    kernels.IndexBuffer // refreshed slots, as uploaded by GatherRefreshed
	swapRows1  kernels.IndexBuffer // Q + refreshed slots
	swapHostIx []int32
}

type slotUndo struct {
	slot          int32
	pos           uint8
	wasRefreshed  bool
	refreshedMark bool // this entry appended slot to refreshedList
}

// NewPool allocates the pool rows (random unit vectors), the LRU and the
// scratch buffers on be.
func NewPool(be kernels.Backend, opts PoolOptions) (*Pool, error) {
	if opts.Slots <= 0 || opts.Dim <= 0 || opts.MaxBatch <= 0 {
		return nil, fmt.Errorf("pool: slots %d, dim %d, max batch %d: all must be positive", opts.Slots, opts.Dim, opts.MaxBatch)
	}
	if int64(opts.Slots)*int64(opts.Dim)*2 > math.MaxInt32*int64(4) {
		return nil, fmt.Errorf("pool: %d slots × %d dims is too large for one buffer", opts.Slots, opts.Dim)
	}
	lru, err := NewLRU(opts.Slots)
	if err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	p := &Pool{
		be: be, q: opts.Slots, d: opts.Dim, maxBatch: opts.MaxBatch,
		lru:       lru,
		pos:       make([]uint8, opts.Slots),
		refreshed: make([]bool, opts.Slots),
		idxHost:   make([]int32, opts.MaxBatch),
	}
	allocs := []struct {
		dst *kernels.Buffer
		n   int
	}{{&p.rows, 2 * opts.Slots * opts.Dim}, {&p.backup, opts.MaxBatch * opts.Dim}, {&p.swapA, opts.MaxBatch * opts.Dim}, {&p.swapB, opts.MaxBatch * opts.Dim}}
	for _, a := range allocs {
		if *a.dst, err = be.Alloc(a.n); err != nil {
			return nil, errors.Join(fmt.Errorf("pool: allocate %d floats: %w", a.n, err), p.Close())
		}
	}
	for _, ib := range []*kernels.IndexBuffer{&p.idx, &p.swapIdx, &p.swapRows1} {
		if *ib, err = be.AllocIndex(opts.MaxBatch); err != nil {
			return nil, errors.Join(fmt.Errorf("pool: allocate index buffer: %w", err), p.Close())
		}
	}
	if err := p.randomize(opts.Seed); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

// randomize fills both row blocks with random unit vectors, a block of rows
// at a time so the host never holds the whole pool.
func (p *Pool) randomize(seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	const chunkRows = 4096
	host := make([]float32, min(chunkRows, 2*p.q)*p.d)
	for r0 := 0; r0 < 2*p.q; r0 += chunkRows {
		n := min(chunkRows, 2*p.q-r0)
		buf := host[:n*p.d]
		for r := 0; r < n; r++ {
			row := buf[r*p.d : (r+1)*p.d]
			var ss float64
			for i := range row {
				v := rng.NormFloat64()
				row[i] = float32(v)
				ss += v * v
			}
			inv := float32(1 / math.Sqrt(ss))
			for i := range row {
				row[i] *= inv
			}
		}
		view, err := p.be.View(p.rows, r0*p.d, n*p.d)
		if err != nil {
			return fmt.Errorf("pool: %w", err)
		}
		if err := p.be.Upload(view, buf); err != nil {
			return fmt.Errorf("pool: initialise rows: %w", err)
		}
	}
	return nil
}

// Close frees the backend buffers.
func (p *Pool) Close() error {
	var errs []error
	for _, b := range []kernels.Buffer{p.rows, p.backup, p.swapA, p.swapB} {
		if b != nil {
			errs = append(errs, p.be.Free(b))
		}
	}
	for _, b := range []kernels.IndexBuffer{p.idx, p.swapIdx, p.swapRows1} {
		if b != nil {
			errs = append(errs, p.be.FreeIndex(b))
		}
	}
	return errors.Join(errs...)
}

// Slots is Q; Dim is D.
func (p *Pool) Slots() int { return p.q }

// Dim is the feature dimension D.
func (p *Pool) Dim() int { return p.d }

// Len is the number of labels in the pool.
func (p *Pool) Len() int { return p.lru.Len() }

// LRU exposes the label→slot map (read it; change it only through Pool).
func (p *Pool) LRU() *LRU { return p.lru }

// Pos returns pos[slot]: the row the next refresh of that slot writes.
func (p *Pool) Pos(slot int32) uint8 { return p.pos[slot] }

// Rows is the 2·Q·D buffer: pool[r][s] starts at (r·Q+s)·D. Row block 0
// (the first Q·D) is the matrix the first logit set is computed against.
func (p *Pool) Rows() kernels.Buffer { return p.rows }

// EachCenter calls fn with every label in the pool, its slot, the row
// written last and that row (D floats, valid during the call), most
// recent first. It reads one row at a time from the backend.
func (p *Pool) EachCenter(fn func(label int64, slot int32, row uint8, center []float32) error) error {
	buf := make([]float32, p.d)
	for _, label := range p.lru.Order() {
		s := p.lru.View(label)
		if s < 0 {
			continue
		}
		r := p.pos[s] ^ 1 // the row the last insert or refresh wrote
		v, err := p.be.View(p.rows, (int(r)*p.q+int(s))*p.d, p.d)
		if err != nil {
			return fmt.Errorf("pool: center of slot %d: %w", s, err)
		}
		if err := p.be.Download(buf, v); err != nil {
			return fmt.Errorf("pool: center of slot %d: %w", s, err)
		}
		if err := fn(label, s, r, buf); err != nil {
			return err
		}
	}
	return nil
}

// RefreshedSlots returns the slots refreshed in the current pass.
func (p *Pool) RefreshedSlots() []int32 { return p.refreshedList }

// BeginPass clears the refreshed marks of the previous pass.
func (p *Pool) BeginPass() error {
	for _, s := range p.refreshedList {
		p.refreshed[s] = false
	}
	p.refreshedList = p.refreshedList[:0]
	return nil
}

// Mark starts journaling so Rollback can restore the current state.
func (p *Pool) Mark() {
	p.recording = true
	p.slotUndo = p.slotUndo[:0]
	p.backupIdx = p.backupIdx[:0]
	p.lru.Mark()
}

// Commit keeps the changes since Mark and stops journaling.
func (p *Pool) Commit() {
	p.recording = false
	p.lru.Commit()
}

// Insert writes the n gallery features g (n×D, L2-normalised) with their
// labels into the pool, in batch order, and returns the changes made.
func (p *Pool) Insert(g kernels.Buffer, labels []int64) ([]Change, error) {
	n := len(labels)
	if n == 0 {
		return nil, nil
	}
	if n > p.maxBatch {
		return nil, fmt.Errorf("pool: insert of %d features exceeds the max batch %d", n, p.maxBatch)
	}
	if p.recording && len(p.backupIdx)+n > p.maxBatch {
		return nil, fmt.Errorf("pool: %d features inserted since Mark exceed the max batch %d that can be rolled back", len(p.backupIdx)+n, p.maxBatch)
	}
	changes := make([]Change, 0, n+n/4)
	for i, l := range labels {
		res := p.lru.Get(l)
		s := res.Slot
		if p.recording {
			p.slotUndo = append(p.slotUndo, slotUndo{slot: s, pos: p.pos[s], wasRefreshed: p.refreshed[s]})
		}
		var row int
		if res.New {
			if res.Evicted {
				changes = append(changes, Change{Kind: Evicted, Label: res.EvictedLabel, Slot: s, Index: -1})
			}
			row, p.pos[s] = 0, 1
			changes = append(changes, Change{Kind: Inserted, Label: l, Slot: s, Row: 0, Index: i})
		} else {
			row = int(p.pos[s])
			p.pos[s] ^= 1
			if !p.refreshed[s] {
				p.refreshed[s] = true
				p.refreshedList = append(p.refreshedList, s)
				if p.recording {
					p.slotUndo[len(p.slotUndo)-1].refreshedMark = true
				}
			}
			changes = append(changes, Change{Kind: Refreshed, Label: l, Slot: s, Row: row, Index: i})
		}
		p.idxHost[i] = int32(row*p.q) + s
	}
	if err := p.be.UploadIndex(p.idx, p.idxHost[:n]); err != nil {
		return nil, fmt.Errorf("pool: upload slots: %w", err)
	}
	if p.recording {
		// Save what is about to be overwritten, before any of it is.
		off := len(p.backupIdx)
		dst, err := p.be.View(p.backup, off*p.d, n*p.d)
		if err != nil {
			return nil, fmt.Errorf("pool: %w", err)
		}
		if err := p.be.GatherRows(n, p.d, p.rows, 2*p.q, p.idx, dst); err != nil {
			return nil, fmt.Errorf("pool: save rows: %w", err)
		}
		p.backupIdx = append(p.backupIdx, p.idxHost[:n]...)
	}
	if err := p.be.ScatterRows(n, p.d, g, p.idx, p.rows, 2*p.q); err != nil {
		return nil, fmt.Errorf("pool: write rows: %w", err)
	}
	return changes, nil
}

// Rollback restores rows, LRU, pos bits and refreshed marks to their state
// at Mark, and stops journaling.
func (p *Pool) Rollback() error {
	if !p.recording {
		return errors.New("pool: Rollback without Mark")
	}
	if n := len(p.backupIdx); n > 0 {
		// A row written twice since Mark was saved twice; only its first
		// saved copy holds the content at Mark, so later copies are
		// skipped (negative index).
		idx := p.idxHost[:n]
		seen := make(map[int32]bool, n)
		for i, r := range p.backupIdx {
			idx[i] = r
			if seen[r] {
				idx[i] = -1
			}
			seen[r] = true
		}
		if err := p.be.UploadIndex(p.idx, idx); err != nil {
			return fmt.Errorf("pool: rollback: %w", err)
		}
		if err := p.be.ScatterRows(n, p.d, p.backup, p.idx, p.rows, 2*p.q); err != nil {
			return fmt.Errorf("pool: rollback rows: %w", err)
		}
	}
	for i := len(p.slotUndo) - 1; i >= 0; i-- {
		u := p.slotUndo[i]
		p.pos[u.slot] = u.pos
		p.refreshed[u.slot] = u.wasRefreshed
		if u.refreshedMark {
			p.refreshedList = p.refreshedList[:len(p.refreshedList)-1]
		}
	}
	p.lru.Rollback()
	p.recording = false
	p.slotUndo = p.slotUndo[:0]
	p.backupIdx = p.backupIdx[:0]
	return nil
}

// Remove takes label out of the pool on request (the right to be
// forgotten): its LRU entry goes, both rows of its slot are zeroed and
// the slot is free for the next insertion. It returns the change
// (Removed) and false when label was not in the pool. It must not be
// called during a pass (between Mark and Rollback/Commit).
func (p *Pool) Remove(label int64) (Change, bool, error) {
	if p.recording {
		return Change{}, false, errors.New("pool: Remove during a pass")
	}
	s, ok := p.lru.Remove(label)
	if !ok {
		return Change{}, false, nil
	}
	zero, err := p.be.View(p.swapA, 0, p.d)
	if err != nil {
		return Change{}, false, fmt.Errorf("pool: remove: %w", err)
	}
	if err := p.be.Upload(zero, make([]float32, p.d)); err != nil {
		return Change{}, false, fmt.Errorf("pool: remove: %w", err)
	}
	for row := range int32(2) {
		p.idxHost[0] = row*int32(p.q) + s
		if err := p.be.UploadIndex(p.idx, p.idxHost[:1]); err != nil {
			return Change{}, false, fmt.Errorf("pool: remove: %w", err)
		}
		if err := p.be.ScatterRows(1, p.d, zero, p.idx, p.rows, 2*p.q); err != nil {
			return Change{}, false, fmt.Errorf("pool: remove: zero rows: %w", err)
		}
	}
	p.pos[s] = 0
	if p.refreshed[s] {
		p.refreshed[s] = false
		p.refreshedList = slices.DeleteFunc(p.refreshedList, func(r int32) bool { return r == s })
	}
	return Change{Kind: Removed, Label: label, Slot: s, Index: -1}, true, nil
}

// Targets maps labels to their slots without refreshing them (−1 for
// labels not in the pool, the "fresh" IDs) and returns how many are held.
func (p *Pool) Targets(labels []int64, dst []int32) int {
	held := 0
	for i, l := range labels {
		dst[i] = p.lru.View(l)
		if dst[i] >= 0 {
			held++
		}
	}
	return held
}

// GatherRefreshed copies the two rows of every slot refreshed in this pass
// into the pool's scratch: rows0 (R×D) holds pool[0][s] and rows1 (R×D)
// pool[1][s] for the R = len(RefreshedSlots()) slots, in that order, and
// slots holds the slots on the backend. The second logit set of the FFC
// loss uses W[s] = pool[1][s] for exactly these slots. The buffers are
// valid until the next Insert, Rollback, Remove or GatherRefreshed. It
// costs O(R·D).
func (p *Pool) GatherRefreshed() (r int, slots kernels.IndexBuffer, rows0, rows1 kernels.Buffer, err error) {
	r = len(p.refreshedList)
	if r == 0 {
		return 0, nil, nil, nil, nil
	}
	if r > p.maxBatch {
		return 0, nil, nil, nil, fmt.Errorf("pool: %d refreshed slots exceed the max batch %d", r, p.maxBatch)
	}
	p.swapHostIx = append(p.swapHostIx[:0], p.refreshedList...)
	if err := p.be.UploadIndex(p.swapIdx, p.swapHostIx); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("pool: refreshed rows: %w", err)
	}
	for i := range p.swapHostIx {
		p.swapHostIx[i] += int32(p.q)
	}
	if err := p.be.UploadIndex(p.swapRows1, p.swapHostIx); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("pool: refreshed rows: %w", err)
	}
	if err := p.be.GatherRows(r, p.d, p.rows, 2*p.q, p.swapIdx, p.swapA); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("pool: refreshed rows: %w", err)
	}
	if err := p.be.GatherRows(r, p.d, p.rows, 2*p.q, p.swapRows1, p.swapB); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("pool: refreshed rows: %w", err)
	}
	if slots, err = p.be.ViewIndex(p.swapIdx, 0, r); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("pool: refreshed rows: %w", err)
	}
	if rows0, err = p.be.View(p.swapA, 0, r*p.d); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("pool: refreshed rows: %w", err)
	}
	if rows1, err = p.be.View(p.swapB, 0, r*p.d); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("pool: refreshed rows: %w", err)
	}
	return r, slots, rows0, rows1, nil
}
