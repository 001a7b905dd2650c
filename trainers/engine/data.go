package engine

import (
	"fmt"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// Images is what the offline loop and the evaluation read: square uint8
// images by index, with their labels and splits.
type Images interface {
	Len() int
	ImageSize() int
	Meta(i int) dataset.Meta
	ReadImage(i int, dst []byte) (dataset.Meta, error)
}

// TrainIndex groups the train-split images of ds by class, in class
// order; the labels are dense, 0 … K−1 for the K classes with train
// images, so an FC or PFC head has exactly K rows (the open-set classes,
// never trained, get none).
func TrainIndex(ds Images) Index {
	var ix Index
	ix.ByClass = groupByClass(ds, func(m dataset.Meta) bool { return m.Split == dataset.SplitTrain })
	for i := range ix.ByClass {
		ix.Labels = append(ix.Labels, int64(i))
	}
	return ix
}

// groupByClass lists the images of ds that keep accepts, grouped by class
// in ascending class order and by index within a class; classes without
// such images are left out.
func groupByClass(ds Images, keep func(dataset.Meta) bool) [][]int {
	byClass := map[int][]int{}
	maxClass := -1
	for i := 0; i < ds.Len(); i++ {
		m := ds.Meta(i)
		if !keep(m) {
			continue
		}
		byClass[m.Class] = append(byClass[m.Class], i)
		maxClass = max(maxClass, m.Class)
	}
	var groups [][]int
	for c := 0; c <= maxClass; c++ {
		if imgs := byClass[c]; len(imgs) > 0 {
			groups = append(groups, imgs)
		}
	}
	return groups
}

// appendImage reads image i of ds into buf and appends it, scaled by
// nn.AppendScaled, to dst.
func appendImage(dst []float32, ds Images, i int, buf []byte) ([]float32, error) {
	if _, err := ds.ReadImage(i, buf); err != nil {
		return dst, fmt.Errorf("read image %d: %w", i, err)
	}
	return nn.AppendScaled(dst, buf), nil
}
