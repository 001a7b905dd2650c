package cuda

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/ffc-stream/ffc/kernels"
)

// Options configures a Backend.
type Options struct {
	// Device is the GPU ordinal (New only).
	Device int
	// TF32 lets cuBLAS use TF32 tensor cores for Gemm and Gemv (inputs
	// rounded to a 10-bit mantissa, float32 accumulation); off, products
	// are plain FP32.
	TF32 bool
	// PoolBytes is the device memory allocated once at start, from which
	// every buffer is carved. 0 means 80% of the free device memory (New)
	// or 256 MiB (NewEmulated).
	PoolBytes int64
	// BlockSize is the number of threads per block of the custom kernels:
	// a power of two in [32, 1024]. 0 means 256 (New) or 64 (NewEmulated),
	// doubled up to 1024 for kernels with one block per long row or
	// channel (a loss row of Q cosines, a batch-norm channel), so that a
	// few hundred such blocks still fill the GPU.
	BlockSize int
	// SkipIndexChecks skips the check of indices (targets, gather/scatter
	// rows); out-of-range indices are then skipped or zeroed by the kernels
	// instead of reported. The check is made on the host copy of uploaded
	// indices and costs no wait; only indices written by TopK that might be
	// out of range are checked on the device, which waits for the stream.
	SkipIndexChecks bool
}

// maxParts bounds the blocks of a two-pass reduction (Sum, AllFinite).
const maxParts = 1024

// maxGrid bounds the blocks of grid-stride kernels.
const maxGrid = 65535

// Backend is the CUDA implementation of kernels.Backend.
type Backend struct {
	mu     sync.Mutex
	dev    device
	name   string
	arch   string // PTX architecture loaded ("emulated" on the CPU)
	block  int
	grow   bool // BlockSize was 0: per-row kernels may use larger blocks
	check  bool
	arena  *arena
	base   uintptr // device address of the pool
	parts  *buffer // maxParts+1 doubles: reduction partials and result
	word   *buffer // one int32: index-check result
	owner  *buffer // scatter ownership, grown to the largest dstRows seen
	counts *buffer // FirstNonFinite's per-buffer counts (doubles), grown on demand
	closed bool
}

var (
	_ kernels.Backend       = (*Backend)(nil)
	_ kernels.FiniteChecker = (*Backend)(nil)
)

// newBackend allocates the pool on dev and the backend's scratch buffers.
func newBackend(dev device, o Options, defaultPool int64, defaultBlock int, label string) (*Backend, error) {
	bs := o.BlockSize
	if bs == 0 {
		bs = defaultBlock
	}
	if bs < 32 || bs > 1024 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("cuda: new: %w: BlockSize %d is not a power of two in [32, 1024]", kernels.ErrShape, bs)
	}
	pool := o.PoolBytes
	if pool < 0 {
		return nil, fmt.Errorf("cuda: new: %w: PoolBytes %d", kernels.ErrShape, pool)
	}
	if pool == 0 {
		pool = defaultPool
	}
	pool &^= arenaAlign - 1
	if pool < 1<<20 {
		return nil, fmt.Errorf("cuda: new: pool of %d bytes is too small (need at least 1 MiB)", pool)
	}
	base, err := dev.malloc(pool)
	if err != nil {
		return nil, fmt.Errorf("cuda: new: allocate the %d-byte memory pool: %w", pool, err)
	}
	be := &Backend{dev: dev, name: label, block: bs, grow: o.BlockSize == 0, check: !o.SkipIndexChecks, arena: newArena(pool), base: base}
	if be.parts, err = be.allocBuf((maxParts + 1) * 2); err != nil { // doubles as pairs of float32
		_ = dev.close()
		return nil, err
	}
	if be.word, err = be.allocBuf(1); err != nil {
		_ = dev.close()
		return nil, err
	}
	return be, nil
}

// Name is "cuda-" followed by the device's name ("cuda-emulated" for the
// CPU emulator).
func (be *Backend) Name() string { return be.name }

// PTXArch names the embedded PTX that was loaded ("sm_80" or "sm_90"), or
// "emulated" for NewEmulated.
func (be *Backend) PTXArch() string { return be.arch }

// BlockSize is the number of threads per block of the custom kernels.
func (be *Backend) BlockSize() int { return be.block }

// MemoryStats reports the pool's size, the bytes in use and their peak.
func (be *Backend) MemoryStats() (pool, inUse, peak int64) {
	be.mu.Lock()
	defer be.mu.Unlock()
	return be.arena.size, be.arena.inUse, be.arena.peak
}

// Sync waits for every queued operation and reports the first error.
func (be *Backend) Sync() error {
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.closed {
		return fmt.Errorf("cuda: sync: %w: backend closed", kernels.ErrBuffer)
	}
	if err := be.dev.sync(); err != nil {
		return fmt.Errorf("cuda: sync: %w", err)
	}
	return nil
}

// Close waits for queued work and releases the pool and the device; every
// buffer becomes invalid.
func (be *Backend) Close() error {
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.closed {
		return nil
	}
	be.closed = true
	serr := be.dev.sync()
	ferr := be.dev.free(be.base)
	cerr := be.dev.close()
	for _, err := range []error{serr, ferr, cerr} {
		if err != nil {
			return fmt.Errorf("cuda: close: %w", err)
		}
	}
	return nil
}

// buffer is a float32 Buffer: an arena allocation or a view into one.
type buffer struct {
	be     *Backend
	ptr    uintptr // device address of element 0
	n      int
	off    int64   // arena offset of the root allocation
	parent *buffer // root allocation of a view; nil for a root
	freed  bool
	// idx is the host's knowledge of an index buffer (roots only): after
	// the queued work, element k holds idx.val[k] exactly, or, where
	// idx.bound[k], some value ≤ idx.val[k] (written by a kernel).
	idx *indexShadow
}

// indexShadow mirrors a root index buffer on the host, so that indices can
// be checked without waiting for the device.
type indexShadow struct {
	val   []int32
	bound []bool // nil until a kernel writes the buffer
}

// shadow returns b's root shadow and the offset of b's element 0 in it.
func (b *buffer) shadow() (*indexShadow, int) {
	r := b.root()
	return r.idx, int(b.ptr-r.ptr) / 4
}

func (b *buffer) Len() int {
	if b == nil {
		return 0
	}
	return b.n
}

func (*buffer) Float32() {}

func (b *buffer) dead() bool {
	return b.freed || (b.parent != nil && b.parent.freed) || b.be.closed
}

func (b *buffer) root() *buffer {
	if b.parent != nil {
		return b.parent
	}
	return b
}

// ibuffer is an int32 IndexBuffer with the same layout.
type ibuffer struct{ buffer }

func (*ibuffer) Int32() {}

// allocBuf carves n 4-byte elements out of the pool and zeroes them.
func (be *Backend) allocBuf(n int) (*buffer, error) {
	off, err := be.arena.alloc(int64(n) * 4)
	if err != nil {
		return nil, err
	}
	b := &buffer{be: be, ptr: be.base + uintptr(off), n: n, off: off}
	if n > 0 {
		if err := be.dev.memsetD32(b.ptr, 0, int64(n)); err != nil {
			_ = be.arena.release(off)
			return nil, err
		}
	}
	return b, nil
}

// Alloc returns a zeroed buffer of n float32 from the pool.
func (be *Backend) Alloc(n int) (kernels.Buffer, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	if err := be.alive("alloc"); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("cuda: alloc: %w: n = %d", kernels.ErrShape, n)
	}
	b, err := be.allocBuf(n)
	if err != nil {
		return nil, fmt.Errorf("cuda: alloc %d floats: %w", n, err)
	}
	return b, nil
}

// AllocIndex returns a zeroed buffer of n int32 from the pool.
func (be *Backend) AllocIndex(n int) (kernels.IndexBuffer, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	if err := be.alive("alloc index"); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("cuda: alloc index: %w: n = %d", kernels.ErrShape, n)
	}
	b, err := be.allocBuf(n)
	if err != nil {
		return nil, fmt.Errorf("cuda: alloc %d indices: %w", n, err)
	}
	ib := &ibuffer{*b}
	ib.idx = &indexShadow{val: make([]int32, n)} // zeroed, as the device memory
	return ib, nil
}

func (be *Backend) alive(op string) error {
	if be.closed {
		return fmt.Errorf("cuda: %s: %w: backend closed", op, kernels.ErrBuffer)
	}
	return nil
}

// View returns b[off : off+n] sharing memory.
func (be *Backend) View(b kernels.Buffer, off, n int) (kernels.Buffer, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	bb, err := be.f32("buffer", b, 0)
	if err != nil {
		return nil, fmt.Errorf("cuda: view: %w", err)
	}
	if off < 0 || n < 0 || off+n > bb.n {
		return nil, fmt.Errorf("cuda: view: %w: [%d, %d+%d) of %d elements", kernels.ErrShape, off, off, n, bb.n)
	}
	return &buffer{be: be, ptr: bb.ptr + uintptr(off)*4, n: n, off: bb.off, parent: bb.root()}, nil
}

// ViewIndex returns b[off : off+n] sharing memory.
func (be *Backend) ViewIndex(b kernels.IndexBuffer, off, n int) (kernels.IndexBuffer, error) {
	be.mu.Lock()
	defer be.mu.Unlock()
	bb, err := be.i32("buffer", b, 0)
	if err != nil {
		return nil, fmt.Errorf("cuda: view index: %w", err)
	}
	if off < 0 || n < 0 || off+n > bb.n {
		return nil, fmt.Errorf("cuda: view index: %w: [%d, %d+%d) of %d elements", kernels.ErrShape, off, off, n, bb.n)
	}
	return &ibuffer{buffer{be: be, ptr: bb.ptr + uintptr(off)*4, n: n, off: bb.off, parent: bb.root()}}, nil
}

// Free returns b's memory to the pool; freeing a view is a no-op.
func (be *Backend) Free(b kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	bb, err := be.f32("buffer", b, 0)
	if err != nil {
		return fmt.Errorf("cuda: free: %w", err)
	}
	return be.release(bb)
}

// FreeIndex returns b's memory to the pool; freeing a view is a no-op.
func (be *Backend) FreeIndex(b kernels.IndexBuffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	bb, err := be.i32("buffer", b, 0)
	if err != nil {
		return fmt.Errorf("cuda: free index: %w", err)
	}
	return be.release(bb)
}

func (be *Backend) release(b *buffer) error {
	if b.parent != nil {
		return nil
	}
	// Queued kernels may still use the memory: the stream orders them
	// before any later use of the same range, so it can be reused at once.
	b.freed = true
	if err := be.arena.release(b.off); err != nil {
		return fmt.Errorf("cuda: free: %w", err)
	}
	return nil
}

// Upload copies src into dst.
func (be *Backend) Upload(dst kernels.Buffer, src []float32) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	d, err := be.f32("dst", dst, len(src))
	if err != nil {
		return fmt.Errorf("cuda: upload: %w", err)
	}
	if len(src) == 0 {
		return nil
	}
	if err := be.dev.htod(d.ptr, unsafe.Pointer(&src[0]), int64(len(src))*4); err != nil {
		return fmt.Errorf("cuda: upload: %w", err)
	}
	return nil
}

// Download copies the first len(dst) elements of src into dst after all
// queued work.
func (be *Backend) Download(dst []float32, src kernels.Buffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.f32("src", src, len(dst))
	if err != nil {
		return fmt.Errorf("cuda: download: %w", err)
	}
	if len(dst) == 0 {
		return nil
	}
	if err := be.dev.dtoh(unsafe.Pointer(&dst[0]), s.ptr, int64(len(dst))*4); err != nil {
		return fmt.Errorf("cuda: download: %w", err)
	}
	return nil
}

// UploadIndex copies src into dst.
func (be *Backend) UploadIndex(dst kernels.IndexBuffer, src []int32) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	d, err := be.i32("dst", dst, len(src))
	if err != nil {
		return fmt.Errorf("cuda: upload index: %w", err)
	}
	if len(src) == 0 {
		return nil
	}
	if err := be.dev.htod(d.ptr, unsafe.Pointer(&src[0]), int64(len(src))*4); err != nil {
		return fmt.Errorf("cuda: upload index: %w", err)
	}
	sh, o := d.shadow()
	copy(sh.val[o:], src)
	if sh.bound != nil {
		clear(sh.bound[o : o+len(src)])
	}
	return nil
}

// DownloadIndex copies the first len(dst) elements of src into dst after
// all queued work.
func (be *Backend) DownloadIndex(dst []int32, src kernels.IndexBuffer) error {
	be.mu.Lock()
	defer be.mu.Unlock()
	s, err := be.i32("src", src, len(dst))
	if err != nil {
		return fmt.Errorf("cuda: download index: %w", err)
	}
	if len(dst) == 0 {
		return nil
	}
	if err := be.dev.dtoh(unsafe.Pointer(&dst[0]), s.ptr, int64(len(dst))*4); err != nil {
		return fmt.Errorf("cuda: download index: %w", err)
	}
	return nil
}

// f32 checks that b is a live buffer of this backend holding at least need
// elements.
func (be *Backend) f32(name string, b kernels.Buffer, need int) (*buffer, error) {
	bb, ok := b.(*buffer)
	switch {
	case b == nil || (ok && bb == nil):
		return nil, fmt.Errorf("%s: %w: nil", name, kernels.ErrBuffer)
	case !ok:
		return nil, fmt.Errorf("%s: %w: %T is not a CUDA buffer", name, kernels.ErrBuffer, b)
	}
	return be.checkBuf(name, bb, need)
}

// optF32 is f32 for an optional buffer: nil gives nil.
func (be *Backend) optF32(name string, b kernels.Buffer, need int) (*buffer, error) {
	if b == nil {
		return nil, nil
	}
	if bb, ok := b.(*buffer); ok && bb == nil {
		return nil, nil
	}
	return be.f32(name, b, need)
}

// i32 is f32 for index buffers.
func (be *Backend) i32(name string, b kernels.IndexBuffer, need int) (*buffer, error) {
	bb, ok := b.(*ibuffer)
	switch {
	case b == nil || (ok && bb == nil):
		return nil, fmt.Errorf("%s: %w: nil", name, kernels.ErrBuffer)
	case !ok:
		return nil, fmt.Errorf("%s: %w: %T is not a CUDA index buffer", name, kernels.ErrBuffer, b)
	}
	return be.checkBuf(name, &bb.buffer, need)
}

// optI32 is i32 for an optional index buffer.
func (be *Backend) optI32(name string, b kernels.IndexBuffer, need int) (*buffer, error) {
	if b == nil {
		return nil, nil
	}
	if bb, ok := b.(*ibuffer); ok && bb == nil {
		return nil, nil
	}
	return be.i32(name, b, need)
}

func (be *Backend) checkBuf(name string, b *buffer, need int) (*buffer, error) {
	switch {
	case b.be != be:
		return nil, fmt.Errorf("%s: %w: buffer of another backend", name, kernels.ErrBuffer)
	case b.dead():
		return nil, fmt.Errorf("%s: %w: freed", name, kernels.ErrBuffer)
	case need < 0:
		return nil, fmt.Errorf("%s: %w: negative size %d", name, kernels.ErrShape, need)
	case b.n < need:
		return nil, fmt.Errorf("%s: %w: has %d elements, needs %d", name, kernels.ErrShape, b.n, need)
	}
	return b, nil
}

// overlap reports whether the first na elements of a and nb of b share
// memory.
func overlap(a *buffer, na int, b *buffer, nb int) bool {
	if a == nil || b == nil || na == 0 || nb == 0 {
		return false
	}
	return a.ptr < b.ptr+uintptr(nb)*4 && b.ptr < a.ptr+uintptr(na)*4
}

// dims checks that every dimension is ≥ 0 and that their product fits the
// kernels' int32 parameters.
func dims(ds ...int) error {
	p := int64(1)
	for _, d := range ds {
		if d < 0 {
			return fmt.Errorf("%w: negative dimension in %v", kernels.ErrShape, ds)
		}
		if d > math.MaxInt32 {
			return fmt.Errorf("%w: dimension %d in %v exceeds int32", kernels.ErrShape, d, ds)
		}
		if d != 0 && p > (1<<62)/int64(d) {
			return fmt.Errorf("%w: dimensions %v overflow", kernels.ErrShape, ds)
		}
		p *= int64(d)
	}
	return nil
}

// Launch argument slots: one 8-byte slot per kernel parameter.

func ptr(b *buffer) uint64 {
	if b == nil {
		return 0
	}
	return uint64(b.ptr)
}

// i is an int parameter (dimensions were checked to fit int32).
func i(v int) uint64 { return uint64(uint32(int32(v))) }

// f is a float parameter.
func f(v float32) uint64 { return uint64(math.Float32bits(v)) }

// flag is an int parameter 0 or 1.
func flag(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// grid is the number of blocks of bs threads for n elements of a
// grid-stride kernel.
func grid(n int64, bs int) dim3 {
	return dim3{int(min(max((n+int64(bs)-1)/int64(bs), 1), maxGrid)), 1, 1}
}

// launch1 launches k over n elements with a grid-stride layout.
func (be *Backend) launch1(k kernel, n int64, args ...uint64) error {
	if n == 0 {
		return nil
	}
	return be.dev.launch(k, grid(n, be.block), dim3{be.block, 1, 1}, args)
}

// launchBlocks launches k with one block per item (row or channel) of
// work elements each.
func (be *Backend) launchBlocks(k kernel, blocks, work int, args ...uint64) error {
	if blocks == 0 {
		return nil
	}
	return be.dev.launch(k, dim3{blocks, 1, 1}, dim3{be.blockFor(work), 1, 1}, args)
}

// blockFor is the block size for a block-per-item kernel with work
// elements per item: BlockSize, or with automatic sizing doubled (up to
// 1024) while every thread would still get 32 elements or more.
func (be *Backend) blockFor(work int) int {
	b := be.block
	for be.grow && b < 1024 && work >= 64*b {
		b *= 2
	}
	return b
}
