package plot

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"testing"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
)

func TestPlots(t *testing.T) {
	g, err := synth.New(synth.Options{Seed: 5, IDs: 500, Alpha: 1.5, Min: 1, Max: 40})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := synth.WriteSample(context.Background(), g, dir, synth.SampleOptions{IDs: 300, OpensetFrac: 0.1, HeldoutFrac: 0.2}); err != nil {
		t.Fatal(err)
	}
	r, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var h bytes.Buffer
	if err := Histogram(&h, r.Manifest()); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(h.Bytes())); err != nil {
		t.Fatalf("histogram is not a PNG: %v", err)
	}
	// The biggest class makes the widest sheet.
	big := 0
	for i, c := range r.Classes() {
		if c.Images > r.Classes()[big].Images {
			big = i
		}
	}
	var s bytes.Buffer
	if err := ContactSheet(&s, r, big); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(s.Bytes()))
	if err != nil {
		t.Fatalf("contact sheet is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 64 || b.Dy() < 64 {
		t.Errorf("contact sheet is %v", b)
	}
	if out := os.Getenv("PLOT_OUT"); out != "" {
		os.WriteFile(out+"-hist.png", h.Bytes(), 0o644)
		os.WriteFile(out+"-sheet.png", s.Bytes(), 0o644)
	}
	if err := ContactSheet(&s, r, len(r.Classes())); err == nil {
		t.Error("class past the end: no error")
	}
	if err := Histogram(&s, &dataset.Manifest{}); err == nil {
		t.Error("empty manifest: no error")
	}
}
