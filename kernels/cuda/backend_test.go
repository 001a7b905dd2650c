//go:build cgo

package cuda

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// TestBackendErrors: the pool's limit, freed and foreign buffers, a closed
// backend and bad options are errors wrapping the documented sentinels.
func TestBackendErrors(t *testing.T) {
	if _, err := NewEmulated(Options{BlockSize: 48}); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("BlockSize 48: %v, want ErrShape", err)
	}
	if _, err := NewEmulated(Options{PoolBytes: -1}); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("PoolBytes -1: %v, want ErrShape", err)
	}
	be := newEmulated(t, Options{PoolBytes: 4 << 20})
	other := newEmulated(t, Options{PoolBytes: 4 << 20})
	if _, err := be.Alloc(2 << 20); !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("alloc beyond the pool: %v, want ErrOutOfMemory", err)
	}
	a, err := be.Alloc(1000)
	if err != nil {
		t.Fatal(err)
	}
	b, err := other.Alloc(1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Add(1000, a, b, a); !errors.Is(err, kernels.ErrBuffer) {
		t.Errorf("another backend's buffer: %v, want ErrBuffer", err)
	}
	v, err := be.View(a, 10, 20)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Free(a); err != nil {
		t.Fatal(err)
	}
	if err := be.Fill(20, 1, v); !errors.Is(err, kernels.ErrBuffer) {
		t.Errorf("view of a freed buffer: %v, want ErrBuffer", err)
	}
	if err := be.Free(a); !errors.Is(err, kernels.ErrBuffer) {
		t.Errorf("double free: %v, want ErrBuffer", err)
	}
	pool, inUse, peak := be.MemoryStats()
	if pool != 4<<20 || inUse >= peak || peak < 4000 {
		t.Errorf("memory stats: pool %d, in use %d, peak %d", pool, inUse, peak)
	}
	c, err := be.Alloc(10)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.Fill(10, 1, c); !errors.Is(err, kernels.ErrBuffer) {
		t.Errorf("buffer of a closed backend: %v, want ErrBuffer", err)
	}
	if _, err := be.Alloc(1); !errors.Is(err, kernels.ErrBuffer) {
		t.Errorf("alloc on a closed backend: %v, want ErrBuffer", err)
	}
	if err := be.Sync(); !errors.Is(err, kernels.ErrBuffer) {
		t.Errorf("sync on a closed backend: %v, want ErrBuffer", err)
	}
}

// TestSkipIndexChecks: without the index checks, out-of-range indices
// are skipped (gather zeroes the row, scatter and the loss leave theirs
// alone) instead of reported; with it they are errors.
func TestSkipIndexChecks(t *testing.T) {
	for _, skip := range []bool{false, true} {
		be := newEmulated(t, Options{PoolBytes: 8 << 20, SkipIndexChecks: skip})
		up := func(x []float32) kernels.Buffer {
			b, err := be.Alloc(len(x))
			if err != nil {
				t.Fatal(err)
			}
			if err := be.Upload(b, x); err != nil {
				t.Fatal(err)
			}
			return b
		}
		upIdx := func(x []int32) kernels.IndexBuffer {
			b, err := be.AllocIndex(len(x))
			if err != nil {
				t.Fatal(err)
			}
			if err := be.UploadIndex(b, x); err != nil {
				t.Fatal(err)
			}
			return b
		}
		down := func(b kernels.Buffer, n int) []float32 {
			out := make([]float32, n)
			if err := be.Download(out, b); err != nil {
				t.Fatal(err)
			}
			return out
		}
		src := up([]float32{1, 2, 3, 4, 5, 6}) // 3 rows of 2
		idx := upIdx([]int32{2, 7, 0})
		dst := up([]float32{9, 9, 9, 9, 9, 9})
		gerr := be.GatherRows(3, 2, src, 3, idx, dst)
		sdst := up([]float32{8, 8, 8, 8, 8, 8})
		serr := be.ScatterRows(3, 2, src, idx, sdst, 3)
		nan := float32(math.NaN())
		loss := up([]float32{nan, nan})
		cerr := be.MarginSoftmaxCE(2, 3, kernels.Margin{Kind: kernels.CosFace, S: 8, M: 0.2}, src, upIdx([]int32{1, 3}), 1, nil, loss)
		if !skip {
			for name, err := range map[string]error{"gather": gerr, "scatter": serr, "margin ce": cerr} {
				if !errors.Is(err, kernels.ErrIndex) {
					t.Errorf("checked %s: %v, want ErrIndex", name, err)
				}
			}
			continue
		}
		for name, err := range map[string]error{"gather": gerr, "scatter": serr, "margin ce": cerr} {
			if err != nil {
				t.Errorf("unchecked %s: %v", name, err)
			}
		}
		if got := down(dst, 6); got[0] != 5 || got[1] != 6 || got[2] != 0 || got[3] != 0 || got[4] != 1 || got[5] != 2 {
			t.Errorf("unchecked gather = %v, want [5 6 0 0 1 2]", got)
		}
		if got := down(sdst, 6); got[0] != 5 || got[1] != 6 || got[2] != 8 || got[3] != 8 || got[4] != 1 || got[5] != 2 {
			t.Errorf("unchecked scatter = %v, want [5 6 8 8 1 2]", got)
		}
		if got := down(loss, 2); math.IsNaN(float64(got[0])) || !math.IsNaN(float64(got[1])) {
			t.Errorf("unchecked margin ce losses = %v: want row 0 written, row 1 (target 3 ≥ 3 columns) untouched", got)
		}
	}
}

// TestIndexChecksOnHost: indices uploaded from the host are checked against
// the host's copy, with no wait for the device, through any view of the
// buffer; indices written by TopK are checked on the device only when they
// might be out of range, and an upload over them makes them host-known
// again.
func TestIndexChecksOnHost(t *testing.T) {
	dev := &countingDevice{device: emuDevice{}}
	be, err := newBackend(dev, Options{PoolBytes: 8 << 20}, 0, 64, "cuda-emulated")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	up := func(x []float32) kernels.Buffer {
		t.Helper()
		b, err := be.Alloc(len(x))
		must(err)
		must(be.Upload(b, x))
		return b
	}
	view := func(b kernels.IndexBuffer, off, n int) kernels.IndexBuffer {
		t.Helper()
		v, err := be.ViewIndex(b, off, n)
		must(err)
		return v
	}
	// waitsOf runs fn and returns how often it waited for the stream.
	waitsOf := func(fn func()) int {
		w := dev.waits
		fn()
		return dev.waits - w
	}
	src := up([]float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) // 5 rows of 2
	dst := up(make([]float32, 8))
	idx, err := be.AllocIndex(8)
	must(err)

	var gerr, serr error
	if w := waitsOf(func() {
		must(be.UploadIndex(view(idx, 2, 3), []int32{2, 7, 0}))
		// Another view of the same elements sees the upload.
		gerr = be.GatherRows(3, 2, src, 3, view(idx, 2, 3), dst)
		serr = be.ScatterRows(2, 2, src, view(idx, 3, 2), dst, 4)
	}); w != 0 {
		t.Errorf("checking uploaded indices waited %d times, want 0", w)
	}
	for name, err := range map[string]error{"gather": gerr, "scatter": serr} {
		if !errors.Is(err, kernels.ErrIndex) {
			t.Errorf("%s with index 7: %v, want ErrIndex", name, err)
		}
	}
	if gerr != nil && !strings.Contains(gerr.Error(), "idx[1] = 7") {
		t.Errorf("gather error %q does not name idx[1] = 7", gerr)
	}
	// Fresh elements are zero on the host as on the device.
	if w := waitsOf(func() { must(be.GatherRows(2, 2, src, 1, idx, dst)) }); w != 0 {
		t.Errorf("checking zeroed indices waited %d times", w)
	}

	// TopK writes columns < 5: checking them against 5 or more rows needs
	// no wait, against fewer it asks the device.
	x := up([]float32{
		9, 8, 0, 0, 0, // top-2: columns 0, 1
		0, 8, 9, 0, 0, // top-2: columns 2, 1
		0, 0, 0, 8, 9, // top-2: columns 4, 3
	})
	vals, err := be.Alloc(6)
	must(err)
	must(be.TopK(3, 5, 2, x, vals, view(idx, 2, 6)))
	if w := waitsOf(func() { must(be.GatherRows(6, 2, src, 5, view(idx, 2, 6), up(make([]float32, 12)))) }); w != 0 {
		t.Errorf("top-k columns against 5 rows: waited %d times, want 0", w)
	}
	if w := waitsOf(func() { must(be.GatherRows(4, 2, src, 3, view(idx, 2, 4), dst)) }); w != 1 {
		t.Errorf("top-k columns < 3 against 3 rows: waited %d times, want 1 (the device check)", w)
	}
	got := make([]float32, 8)
	must(be.Download(got, dst))
	if want := []float32{1, 2, 3, 4, 5, 6, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("gather by top-k columns = %v, want %v", got, want)
	}
	err = be.GatherRows(6, 2, src, 4, view(idx, 2, 6), up(make([]float32, 12)))
	if !errors.Is(err, kernels.ErrIndex) || !strings.Contains(err.Error(), "idx[4] = 4") {
		t.Errorf("top-k column 4 against 4 rows: %v, want ErrIndex naming idx[4] = 4", err)
	}
	// Uploading over part of them makes that part host-known again.
	must(be.UploadIndex(view(idx, 6, 2), []int32{0, 1}))
	if w := waitsOf(func() { must(be.GatherRows(6, 2, src, 3, view(idx, 2, 6), up(make([]float32, 12)))) }); w != 1 {
		t.Errorf("top-k columns (< 3) then uploads: waited %d times, want 1", w)
	}
	if w := waitsOf(func() { must(be.GatherRows(2, 2, src, 2, view(idx, 6, 2), dst)) }); w != 0 {
		t.Errorf("uploaded over top-k columns: waited %d times, want 0", w)
	}
}
