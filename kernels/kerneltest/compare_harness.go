package kerneltest

import (
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
)

// The harness of Compare: buffers on both backends, poisoned outputs
// and tails, and the checks that compare what the two backends wrote.

// poisonBits is the NaN that fills outputs before an operation and the
// tails of every buffer: a quiet NaN with a payload no arithmetic produces,
// so that "left alone" can be told from "wrote a NaN".
const poisonBits = 0x7fc5a5a5

// poisonIndex fills index outputs and tails.
const poisonIndex = -0x5a5a5a5a

// tail is the number of poisoned elements after the used part of every
// buffer: an operation must neither read them (inputs: NaN would
// propagate) nor write them.
const tail = 3

var poison = math.Float32frombits(poisonBits)

func isPoison(v float32) bool { return math.Float32bits(v) == poisonBits }

func poisoned(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = poison
	}
	return x
}

// bufs is a buffer on each backend: [0] on got, [1] on want.
type bufs [2]kernels.Buffer

// ibufs is an index buffer on each backend.
type ibufs [2]kernels.IndexBuffer

var sideName = [2]string{"got", "want"}

// cmp runs the cases of one operation.
type cmp struct {
	r      reporter
	op     string
	be     [2]kernels.Backend
	rng    *mrand.Rand
	tol    tolerances
	rounds int
	large  bool

	shape  string // the current case, for messages
	broken bool   // a backend error ended the current case
	owned  []bufs
	ownedI []ibufs
}

// each runs fn as one case described by shape, then frees its buffers.
func (c *cmp) each(shape string, fn func()) {
	c.shape, c.broken = shape, false
	defer c.release()
	fn()
}

func (c *cmp) release() {
	for _, b := range c.owned {
		for i, be := range c.be {
			if err := be.Free(b[i]); err != nil {
				c.r.Errorf("%s %s: Free on %s (%s): %v", c.op, c.shape, sideName[i], be.Name(), err)
			}
		}
	}
	for _, b := range c.ownedI {
		for i, be := range c.be {
			if err := be.FreeIndex(b[i]); err != nil {
				c.r.Errorf("%s %s: FreeIndex on %s (%s): %v", c.op, c.shape, sideName[i], be.Name(), err)
			}
		}
	}
	c.owned, c.ownedI = c.owned[:0], c.ownedI[:0]
}

// fail reports a backend error and ends the case.
func (c *cmp) fail(side int, what string, err error) {
	c.r.Helper()
	c.r.Errorf("%s %s: %s on %s (%s): %v", c.op, c.shape, what, sideName[side], c.be[side].Name(), err)
	c.broken = true
}

// do runs fn on got, then on want, each followed by Sync.
func (c *cmp) do(fn func(be kernels.Backend, s int) error) bool {
	c.r.Helper()
	if c.broken {
		return false
	}
	for s, be := range c.be {
		err := fn(be, s)
		if err == nil {
			err = be.Sync()
		}
		if err != nil {
			c.fail(s, c.op, err)
			return false
		}
	}
	return true
}

// allocBoth allocates len(host) elements on got, then on want, with alloc
// and, unless put is nil, uploads host into each right after allocating
// it; allocName and putName name the methods in messages. After a
// failure, which it reports and which ends the case, it returns the
// buffers allocated so far and ok = false.
func allocBoth[B, T any](c *cmp, host []T, alloc func(kernels.Backend, int) (B, error), allocName string,
	put func(kernels.Backend, B, []T) error, putName string) (b [2]B, ok bool) {
	c.r.Helper()
	for s, be := range c.be {
		buf, err := alloc(be, len(host))
		if err != nil {
			c.fail(s, allocName, err)
			return b, false
		}
		b[s] = buf
		if put == nil {
			continue
		}
		if err := put(be, buf, host); err != nil {
			c.fail(s, putName, err)
			return b, false
		}
	}
	return b, true
}

// up uploads x followed by a poisoned tail to fresh buffers on both sides.
func (c *cmp) up(x []float32) bufs {
	c.r.Helper()
	if c.broken {
		return bufs{}
	}
	b, ok := allocBoth(c, slices.Concat(x, poisoned(tail)), kernels.Backend.Alloc, "Alloc", kernels.Backend.Upload, "Upload")
	if ok {
		c.owned = append(c.owned, b)
	}
	return b
}

// out returns n poisoned elements (and the tail) on both sides.
func (c *cmp) out(n int) bufs { return c.up(poisoned(n)) }

// upIdx uploads x followed by a poisoned tail.
func (c *cmp) upIdx(x []int32) ibufs {
	c.r.Helper()
	if c.broken {
		return ibufs{}
	}
	host := slices.Concat(x, []int32{poisonIndex, poisonIndex, poisonIndex})
	b, ok := allocBoth(c, host, kernels.Backend.AllocIndex, "AllocIndex", kernels.Backend.UploadIndex, "UploadIndex")
	if ok {
		c.ownedI = append(c.ownedI, b)
	}
	return b
}

// outIdx returns n poisoned indices on both sides.
func (c *cmp) outIdx(n int) ibufs {
	x := make([]int32, n)
	for i := range x {
		x[i] = poisonIndex
	}
	return c.upIdx(x)
}

// get downloads the whole of p on both sides and checks what must be left
// alone: elements past n and elements where want still holds the poison
// must be bit for bit the same on got. It returns the first n elements.
func (c *cmp) get(what string, p bufs, n int) (g, w []float32, ok bool) {
	c.r.Helper()
	if c.broken {
		return nil, nil, false
	}
	var host [2][]float32
	for s, be := range c.be {
		host[s] = make([]float32, p[s].Len())
		if err := be.Download(host[s], p[s]); err != nil {
			c.fail(s, "Download of "+what, err)
			return nil, nil, false
		}
	}
	g, w = host[0], host[1]
	for i := range w {
		if (i >= n || isPoison(w[i])) && math.Float32bits(g[i]) != math.Float32bits(w[i]) {
			where := "an element the reference leaves alone"
			if i >= n {
				where = fmt.Sprintf("past the %d elements of the operation", n)
			}
			c.r.Errorf("%s %s: %s: [%d] is %s but got %v (bits %#x), want %v (bits %#x)",
				c.op, c.shape, what, i, where, g[i], math.Float32bits(g[i]), w[i], math.Float32bits(w[i]))
			return nil, nil, false
		}
	}
	return g[:n], w[:n], true
}

// check compares the first n elements of p on both sides within tol
// (0: exactly).
func (c *cmp) check(what string, p bufs, n int, tol float64) {
	c.r.Helper()
	c.checkScaled(what, p, n, tol, 0)
}

// checkScaled is check with the error measured against max(‖want‖, scale).
func (c *cmp) checkScaled(what string, p bufs, n int, tol, scale float64) {
	c.r.Helper()
	if g, w, ok := c.get(what, p, n); ok {
		c.closeScaled(what, g, w, tol, scale)
	}
}

// close compares got with want: non-finite values must match, and with
// tol = 0 everything must be equal; otherwise the relative L2 error must
// be ≤ tol and no element may be off by more than elemGuard·tol·max|want|.
func (c *cmp) close(what string, g, w []float32, tol float64) bool {
	c.r.Helper()
	return c.closeScaled(what, g, w, tol, 0)
}

// closeScaled is close with the L2 error relative to max(‖want‖₂, scale)
// and the per-element guard relative to max(max|want|, scale/√n): scale is
// the natural size of the result where it may cancel (see gemmScale).
func (c *cmp) closeScaled(what string, g, w []float32, tol, scale float64) bool {
	c.r.Helper()
	var num, den, maxErr, maxW float64
	worst := -1
	for i, wv := range w {
		gv := g[i]
		g64, w64 := float64(gv), float64(wv)
		if finite(w64) != finite(g64) || (!finite(w64) && !(g64 == w64 || (gv != gv && wv != wv))) {
			c.r.Errorf("%s %s: %s: [%d] = %v, want %v", c.op, c.shape, what, i, gv, wv)
			return false
		}
		if !finite(w64) {
			continue
		}
		d := math.Abs(g64 - w64)
		if tol == 0 && d != 0 {
			c.r.Errorf("%s %s: %s: [%d] = %v, want exactly %v", c.op, c.shape, what, i, gv, wv)
			return false
		}
		num += d * d
		den += w64 * w64
		maxW = max(maxW, math.Abs(w64))
		if d > maxErr {
			maxErr, worst = d, i
		}
	}
	if tol == 0 || worst < 0 {
		return true
	}
	if len(w) > 0 {
		maxW = max(maxW, scale/math.Sqrt(float64(len(w))))
	}
	rel := math.Sqrt(num)
	if d := max(math.Sqrt(den), scale); d > 0 {
		rel /= d
	}
	if rel > tol || (maxW > 0 && maxErr > elemGuard*tol*maxW) {
		c.r.Errorf("%s %s: %s: relative L2 error %.3g (tolerance %.3g) over %d elements; worst [%d]: got %v, want %v (|Δ| = %.3g = %.3g·max|want|)",
			c.op, c.shape, what, rel, tol, len(w), worst, g[worst], w[worst], maxErr, maxErr/max(maxW, math.SmallestNonzeroFloat64))
		return false
	}
	return true
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// rowsOf gathers the listed rows of a rows×cols matrix.
func rowsOf(x []float32, cols int, rows []int) []float32 {
	out := make([]float32, 0, len(rows)*cols)
	for _, r := range rows {
		out = append(out, x[r*cols:(r+1)*cols]...)
	}
	return out
}

// keeps checks that the listed rows of p on got still hold host's values
// bit for bit (poison, or the original input of an in-place operation).
func (c *cmp) keeps(what string, p bufs, cols int, rows []int, host []float32) {
	c.r.Helper()
	if c.broken || len(rows) == 0 {
		return
	}
	g := make([]float32, p[0].Len())
	if err := c.be[0].Download(g, p[0]); err != nil {
		c.fail(0, "Download of "+what, err)
		return
	}
	for _, r := range rows {
		for j := range cols {
			i := r*cols + j
			if math.Float32bits(g[i]) != math.Float32bits(host[i]) {
				c.r.Errorf("%s %s: %s: row %d must be left alone, but [%d][%d] = %v, was %v",
					c.op, c.shape, what, r, r, j, g[i], host[i])
				return
			}
		}
	}
}

// unchanged checks that an input still holds host exactly on both sides.
func (c *cmp) unchanged(what string, p bufs, host []float32) {
	c.r.Helper()
	if g, w, ok := c.get(what, p, len(host)); ok {
		c.close(what+" on got", g, host, 0)
		c.close(what+" on want", w, host, 0)
	}
}

// getIdx is get for index buffers.
func (c *cmp) getIdx(what string, p ibufs, n int) (g, w []int32, ok bool) {
	c.r.Helper()
	if c.broken {
		return nil, nil, false
	}
	var host [2][]int32
	for s, be := range c.be {
		host[s] = make([]int32, p[s].Len())
		if err := be.DownloadIndex(host[s], p[s]); err != nil {
			c.fail(s, "DownloadIndex of "+what, err)
			return nil, nil, false
		}
	}
	g, w = host[0], host[1]
	for i := n; i < len(w); i++ {
		if g[i] != w[i] {
			c.r.Errorf("%s %s: %s: [%d] is past the %d elements of the operation but got %d, want %d", c.op, c.shape, what, i, n, g[i], w[i])
			return nil, nil, false
		}
	}
	return g[:n], w[:n], true
}

// equalIdx fails unless g == want.
func (c *cmp) equalIdx(what string, g, w []int32) bool {
	c.r.Helper()
	for i := range w {
		if g[i] != w[i] {
			c.r.Errorf("%s %s: %s: [%d] = %d, want %d", c.op, c.shape, what, i, g[i], w[i])
			return false
		}
	}
	return true
}
