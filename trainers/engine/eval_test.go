package engine

import (
	"math"
	"testing"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// TestIdentificationTail checks top-1 over all queries and over the tail
// (classes of at most TailMaxImages images), with every train image in
// the centers and with one per class (EvalOptions.MaxCenterImages), on
// embeddings built so that the answers are known.
func TestIdentificationTail(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	unit := func(x, y, z float64) []float32 {
		n := math.Sqrt(x*x + y*y + z*z)
		return []float32{float32(x / n), float32(y / n), float32(z / n)}
	}
	m := &memImages{size: 1}
	var emb []float32
	add := func(class int, split dataset.Split, v []float32) {
		m.imgs = append(m.imgs, []byte{0})
		m.metas = append(m.metas, dataset.Meta{Class: class, Split: split})
		emb = append(emb, v...)
	}
	// Class 0, 6 images (not tail): its first train image points away
	// from the other four. Its query is right either way.
	add(0, dataset.SplitTrain, unit(0, 0, 1))
	for range 4 {
		add(0, dataset.SplitTrain, unit(1, 0, 0))
	}
	add(0, dataset.SplitHeldout, unit(0.9, 0, 0.436))
	// Class 1, 4 images (tail): its query is nearer class 0's full center
	// (cos 0.78) than its own (0.6), but not class 0's first image (0).
	for range 3 {
		add(1, dataset.SplitTrain, unit(0, 1, 0))
	}
	add(1, dataset.SplitHeldout, unit(0.8, 0.6, 0))
	// Class 2, 5 images (tail): always right.
	for range 4 {
		add(2, dataset.SplitTrain, unit(0, 0, -1))
	}
	add(2, dataset.SplitHeldout, unit(0, 0.1, -1))
	// An open-set class with its own image count, not in the tail.
	add(3, dataset.SplitOpenset, unit(0, 1, 1))

	for _, c := range []struct {
		maxPerClass      int
		top1, tail       float64
		embedded, tailQs int
	}{
		{0, 2.0 / 3, 1.0 / 2, m.Len(), 2},
		{1, 1, 1, 3 + 3 + 1, 2},
	} {
		if got := len(evalImages(m, c.maxPerClass)); got != c.embedded {
			t.Errorf("max %d: %d images to embed, want %d", c.maxPerClass, got, c.embedded)
		}
		res, err := EvaluateEmbeddings(be, emb, 3, m, EvalOptions{MaxCenterImages: c.maxPerClass})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(res.Top1-c.top1) > 1e-12 || math.Abs(res.TailTop1-c.tail) > 1e-12 {
			t.Errorf("max %d: top-1 %v, tail %v; want %v, %v", c.maxPerClass, res.Top1, res.TailTop1, c.top1, c.tail)
		}
		if res.CenterImages != c.maxPerClass || res.Top1Queries != 3 || res.TailQueries != c.tailQs || res.TailClasses != 2 || res.Top1Classes != 3 {
			t.Errorf("max %d: %d queries, %d tail queries of %d tail classes, %d classes; want 3, %d, 2, 3",
				c.maxPerClass, res.Top1Queries, res.TailQueries, res.TailClasses, res.Top1Classes, c.tailQs)
		}
	}
}
