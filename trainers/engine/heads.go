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
	switch opts.Head {
	case HeadFC:
		return centers.NewFC(be, centers.FCOptions{Classes: opts.Classes, Dim: opts.Dim, Margin: opts.Margin, MaxBatch: maxBatch, SGD: sgd, Seed: opts.Seed + 2})
	case HeadPFC:
		return centers.NewPFC(be, centers.PFCOptions{Classes: opts.Classes, Dim: opts.Dim, Margin: opts.Margin, MaxBatch: maxBatch, SGD: sgd, Seed: opts.Seed + 2, Rate: opts.PFCRate})
	}
	return nil, fmt.Errorf("engine: head %q has no classifier", opts.Head)
}
