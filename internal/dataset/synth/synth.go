// Package synth owns the synthetic identities used to measure scale (1M to
// 100M IDs) without storing images: every image is a pure function of
// (seed, id, instance), and every per-ID quantity is computed from a hash
// of (seed, id), so enumerating IDs needs no per-ID memory.
//
// An identity's prototype is a few random strokes (straight or curved, of
// random width) and dots drawn from a PRNG seeded by hash(seed, id). Each
// instance draws the prototype through its own augmentation, from
// hash(seed, id, instance): rotation (±12°), scale (0.88-1.12), shift
// (±2.5 px), stroke-width and endpoint jitter, ink level and pixel noise.
// The number of instances of an ID follows a discrete power law
// P(k) ∝ k^-alpha on [min, max], drawn from hash(seed, id).
//
// Floating-point products are rounded explicitly before they are added,
// so the Go compiler cannot fuse them into FMA instructions and images are
// the same bytes on every architecture.
//
// This package must not import the pipeline packages (producers, trainers,
// centers, kernels).
package synth

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// Options configures a Generator.
type Options struct {
	Seed uint64
	// IDs is the number of identities (0..IDs-1).
	IDs uint64
	// Alpha is the power-law exponent of the instances per ID (> 0).
	Alpha float64
	// Min and Max bound the instances per ID (1 <= Min <= Max <= MaxSpan
	// apart).
	Min, Max int
	// Size is the image side; default 32.
	Size int
}

// DefaultOptions: 1M IDs, alpha 2, 1 to 1,000 instances, 32×32.
func DefaultOptions() Options {
	return Options{Seed: 1, IDs: 1_000_000, Alpha: 2, Min: 1, Max: 1000, Size: 32}
}

// MaxSpan is the largest Max-Min+1 (the CDF table is kept in memory).
const MaxSpan = 1 << 20

// Generator produces synthetic identities. It is safe for concurrent use
// and implements dataset.Source.
type Generator struct {
	o   Options
	cdf []float64 // cdf[i] = P(count <= Min+i)
}

var _ dataset.Source = (*Generator)(nil)

// hash tags keep the streams of (seed, id, ...) apart.
const (
	tagCount uint64 = iota + 1
	tagProto
	tagInstance
)

// New validates o and builds the instance-count table.
func New(o Options) (*Generator, error) {
	if o.Size == 0 {
		o.Size = 32
	}
	switch {
	case o.Size < 8 || o.Size > 1024:
		return nil, fmt.Errorf("synth: image size %d outside 8..1024", o.Size)
	case o.IDs == 0:
		return nil, errors.New("synth: no IDs")
	case !(o.Alpha > 0) || math.IsInf(o.Alpha, 0):
		return nil, fmt.Errorf("synth: alpha %v: want a positive number", o.Alpha)
	case o.Min < 1 || o.Max < o.Min:
		return nil, fmt.Errorf("synth: instances per ID [%d, %d]: want 1 <= min <= max", o.Min, o.Max)
	case o.Max-o.Min+1 > MaxSpan:
		return nil, fmt.Errorf("synth: instances per ID [%d, %d] spans more than %d values", o.Min, o.Max, MaxSpan)
	}
	g := &Generator{o: o, cdf: make([]float64, o.Max-o.Min+1)}
	sum := 0.0
	for k := o.Min; k <= o.Max; k++ {
		sum += math.Pow(float64(k), -o.Alpha)
		g.cdf[k-o.Min] = sum
	}
	for i := range g.cdf {
		g.cdf[i] /= sum
	}
	g.cdf[len(g.cdf)-1] = 1
	return g, nil
}

// Options returns the generator's options, defaults filled in.
func (g *Generator) Options() Options { return g.o }

// ImageSize is the side of the images.
func (g *Generator) ImageSize() int { return g.o.Size }

// NumIDs is the number of identities.
func (g *Generator) NumIDs() uint64 { return g.o.IDs }

// InstancesOf returns how many images id has: the inverse CDF of the power
// law at a uniform variate from hash(seed, id). It is 0 outside 0..IDs-1.
func (g *Generator) InstancesOf(id uint64) int {
	if id >= g.o.IDs {
		return 0
	}
	u := float64(dataset.Hash(g.o.Seed, tagCount, id)>>11) / (1 << 53)
	i := sort.Search(len(g.cdf), func(i int) bool { return g.cdf[i] > u })
	return g.o.Min + min(i, len(g.cdf)-1)
}

// CDF is P(instances <= k) under the configured law.
func (g *Generator) CDF(k int) float64 {
	switch {
	case k < g.o.Min:
		return 0
	case k >= g.o.Max:
		return 1
	}
	return g.cdf[k-g.o.Min]
}

// MeanInstances is the expected number of instances per ID.
func (g *Generator) MeanInstances() float64 {
	mean, prev := 0.0, 0.0
	for i, c := range g.cdf {
		mean += float64(float64(g.o.Min+i) * (c - prev))
		prev = c
	}
	return mean
}

// Image returns instance of id: Size² bytes, ink 255 on background 0.
func (g *Generator) Image(id uint64, instance int) ([]byte, error) {
	if id >= g.o.IDs {
		return nil, fmt.Errorf("synth: id %d outside 0..%d", id, g.o.IDs-1)
	}
	if n := g.InstancesOf(id); instance < 0 || instance >= n {
		return nil, fmt.Errorf("synth: instance %d of id %d outside 0..%d", instance, id, n-1)
	}
	return g.Render(make([]byte, g.o.Size*g.o.Size), id, instance), nil
}

// Render draws instance of id into dst (Size² bytes) and returns it. It
// does not check the instance against InstancesOf: any (id, instance)
// pair has an image.
func (g *Generator) Render(dst []byte, id uint64, instance int) []byte {
	p := newPrototype(dataset.Hash(g.o.Seed, tagProto, id))
	a := newAugment(dataset.Hash(g.o.Seed, tagInstance, id, uint64(instance)))
	draw(dst[:g.o.Size*g.o.Size], g.o.Size, &p, &a)
	return dst
}
