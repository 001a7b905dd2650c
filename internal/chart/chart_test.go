package chart

import (
	"bytes"
	"image/png"
	"math"
	"testing"
)

func TestLinesDrawsThePoints(t *testing.T) {
	var buf bytes.Buffer
	s := Series{Name: "loss", X: []float64{0, 1, 2, 3}, Y: []float64{4, 3, 2, 1}}
	if err := Lines(&buf, Options{Title: "t", XLabel: "step", YLabel: "loss"}, s); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// The line starts top-left of the plot area and ends bottom-right: the
	// pixel at the first point is the series colour.
	r, g, b, _ := img.At(80, 40).RGBA()
	if r>>8 != 31 || g>>8 != 119 || b>>8 != 180 {
		t.Errorf("first point pixel is %d,%d,%d, want the series colour", r>>8, g>>8, b>>8)
	}
}

func TestLinesErrors(t *testing.T) {
	var buf bytes.Buffer
	if err := Lines(&buf, Options{}, Series{X: []float64{1}, Y: nil}); err == nil {
		t.Error("mismatched series accepted")
	}
	if err := Lines(&buf, Options{}, Series{X: []float64{1}, Y: []float64{math.NaN()}}); err == nil {
		t.Error("no finite points accepted")
	}
	if err := Lines(&buf, Options{LogX: true}, Series{X: []float64{1e-4, 1e-2, 1}, Y: []float64{0.1, 0.5, 1}}); err != nil {
		t.Errorf("log x: %v", err)
	}
}
