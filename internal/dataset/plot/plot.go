// Package plot owns the pictures drawn of a data set for people: the
// histogram of images per class and the contact sheet of one class. It
// draws with image/draw and x/image's fixed 7×13 font, no plotting library.
//
// This package must not import the pipeline packages (producers, trainers,
// centers, kernels).
package plot

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"slices"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/ffc-stream/ffc/internal/dataset"
)

var (
	white = color.Gray{255}
	black = color.Gray{0}
	bar   = color.Gray{90}
	grid  = color.Gray{220}
)

// Histogram draws the distribution of images per class of m as a PNG: one
// bar per count (or per range of counts when they spread over more than 60
// values), with the class total, image total, median and 10th percentile
// in the title.
func Histogram(w io.Writer, m *dataset.Manifest) error {
	if len(m.Classes) == 0 {
		return fmt.Errorf("plot: %s set has no classes", m.Kind)
	}
	counts := make([]int, len(m.Classes))
	for i, c := range m.Classes {
		counts[i] = c.Images
	}
	sorted := slices.Clone(counts)
	slices.Sort(sorted)
	lo, hi := sorted[0], sorted[len(sorted)-1]
	width := max(1, int(math.Ceil(float64(hi-lo+1)/60)))
	bins := make([]int, (hi-lo)/width+1)
	for _, c := range counts {
		bins[(c-lo)/width]++
	}
	top := slices.Max(bins)

	const W, H, left, right, topM, bottom = 900, 420, 70, 20, 40, 50
	img := image.NewGray(image.Rect(0, 0, W, H))
	fill(img, img.Bounds(), white)
	pw, ph := W-left-right, H-topM-bottom
	// Horizontal grid lines and y labels at 0, 1/4 ... of the top bin.
	for k := 0; k <= 4; k++ {
		y := topM + ph - ph*k/4
		fill(img, image.Rect(left, y, W-right, y+1), grid)
		drawText(img, left-8-7*len(fmt.Sprint(top*k/4)), y+4, fmt.Sprint(top*k/4))
	}
	bw := float64(pw) / float64(len(bins))
	for i, n := range bins {
		x0 := left + int(float64(i)*bw)
		x1 := left + int(float64(i+1)*bw)
		h := ph * n / top
		fill(img, image.Rect(x0+1, topM+ph-h, max(x0+2, x1-1), topM+ph), bar)
	}
	fill(img, image.Rect(left, topM+ph, W-right, topM+ph+1), black)
	fill(img, image.Rect(left-1, topM, left, topM+ph+1), black)
	// x labels: about ten, at bin starts.
	step := max(1, len(bins)/10)
	for i := 0; i < len(bins); i += step {
		s := fmt.Sprint(lo + i*width)
		x := left + int((float64(i)+0.5)*bw) - 7*len(s)/2
		drawText(img, x, topM+ph+16, s)
	}
	drawText(img, left+pw/2-7*8, H-10, "images per class")
	drawText(img, 4, topM-8, "classes")
	sum := 0
	for _, c := range counts {
		sum += c
	}
	p10 := sorted[max(0, int(math.Ceil(0.1*float64(len(sorted))))-1)]
	med := sorted[max(0, int(math.Ceil(0.5*float64(len(sorted))))-1)]
	drawText(img, left, 18, fmt.Sprintf("%s: %d classes, %d images; images per class min %d, p10 %d, median %d, max %d",
		m.Kind, len(counts), sum, lo, p10, med, hi))
	return png.Encode(w, img)
}

// ContactSheet draws every image of class label in a grid, scaled by 2
// and shown as dark ink on white, each captioned with its font family (or
// its instance number for synthetic sets) and split.
func ContactSheet(w io.Writer, r *dataset.Reader, label int) error {
	if label < 0 || label >= len(r.Classes()) {
		return fmt.Errorf("plot: class %d outside 0..%d", label, len(r.Classes())-1)
	}
	idx := r.ClassImages(label)
	if len(idx) == 0 {
		return fmt.Errorf("plot: class %s has no images", r.Classes()[label].ID)
	}
	m := r.Manifest()
	const scale, capChars = 2, 16
	size := r.ImageSize()
	cellW := max(size*scale, capChars*7) + 8
	cellH := size*scale + 2*14 + 8
	cols := min(len(idx), max(1, 1200/cellW))
	rows := (len(idx) + cols - 1) / cols
	const header = 24
	img := image.NewGray(image.Rect(0, 0, cols*cellW, header+rows*cellH))
	fill(img, img.Bounds(), white)
	c := r.Classes()[label]
	title := fmt.Sprintf("class %s (label %d, %s): %d images", c.ID, c.Label, c.Split, len(idx))
	if c.Codepoint != 0 {
		title = fmt.Sprintf("class %s U+%04X (label %d, %s): %d images", c.ID, c.Codepoint, c.Label, c.Split, len(idx))
	}
	drawText(img, 4, 16, title)
	pix := make([]byte, size*size)
	for k, i := range idx {
		mt, err := r.ReadImage(i, pix)
		if err != nil {
			return err
		}
		x0 := (k%cols)*cellW + (cellW-size*scale)/2
		y0 := header + (k/cols)*cellH + 4
		for y := range size * scale {
			for x := range size * scale {
				img.Pix[(y0+y)*img.Stride+x0+x] = 255 - pix[(y/scale)*size+x/scale]
			}
		}
		name := fmt.Sprintf("#%d", mt.Source)
		if mt.Source < len(m.Fonts) {
			name = m.Fonts[mt.Source].Family
		}
		cx := (k % cols) * cellW
		drawText(img, cx+4, y0+size*scale+12, clip(name, capChars))
		drawText(img, cx+4, y0+size*scale+26, mt.Split.String())
	}
	return png.Encode(w, img)
}

// clip shortens s to n characters; the font has only ASCII, so others are
// replaced with '?'.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 32 || r > 126 {
			return '?'
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n-1] + "~"
	}
	return s
}

func fill(img draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func drawText(img draw.Image, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(black), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
