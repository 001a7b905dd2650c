package producers

import (
	"math/rand/v2"
	"sort"
	"sync"
)

// idRotation yields the IDs of the id stream: uniform over IDs, as passes
// that are each a fresh shuffle of the IDs in rotation, with IDs put in by
// prioritize (new ones) served before the current pass resumes.
type idRotation struct {
	mu       sync.Mutex
	rng      *rand.Rand
	order    []uint64
	pos      int
	priority []uint64
	passes   uint64
}

func newIDRotation(seed uint64) *idRotation {
	return &idRotation{rng: rand.New(rand.NewPCG(seed, 0x1d))}
}

// prioritize queues id ahead of the uniform order.
func (r *idRotation) prioritize(id uint64) {
	r.mu.Lock()
	r.priority = append(r.priority, id)
	r.mu.Unlock()
}

// next returns the next ID, or false when the catalog has none in
// rotation.
func (r *idRotation) next(c *Catalog) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.priority) > 0 {
		id := r.priority[0]
		r.priority = r.priority[1:]
		if len(r.priority) == 0 {
			r.priority = nil
		}
		if c.inRotation(id) {
			return id, true
		}
	}
	for refills := 0; refills < 2; {
		if r.pos == len(r.order) {
			r.order = c.appendLive(r.order[:0])
			r.rng.Shuffle(len(r.order), func(i, j int) { r.order[i], r.order[j] = r.order[j], r.order[i] })
			r.pos = 0
			refills++
			if len(r.order) == 0 {
				return 0, false
			}
			r.passes++
		}
		id := r.order[r.pos]
		r.pos++
		// An ID that left rotation since the pass began is skipped.
		if c.inRotation(id) {
			return id, true
		}
	}
	return 0, false
}

// passCount is the number of passes begun.
func (r *idRotation) passCount() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.passes
}

// epochs yields the instance stream: epochs that each visit every image
// in rotation once, in a fresh shuffle. An epoch is planned from a
// snapshot of the catalog taken when it begins (the IDs, their image
// counts, a permutation of the image ordinals: 16 bytes per ID and 4 per
// image); images added meanwhile join the next epoch, images found bad
// meanwhile are skipped, and an ID whose image list changes mid-epoch may
// see one image twice or miss one in that epoch. It is used by one
// goroutine.
type epochs struct {
	rng     *rand.Rand
	epoch   uint64 // number of the current epoch, from 0
	started bool
	ids     []uint64
	cum     []uint32 // cum[i]: images of ids[:i+1]
	perm    []uint32
	pos     int
}

func newEpochs(seed uint64) *epochs {
	return &epochs{rng: rand.New(rand.NewPCG(seed, 0x1e))}
}

// next returns the next image, or false when the catalog has none.
func (e *epochs) next(c *Catalog) (id uint64, name string, epoch uint64, ok bool) {
	for skipped := 0; ; {
		if e.pos == len(e.perm) {
			if !e.plan(c) {
				return 0, "", 0, false
			}
		}
		o := e.perm[e.pos]
		e.pos++
		i := sort.Search(len(e.cum), func(i int) bool { return e.cum[i] > o })
		k := o
		if i > 0 {
			k -= e.cum[i-1]
		}
		if name, ok := c.imageAt(e.ids[i], k); ok {
			return e.ids[i], name, e.epoch, true
		}
		// Every image of a whole epoch unusable: give up for now rather
		// than spin.
		if skipped++; skipped > len(e.perm) {
			return 0, "", 0, false
		}
	}
}

// plan begins the next epoch.
func (e *epochs) plan(c *Catalog) bool {
	e.ids, e.cum = c.epochSnapshot(e.ids[:0], e.cum[:0])
	var total uint32
	if len(e.cum) > 0 {
		total = e.cum[len(e.cum)-1]
	}
	e.perm, e.pos = e.perm[:0], 0
	if total == 0 {
		return false
	}
	if e.started {
		e.epoch++
	}
	e.started = true
	for o := range total {
		e.perm = append(e.perm, o)
	}
	e.rng.Shuffle(len(e.perm), func(i, j int) { e.perm[i], e.perm[j] = e.perm[j], e.perm[i] })
	return true
}
