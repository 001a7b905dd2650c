package engine

import (
	"bytes"
	"math"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/centers"
)

func poolBytes(t *testing.T, e *Engine) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := e.Pool().SaveState(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestProvisional: provisional centers are the gallery's eval-mode
// features of IDs not in the pool (reference: the gallery in eval mode run
// directly), unit norm, and the pool is left byte for byte as it was.
func TestProvisional(t *testing.T) {
	be := testBackend(t)
	e, err := New(be, mlpOptions(HeadFFC))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n, in := 8, 32*32
	x, y := sinCos(n * in)
	labels := []int64{1, 2, 3, 4, 5, 6, 7, 8}
	for range 2 { // the gallery's running statistics move in train mode
		if _, err := e.StepFFC(x, labels, y, labels); err != nil {
			t.Fatal(err)
		}
	}
	before := poolBytes(t, e)
	// Inputs: label 3 is held; 100 twice; 101 new.
	px := append(append(append(slices.Clone(y[:in]), y[in:2*in]...), y[2*in:3*in]...), y[3*in:4*in]...)
	changes, feats, err := e.Provisional(px, []int64{3, 100, 101, 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Label != 100 || changes[1].Label != 101 {
		t.Fatalf("changes %+v: want inserts of 100 and 101 only", changes)
	}
	for _, c := range changes {
		if c.Kind != centers.Inserted || c.Row != 0 || c.Slot < 0 {
			t.Errorf("change %+v: want an insert into row 0 of a slot", c)
		}
	}
	if !bytes.Equal(before, poolBytes(t, e)) {
		t.Fatal("Provisional changed the pool")
	}
	// Reference: the gallery in eval mode on the same two images.
	want := make([]float32, 2*e.opts.Dim)
	ref := append(slices.Clone(y[in:2*in]), y[2*in:3*in]...)
	if err := e.be.Upload(e.x, ref); err != nil {
		t.Fatal(err)
	}
	out, err := e.gallery.Forward(e.x, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := e.be.View(out, 0, len(want))
	if err := e.be.Download(want, v); err != nil {
		t.Fatal(err)
	}
	d := e.opts.Dim
	for _, c := range changes {
		row := feats[c.Index*d : (c.Index+1)*d]
		var norm float64
		for k, f := range row {
			norm += float64(f) * float64(f)
			if diff := math.Abs(float64(f) - float64(want[c.Index*d+k])); diff > 1e-5 {
				t.Fatalf("feature %d of label %d: %v, reference %v", k, c.Label, f, want[c.Index*d+k])
			}
		}
		if math.Abs(math.Sqrt(norm)-1) > 1e-4 {
			t.Errorf("label %d: norm %v, want 1", c.Label, math.Sqrt(norm))
		}
	}
	// Remove drops a held label and reports an absent one.
	if c, ok, err := e.Remove(3); err != nil || !ok || c.Kind != centers.Removed {
		t.Fatalf("Remove(3) = %+v, %v, %v", c, ok, err)
	}
	if _, ok, _ := e.Remove(3); ok {
		t.Fatal("Remove(3) twice reported it held")
	}
}
