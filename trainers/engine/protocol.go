package engine

import (
	"fmt"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// The offline protocols: which images train, which are held-out probes
// and which classes are open-set (never trained, pairs for TAR@FAR).
const (
	// ProtocolFonts keeps the data set's own split: for glyphs, whole
	// fonts held out and the classes the set marks open-set.
	ProtocolFonts = "fonts"
	// ProtocolLastImage: the classes in label order, the last tenth
	// (rounded up) open-set; in every other class with at least
	// lastImageMin images, the image of highest index is the held-out
	// probe; every other image trains.
	ProtocolLastImage = "last-image"
)

// lastImageMin is the fewest images a class needs to give a probe.
const lastImageMin = 4

// WithProtocol returns ds split by protocol p (ProtocolFonts: ds itself).
func WithProtocol(ds Images, p string) (Images, error) {
	switch p {
	case "", ProtocolFonts:
		return ds, nil
	case ProtocolLastImage:
		return lastImageSplit(ds), nil
	}
	return nil, fmt.Errorf("protocol %q: want %s or %s", p, ProtocolFonts, ProtocolLastImage)
}

// resplit is a data set with its splits replaced.
type resplit struct {
	Images
	split []dataset.Split
}

func (r resplit) Meta(i int) dataset.Meta {
	m := r.Images.Meta(i)
	m.Split = r.split[i]
	return m
}

func (r resplit) ReadImage(i int, dst []byte) (dataset.Meta, error) {
	m, err := r.Images.ReadImage(i, dst)
	m.Split = r.split[i]
	return m, err
}

func lastImageSplit(ds Images) Images {
	classes := groupByClass(ds, func(dataset.Meta) bool { return true })
	open := (len(classes) + 9) / 10
	split := make([]dataset.Split, ds.Len())
	for k, imgs := range classes {
		for _, i := range imgs {
			split[i] = dataset.SplitTrain
			if k >= len(classes)-open {
				split[i] = dataset.SplitOpenset
			}
		}
		if k < len(classes)-open && len(imgs) >= lastImageMin {
			split[imgs[len(imgs)-1]] = dataset.SplitHeldout
		}
	}
	return resplit{Images: ds, split: split}
}
