package synth

import (
	"math"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// Every product below is wrapped in float64(...) before it is added or
// subtracted: an explicit conversion rounds it, which keeps the compiler
// from fusing it into an FMA (Go spec, "Floating-point operators"), so the
// bytes do not depend on the architecture.

const (
	maxStrokes = 6
	maxDots    = 2
	polyPoints = 9 // a stroke is drawn as 8 straight pieces
)

// rng is SplitMix64.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return dataset.Mix64(r.s)
}

// float is uniform in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// between is uniform in [a, b).
func (r *rng) between(a, b float64) float64 { return a + float64((b-a)*r.float()) }

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

type point struct{ x, y float64 }

// prototype is an identity's design, in unit coordinates ([0,1]², y down).
type prototype struct {
	strokes [maxStrokes]stroke
	ns      int
	dots    [maxDots]dot
	nd      int
}

type stroke struct {
	pts   [polyPoints]point
	width float64
}

type dot struct {
	c point
	r float64
}

func newPrototype(h uint64) prototype {
	r := rng{h}
	var p prototype
	p.ns = 3 + r.intn(maxStrokes-2)
	for i := range p.ns {
		var a, b point
		for try := 0; ; try++ {
			a = point{r.between(0.18, 0.82), r.between(0.18, 0.82)}
			b = point{r.between(0.18, 0.82), r.between(0.18, 0.82)}
			dx, dy := b.x-a.x, b.y-a.y
			if float64(dx*dx)+float64(dy*dy) >= 0.04 || try == 8 {
				break
			}
		}
		// Control point: the midpoint, pushed sideways for a curved stroke.
		bend := 0.0
		if r.intn(2) == 0 {
			bend = r.between(-0.35, 0.35)
		}
		c := point{
			float64((a.x+b.x)/2) - float64(bend*(b.y-a.y)),
			float64((a.y+b.y)/2) + float64(bend*(b.x-a.x)),
		}
		s := &p.strokes[i]
		s.width = r.between(0.045, 0.085)
		for k := range polyPoints {
			t := float64(k) / (polyPoints - 1)
			u := 1 - t
			w0, w1, w2 := float64(u*u), float64(2*float64(u*t)), float64(t*t)
			s.pts[k] = point{
				float64(w0*a.x) + float64(w1*c.x) + float64(w2*b.x),
				float64(w0*a.y) + float64(w1*c.y) + float64(w2*b.y),
			}
		}
	}
	p.nd = r.intn(maxDots + 1)
	for i := range p.nd {
		p.dots[i] = dot{point{r.between(0.2, 0.8), r.between(0.2, 0.8)}, r.between(0.03, 0.07)}
	}
	return p
}

// augment is one instance's distortion of the prototype.
type augment struct {
	m00, m01, m10, m11 float64 // rotation × scale
	scale              float64
	tx, ty             float64 // shift, unit coordinates
	widthMul           float64
	jitter             [maxStrokes][2]point // offsets of each stroke's ends
	ink                float64              // 0..255
	noise              int                  // amplitude in grey levels
	noiseSeed          uint64
}

func newAugment(h uint64) augment {
	r := rng{h}
	var a augment
	th := r.between(-12, 12) * math.Pi / 180
	a.scale = r.between(0.88, 1.12)
	cos, sin := math.Cos(th), math.Sin(th)
	a.m00, a.m01 = float64(a.scale*cos), -float64(a.scale*sin)
	a.m10, a.m11 = float64(a.scale*sin), float64(a.scale*cos)
	a.tx, a.ty = r.between(-2.5, 2.5)/32, r.between(-2.5, 2.5)/32
	a.widthMul = r.between(0.85, 1.15)
	for i := range a.jitter {
		for e := range a.jitter[i] {
			a.jitter[i][e] = point{r.between(-0.02, 0.02), r.between(-0.02, 0.02)}
		}
	}
	a.ink = r.between(200, 255)
	a.noise = r.intn(25)
	a.noiseSeed = r.next()
	return a
}

// apply maps a unit-coordinate point to pixels: rotate and scale about the
// centre, shift, then scale to the image.
func (a *augment) apply(p point, size float64) point {
	dx, dy := p.x-0.5, p.y-0.5
	x := float64(a.m00*dx) + float64(a.m01*dy) + 0.5 + a.tx
	y := float64(a.m10*dx) + float64(a.m11*dy) + 0.5 + a.ty
	return point{float64(x * size), float64(y * size)}
}

// draw renders prototype p through augmentation a into dst (size² bytes).
func draw(dst []byte, size int, p *prototype, a *augment) {
	clear(dst)
	fs := float64(size)
	for i := range p.ns {
		s := &p.strokes[i]
		var pts [polyPoints]point
		for k, q := range s.pts {
			// Ends move by the jitter; points between move by a blend.
			t := float64(k) / (polyPoints - 1)
			j0, j1 := a.jitter[i][0], a.jitter[i][1]
			q.x += float64((1-t)*j0.x) + float64(t*j1.x)
			q.y += float64((1-t)*j0.y) + float64(t*j1.y)
			pts[k] = a.apply(q, fs)
		}
		hw := float64(float64(float64(s.width*a.scale)*a.widthMul)*fs) / 2
		drawPolyline(dst, size, pts[:], hw, a.ink)
	}
	for i := range p.nd {
		d := &p.dots[i]
		c := a.apply(d.c, fs)
		drawDot(dst, size, c, float64(float64(d.r*a.scale)*fs), a.ink)
	}
	if a.noise > 0 {
		r := rng{a.noiseSeed}
		for i := 0; i < len(dst); i += 4 {
			v := r.next()
			for k := 0; k < 4 && i+k < len(dst); k++ {
				// Triangular noise in [-noise, noise] from two bytes.
				n := (int(v>>(16*k))&0xff + int(v>>(16*k+8))&0xff - 255) * a.noise / 255
				dst[i+k] = byte(min(255, max(0, int(dst[i+k])+n)))
			}
		}
	}
}

// box returns the pixel rows/columns within reach of [lo, hi] ± pad.
func box(lo, hi, pad float64, size int) (int, int) {
	return max(0, int(math.Floor(lo-pad))), min(size-1, int(math.Ceil(hi+pad)))
}

func drawPolyline(dst []byte, size int, pts []point, hw, ink float64) {
	minX, minY, maxX, maxY := pts[0].x, pts[0].y, pts[0].x, pts[0].y
	for _, q := range pts[1:] {
		minX, maxX = min(minX, q.x), max(maxX, q.x)
		minY, maxY = min(minY, q.y), max(maxY, q.y)
	}
	x0, x1 := box(minX, maxX, hw+1, size)
	y0, y1 := box(minY, maxY, hw+1, size)
	for y := y0; y <= y1; y++ {
		py := float64(y) + 0.5
		for x := x0; x <= x1; x++ {
			px := float64(x) + 0.5
			d2 := math.Inf(1)
			for k := 1; k < len(pts); k++ {
				d2 = min(d2, segDist2(px, py, pts[k-1], pts[k]))
			}
			plot(dst, y*size+x, hw+0.5-math.Sqrt(d2), ink)
		}
	}
}

func drawDot(dst []byte, size int, c point, r, ink float64) {
	x0, x1 := box(c.x, c.x, r+1, size)
	y0, y1 := box(c.y, c.y, r+1, size)
	for y := y0; y <= y1; y++ {
		dy := float64(y) + 0.5 - c.y
		for x := x0; x <= x1; x++ {
			dx := float64(x) + 0.5 - c.x
			plot(dst, y*size+x, r+0.5-math.Sqrt(float64(dx*dx)+float64(dy*dy)), ink)
		}
	}
}

// plot raises pixel i to coverage cov (clamped to [0,1]) of ink.
func plot(dst []byte, i int, cov, ink float64) {
	if cov <= 0 {
		return
	}
	v := byte(float64(min(cov, 1)*ink) + 0.5)
	dst[i] = max(dst[i], v)
}

// segDist2 is the squared distance from p to the segment ab.
func segDist2(px, py float64, a, b point) float64 {
	dx, dy := b.x-a.x, b.y-a.y
	qx, qy := px-a.x, py-a.y
	l2 := float64(dx*dx) + float64(dy*dy)
	t := 0.0
	if l2 > 0 {
		t = min(1, max(0, (float64(qx*dx)+float64(qy*dy))/l2))
	}
	ex, ey := qx-float64(t*dx), qy-float64(t*dy)
	return float64(ex*ex) + float64(ey*ey)
}
