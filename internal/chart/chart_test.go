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

// TestLinesColorAndDash: a series with Color 2 is drawn in the
// palette's second color, and a dashed horizontal line leaves gaps
// where a solid one has none.
func TestLinesColorAndDash(t *testing.T) {
	row := func(s Series) (colored, blank int) {
		t.Helper()
		var buf bytes.Buffer
		if err := Lines(&buf, Options{YMin: 0, YMax: 2}, s); err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		// y = 1 is the middle of the plot area (top 40, bottom 420).
		for x := 100; x < 800; x++ {
			r, g, b, _ := img.At(x, 230).RGBA()
			switch c := palette[1]; {
			case r>>8 == uint32(c.R) && g>>8 == uint32(c.G) && b>>8 == uint32(c.B):
				colored++
			case r>>8 > 200 && g>>8 > 200 && b>>8 > 200:
				blank++
			}
		}
		return colored, blank
	}
	flat := Series{X: []float64{0, 10}, Y: []float64{1, 1}, Color: 2}
	solid, _ := row(flat)
	flat.Dashed = true
	dashed, gaps := row(flat)
	if solid < 690 || dashed < 300 || dashed > 400 || gaps < 300 {
		t.Errorf("solid %d colored pixels of 700; dashed %d colored and %d blank, want about half each", solid, dashed, gaps)
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

// TestNiceTicks: ticks at multiples of 1, 2 or 5 × 10^k that cover the
// range, with no odd values like 0.7375.
func TestNiceTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 3, []float64{0, 1, 2, 3}},
		{0.12, 0.97, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{13, 811, []float64{0, 200, 400, 600, 800, 1000}},
		{-0.3, 0.3, []float64{-0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3}},
		{5, 5, []float64{2, 3, 4, 5, 6, 7, 8}},
	} {
		got := niceTicks(c.lo, c.hi, 5)
		if len(got) != len(c.want) {
			t.Errorf("niceTicks(%g, %g) = %v, want %v", c.lo, c.hi, got, c.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-c.want[i]) > 1e-9 {
				t.Errorf("niceTicks(%g, %g) = %v, want %v", c.lo, c.hi, got, c.want)
				break
			}
		}
	}
	if got := powerTicks(-4.2, -0.1); len(got) != 6 || got[0] != -5 || got[5] != 0 {
		t.Errorf("powerTicks(-4.2, -0.1) = %v, want -5..0", got)
	}
}

func TestTickLabel(t *testing.T) {
	for v, want := range map[float64]string{3 * 0.1: "0.3", -0.30000000000000004: "-0.3", 1000: "1000", 0.001: "0.001"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%v) = %q, want %q", v, got, want)
		}
	}
}
