package engine

import (
	"errors"
	"fmt"

	"github.com/ffc-stream/ffc/centers"
)

// Provisional computes the centers that IDs not yet in the pool would get
// now, for the fresh lane: the gallery network in eval mode (its running
// BatchNorm statistics: the inputs are a handful of images, too few for
// batch statistics) on one image per ID, L2-normalised. The pool is left
// exactly as it was — a trial insert, rolled back, gives the slot each
// would take — so training is unchanged: the ID enters the pool when a
// step inserts its gallery feature, as FFC does. It returns one Inserted
// change per label not in the pool (the first of repeated labels; Index
// is its row in features, n×D) and nothing for labels already held. x
// holds len(labels) inputs. Only an FFC engine has a pool.
func (e *Engine) Provisional(x []float32, labels []int64) ([]centers.Change, []float32, error) {
	if e.ffc == nil {
		return nil, nil, fmt.Errorf("engine: Provisional on a %s engine", e.opts.Head)
	}
	in := e.probe.InLen()
	if len(x) != len(labels)*in {
		return nil, nil, fmt.Errorf("engine: provisional: %d floats for %d samples of %d", len(x), len(labels), in)
	}
	var keep []int64
	var kx []float32
	seen := map[int64]bool{}
	for i, l := range labels {
		if seen[l] || e.pool.LRU().View(l) >= 0 {
			continue
		}
		seen[l] = true
		keep = append(keep, l)
		kx = append(kx, x[i*in:(i+1)*in]...)
	}
	if len(keep) == 0 {
		return nil, nil, nil
	}
	if len(keep) > e.maxRows {
		keep, kx = keep[:e.maxRows], kx[:e.maxRows*in]
	}
	if err := e.upload(e.x, kx, keep, "provisional"); err != nil {
		return nil, nil, err
	}
	n := len(keep)
	out, err := e.gallery.Forward(e.x, n, false)
	if err != nil {
		return nil, nil, fmt.Errorf("engine: provisional gallery forward: %w", err)
	}
	if err := e.be.Copy(n*e.opts.Dim, out, e.g); err != nil {
		return nil, nil, err
	}
	feats, err := e.features(n)
	if err != nil {
		return nil, nil, err
	}
	if err := e.pool.BeginPass(); err != nil {
		return nil, nil, err
	}
	e.pool.Mark()
	changes, err := e.pool.Insert(e.g, keep)
	if rerr := e.pool.Rollback(); rerr != nil {
		return nil, nil, errors.Join(err, rerr)
	}
	if err != nil {
		return nil, nil, err
	}
	ins := changes[:0]
	for _, c := range changes {
		if c.Kind == centers.Inserted {
			ins = append(ins, c)
		}
	}
	return ins, feats, nil
}

// Remove takes label out of the pool (centers.Pool.Remove): the returned
// change is a Removed one, false when the pool did not hold it. Call it
// between steps.
func (e *Engine) Remove(label int64) (centers.Change, bool, error) {
	if e.ffc == nil {
		return centers.Change{}, false, fmt.Errorf("engine: Remove on a %s engine", e.opts.Head)
	}
	return e.pool.Remove(label)
}
