package engine

import (
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// longTail has class c with c+1 images (class 0: one image).
func longTail(classes int) Index {
	ix := Index{}
	img := 0
	for c := 0; c < classes; c++ {
		var imgs []int
		for k := 0; k <= c; k++ {
			imgs = append(imgs, img)
			img++
		}
		ix.ByClass = append(ix.ByClass, imgs)
		ix.Labels = append(ix.Labels, int64(1000+c))
	}
	return ix
}

func TestIDLoaderUniformOverIDs(t *testing.T) {
	ix := longTail(20)
	l, err := NewIDLoader(ix, 1)
	if err != nil {
		t.Fatal(err)
	}
	owner := map[int]int64{}
	for c, imgs := range ix.ByClass {
		for _, i := range imgs {
			owner[i] = ix.Labels[c]
		}
	}
	count := map[int64]int{}
	var firstPass []int64
	batch := make([]Pair, 7)
	for k := 0; k < 60; k++ { // 420 pairs = 21 passes
		l.Next(batch)
		for _, p := range batch {
			count[p.Label]++
			if owner[p.A1] != p.Label || owner[p.A2] != p.Label {
				t.Fatalf("pair %+v has images of another class", p)
			}
			if p.Label != 1000 && p.A1 == p.A2 {
				t.Fatalf("pair %+v: class with several images gave the same image twice", p)
			}
			if len(firstPass) < 20 {
				firstPass = append(firstPass, p.Label)
			}
		}
	}
	// Every pass visits every class once: counts differ by at most one.
	for lab, n := range count {
		if n < 21 || n > 22 {
			t.Errorf("label %d drawn %d times in 420 draws over 20 classes", lab, n)
		}
	}
	seen := map[int64]bool{}
	for _, lab := range firstPass {
		if seen[lab] {
			t.Fatalf("label %d twice in the first pass", lab)
		}
		seen[lab] = true
	}
	if l.Passes < 20 {
		t.Errorf("passes %d", l.Passes)
	}
}

func TestInstanceLoaderKeepsDistribution(t *testing.T) {
	ix := longTail(30) // 465 images; class c has weight (c+1)/465
	l, err := NewInstanceLoader(ix, 2)
	if err != nil {
		t.Fatal(err)
	}
	count := map[int64]int{}
	imgSeen := map[int]int{}
	batch := make([]Sample, 31)
	for k := 0; k < 15; k++ { // exactly one epoch
		l.Next(batch)
		for _, s := range batch {
			count[s.Label]++
			imgSeen[s.Image]++
		}
	}
	if len(imgSeen) != 465 {
		t.Fatalf("one epoch saw %d distinct images, want all 465", len(imgSeen))
	}
	for c := 0; c < 30; c++ {
		if got := count[int64(1000+c)]; got != c+1 {
			t.Fatalf("class %d drawn %d times in an epoch, want %d", c, got, c+1)
		}
	}
	// The second epoch is a different order.
	first := append([]Sample(nil), l.all...)
	l.Next(batch)
	same := 0
	for i := range first {
		if first[i] == l.all[i] {
			same++
		}
	}
	if float64(same) > 0.2*float64(len(first)) {
		t.Errorf("reshuffle kept %d of %d positions", same, len(first))
	}
}

func TestLoadersRejectEmpty(t *testing.T) {
	if _, err := NewIDLoader(Index{ByClass: [][]int{{}}, Labels: []int64{1}}, 1); err == nil {
		t.Error("id loader over no images accepted")
	}
	if _, err := NewInstanceLoader(Index{ByClass: [][]int{{1}}, Labels: nil}, 1); err == nil {
		t.Error("mismatched labels accepted")
	}
}

// TestTrainIndexDenseLabels: the labels of the classes with train images
// are 0 … K−1 in class order, whatever the class numbers and open-set
// classes in between.
func TestTrainIndexDenseLabels(t *testing.T) {
	ds := &fakeImages{size: 2, metas: []dataset.Meta{
		{Class: 7, Split: dataset.SplitTrain}, {Class: 3, Split: dataset.SplitTrain}, {Class: 5, Split: dataset.SplitOpenset},
		{Class: 7, Split: dataset.SplitTrain}, {Class: 9, Split: dataset.SplitHeldout}, {Class: 12, Split: dataset.SplitTrain},
	}}
	ix := TrainIndex(ds)
	if want := []int64{0, 1, 2}; !slices.Equal(ix.Labels, want) {
		t.Fatalf("labels %v, want %v", ix.Labels, want)
	}
	if want := [][]int{{1}, {0, 3}, {5}}; len(ix.ByClass) != 3 || !slices.Equal(ix.ByClass[0], want[0]) || !slices.Equal(ix.ByClass[1], want[1]) || !slices.Equal(ix.ByClass[2], want[2]) {
		t.Errorf("by class %v, want %v (classes 3, 7, 12)", ix.ByClass, want)
	}
}

// fakeImages is an Images of metadata only.
type fakeImages struct {
	size  int
	metas []dataset.Meta
}

func (f *fakeImages) Len() int                                          { return len(f.metas) }
func (f *fakeImages) ImageSize() int                                    { return f.size }
func (f *fakeImages) Meta(i int) dataset.Meta                           { return f.metas[i] }
func (f *fakeImages) ReadImage(i int, dst []byte) (dataset.Meta, error) { return f.metas[i], nil }

// TestLastImageProtocol: the last tenth of the classes (rounded up) is
// open-set; a train class with ≥ 4 images gives its last image as the
// probe; the rest trains.
func TestLastImageProtocol(t *testing.T) {
	var metas []dataset.Meta
	// 11 classes: class c has c+1 images, interleaved by index.
	for i := range 11 {
		for c := i; c < 11; c++ {
			metas = append(metas, dataset.Meta{Class: c, Split: dataset.SplitHeldout})
		}
	}
	ds, err := WithProtocol(&fakeImages{size: 2, metas: metas}, ProtocolLastImage)
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]int{}
	for i := range ds.Len() {
		last[ds.Meta(i).Class] = i
	}
	counts := map[dataset.Split]int{}
	for i := range ds.Len() {
		m := ds.Meta(i)
		counts[m.Split]++
		want := dataset.SplitTrain
		switch {
		case m.Class >= 9: // 2 of 11 classes, rounded up
			want = dataset.SplitOpenset
		case m.Class >= 3 && i == last[m.Class]:
			want = dataset.SplitHeldout
		}
		if m.Split != want {
			t.Errorf("image %d of class %d: %v, want %v", i, m.Class, m.Split, want)
		}
	}
	if counts[dataset.SplitOpenset] != 10+11 || counts[dataset.SplitHeldout] != 6 {
		t.Errorf("splits %v: want 21 open-set images and 6 probes", counts)
	}
	if _, err := WithProtocol(ds, "by-phase-of-moon"); err == nil {
		t.Error("unknown protocol accepted")
	}
}
