package synth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"testing"

	"github.com/ffc-stream/ffc/internal/dataset"
)

func newGen(t testing.TB, o Options) *Generator {
	t.Helper()
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestImageIsPureFunction(t *testing.T) {
	o := DefaultOptions()
	g1, g2 := newGen(t, o), newGen(t, o)
	for _, id := range []uint64{0, 1, 7, 999_999} {
		for inst := range min(3, g1.InstancesOf(id)) {
			a, err := g1.Image(id, inst)
			if err != nil {
				t.Fatal(err)
			}
			// Interleave other work so no state can leak between calls.
			g2.Render(make([]byte, 1024), id+1, inst+1)
			b, err := g2.Image(id, inst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("id %d instance %d: two renders differ", id, inst)
			}
		}
	}
}

// TestGolden pins the bytes: a change to the generator changes every
// data set built from it, so it must be deliberate (update the hashes).
func TestGolden(t *testing.T) {
	g := newGen(t, Options{Seed: 42, IDs: 100, Alpha: 2, Min: 1, Max: 50})
	cases := []struct {
		id   uint64
		inst int
		want string
	}{
		{0, 0, "4b5f0aa52308a82a"},
		{3, 0, "18d9cfa40330a0f9"},
		{99, 0, "e0a32925441b95ef"},
	}
	for _, c := range cases {
		sum := sha256.Sum256(g.Render(make([]byte, 32*32), c.id, c.inst))
		if got := hex.EncodeToString(sum[:8]); got != c.want {
			t.Errorf("id %d instance %d: sha256 prefix %s, want %s", c.id, c.inst, got, c.want)
		}
	}
}

func TestDifferentIDsDiffer(t *testing.T) {
	g := newGen(t, Options{Seed: 1, IDs: 1000, Alpha: 1.5, Min: 2, Max: 10})
	const n = 200
	seen := map[string]uint64{}
	gallery := make([][]byte, n)
	for id := uint64(0); id < n; id++ {
		a := g.Render(make([]byte, 1024), id, 0)
		if prev, ok := seen[string(a)]; ok {
			t.Fatalf("ids %d and %d have the same image", prev, id)
		}
		seen[string(a)] = id
		if bytes.Equal(a, g.Render(make([]byte, 1024), id, 1)) {
			t.Fatalf("id %d: instances 0 and 1 are equal", id)
		}
		gallery[id] = pool(a)
	}
	// An ID must stay recognisable: instance 1's nearest neighbour among
	// the instances 0 (compared at 8×8, so that shifts matter less than
	// the design) is its own far more often than chance (1/200): measured
	// 59 of 200 with raw pixels; a random design per instance gives ~1.
	hits := 0
	for id := range n {
		q := pool(g.Render(make([]byte, 1024), uint64(id), 1))
		best, bestD := -1, math.Inf(1)
		for j, c := range gallery {
			if d := l1(q, c); d < bestD {
				best, bestD = j, d
			}
		}
		if best == id {
			hits++
		}
	}
	t.Logf("nearest-neighbour identification: %d of %d", hits, n)
	if hits < n/5 {
		t.Errorf("nearest-neighbour identification %d of %d: want at least a fifth", hits, n)
	}
}

// pool averages 4×4 blocks of a 32×32 image.
func pool(img []byte) []byte {
	out := make([]byte, 64)
	for y := range 32 {
		for x := range 32 {
			out[y/4*8+x/4] += byte(int(img[y*32+x]) / 16)
		}
	}
	return out
}

func l1(a, b []byte) float64 {
	s := 0.0
	for i := range a {
		s += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return s
}

// TestInstanceCountsFollowPowerLaw compares the empirical CDF of the
// instance counts of 200,000 IDs with the configured law (Kolmogorov-
// Smirnov). The bound 1.95/sqrt(n) is the 0.1% critical value for a
// continuous law; for a discrete law the test is conservative.
func TestInstanceCountsFollowPowerLaw(t *testing.T) {
	cases := []struct {
		alpha    float64
		min, max int
	}{
		{2, 1, 1000},
		{1.2, 1, 100},
		{3, 5, 50},
		{0.5, 1, 20},
	}
	for _, c := range cases {
		g := newGen(t, Options{Seed: 7, IDs: 200_000, Alpha: c.alpha, Min: c.min, Max: c.max})
		const n = 200_000
		hist := make([]int, c.max+1)
		sum := 0.0
		for id := uint64(0); id < n; id++ {
			k := g.InstancesOf(id)
			if k < c.min || k > c.max {
				t.Fatalf("%+v: id %d has %d instances", c, id, k)
			}
			hist[k]++
			sum += float64(k)
		}
		d, cum := 0.0, 0
		for k := c.min; k <= c.max; k++ {
			cum += hist[k]
			d = max(d, math.Abs(float64(cum)/n-g.CDF(k)))
		}
		if crit := 1.95 / math.Sqrt(n); d > crit {
			t.Errorf("%+v: KS distance %.5f > %.5f", c, d, crit)
		}
		// P(k) ∝ k^-alpha: check the ratio of the two first counts too.
		p0, p1 := g.CDF(c.min), g.CDF(c.min+1)-g.CDF(c.min)
		if want := math.Pow(float64(c.min+1)/float64(c.min), -c.alpha); math.Abs(p1/p0-want) > 1e-9 {
			t.Errorf("%+v: P(min+1)/P(min) = %v, want %v", c, p1/p0, want)
		}
		if mean := sum / n; math.Abs(mean-g.MeanInstances()) > 0.05*g.MeanInstances() {
			t.Errorf("%+v: mean %.3f, expected %.3f", c, mean, g.MeanInstances())
		}
	}
}

func TestBadOptions(t *testing.T) {
	cases := []struct {
		name string
		o    Options
	}{
		{"no ids", Options{IDs: 0, Alpha: 2, Min: 1, Max: 10}},
		{"alpha 0", Options{IDs: 10, Alpha: 0, Min: 1, Max: 10}},
		{"alpha NaN", Options{IDs: 10, Alpha: math.NaN(), Min: 1, Max: 10}},
		{"min 0", Options{IDs: 10, Alpha: 2, Min: 0, Max: 10}},
		{"max < min", Options{IDs: 10, Alpha: 2, Min: 5, Max: 4}},
		{"span too wide", Options{IDs: 10, Alpha: 2, Min: 1, Max: MaxSpan + 1}},
		{"size 4", Options{IDs: 10, Alpha: 2, Min: 1, Max: 10, Size: 4}},
	}
	for _, c := range cases {
		if _, err := New(c.o); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	g := newGen(t, Options{IDs: 10, Alpha: 2, Min: 1, Max: 3})
	if _, err := g.Image(10, 0); err == nil {
		t.Error("id past the end: no error")
	}
	if _, err := g.Image(0, g.InstancesOf(0)); err == nil {
		t.Error("instance past the end: no error")
	}
	if g.InstancesOf(10) != 0 {
		t.Error("InstancesOf past the end is not 0")
	}
}

func BenchmarkRender(b *testing.B) {
	g := newGen(b, DefaultOptions())
	dst := make([]byte, 1024)
	for i := 0; b.Loop(); i++ {
		g.Render(dst, uint64(i), i&7)
	}
}

func TestWriteSample(t *testing.T) {
	g := newGen(t, Options{Seed: 11, IDs: 1000, Alpha: 1.5, Min: 1, Max: 30})
	dir := t.TempDir()
	m, err := WriteSample(context.Background(), g, dir, SampleOptions{IDs: 200, OpensetFrac: 0.1, HeldoutFrac: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	r, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Classes()) != 200 || m.Counts.OpensetClasses != 20 {
		t.Fatalf("classes %d, open-set %d", len(r.Classes()), m.Counts.OpensetClasses)
	}
	want := 0
	for id := range uint64(200) {
		want += g.InstancesOf(id)
	}
	if r.Len() != want {
		t.Fatalf("%d images, want %d", r.Len(), want)
	}
	for i := 0; i < r.Len(); i += 13 {
		img, mt, err := r.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		exp, _ := g.Image(uint64(mt.Class), mt.Source)
		if !bytes.Equal(img, exp) {
			t.Fatalf("image %d is not Image(%d, %d)", i, mt.Class, mt.Source)
		}
		if mt.Split == dataset.SplitHeldout && mt.Source == 0 {
			t.Fatalf("image %d: instance 0 held out", i)
		}
	}
	if h := m.Counts.Heldout; h == 0 || h > m.Counts.Train {
		t.Errorf("held out %d of %d train-class images", h, m.Counts.Train+h)
	}
	if m.Counts.TrainClassesWithoutTrainImages != 0 {
		t.Errorf("%d train classes without train images", m.Counts.TrainClassesWithoutTrainImages)
	}
	if _, err := WriteSample(context.Background(), g, dir, SampleOptions{IDs: 2000}); err == nil {
		t.Error("sample larger than the ID space: no error")
	}
}
