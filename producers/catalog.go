package producers

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/schemas"
)

// Catalog is the IDs and images in a bucket that belong to one shard, as
// listed from ids/<id>/<name>.png. It is kept up to date incrementally (an
// announced ID, a rescan) and is safe for concurrent use.
//
// Memory is bounded by a compact index rather than per-object structs:
// one 16-byte entry per ID in a slice sorted by ID, one 4-byte offset and
// one bit per image, and the image names (without "ids/<id>/" and ".png")
// back to back in one shared byte arena: about 12.7 bytes per image for
// IDs of 5 images named "0000".."0004" (TestCatalogMemory), so 64 MB for
// 1M IDs. A rescan builds a second index before it replaces the first.
// Slots and the arena are addressed with uint32: up to 4G images and 4 GB
// of names per producer.
type Catalog struct {
	mu  sync.RWMutex
	idx index
	// dead holds IDs whose every image failed validation: kept in the
	// index (so a rescan does not bring their images back) but out of
	// rotation.
	dead map[uint64]struct{}
	// addedDuringRescan collects IDs added while a rescan lists the
	// bucket, so that replacing the index with the rescan's does not drop
	// them; nil when no rescan runs. removedDuringRescan collects the
	// IDs removed meanwhile (remove), which the rescan's listing may still
	// have seen: replace leaves them out.
	addedDuringRescan   map[uint64]struct{}
	removedDuringRescan map[uint64]struct{}
}

// entry is one ID: its names are slots first..first+n-1.
type entry struct {
	id    uint64
	first uint32
	n     uint32
}

// index is the compact representation. Slots are appended in order, so a
// name's bytes end where the next slot's begin.
type index struct {
	ents  []entry  // sorted by id
	offs  []uint32 // slot → start of its name in arena
	bad   []uint64 // bitset over slots: failed validation
	arena []byte
	// live is the number of slots referenced by ents; the others are
	// garbage left by updates, reclaimed by compact.
	live int
}

func newCatalog() *Catalog { return &Catalog{dead: map[uint64]struct{}{}} }

// name returns slot s's name.
func (x *index) name(s uint32) string {
	end := uint32(len(x.arena))
	if int(s)+1 < len(x.offs) {
		end = x.offs[s+1]
	}
	return string(x.arena[x.offs[s]:end])
}

func (x *index) nameEq(s uint32, name string) bool {
	end := uint32(len(x.arena))
	if int(s)+1 < len(x.offs) {
		end = x.offs[s+1]
	}
	return string(x.arena[x.offs[s]:end]) == name
}

func (x *index) isBad(s uint32) bool { return x.bad[s/64]&(1<<(s%64)) != 0 }

func (x *index) setBad(s uint32) { x.bad[s/64] |= 1 << (s % 64) }

// find returns the position of id in ents.
func (x *index) find(id uint64) (int, bool) {
	return slices.BinarySearchFunc(x.ents, id, func(e entry, id uint64) int { return cmp.Compare(e.id, id) })
}

// appendNames appends a block of slots for names and returns its first
// slot. badOf, when set, says which new names start out bad.
func (x *index) appendNames(names []string, badOf func(string) bool) uint32 {
	first := uint32(len(x.offs))
	for _, n := range names {
		s := uint32(len(x.offs))
		x.offs = append(x.offs, uint32(len(x.arena)))
		x.arena = append(x.arena, n...)
		if int(s/64) >= len(x.bad) {
			x.bad = append(x.bad, 0)
		}
		if badOf != nil && badOf(n) {
			x.setBad(s)
		}
	}
	return first
}

// badNames returns a lookup of the names of e that are bad, or nil.
func (x *index) badNames(e entry) func(string) bool {
	var bad map[string]bool
	for s := e.first; s < e.first+e.n; s++ {
		if x.isBad(s) {
			if bad == nil {
				bad = map[string]bool{}
			}
			bad[x.name(s)] = true
		}
	}
	if bad == nil {
		return nil
	}
	return func(n string) bool { return bad[n] }
}

// sameNames reports whether e's names are exactly names (both sorted).
func (x *index) sameNames(e entry, names []string) bool {
	if int(e.n) != len(names) {
		return false
	}
	for i, n := range names {
		if !x.nameEq(e.first+uint32(i), n) {
			return false
		}
	}
	return true
}

// upsert sets id's names (sorted, non-empty). It reports whether the ID
// is new and whether anything changed. Names that were bad stay bad.
func (x *index) upsert(id uint64, names []string) (added, changed bool) {
	i, ok := x.find(id)
	if ok {
		e := x.ents[i]
		if x.sameNames(e, names) {
			return false, false
		}
		first := x.appendNames(names, x.badNames(e))
		x.live += len(names) - int(e.n)
		x.ents[i] = entry{id: id, first: first, n: uint32(len(names))}
		x.maybeCompact()
		return false, true
	}
	first := x.appendNames(names, nil)
	x.live += len(names)
	x.ents = slices.Insert(x.ents, i, entry{id: id, first: first, n: uint32(len(names))})
	return true, true
}

// remove drops id; its slots become garbage.
func (x *index) remove(id uint64) bool {
	i, ok := x.find(id)
	if !ok {
		return false
	}
	x.live -= int(x.ents[i].n)
	x.ents = slices.Delete(x.ents, i, i+1)
	x.maybeCompact()
	return true
}

// drop removes the IDs in ids (their slots become garbage).
func (x *index) drop(ids map[uint64]struct{}) {
	if len(ids) == 0 {
		return
	}
	x.ents = slices.DeleteFunc(x.ents, func(e entry) bool {
		_, gone := ids[e.id]
		if gone {
			x.live -= int(e.n)
		}
		return gone
	})
	x.maybeCompact()
}

// maybeCompact rewrites the arena when more than half of the slots are
// garbage.
func (x *index) maybeCompact() {
	if garbage := len(x.offs) - x.live; garbage > 1024 && garbage > x.live {
		x.compact()
	}
}

func (x *index) compact() {
	var y index
	y.offs = make([]uint32, 0, x.live)
	y.bad = make([]uint64, 0, (x.live+63)/64)
	arena := 0
	for _, e := range x.ents {
		for s := e.first; s < e.first+e.n; s++ {
			arena += len(x.name(s))
		}
	}
	y.arena = make([]byte, 0, arena)
	y.ents = make([]entry, len(x.ents))
	for i, e := range x.ents {
		first := uint32(len(y.offs))
		for s := e.first; s < e.first+e.n; s++ {
			ns := uint32(len(y.offs))
			y.offs = append(y.offs, uint32(len(y.arena)))
			y.arena = append(y.arena, x.name(s)...)
			if int(ns/64) >= len(y.bad) {
				y.bad = append(y.bad, 0)
			}
			if x.isBad(s) {
				y.setBad(ns)
			}
		}
		y.ents[i] = entry{id: e.id, first: first, n: e.n}
	}
	y.live = len(y.offs)
	*x = y
}

// builder accumulates a listing into an index. Listings are lexical, so
// the images of one ID arrive together; IDs arrive out of numeric order.
type builder struct {
	x     index
	cur   uint64
	names []string
	open  bool
}

func (b *builder) add(id uint64, name string) {
	if b.open && id != b.cur {
		b.flush()
	}
	b.cur, b.open = id, true
	b.names = append(b.names, name)
}

func (b *builder) flush() {
	if !b.open {
		return
	}
	slices.Sort(b.names)
	b.names = slices.Compact(b.names)
	first := b.x.appendNames(b.names, nil)
	b.x.ents = append(b.x.ents, entry{id: b.cur, first: first, n: uint32(len(b.names))})
	b.x.live += len(b.names)
	b.names, b.open = b.names[:0], false
}

// finish sorts the entries by ID and merges an ID that arrived in pieces.
func (b *builder) finish() index {
	b.flush()
	x := &b.x
	slices.SortStableFunc(x.ents, func(a, b entry) int { return cmp.Compare(a.id, b.id) })
	out := x.ents[:0]
	for i := 0; i < len(x.ents); {
		j := i + 1
		for j < len(x.ents) && x.ents[j].id == x.ents[i].id {
			j++
		}
		if j == i+1 {
			out = append(out, x.ents[i])
		} else {
			var names []string
			for _, e := range x.ents[i:j] {
				for s := e.first; s < e.first+e.n; s++ {
					names = append(names, x.name(s))
				}
				x.live -= int(e.n)
			}
			slices.Sort(names)
			names = slices.Compact(names)
			first := x.appendNames(names, nil)
			x.live += len(names)
			out = append(out, entry{id: x.ents[i].id, first: first, n: uint32(len(names))})
		}
		i = j
	}
	x.ents = out
	x.maybeCompact()
	return *x
}

// --- Catalog: the locked view used by the emitters, the watcher and tests.

// Len is the number of IDs.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.idx.ents)
}

// Images is the number of images, bad ones included.
func (c *Catalog) Images() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.idx.live
}

// BadImages is the number of images that failed validation.
func (c *Catalog) BadImages() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, e := range c.idx.ents {
		for s := e.first; s < e.first+e.n; s++ {
			if c.idx.isBad(s) {
				n++
			}
		}
	}
	return n
}

// IDs returns the IDs in ascending order.
func (c *Catalog) IDs() []uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]uint64, len(c.idx.ents))
	for i, e := range c.idx.ents {
		out[i] = e.id
	}
	return out
}

// Names returns the image names of id (sorted), bad ones included; nil
// when the catalog does not hold id.
func (c *Catalog) Names(id uint64) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, ok := c.idx.find(id)
	if !ok {
		return nil
	}
	e := c.idx.ents[i]
	out := make([]string, e.n)
	for k := range out {
		out[k] = c.idx.name(e.first + uint32(k))
	}
	return out
}

// MemBytes is the memory the index holds (capacities of its slices).
func (c *Catalog) MemBytes() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return cap(c.idx.ents)*16 + cap(c.idx.offs)*4 + cap(c.idx.bad)*8 + cap(c.idx.arena)
}

// upsert sets id's names and reports whether the ID is new.
func (c *Catalog) upsert(id uint64, names []string) (added, changed bool) {
	if len(names) == 0 {
		return false, false
	}
	slices.Sort(names)
	names = slices.Compact(names)
	c.mu.Lock()
	defer c.mu.Unlock()
	added, changed = c.idx.upsert(id, names)
	if changed {
		delete(c.dead, id)
		c.deadIfAllBad(id)
	}
	if added && c.addedDuringRescan != nil {
		c.addedDuringRescan[id] = struct{}{}
		delete(c.removedDuringRescan, id)
	}
	return added, changed
}

// addName adds one image name to an ID the catalog holds (a bucket
// notification of a created object); it reports whether it was added.
func (c *Catalog) addName(id uint64, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.idx.find(id)
	if !ok {
		return false
	}
	e := c.idx.ents[i]
	names := make([]string, 0, e.n+1)
	for s := e.first; s < e.first+e.n; s++ {
		if c.idx.nameEq(s, name) {
			return false
		}
		names = append(names, c.idx.name(s))
	}
	names = append(names, name)
	slices.Sort(names)
	c.idx.upsert(id, names)
	c.deadIfAllBad(id)
	return true
}

// remove drops id with all its images (a removal marker): it leaves the
// id rotation and the instance epochs at once, and a rescan that was
// listing meanwhile does not bring it back. It reports whether the
// catalog held id.
func (c *Catalog) remove(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.idx.remove(id)
	delete(c.dead, id)
	if c.addedDuringRescan != nil {
		delete(c.addedDuringRescan, id)
		c.removedDuringRescan[id] = struct{}{}
	}
	return held
}

// beginRescan starts remembering the IDs added until replace.
func (c *Catalog) beginRescan() {
	c.mu.Lock()
	c.addedDuringRescan = map[uint64]struct{}{}
	c.removedDuringRescan = map[uint64]struct{}{}
	c.mu.Unlock()
}

// endRescan forgets a rescan that failed.
func (c *Catalog) endRescan() {
	c.mu.Lock()
	c.addedDuringRescan, c.removedDuringRescan = nil, nil
	c.mu.Unlock()
}

// replace installs the index of a full listing. IDs in it and not in the
// old index are returned as added; IDs only in the old one are dropped
// unless they were added after beginRescan; IDs removed after it are left
// out. Bad marks carry over by name.
func (c *Catalog) replace(nx index) (added []uint64, removed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := &c.idx
	keep := c.addedDuringRescan
	nx.drop(c.removedDuringRescan)
	c.addedDuringRescan, c.removedDuringRescan = nil, nil
	var extra []entry // old entries to keep that the listing missed
	i, j := 0, 0
	for i < len(old.ents) || j < len(nx.ents) {
		switch {
		case j == len(nx.ents) || (i < len(old.ents) && old.ents[i].id < nx.ents[j].id):
			if _, ok := keep[old.ents[i].id]; ok {
				extra = append(extra, old.ents[i])
			} else {
				removed++
				delete(c.dead, old.ents[i].id)
			}
			i++
		case i == len(old.ents) || nx.ents[j].id < old.ents[i].id:
			added = append(added, nx.ents[j].id)
			j++
		default:
			if bad := old.badNames(old.ents[i]); bad != nil {
				e := nx.ents[j]
				for s := e.first; s < e.first+e.n; s++ {
					if bad(nx.name(s)) {
						nx.setBad(s)
					}
				}
			}
			i++
			j++
		}
	}
	for _, e := range extra {
		names := make([]string, e.n)
		for k := range names {
			names[k] = old.name(e.first + uint32(k))
		}
		nx.upsert(e.id, names)
		if bad := old.badNames(e); bad != nil {
			k, _ := nx.find(e.id)
			ne := nx.ents[k]
			for s := ne.first; s < ne.first+ne.n; s++ {
				if bad(nx.name(s)) {
					nx.setBad(s)
				}
			}
		}
	}
	c.idx = nx
	for id := range c.dead {
		c.deadIfAllBad(id)
	}
	return added, removed
}

// deadIfAllBad updates dead for id; c.mu must be held.
func (c *Catalog) deadIfAllBad(id uint64) {
	i, ok := c.idx.find(id)
	if !ok {
		delete(c.dead, id)
		return
	}
	e := c.idx.ents[i]
	for s := e.first; s < e.first+e.n; s++ {
		if !c.idx.isBad(s) {
			delete(c.dead, id)
			return
		}
	}
	c.dead[id] = struct{}{}
}

// markBad marks id's image name as failed. first is true only for the
// call that marked it (so it is dead-lettered once); allBad is true when
// no good image of id remains.
func (c *Catalog) markBad(id uint64, name string) (first, allBad bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.idx.find(id)
	if !ok {
		return false, false
	}
	e := c.idx.ents[i]
	for s := e.first; s < e.first+e.n; s++ {
		if c.idx.nameEq(s, name) {
			if !c.idx.isBad(s) {
				c.idx.setBad(s)
				first = true
			}
			break
		}
	}
	c.deadIfAllBad(id)
	_, allBad = c.dead[id]
	return first, allBad
}

// removeName drops one image of id (its object is gone); the ID goes when
// it has no image left.
func (c *Catalog) removeName(id uint64, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.idx.find(id)
	if !ok {
		return
	}
	e := c.idx.ents[i]
	var names []string
	for s := e.first; s < e.first+e.n; s++ {
		if !c.idx.nameEq(s, name) {
			names = append(names, c.idx.name(s))
		}
	}
	if len(names) == int(e.n) {
		return
	}
	if len(names) == 0 {
		c.idx.remove(id)
		delete(c.dead, id)
		return
	}
	c.idx.upsert(id, names)
	c.deadIfAllBad(id)
}

// appendLive appends the IDs that have at least one good image.
func (c *Catalog) appendLive(dst []uint64) []uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.idx.ents {
		if len(c.dead) == 0 {
			dst = append(dst, e.id)
		} else if _, dead := c.dead[e.id]; !dead {
			dst = append(dst, e.id)
		}
	}
	return dst
}

// inRotation reports whether id has a good image.
func (c *Catalog) inRotation(id uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if _, ok := c.idx.find(id); !ok {
		return false
	}
	_, dead := c.dead[id]
	return !dead
}

// pair draws two distinct good images of id (the same one twice when it
// has one). ok is false when id is gone or has no good image.
func (c *Catalog) pair(id uint64, rng *rand.Rand) (a, b string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, found := c.idx.find(id)
	if !found {
		return "", "", false
	}
	e := c.idx.ents[i]
	good := 0
	for s := e.first; s < e.first+e.n; s++ {
		if !c.idx.isBad(s) {
			good++
		}
	}
	if good == 0 {
		return "", "", false
	}
	// The k-th good slot.
	nth := func(k int) uint32 {
		for s := e.first; ; s++ {
			if !c.idx.isBad(s) {
				if k == 0 {
					return s
				}
				k--
			}
		}
	}
	if good == 1 {
		n := c.idx.name(nth(0))
		return n, n, true
	}
	x := rng.IntN(good)
	y := rng.IntN(good - 1)
	if y >= x {
		y++
	}
	return c.idx.name(nth(x)), c.idx.name(nth(y)), true
}

// epochSnapshot lists the IDs with their image counts for an instance
// epoch: ids ascending, cum[i] the images of ids[:i+1].
func (c *Catalog) epochSnapshot(ids []uint64, cum []uint32) ([]uint64, []uint32) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var total uint32
	for _, e := range c.idx.ents {
		if _, dead := c.dead[e.id]; dead {
			continue
		}
		total += e.n
		ids = append(ids, e.id)
		cum = append(cum, total)
	}
	return ids, cum
}

// imageAt returns the k-th image name of id, if id still has it and it
// is good.
func (c *Catalog) imageAt(id uint64, k uint32) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, found := c.idx.find(id)
	if !found {
		return "", false
	}
	e := c.idx.ents[i]
	if k >= e.n || c.idx.isBad(e.first+k) {
		return "", false
	}
	return c.idx.name(e.first + k), true
}

// --- Listing.

// keyProblem explains why a listed key is not an image of the catalog.
func keyProblem(key string) (id uint64, name string, err error) {
	id, name, err = schemas.ParseImageKey(key)
	if err != nil {
		return 0, "", err
	}
	if schemas.ImageKey(id, name) != key {
		return 0, "", fmt.Errorf("key %q is not ids/<id>/<name>.png at the bucket root", key)
	}
	return id, name, nil
}

// skipLog logs the first few skipped keys of a listing at warn level and
// counts them. onSkip, when set, says whether a key is counted and warned
// about: the Producer's does so once per run per key (Producer.warned),
// so a bad object is not reported again by every listing.
type skipLog struct {
	log     *slog.Logger
	onSkip  func(key string) (count, warn bool)
	n       int // counted
	logged  int
	maxLogs int
}

func (s *skipLog) skip(key string, err error) {
	count, warn := true, true
	if s.onSkip != nil {
		count, warn = s.onSkip(key)
	}
	if !count {
		return
	}
	s.n++
	if warn && s.logged < s.maxLogs {
		s.logged++
		s.log.Warn("skipping object that is not an image key", "key", key, "reason", schemas.Reason(err), "err", err)
	}
}

func (s *skipLog) done(what string) {
	if s.n > s.logged {
		s.log.Warn("skipped more objects that are not image keys", "listing", what, "skipped", s.n, "logged", s.logged)
	}
}

// listAll lists ids/ into a fresh index of the IDs shard owns.
func listAll(ctx context.Context, mc *minio.Client, bucket string, shard Shard, skips *skipLog) (index, error) {
	var b builder
	for obj := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "ids/", Recursive: true}) {
		if obj.Err != nil {
			return index{}, fmt.Errorf("producers: list %s/ids/: %w", bucket, obj.Err)
		}
		id, name, err := keyProblem(obj.Key)
		if err != nil {
			skips.skip(obj.Key, err)
			continue
		}
		if shard.Owns(id) {
			b.add(id, name)
		}
	}
	if err := ctx.Err(); err != nil {
		return index{}, err
	}
	skips.done("ids/")
	return b.finish(), nil
}

// listID lists the image names of one ID.
func listID(ctx context.Context, mc *minio.Client, bucket string, id uint64, skips *skipLog) ([]string, error) {
	prefix := "ids/" + fmt.Sprint(id) + "/"
	var names []string
	for obj := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("producers: list %s/%s: %w", bucket, prefix, obj.Err)
		}
		got, name, err := keyProblem(obj.Key)
		if err != nil || got != id {
			if err == nil {
				err = fmt.Errorf("key %q names id %d", obj.Key, got)
			}
			skips.skip(obj.Key, err)
			continue
		}
		names = append(names, name)
	}
	return names, ctx.Err()
}
