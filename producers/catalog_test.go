package producers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// build makes a catalog from id → names as a listing would (lexical key
// order, so IDs out of numeric order).
func build(t *testing.T, ids map[uint64][]string) *Catalog {
	t.Helper()
	keys := make([]string, 0)
	byKey := map[string][2]any{}
	for id, names := range ids {
		for _, n := range names {
			k := fmt.Sprintf("ids/%d/%s.png", id, n)
			keys = append(keys, k)
			byKey[k] = [2]any{id, n}
		}
	}
	slices.Sort(keys)
	var b builder
	for _, k := range keys {
		v := byKey[k]
		b.add(v[0].(uint64), v[1].(string))
	}
	c := newCatalog()
	c.replace(b.finish())
	return c
}

func checkCatalog(t *testing.T, c *Catalog, want map[uint64][]string) {
	t.Helper()
	var ids []uint64
	n := 0
	for id, names := range want {
		ids = append(ids, id)
		n += len(names)
		w := slices.Clone(names)
		slices.Sort(w)
		if got := c.Names(id); !slices.Equal(got, w) {
			t.Errorf("id %d: names %q, want %q", id, got, w)
		}
	}
	slices.Sort(ids)
	if got := c.IDs(); !slices.Equal(got, ids) {
		t.Errorf("IDs %v, want %v", got, ids)
	}
	if c.Images() != n || c.Len() != len(ids) {
		t.Errorf("Len %d Images %d, want %d %d", c.Len(), c.Images(), len(ids), n)
	}
}

func TestCatalogIndex(t *testing.T) {
	base := map[uint64][]string{5: {"a"}, 10: {"b", "a"}, 100: {"x", "y", "z"}, 1000: {"0000"}}
	for _, tc := range []struct {
		name string
		edit func(c *Catalog)
		want map[uint64][]string
	}{
		{"listing", func(*Catalog) {}, base},
		{"add id before all", func(c *Catalog) { c.upsert(1, []string{"n"}) },
			map[uint64][]string{1: {"n"}, 5: {"a"}, 10: {"a", "b"}, 100: {"x", "y", "z"}, 1000: {"0000"}}},
		{"add id in the middle", func(c *Catalog) { c.upsert(50, []string{"q", "p"}) },
			map[uint64][]string{5: {"a"}, 10: {"a", "b"}, 50: {"p", "q"}, 100: {"x", "y", "z"}, 1000: {"0000"}}},
		{"more images of an id", func(c *Catalog) { c.upsert(5, []string{"a", "c"}) },
			map[uint64][]string{5: {"a", "c"}, 10: {"a", "b"}, 100: {"x", "y", "z"}, 1000: {"0000"}}},
		{"remove an image", func(c *Catalog) { c.removeName(100, "y") },
			map[uint64][]string{5: {"a"}, 10: {"a", "b"}, 100: {"x", "z"}, 1000: {"0000"}}},
		{"remove the last image", func(c *Catalog) { c.removeName(5, "a") },
			map[uint64][]string{10: {"a", "b"}, 100: {"x", "y", "z"}, 1000: {"0000"}}},
		{"empty names ignored", func(c *Catalog) { c.upsert(7, nil) }, base},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := build(t, base)
			tc.edit(c)
			checkCatalog(t, c, tc.want)
		})
	}
}

func TestCatalogUpsertReports(t *testing.T) {
	c := build(t, map[uint64][]string{5: {"a"}})
	for _, tc := range []struct {
		id             uint64
		names          []string
		added, changed bool
	}{
		{5, []string{"a"}, false, false},
		{5, []string{"a", "b"}, false, true},
		{6, []string{"a"}, true, true},
		{6, []string{"a", "a"}, false, false},
	} {
		added, changed := c.upsert(tc.id, tc.names)
		if added != tc.added || changed != tc.changed {
			t.Errorf("upsert(%d, %q) = %v, %v; want %v, %v", tc.id, tc.names, added, changed, tc.added, tc.changed)
		}
	}
}

func TestCatalogBadImages(t *testing.T) {
	c := build(t, map[uint64][]string{1: {"a", "b", "c"}, 2: {"only"}})
	rng := rand.New(rand.NewPCG(1, 2))

	if first, all := c.markBad(1, "b"); !first || all {
		t.Fatalf("markBad(1, b) = %v, %v; want first, not all", first, all)
	}
	if first, _ := c.markBad(1, "b"); first {
		t.Fatal("second markBad(1, b) reported first again")
	}
	for range 200 {
		a, b, ok := c.pair(1, rng)
		if !ok || a == b || a == "b" || b == "b" {
			t.Fatalf("pair(1) = %q, %q, %v: want two distinct of a, c", a, b, ok)
		}
	}
	// Updating the ID keeps the mark.
	c.upsert(1, []string{"a", "b", "c", "d"})
	if _, ok := c.imageAt(1, 1); ok {
		t.Error("b lost its bad mark when id 1 got a new image")
	}
	if _, all := c.markBad(2, "only"); !all {
		t.Error("id 2 with its only image bad is not all bad")
	}
	if c.inRotation(2) || !c.inRotation(1) {
		t.Errorf("inRotation: 1 %v, 2 %v; want true, false", c.inRotation(1), c.inRotation(2))
	}
	if got := c.appendLive(nil); !slices.Equal(got, []uint64{1}) {
		t.Errorf("live IDs %v, want [1]", got)
	}
	if _, _, ok := c.pair(2, rng); ok {
		t.Error("pair of an all-bad id")
	}
	if c.BadImages() != 2 {
		t.Errorf("BadImages %d, want 2", c.BadImages())
	}
	// A rescan with the same objects keeps marks and dead IDs.
	c.beginRescan()
	c2 := build(t, map[uint64][]string{1: {"a", "b", "c", "d"}, 2: {"only"}, 3: {"new"}})
	added, removed := c.replace(c2.idx)
	if !slices.Equal(added, []uint64{3}) || removed != 0 {
		t.Errorf("replace: added %v removed %d; want [3], 0", added, removed)
	}
	if c.BadImages() != 2 || c.inRotation(2) {
		t.Errorf("after rescan: BadImages %d, id 2 in rotation %v", c.BadImages(), c.inRotation(2))
	}
}

func TestCatalogPairSingle(t *testing.T) {
	c := build(t, map[uint64][]string{9: {"one"}})
	a, b, ok := c.pair(9, rand.New(rand.NewPCG(1, 1)))
	if !ok || a != "one" || b != "one" {
		t.Fatalf("pair of a one-image id = %q, %q, %v", a, b, ok)
	}
	if _, _, ok := c.pair(10, rand.New(rand.NewPCG(1, 1))); ok {
		t.Fatal("pair of a missing id")
	}
}

// TestCatalogPairUniform: the two images are a uniform draw of an ordered
// pair of distinct images.
func TestCatalogPairUniform(t *testing.T) {
	c := build(t, map[uint64][]string{1: {"a", "b", "c", "d"}})
	rng := rand.New(rand.NewPCG(3, 4))
	count := map[[2]string]int{}
	const n = 12000
	for range n {
		a, b, _ := c.pair(1, rng)
		count[[2]string{a, b}]++
	}
	if len(count) != 12 {
		t.Fatalf("%d distinct ordered pairs, want 12", len(count))
	}
	for p, k := range count {
		if k < n/12*8/10 || k > n/12*12/10 {
			t.Errorf("pair %v drawn %d times of %d, want about %d", p, k, n, n/12)
		}
	}
}

// TestCatalogRescanKeepsConcurrentAdds: an ID announced while a rescan
// lists survives the rescan's index, which did not see it; an ID deleted
// from the bucket goes.
func TestCatalogRescanKeepsConcurrentAdds(t *testing.T) {
	c := build(t, map[uint64][]string{1: {"a"}, 2: {"a"}})
	c.beginRescan()
	listing := build(t, map[uint64][]string{1: {"a"}}) // 2 deleted
	c.upsert(3, []string{"x"})                         // announced meanwhile
	added, removed := c.replace(listing.idx)
	if len(added) != 0 || removed != 1 {
		t.Errorf("added %v removed %d, want none and 1", added, removed)
	}
	checkCatalog(t, c, map[uint64][]string{1: {"a"}, 3: {"x"}})
}

// TestCatalogRemoveDuringRescan: an ID removed (removal marker) while a
// rescan lists stays out although the listing saw it, unless it was added
// again meanwhile; a removed ID leaves rotation and epochs at once.
func TestCatalogRemoveDuringRescan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		readd   bool
		want    map[uint64][]string
		wantAdd []uint64
	}{
		{"removed", false, map[uint64][]string{1: {"a"}}, nil},
		// Back, with the listing's names (as for any ID both listed and
		// announced during a rescan).
		{"removed, then announced again", true, map[uint64][]string{1: {"a"}, 2: {"a"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := build(t, map[uint64][]string{1: {"a"}, 2: {"a"}})
			c.beginRescan()
			listing := build(t, map[uint64][]string{1: {"a"}, 2: {"a"}}) // listed before the removal
			if !c.remove(2) || c.remove(2) {
				t.Fatal("remove: want true, then false")
			}
			if c.inRotation(2) || c.Names(2) != nil {
				t.Error("removed id still in rotation")
			}
			if _, ok := c.imageAt(2, 0); ok {
				t.Error("removed id still in the epochs")
			}
			if tc.readd {
				c.upsert(2, []string{"b"})
			}
			added, _ := c.replace(listing.idx)
			if !slices.Equal(added, tc.wantAdd) {
				t.Errorf("added %v, want %v", added, tc.wantAdd)
			}
			checkCatalog(t, c, tc.want)
		})
	}
}

// TestCatalogAddName: a notified image joins a known ID; an unknown ID
// or a name it has is left alone.
func TestCatalogAddName(t *testing.T) {
	c := build(t, map[uint64][]string{1: {"b"}})
	if !c.addName(1, "a") || c.addName(1, "a") || c.addName(9, "a") {
		t.Error("addName: want true, false (known name), false (unknown id)")
	}
	checkCatalog(t, c, map[uint64][]string{1: {"a", "b"}})
}

// TestCatalogBuilderMergesPieces: an ID whose keys arrive in two runs
// (not contiguous) is merged into one entry.
func TestCatalogBuilderMergesPieces(t *testing.T) {
	var b builder
	b.add(7, "b")
	b.add(8, "a")
	b.add(7, "a")
	b.add(7, "b")
	c := newCatalog()
	c.replace(b.finish())
	checkCatalog(t, c, map[uint64][]string{7: {"a", "b"}, 8: {"a"}})
}

// TestCatalogCompacts: rewriting IDs again and again leaves garbage that
// compaction reclaims, and the content stays right.
func TestCatalogCompacts(t *testing.T) {
	want := map[uint64][]string{}
	for id := range uint64(200) {
		want[id] = []string{"0000", "0001"}
	}
	c := build(t, want)
	for round := range 30 {
		for id := range uint64(200) {
			names := []string{"0000", "0001", fmt.Sprintf("r%02d", round)}
			c.upsert(id, names)
			want[id] = names
		}
	}
	checkCatalog(t, c, want)
	if slots := len(c.idx.offs); slots > 3*c.idx.live+1024 {
		t.Errorf("%d slots for %d live images: garbage not reclaimed", slots, c.idx.live)
	}
}

// TestCatalogMemory: the index costs about 16 bytes per ID plus 4 bytes
// and the name per image — no per-object structs.
func TestCatalogMemory(t *testing.T) {
	const ids, per = 100_000, 5
	var b builder
	for id := range uint64(ids) {
		for k := range per {
			b.add(id, fmt.Sprintf("%04d", k))
		}
	}
	c := newCatalog()
	c.replace(b.finish())
	if c.Images() != ids*per {
		t.Fatalf("images %d", c.Images())
	}
	perImage := float64(c.MemBytes()) / (ids * per)
	// 16/5 (entry) + 4 (offset) + 4 (name) + 1/8 (bad bit) ≈ 11.3, with
	// slice growth slack.
	if perImage > 20 {
		t.Errorf("index takes %.1f bytes per image, want ≤ 20", perImage)
	}
	t.Logf("%d IDs × %d images: %.1f MB, %.1f bytes per image", ids, per, float64(c.MemBytes())/1e6, perImage)
}
