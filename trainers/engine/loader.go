package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// Index is what the loaders sample from: the images of each class.
type Index struct {
	// ByClass[c] lists the image indices of class c; classes with no image
	// are skipped.
	ByClass [][]int
	// Labels[c] is the identity label of class c (what the pool keys on).
	Labels []int64
}

// Validate reports an index the loaders cannot use.
func (ix Index) Validate() error {
	if len(ix.ByClass) != len(ix.Labels) {
		return fmt.Errorf("loader: %d classes but %d labels", len(ix.ByClass), len(ix.Labels))
	}
	for _, imgs := range ix.ByClass {
		if len(imgs) > 0 {
			return nil
		}
	}
	return errors.New("loader: no class has an image")
}

// Pair is one sample of the id loader: two images of one identity.
type Pair struct {
	Label  int64
	A1, A2 int // image indices; equal when the class has one image
}

// Sample is one sample of the instance loader.
type Sample struct {
	Label int64
	Image int
}

// IDLoader draws identities uniformly — every class once per pass, in a
// fresh random order each pass — and two distinct images of each. Tail
// classes with few images appear as often as head classes.
type IDLoader struct {
	ix      Index
	classes []int // classes with images
	order   []int
	next    int
	rng     *rand.Rand
	Passes  int // completed passes over the identities
}

// NewIDLoader returns an id loader over ix, seeded.
func NewIDLoader(ix Index, seed uint64) (*IDLoader, error) {
	if err := ix.Validate(); err != nil {
		return nil, err
	}
	l := &IDLoader{ix: ix, rng: rand.New(rand.NewPCG(seed, 0x1d))}
	for c, imgs := range ix.ByClass {
		if len(imgs) > 0 {
			l.classes = append(l.classes, c)
		}
	}
	l.order = append([]int(nil), l.classes...)
	l.shuffle()
	return l, nil
}

func (l *IDLoader) shuffle() {
	l.rng.Shuffle(len(l.order), func(i, j int) { l.order[i], l.order[j] = l.order[j], l.order[i] })
	l.next = 0
}

// Next fills dst with the next len(dst) pairs.
func (l *IDLoader) Next(dst []Pair) {
	for i := range dst {
		if l.next == len(l.order) {
			l.Passes++
			l.shuffle() // reshuffle every pass (the reference never does)
		}
		c := l.order[l.next]
		l.next++
		imgs := l.ix.ByClass[c]
		a := l.rng.IntN(len(imgs))
		b := a
		if len(imgs) > 1 {
			b = l.rng.IntN(len(imgs) - 1)
			if b >= a {
				b++
			}
		}
		dst[i] = Pair{Label: l.ix.Labels[c], A1: imgs[a], A2: imgs[b]}
	}
}

// InstanceLoader draws images uniformly: shuffled epochs over all images,
// so the data distribution is kept.
type InstanceLoader struct {
	all    []Sample
	next   int
	rng    *rand.Rand
	Epochs int // completed epochs
}

// NewInstanceLoader returns an instance loader over ix, seeded.
func NewInstanceLoader(ix Index, seed uint64) (*InstanceLoader, error) {
	if err := ix.Validate(); err != nil {
		return nil, err
	}
	l := &InstanceLoader{rng: rand.New(rand.NewPCG(seed, 0x1e))}
	for c, imgs := range ix.ByClass {
		for _, i := range imgs {
			l.all = append(l.all, Sample{Label: ix.Labels[c], Image: i})
		}
	}
	l.rng.Shuffle(len(l.all), func(i, j int) { l.all[i], l.all[j] = l.all[j], l.all[i] })
	return l, nil
}

// Len is the number of images.
func (l *InstanceLoader) Len() int { return len(l.all) }

// Next fills dst with the next len(dst) samples.
func (l *InstanceLoader) Next(dst []Sample) {
	for i := range dst {
		if l.next == len(l.all) {
			l.Epochs++
			l.rng.Shuffle(len(l.all), func(i, j int) { l.all[i], l.all[j] = l.all[j], l.all[i] })
			l.next = 0
		}
		dst[i] = l.all[l.next]
		l.next++
	}
}
