package cuda

import "unsafe"

// DeviceCounts are the device calls a backend made since it was created.
type DeviceCounts struct {
	// Mallocs is the number of device allocations; the memory pool is one,
	// and Alloc and Free make none.
	Mallocs int
	// Waits is the number of waits for the stream: device-to-host copies
	// (Download, DownloadIndex, Sum, AllFinite, FirstNonFinite, index
	// checks on the device) and synchronisations (Sync, Close).
	Waits int
}

// DeviceCounts reports the device allocations and waits for the stream
// made so far, for tests that bound them (a training step waits a fixed
// number of times, whatever the model's size). Only a backend from
// NewEmulated counts them; for one from New, ok is false.
func (be *Backend) DeviceCounts() (c DeviceCounts, ok bool) {
	be.mu.Lock()
	defer be.mu.Unlock()
	d, ok := be.dev.(*countingDevice)
	if !ok {
		return DeviceCounts{}, false
	}
	return DeviceCounts{Mallocs: d.mallocs, Waits: d.waits}, true
}

// countingDevice counts device allocations and waits for the stream.
// Every device call is made with the backend's lock held, which guards
// the counts.
type countingDevice struct {
	device
	mallocs int
	waits   int // dtoh and sync calls
}

func (d *countingDevice) malloc(bytes int64) (uintptr, error) {
	d.mallocs++
	return d.device.malloc(bytes)
}

func (d *countingDevice) dtoh(dst unsafe.Pointer, src uintptr, bytes int64) error {
	d.waits++
	return d.device.dtoh(dst, src, bytes)
}

func (d *countingDevice) sync() error {
	d.waits++
	return d.device.sync()
}
