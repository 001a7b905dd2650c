package glyphs

import (
	"errors"
	"fmt"
	"image"
	"image/draw"
	"math"

	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// renderVersion changes whenever Renderer output changes, so render caches
// written by an older version are not reused.
const renderVersion = 1

// Outcome of rendering one character.
type Outcome uint8

const (
	// Rendered: the image holds the glyph.
	Rendered Outcome = iota
	// Unmapped: the font's cmap has no glyph for the character (index 0).
	Unmapped
	// Empty: the glyph has fewer than MinInk inked pixels.
	Empty
)

// MinInk is the least number of pixels at or above 128 a rendered image
// must have; fewer and the glyph counts as empty (a space or a blank box).
const MinInk = 4

// Renderer draws the glyphs of one face. It is not safe for concurrent use;
// use one per goroutine.
type Renderer struct {
	font   *sfnt.Font
	size   int
	margin int
	ppem   fixed.Int26_6
	buf    sfnt.Buffer
	ras    *vector.Rasterizer
	mask   *image.Alpha
}

// Margin is the margin in pixels on each side for an image of the given
// side: size/16, at least 1.
func Margin(size int) int { return max(1, size/16) }

// NewRenderer prepares to draw size×size images of f's glyphs.
func NewRenderer(f *sfnt.Font, size int) (*Renderer, error) {
	if size < 8 || size > 1024 {
		return nil, fmt.Errorf("glyphs: image size %d outside 8..1024", size)
	}
	if f.UnitsPerEm() == 0 {
		return nil, errors.New("glyphs: font has 0 units per em")
	}
	m := Margin(size)
	return &Renderer{
		font:   f,
		size:   size,
		margin: m,
		ppem:   fixed.I(size - 2*m),
		ras:    vector.NewRasterizer(size, size),
		mask:   image.NewAlpha(image.Rect(0, 0, size, size)),
	}, nil
}

// Render draws ch into dst (size² bytes, ink 255). The em box is scaled to
// size-2·margin pixels for every glyph of the face, and the glyph's ink
// bounding box (of its outline's control points) is centred; a glyph whose
// ink would overflow the image less a 1-pixel border is shrunk to fit.
func (r *Renderer) Render(ch rune, dst []byte) (Outcome, error) {
	gi, err := r.font.GlyphIndex(&r.buf, ch)
	if err != nil {
		return 0, fmt.Errorf("glyphs: cmap lookup %U: %w", ch, err)
	}
	if gi == 0 {
		return Unmapped, nil
	}
	segs, err := r.font.LoadGlyph(&r.buf, gi, r.ppem, nil)
	if err != nil {
		return 0, fmt.Errorf("glyphs: load glyph %d for %U: %w", gi, ch, err)
	}
	clear(dst[:r.size*r.size])
	if len(segs) == 0 {
		return Empty, nil
	}
	minX, minY := fixed.Int26_6(math.MaxInt32), fixed.Int26_6(math.MaxInt32)
	maxX, maxY := fixed.Int26_6(math.MinInt32), fixed.Int26_6(math.MinInt32)
	for _, s := range segs {
		for _, p := range s.Args[:nargs(s.Op)] {
			minX, maxX = min(minX, p.X), max(maxX, p.X)
			minY, maxY = min(minY, p.Y), max(maxY, p.Y)
		}
	}
	w, h := float32(maxX-minX)/64, float32(maxY-minY)/64
	if w <= 0 && h <= 0 {
		return Empty, nil
	}
	k := float32(1)
	if lim := float32(r.size - 2); w > lim || h > lim {
		k = lim / max(w, h)
	}
	cx, cy := float32(minX+maxX)/128, float32(minY+maxY)/128
	half := float32(r.size) / 2
	pt := func(p fixed.Point26_6) (float32, float32) {
		return (float32(p.X)/64-cx)*k + half, (float32(p.Y)/64-cy)*k + half
	}
	r.ras.Reset(r.size, r.size)
	r.ras.DrawOp = draw.Src
	for _, s := range segs {
		switch s.Op {
		case sfnt.SegmentOpMoveTo:
			r.ras.ClosePath() // MoveTo does not close the previous contour
			r.ras.MoveTo(pt(s.Args[0]))
		case sfnt.SegmentOpLineTo:
			r.ras.LineTo(pt(s.Args[0]))
		case sfnt.SegmentOpQuadTo:
			x1, y1 := pt(s.Args[0])
			x2, y2 := pt(s.Args[1])
			r.ras.QuadTo(x1, y1, x2, y2)
		case sfnt.SegmentOpCubeTo:
			x1, y1 := pt(s.Args[0])
			x2, y2 := pt(s.Args[1])
			x3, y3 := pt(s.Args[2])
			r.ras.CubeTo(x1, y1, x2, y2, x3, y3)
		}
	}
	r.ras.ClosePath()
	r.ras.Draw(r.mask, r.mask.Bounds(), image.Opaque, image.Point{})
	copy(dst, r.mask.Pix)
	if inked(dst) < MinInk {
		return Empty, nil
	}
	return Rendered, nil
}

func nargs(op sfnt.SegmentOp) int {
	switch op {
	case sfnt.SegmentOpQuadTo:
		return 2
	case sfnt.SegmentOpCubeTo:
		return 3
	}
	return 1
}

func inked(img []byte) int {
	n := 0
	for _, v := range img {
		if v >= 128 {
			n++
		}
	}
	return n
}
