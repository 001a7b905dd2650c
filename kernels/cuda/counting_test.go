//go:build cgo

package cuda

import "testing"

// TestDeviceCounts: an emulated backend reports one device allocation (the
// pool) however many buffers it hands out, and one wait per download and
// per Sync.
func TestDeviceCounts(t *testing.T) {
	be := newEmulated(t, Options{PoolBytes: 8 << 20})
	start, ok := be.DeviceCounts()
	if !ok {
		t.Fatal("NewEmulated does not count device calls")
	}
	x, err := be.Alloc(100)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Upload(x, make([]float32, 100)); err != nil {
		t.Fatal(err)
	}
	if err := be.Download(make([]float32, 100), x); err != nil {
		t.Fatal(err)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	got, _ := be.DeviceCounts()
	if got.Mallocs != 1 {
		t.Errorf("%d device allocations, want 1 (the pool)", got.Mallocs)
	}
	if w := got.Waits - start.Waits; w != 2 {
		t.Errorf("a download and a Sync waited %d times, want 2", w)
	}
}
