package synth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// SampleOptions configures WriteSample.
type SampleOptions struct {
	// IDs: the first IDs identities (0..IDs-1) are written.
	IDs uint64
	// OpensetFrac of the sampled IDs are never trained on.
	OpensetFrac float64
	// HeldoutFrac of the images of train IDs are held out for
	// identification, drawn per image from hash(seed, id, instance);
	// instance 0 is always kept for training.
	HeldoutFrac float64
	Progress    func(dataset.Progress)
}

// SampleParams are recorded in the manifest of a sample.
type SampleParams struct {
	Seed        uint64  `json:"seed"`
	IDs         uint64  `json:"ids"`
	Alpha       float64 `json:"alpha"`
	Min         int     `json:"min"`
	Max         int     `json:"max"`
	Size        int     `json:"size"`
	Sample      uint64  `json:"sample"`
	OpensetFrac float64 `json:"openset_frac"`
	HeldoutFrac float64 `json:"heldout_frac"`
}

const tagHeldout uint64 = 100

// WriteSample writes the first o.IDs identities of g, every instance, as
// a dataset file set in dir. Class IDs are the decimal synthetic IDs and
// Meta.Source is the instance number.
func WriteSample(ctx context.Context, g *Generator, dir string, o SampleOptions) (*dataset.Manifest, error) {
	if o.IDs == 0 || o.IDs > g.o.IDs {
		return nil, fmt.Errorf("synth: sample of %d IDs from %d", o.IDs, g.o.IDs)
	}
	if o.IDs > 10_000_000 {
		return nil, errors.New("synth: samples are limited to 10M IDs; use the generator directly")
	}
	if o.HeldoutFrac < 0 || o.HeldoutFrac >= 1 {
		return nil, fmt.Errorf("synth: held-out fraction %v outside [0, 1)", o.HeldoutFrac)
	}
	w, err := dataset.Create(dir, g.o.Size)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	defer w.Abort()
	m := &dataset.Manifest{Kind: dataset.KindSynth, Classes: make([]dataset.Class, o.IDs)}
	ids := make([]string, o.IDs)
	var total int64
	for i := range ids {
		ids[i] = strconv.FormatUint(uint64(i), 10)
		total += int64(g.InstancesOf(uint64(i)))
	}
	open, err := dataset.Select(ids, g.o.Seed, "openset", o.OpensetFrac)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	start := time.Now()
	img := make([]byte, g.o.Size*g.o.Size)
	var done int64
	for i := range ids {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		id := uint64(i)
		m.Classes[i] = dataset.Class{ID: ids[i], Split: "train"}
		if open[i] {
			m.Classes[i].Split = "openset"
		}
		for inst := range g.InstancesOf(id) {
			split := dataset.SplitTrain
			switch {
			case open[i]:
				split = dataset.SplitOpenset
			case inst > 0 && float64(dataset.Hash(g.o.Seed, tagHeldout, id, uint64(inst))>>11)/(1<<53) < o.HeldoutFrac:
				split = dataset.SplitHeldout
			}
			if err := w.Append(g.Render(img, id, inst), dataset.Meta{Class: i, Source: inst, Split: split}); err != nil {
				return nil, fmt.Errorf("synth: %w", err)
			}
			done++
		}
		if o.Progress != nil && i%256 == 255 {
			o.Progress(dataset.Progress{Stage: "synth", Done: done, Total: total, Elapsed: time.Since(start)})
		}
	}
	params, err := json.Marshal(SampleParams{
		Seed: g.o.Seed, IDs: g.o.IDs, Alpha: g.o.Alpha, Min: g.o.Min, Max: g.o.Max, Size: g.o.Size,
		Sample: o.IDs, OpensetFrac: o.OpensetFrac, HeldoutFrac: o.HeldoutFrac,
	})
	if err != nil {
		return nil, err
	}
	m.Params = params
	if err := w.Commit(m); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	if o.Progress != nil {
		o.Progress(dataset.Progress{Stage: "synth", Done: done, Total: total, Elapsed: time.Since(start), Final: true})
	}
	return m, nil
}
