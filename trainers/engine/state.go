package engine

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ffc-stream/ffc/trainers/nn"
)

// StatePart is one piece of the full training state, saved and loaded on
// its own (an object of a checkpoint).
type StatePart struct {
	Name string
	Save func(io.Writer) error
	Load func(io.Reader) error
}

// engineMeta is the small JSON part: the step and the architecture.
type engineMeta struct {
	Step  int   `json:"step"`
	Model Model `json:"model"`
}

// StateParts lists everything a resumed run needs: the probe's weights,
// BatchNorm statistics and SGD momenta; for FFC the gallery and the pool
// (rows, LRU order and slots, pos bits); and the step. (The FC and PFC
// heads' weights are not part of it: streaming training runs FFC.)
func (e *Engine) StateParts() []StatePart {
	parts := []StatePart{
		{Name: "engine.json",
			Save: func(w io.Writer) error {
				return json.NewEncoder(w).Encode(engineMeta{Step: e.step, Model: ModelOf(e.opts)})
			},
			Load: func(r io.Reader) error {
				var m engineMeta
				if err := json.NewDecoder(r).Decode(&m); err != nil {
					return fmt.Errorf("engine.json: %w", err)
				}
				if want := ModelOf(e.opts); m.Model.Backbone != want.Backbone || m.Model.Dim != want.Dim || m.Model.Head != want.Head {
					return fmt.Errorf("engine.json: checkpoint of %+v, this engine is %+v", m.Model, want)
				}
				e.step = m.Step
				return nil
			}},
		e.paramsPart(ProbeFile, func() []*nn.Param { return nn.Tensors(e.probe) }),
		e.paramsPart("probe.momenta", func() []*nn.Param { return nn.Momenta(e.probe.Params()) }),
	}
	if e.gallery != nil {
		parts = append(parts, e.paramsPart(GalleryFile, func() []*nn.Param { return nn.Tensors(e.gallery) }),
			StatePart{Name: "pool.state", Save: e.pool.SaveState, Load: e.pool.LoadState})
	}
	return parts
}

func (e *Engine) paramsPart(name string, ps func() []*nn.Param) StatePart {
	return StatePart{
		Name: name,
		Save: func(w io.Writer) error { return nn.SaveParams(w, e.be, ps()) },
		Load: func(r io.Reader) error { return nn.LoadParams(r, e.be, ps()) },
	}
}
