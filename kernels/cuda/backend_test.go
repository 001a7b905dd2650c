//go:build cgo

package cuda

import (
	"errors"
	"math"
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

// TestSkipIndexChecks: without the device-side check, out-of-range indices
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
