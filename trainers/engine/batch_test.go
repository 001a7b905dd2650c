package engine

import (
	"context"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// TestDualBatchLayout: x = [a1; h1], y = [a2; h2] with the dual loader;
// x and y are B instances each without it, and a1, a2 with the id loader
// alone.
func TestDualBatchLayout(t *testing.T) {
	img := func(v byte) []byte { return []byte{v, v} }
	scaled := func(vs ...byte) []float32 {
		var out []float32
		for _, v := range vs {
			out = nn.AppendScaled(out, img(v))
		}
		return out
	}
	for _, c := range []struct {
		name           string
		dual, idOnly   bool
		pairs, inst    int
		xl, yl         []int64
		xpix, ypix     []byte
		pairAfterFull  bool
		wantInstFilled int
	}{
		{name: "dual", dual: true, pairs: 4, inst: 4, xl: []int64{0, 1, 2, 3, 10, 11}, yl: []int64{0, 1, 2, 3, 12, 13},
			xpix: []byte{0, 1, 2, 3, 10, 11}, ypix: []byte{100, 101, 102, 103, 12, 13}},
		{name: "instances only", dual: false, pairs: 0, inst: 8, xl: []int64{10, 11, 12, 13}, yl: []int64{14, 15, 16, 17},
			xpix: []byte{10, 11, 12, 13}, ypix: []byte{14, 15, 16, 17}},
		{name: "id loader only", dual: true, idOnly: true, pairs: 4, inst: 0, xl: []int64{0, 1, 2, 3}, yl: []int64{0, 1, 2, 3},
			xpix: []byte{0, 1, 2, 3}, ypix: []byte{100, 101, 102, 103}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDualBatch(4, 2, c.dual)
			if c.idOnly {
				d = NewIDBatch(4, 2)
			}
			for round := 0; round < 2; round++ { // Reset reuses the batch
				d.Reset()
				for i := 0; i < c.pairs; i++ {
					if err := d.AddPair(int64(i), img(byte(i)), img(byte(100+i))); err != nil {
						t.Fatal(err)
					}
				}
				if err := d.AddPair(9, img(9), img(9)); err == nil {
					t.Error("a pair past the batch accepted")
				}
				if _, _, _, _, err := d.Inputs(); c.inst > 0 && err == nil {
					t.Error("Inputs of a batch without instances")
				}
				for i := 0; i < c.inst; i++ {
					if err := d.AddInstance(int64(10+i), img(byte(10+i))); err != nil {
						t.Fatal(err)
					}
				}
				if d.NeedInstances() || !d.Full() {
					t.Fatalf("not full after %d instances", c.inst)
				}
				if err := d.AddInstance(9, img(9)); err == nil {
					t.Error("an instance past the batch accepted")
				}
				x, xl, y, yl, err := d.Inputs()
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(xl, c.xl) || !slices.Equal(yl, c.yl) || !slices.Equal(x, scaled(c.xpix...)) || !slices.Equal(y, scaled(c.ypix...)) {
					t.Errorf("round %d: x %v %v, y %v %v", round, xl, x, yl, y)
				}
			}
			if err := NewDualBatch(4, 2, true).AddPair(1, []byte{1}, img(1)); err == nil {
				t.Error("an image of the wrong size accepted")
			}
		})
	}
}

// TestNewFailsWithoutPanic: a head constructor that fails must give an
// error from New, not a typed nil that Close then calls (it panicked).
func TestNewFailsWithoutPanic(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	for _, o := range []Options{
		{Head: HeadPFC, Classes: 10, PFCRate: 1.5},                                        // NewPFC refuses the rate
		{Head: HeadFC, Classes: 10, Margin: kernels.Margin{Kind: kernels.CosFace, S: -1}}, // NewFC refuses the margin
		{Head: HeadFFC, Pool: 12, Margin: kernels.Margin{Kind: kernels.CosFace, S: -1}},   // NewFFC refuses the margin
		{Head: HeadFFC, Pool: 12, Backbone: "mlp", InLen: -1},                             // no input length
	} {
		if o.Backbone == "" {
			o.Backbone, o.InLen = "mlp", 4
		}
		o.Dim, o.Batch = 4, 4
		e, err := New(be, o)
		if err == nil {
			e.Close()
			t.Errorf("%+v: accepted", o)
		}
	}
}

// TestTrainLoaders: each loader setting fills its steps with what it
// should (images counted per step: 3·B dual, 2·B for either loader alone),
// and the id loader alone needs the dual loader's id half.
func TestTrainLoaders(t *testing.T) {
	ds := synthSet(t, 30, 4, 25)
	for _, c := range []struct {
		name         string
		dual, idOnly bool
		perStep      int
	}{
		{"dual", true, false, 3 * 16},
		{"instances only", false, false, 2 * 16},
		{"id loader only", true, true, 2 * 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := New(testBackend(t), mlpOptions(HeadFFC))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			res, err := Train(context.Background(), e, ds, TrainOptions{Steps: 3, DualLoader: c.dual, IDOnly: c.idOnly, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			if res.Steps != 3 || res.Images != 3*c.perStep {
				t.Errorf("%d steps of %d images, want 3 of %d", res.Steps, res.Images, c.perStep)
			}
		})
	}
	e, err := New(testBackend(t), mlpOptions(HeadFFC))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := Train(context.Background(), e, ds, TrainOptions{Steps: 1, IDOnly: true}); err == nil {
		t.Error("the id loader alone without the dual loader: no error")
	}
}
