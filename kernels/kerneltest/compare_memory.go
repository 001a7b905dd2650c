package kerneltest

import (
	"fmt"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
)

// Memory: allocation, uploads, downloads and views.

// cmpMemory checks Alloc (zeroed), Upload/Download round trips, prefixes,
// views and views of views written through, for float and index buffers.
func cmpMemory(c *cmp) {
	for _, n := range c.lengths() {
		c.each(fmt.Sprintf("n=%d", n), func() { memoryCase(c, n) })
	}
}

// memoryCase is one case of cmpMemory: float buffers, then index buffers.
// A failure that ends the case stops it.
func memoryCase(c *cmp, n int) {
	if c.broken {
		return
	}
	if !memoryFloats(c, n) {
		return
	}
	memoryIndices(c, n)
}

// memoryFloats checks a zeroed Alloc, an Upload/Download round trip and,
// when n > 0, prefixes and views. It returns false when the case ended.
func memoryFloats(c *cmp, n int) bool {
	zero := make([]float32, n)
	z, ok := allocBoth(c, zero, kernels.Backend.Alloc, "Alloc", nil, "")
	if !ok {
		return false
	}
	c.owned = append(c.owned, z)
	c.unchanged("Alloc is zeroed", z, zero)

	x := c.normal(n)
	p := c.up(x)
	c.unchanged("Upload then Download", p, x)
	if n == 0 {
		return true
	}
	if !memoryPrefix(c, p, x, n) {
		return false
	}
	return memoryViews(c, p, x, n)
}

// memoryPrefix checks the Download of a random prefix of p (holding x).
func memoryPrefix(c *cmp, p bufs, x []float32, n int) bool {
	m := 1 + c.rng.IntN(n)
	for s, be := range c.be {
		pre := make([]float32, m)
		if err := be.Download(pre, p[s]); err != nil {
			c.fail(s, "Download of a prefix", err)
			return false
		}
		c.close(fmt.Sprintf("Download of the first %d on %s", m, sideName[s]), pre, x[:m], 0)
	}
	return true
}

// memoryViews checks views, and a view of a view, of p (holding x) written
// through, and that the parent sees the write after the inner view is
// freed.
func memoryViews(c *cmp, p bufs, x []float32, n int) bool {
	off := c.rng.IntN(n)
	m := 1 + c.rng.IntN(n-off)
	off2 := c.rng.IntN(m)
	m2 := 1 + c.rng.IntN(m-off2)
	y := c.normal(m2)
	want := slices.Clone(x)
	copy(want[off+off2:], y)
	for s, be := range c.be {
		if !memoryViewSide(c, s, be, p[s], off, m, off2, m2, y, want[off:off+m]) {
			return false
		}
	}
	c.unchanged("parent written through views, after freeing a view", p, want)
	return true
}

// memoryViewSide is memoryViews on side s: a view v = p[off:off+m], a view
// vv = v[off2:off2+m2] uploaded with y, v downloaded and compared with
// want, then vv freed.
func memoryViewSide(c *cmp, s int, be kernels.Backend, p kernels.Buffer, off, m, off2, m2 int, y, want []float32) bool {
	v, err := be.View(p, off, m)
	if err != nil {
		c.fail(s, "View", err)
		return false
	}
	if v.Len() != m {
		c.r.Errorf("%s %s: View(%d, %d) on %s has Len %d", c.op, c.shape, off, m, sideName[s], v.Len())
	}
	vv, err := be.View(v, off2, m2)
	if err != nil {
		c.fail(s, "View of a view", err)
		return false
	}
	if err := be.Upload(vv, y); err != nil {
		c.fail(s, "Upload into a view", err)
		return false
	}
	got := make([]float32, m)
	if err := be.Download(got, v); err != nil {
		c.fail(s, "Download of a view", err)
		return false
	}
	c.close("Download of a view on "+sideName[s], got, want, 0)
	if err := be.Free(vv); err != nil {
		c.fail(s, "Free of a view", err)
		return false
	}
	return true
}

// memoryIndices checks a zeroed AllocIndex, an UploadIndex/DownloadIndex
// round trip and, when n > 0, a view written through.
func memoryIndices(c *cmp, n int) {
	zeroI := make([]int32, n)
	zi, ok := allocBoth(c, zeroI, kernels.Backend.AllocIndex, "AllocIndex", nil, "")
	if !ok {
		return
	}
	c.ownedI = append(c.ownedI, zi)
	if g, w, ok := c.getIdx("AllocIndex is zeroed", zi, n); ok {
		c.equalIdx("AllocIndex is zeroed (got)", g, zeroI)
		c.equalIdx("AllocIndex is zeroed (want)", w, zeroI)
	}
	xi := make([]int32, n)
	for i := range xi {
		xi[i] = int32(c.rng.Uint32())
	}
	pi := c.upIdx(xi)
	if g, w, ok := c.getIdx("UploadIndex then DownloadIndex", pi, n); ok {
		c.equalIdx("UploadIndex then DownloadIndex (got)", g, xi)
		c.equalIdx("UploadIndex then DownloadIndex (want)", w, xi)
	}
	if n > 0 && !c.broken {
		memoryIndexView(c, pi, xi, n)
	}
}

// memoryIndexView checks a view of the index buffer pi (holding xi)
// written through.
func memoryIndexView(c *cmp, pi ibufs, xi []int32, n int) {
	off := c.rng.IntN(n)
	m := 1 + c.rng.IntN(n-off)
	y := make([]int32, m)
	for i := range y {
		y[i] = int32(c.rng.IntN(1000)) - 500
	}
	want := slices.Clone(xi)
	copy(want[off:], y)
	for s, be := range c.be {
		if !memoryIndexViewSide(c, s, be, pi[s], off, y) {
			return
		}
	}
	if g, w, ok := c.getIdx("index parent written through a view", pi, n); ok {
		c.equalIdx("index parent written through a view (got)", g, want)
		c.equalIdx("index parent written through a view (want)", w, want)
	}
}

// memoryIndexViewSide is memoryIndexView on side s: a view of p at off,
// uploaded with y, downloaded and compared with y, then freed.
func memoryIndexViewSide(c *cmp, s int, be kernels.Backend, p kernels.IndexBuffer, off int, y []int32) bool {
	m := len(y)
	v, err := be.ViewIndex(p, off, m)
	if err != nil {
		c.fail(s, "ViewIndex", err)
		return false
	}
	if v.Len() != m {
		c.r.Errorf("%s %s: ViewIndex(%d, %d) on %s has Len %d", c.op, c.shape, off, m, sideName[s], v.Len())
	}
	if err := be.UploadIndex(v, y); err != nil {
		c.fail(s, "UploadIndex into a view", err)
		return false
	}
	got := make([]int32, m)
	if err := be.DownloadIndex(got, v); err != nil {
		c.fail(s, "DownloadIndex of a view", err)
		return false
	}
	c.equalIdx("DownloadIndex of a view on "+sideName[s], got, y)
	if err := be.FreeIndex(v); err != nil {
		c.fail(s, "FreeIndex of a view", err)
		return false
	}
	return true
}
