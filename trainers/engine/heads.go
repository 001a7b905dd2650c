package engine

import (
	"fmt"

	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/kernels"
)

// newClassifier builds the full FC or Partial FC head with the probe's
// optimizer settings.
func newClassifier(be kernels.Backend, opts Options, maxBatch int) (classifier, error) {
	sgd := kernels.SGD{Momentum: opts.SGD.Momentum, WeightDecay: opts.SGD.WeightDecay, Nesterov: opts.SGD.Nesterov}
	// The constructors return a nil pointer with their error: never put it
	// into the interface, where it would not compare equal to nil.
	switch opts.Head {
	case HeadFC:
		h, err := centers.NewFC(be, centers.FCOptions{Classes: opts.Classes, Dim: opts.Dim, Margin: opts.Margin, MaxBatch: maxBatch, SGD: sgd, Seed: opts.Seed + 2})
		if err != nil {
			return nil, err
		}
		return h, nil
	case HeadPFC:
		h, err := centers.NewPFC(be, centers.PFCOptions{Classes: opts.Classes, Dim: opts.Dim, Margin: opts.Margin, MaxBatch: maxBatch, SGD: sgd, Seed: opts.Seed + 2, Rate: opts.PFCRate})
		if err != nil {
			return nil, err
		}
		return h, nil
	}
	return nil, fmt.Errorf("engine: head %q has no classifier", opts.Head)
}
