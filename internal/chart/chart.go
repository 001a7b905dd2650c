// Package chart owns the line charts ffc writes for people — the loss
// curve of a training run and the ROC of an evaluation — as PNG, drawn with
// image/draw and x/image's fixed 7×13 font, no plotting library.
//
// It imports nothing of the project.
package chart

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Series is one line.
type Series struct {
	Name string
	X, Y []float64
	// Color picks the palette's color Color−1 (0: the series' position),
	// so that related lines share one; Dashed draws the line dashed.
	Color  int
	Dashed bool
}

// Options labels a chart.
type Options struct {
	Title, XLabel, YLabel string
	// LogX puts the x axis on a log10 scale (x must be > 0).
	LogX bool
	// YMin, YMax fix the y range when YMax > YMin; otherwise it fits the data.
	YMin, YMax float64
}

var palette = []color.RGBA{{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {148, 103, 189, 255}, {255, 127, 14, 255}, {140, 86, 75, 255}}

// Lines draws the series as a PNG line chart.
func Lines(w io.Writer, opts Options, series ...Series) error {
	const W, H, left, right, top, bottom = 900, 480, 80, 30, 40, 60
	tx := func(x float64) float64 {
		if opts.LogX {
			return math.Log10(x)
		}
		return x
	}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	points := 0
	for _, s := range series {
		if len(s.X) != len(s.Y) {
			return fmt.Errorf("chart: series %q has %d x and %d y values", s.Name, len(s.X), len(s.Y))
		}
		for i := range s.X {
			x, y := tx(s.X[i]), s.Y[i]
			if math.IsNaN(x) || math.IsInf(x, 0) || math.IsNaN(y) || math.IsInf(y, 0) {
				continue
			}
			xmin, xmax, ymin, ymax = math.Min(xmin, x), math.Max(xmax, x), math.Min(ymin, y), math.Max(ymax, y)
			points++
		}
	}
	if points == 0 {
		return errors.New("chart: no finite points to draw")
	}
	if opts.YMax > opts.YMin {
		ymin, ymax = opts.YMin, opts.YMax
	}
	// Round ticks: the axes extend to the first and last of them.
	yt := niceTicks(ymin, ymax, 5)
	ymin, ymax = yt[0], yt[len(yt)-1]
	xt := niceTicks(xmin, xmax, 5)
	if opts.LogX { // a tick at each power of ten
		xt = powerTicks(xmin, xmax)
	}
	xmin, xmax = xt[0], xt[len(xt)-1]
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	px := func(x float64) int { return left + int((tx(x)-xmin)/(xmax-xmin)*pw) }
	py := func(y float64) int { return top + int((ymax-y)/(ymax-ymin)*ph) }
	grid := color.Gray{225}
	for _, y := range yt {
		yy := py(y)
		hline(img, left, W-right, yy, grid)
		text(img, 4, yy+4, tickLabel(y))
	}
	for _, xv := range xt {
		xx := left + int((xv-xmin)/(xmax-xmin)*pw)
		vline(img, xx, top, H-bottom, grid)
		label := tickLabel(xv)
		if opts.LogX {
			label = fmt.Sprintf("1e%d", int(math.Round(xv)))
		}
		text(img, xx-20, H-bottom+16, label)
	}
	hline(img, left, W-right, H-bottom, color.Black)
	vline(img, left, top, H-bottom, color.Black)
	text(img, left, 20, opts.Title)
	text(img, W/2-40, H-12, opts.XLabel)
	text(img, 4, top-8, opts.YLabel)
	for si, s := range series {
		c := palette[si%len(palette)]
		if s.Color > 0 {
			c = palette[(s.Color-1)%len(palette)]
		}
		var dash *int
		if s.Dashed {
			dash = new(int)
		}
		prevOK := false
		var x0, y0 int
		for i := range s.X {
			if math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) || (opts.LogX && s.X[i] <= 0) {
				prevOK = false
				continue
			}
			x1, y1 := px(s.X[i]), py(math.Max(ymin, math.Min(ymax, s.Y[i])))
			if prevOK {
				line(img, x0, y0, x1, y1, c, dash)
			}
			x0, y0, prevOK = x1, y1, true
		}
		if s.Name != "" {
			line(img, W-right-180, top+10+14*si, W-right-160, top+10+14*si, c, dash)
			text(img, W-right-155, top+14+14*si, s.Name)
		}
	}
	return png.Encode(w, img)
}

// niceTicks returns about n ticks at round values (multiples of 1, 2 or
// 5 × 10^k) whose first is ≤ lo and last ≥ hi.
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		d := math.Max(math.Abs(lo), 1) / 2
		lo, hi = lo-d, hi+d
	}
	raw := (hi - lo) / float64(max(1, n-1))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	var step float64 // the nearest nice step (Heckbert's rounding)
	switch f := raw / mag; {
	case f < 1.5:
		step = mag
	case f < 3:
		step = 2 * mag
	case f < 7:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	first, last := math.Floor(lo/step+1e-9), math.Ceil(hi/step-1e-9)
	ticks := make([]float64, 0, int(last-first)+1)
	for k := first; k <= last; k++ {
		v := k * step
		if math.Abs(v) < step*1e-9 {
			v = 0 // no -0
		}
		ticks = append(ticks, v)
	}
	return ticks
}

// powerTicks returns the integers from ⌊lo⌋ to ⌈hi⌉ (log10 values: the
// powers of ten), at least two.
func powerTicks(lo, hi float64) []float64 {
	a, b := math.Floor(lo), math.Ceil(hi)
	if b <= a {
		b = a + 1
	}
	var ticks []float64
	for k := a; k <= b; k++ {
		ticks = append(ticks, k)
	}
	return ticks
}

// tickLabel writes a round tick value shortly (0.001, 250, 1.5e+06).
func tickLabel(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func hline(img *image.RGBA, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

// dashLen is the length in pixels of a dash and of the gap after it.
const dashLen = 5

// line draws a segment with Bresenham's algorithm, two pixels thick;
// with dash set, dashed, *dash counting the pixels of the line so far.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color, dash *int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		if dash == nil || (*dash/dashLen)%2 == 0 {
			img.Set(x0, y0, c)
			img.Set(x0, y0+1, c)
		}
		if dash != nil {
			*dash++
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

func text(img draw.Image, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(color.Black), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
