// Package cpu implements [kernels.Backend] on the CPU. Buffers are Go
// slices; every operation completes before it returns (Sync is a no-op).
//
// GEMM and GEMV go through OpenBLAS (cblas_sgemm/cblas_sgemv via cgo,
// single-threaded, a product split into bands across Options.Threads
// goroutines) when the package is built with cgo and without
// the noopenblas build tag; otherwise, or with Options.PureGoGEMM, through
// gonum's pure-Go float32 BLAS. Name reports which: "cpu-openblas" or
// "cpu-go". Every other operation is Go code parallelised over rows or
// channels with goroutines when the work is large enough to pay for them,
// except where the package is built with cgo on amd64 and the CPU has
// AVX2 and FMA (unless Options.NoSIMD): there 3×3 convolutions with
// padding 1 (of at least 8 input channels) run on direct kernels written
// in C with AVX2 intrinsics, which read a zero-padded copy of a few images
// instead of lowering them to columns (conv_direct.c), and the inner loops
// of batch normalisation and PReLU are AVX2 C loops (elementwise_avx.c).
//
// A Backend holds no mutable state; it is safe for concurrent use on
// disjoint buffers.
package cpu

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/ffc-stream/ffc/kernels"
)

// Options configures a Backend.
type Options struct {
	// Threads is the number of goroutines per operation and of OpenBLAS
	// threads; 0 means runtime.GOMAXPROCS(0). OpenBLAS's thread count is
	// process-wide: the last New with OpenBLAS sets it for every backend.
	Threads int
	// PureGoGEMM selects gonum's Sgemm even when OpenBLAS is compiled in
	// (for comparisons). Without OpenBLAS it is implied.
	PureGoGEMM bool
	// BLASThreads lets OpenBLAS thread each product itself with Threads
	// threads, as before: its own pool, which spin-waits between calls.
	// By default OpenBLAS runs single-threaded and a product is split into
	// bands of rows or columns across Threads goroutines (for
	// comparisons; see openblasPanels).
	BLASThreads bool
	// NoSIMD turns off the AVX2/FMA kernels (built with cgo on amd64, used
	// where the CPU has both): the direct 3×3 convolutions and the loops of
	// batch normalisation and PReLU. Convolutions then lower blocks of
	// images to columns and multiply them, and the loops are Go (for
	// comparisons).
	NoSIMD bool
}

// Backend is the CPU implementation of kernels.Backend.
type Backend struct {
	threads      int
	openblas     bool
	blasThreads  bool
	convFloats   int  // column-block bound of ConvForward/ConvBackward
	simd         bool // the AVX2/FMA kernels run (conv_direct.c, elementwise_avx.c)
	directFloats int  // padded-block bound of the direct convolutions
	directMinC   int  // fewest input channels of a direct convolution
	scratch      scratch
}

var (
	_ kernels.Backend   = (*Backend)(nil)
	_ kernels.Convolver = (*Backend)(nil)
)

// HaveOpenBLAS reports whether this build links OpenBLAS.
func HaveOpenBLAS() bool { return haveOpenBLAS }

// New returns a CPU backend.
func New(o Options) (*Backend, error) {
	if o.Threads < 0 {
		return nil, fmt.Errorf("cpu: new: %w: Threads = %d", kernels.ErrShape, o.Threads)
	}
	t := o.Threads
	if t == 0 {
		t = runtime.GOMAXPROCS(0)
	}
	be := &Backend{threads: t, openblas: haveOpenBLAS && !o.PureGoGEMM, blasThreads: o.BLASThreads, convFloats: convBlockFloats,
		simd: !o.NoSIMD && simdSupported(), directFloats: directBlockFloats, directMinC: directMinChannels}
	if be.openblas {
		blas := 1 // the default: Go splits the products (openblasPanels)
		if be.blasThreads {
			blas = t
		}
		openblasSetThreads(blas)
	}
	return be, nil
}

// Name is "cpu-openblas" or "cpu-go" after the GEMM in use.
func (be *Backend) Name() string {
	if be.openblas {
		return "cpu-openblas"
	}
	return "cpu-go"
}

// Threads is the number of goroutines an operation uses at most.
func (be *Backend) Threads() int { return be.threads }

// Sync is a no-op: CPU operations complete before they return.
func (be *Backend) Sync() error { return nil }

// Close is a no-op; buffers are garbage collected.
func (be *Backend) Close() error { return nil }

// minWork is the number of elementary steps below which an operation runs
// on the calling goroutine only.
const minWork = 1 << 15

// parallel runs fn over [0, n) split into at most be.threads contiguous
// chunks, each at least grain items long, and waits for all of them.
func (be *Backend) parallel(n, grain int, fn func(lo, hi int)) {
	be.parallelChunks(n, grain, func(_, lo, hi int) { fn(lo, hi) })
}

// parallelChunks is parallel that also passes the chunk number (< be.threads)
// to fn, for per-chunk partial results.
func (be *Backend) parallelChunks(n, grain int, fn func(chunk, lo, hi int)) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	workers := min(be.threads, (n+grain-1)/grain)
	if workers <= 1 {
		fn(0, 0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo, i := chunk, 1; lo < n; lo, i = lo+chunk, i+1 {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, lo, hi)
		}()
	}
	fn(0, 0, min(chunk, n))
	wg.Wait()
}

// grainFor returns the number of items of cost perItem that make a chunk
// worth a goroutine.
func grainFor(perItem int) int {
	return max(1, minWork/max(perItem, 1))
}

// buffer is a float32 Buffer: a slice, or a view into a parent's slice.
type buffer struct {
	data   []float32
	parent *buffer // nil unless a view
	freed  bool
}

func (b *buffer) Len() int {
	if b == nil {
		return 0
	}
	return len(b.data)
}

func (*buffer) Float32() {}

func (b *buffer) dead() bool {
	return b.freed || (b.parent != nil && b.parent.freed)
}

// indexBuffer is an int32 IndexBuffer.
type indexBuffer struct {
	data   []int32
	parent *indexBuffer
	freed  bool
}

func (b *indexBuffer) Len() int {
	if b == nil {
		return 0
	}
	return len(b.data)
}

func (*indexBuffer) Int32() {}

func (b *indexBuffer) dead() bool {
	return b.freed || (b.parent != nil && b.parent.freed)
}

// Wrap returns a Buffer that shares memory with s (no copy): host code on
// the CPU backend can fill it directly.
func Wrap(s []float32) kernels.Buffer { return &buffer{data: s} }

// WrapIndex returns an IndexBuffer that shares memory with s.
func WrapIndex(s []int32) kernels.IndexBuffer { return &indexBuffer{data: s} }

// Floats returns the memory of a CPU buffer without copying, or nil if b is
// not a live CPU buffer.
func Floats(b kernels.Buffer) []float32 {
	bb, ok := b.(*buffer)
	if !ok || bb == nil || bb.dead() {
		return nil
	}
	return bb.data
}

// Int32s returns the memory of a CPU index buffer without copying, or nil
// if b is not a live CPU index buffer.
func Int32s(b kernels.IndexBuffer) []int32 {
	bb, ok := b.(*indexBuffer)
	if !ok || bb == nil || bb.dead() {
		return nil
	}
	return bb.data
}

// f32 returns the first need elements of b, checking that b is a live CPU
// buffer long enough.
func f32(name string, b kernels.Buffer, need int) ([]float32, error) {
	bb, ok := b.(*buffer)
	switch {
	case b == nil || (ok && bb == nil):
		return nil, fmt.Errorf("%s: %w: nil", name, kernels.ErrBuffer)
	case !ok:
		return nil, fmt.Errorf("%s: %w: %T is not a CPU buffer", name, kernels.ErrBuffer, b)
	}
	return prefix(name, bb.data, bb.dead(), need)
}

// optF32 is f32 for an optional buffer: nil gives a nil slice.
func optF32(name string, b kernels.Buffer, need int) ([]float32, error) {
	if bb, ok := b.(*buffer); b == nil || (ok && bb == nil) {
		return nil, nil
	}
	return f32(name, b, need)
}

// i32 is f32 for index buffers.
func i32(name string, b kernels.IndexBuffer, need int) ([]int32, error) {
	bb, ok := b.(*indexBuffer)
	switch {
	case b == nil || (ok && bb == nil):
		return nil, fmt.Errorf("%s: %w: nil", name, kernels.ErrBuffer)
	case !ok:
		return nil, fmt.Errorf("%s: %w: %T is not a CPU index buffer", name, kernels.ErrBuffer, b)
	}
	return prefix(name, bb.data, bb.dead(), need)
}

// optI32 is i32 for an optional index buffer.
func optI32(name string, b kernels.IndexBuffer, need int) ([]int32, error) {
	if bb, ok := b.(*indexBuffer); b == nil || (ok && bb == nil) {
		return nil, nil
	}
	return i32(name, b, need)
}

// prefix is the part of f32 and i32 past the type check: it returns
// data[:need:need], checking that the buffer is live (dead is false) and
// long enough.
func prefix[T float32 | int32](name string, data []T, dead bool, need int) ([]T, error) {
	switch {
	case dead:
		return nil, fmt.Errorf("%s: %w: freed", name, kernels.ErrBuffer)
	case need < 0:
		return nil, fmt.Errorf("%s: %w: negative size %d", name, kernels.ErrShape, need)
	case len(data) < need:
		return nil, fmt.Errorf("%s: %w: has %d elements, needs %d", name, kernels.ErrShape, len(data), need)
	}
	return data[:need:need], nil
}

// dims checks that every dimension is ≥ 0 and that their product does not
// overflow an int.
func dims(ds ...int) error {
	p := 1
	for _, d := range ds {
		if d < 0 {
			return fmt.Errorf("%w: negative dimension in %v", kernels.ErrShape, ds)
		}
		if d != 0 && p > (1<<62)/d {
			return fmt.Errorf("%w: dimensions %v overflow", kernels.ErrShape, ds)
		}
		p *= d
	}
	return nil
}

// same reports whether a and b are the same memory (same start and length).
func same(a, b []float32) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// Alloc returns a zeroed buffer of n float32.
func (be *Backend) Alloc(n int) (kernels.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: alloc: %w: n = %d", kernels.ErrShape, n)
	}
	return &buffer{data: make([]float32, n)}, nil
}

// AllocIndex returns a zeroed buffer of n int32.
func (be *Backend) AllocIndex(n int) (kernels.IndexBuffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: alloc index: %w: n = %d", kernels.ErrShape, n)
	}
	return &indexBuffer{data: make([]int32, n)}, nil
}

// View returns b[off : off+n] sharing memory.
func (be *Backend) View(b kernels.Buffer, off, n int) (kernels.Buffer, error) {
	if _, err := f32("buffer", b, 0); err != nil {
		return nil, fmt.Errorf("cpu: view: %w", err)
	}
	bb := b.(*buffer)
	if off < 0 || n < 0 || off+n > len(bb.data) {
		return nil, fmt.Errorf("cpu: view: %w: [%d, %d+%d) of %d elements", kernels.ErrShape, off, off, n, len(bb.data))
	}
	root := bb
	if bb.parent != nil {
		root = bb.parent
	}
	return &buffer{data: bb.data[off : off+n : off+n], parent: root}, nil
}

// ViewIndex returns b[off : off+n] sharing memory.
func (be *Backend) ViewIndex(b kernels.IndexBuffer, off, n int) (kernels.IndexBuffer, error) {
	if _, err := i32("buffer", b, 0); err != nil {
		return nil, fmt.Errorf("cpu: view index: %w", err)
	}
	bb := b.(*indexBuffer)
	if off < 0 || n < 0 || off+n > len(bb.data) {
		return nil, fmt.Errorf("cpu: view index: %w: [%d, %d+%d) of %d elements", kernels.ErrShape, off, off, n, len(bb.data))
	}
	root := bb
	if bb.parent != nil {
		root = bb.parent
	}
	return &indexBuffer{data: bb.data[off : off+n : off+n], parent: root}, nil
}

// Free marks b (and its views) unusable; a view is left alone.
func (be *Backend) Free(b kernels.Buffer) error {
	if _, err := f32("buffer", b, 0); err != nil {
		return fmt.Errorf("cpu: free: %w", err)
	}
	bb := b.(*buffer)
	if bb.parent == nil {
		bb.freed = true
		bb.data = nil
	}
	return nil
}

// FreeIndex marks b (and its views) unusable; a view is left alone.
func (be *Backend) FreeIndex(b kernels.IndexBuffer) error {
	if _, err := i32("buffer", b, 0); err != nil {
		return fmt.Errorf("cpu: free index: %w", err)
	}
	bb := b.(*indexBuffer)
	if bb.parent == nil {
		bb.freed = true
		bb.data = nil
	}
	return nil
}

// Upload copies src into dst.
func (be *Backend) Upload(dst kernels.Buffer, src []float32) error {
	d, err := f32("dst", dst, len(src))
	if err != nil {
		return fmt.Errorf("cpu: upload: %w", err)
	}
	copy(d, src)
	return nil
}

// Download copies the first len(dst) elements of src into dst.
func (be *Backend) Download(dst []float32, src kernels.Buffer) error {
	s, err := f32("src", src, len(dst))
	if err != nil {
		return fmt.Errorf("cpu: download: %w", err)
	}
	copy(dst, s)
	return nil
}

// UploadIndex copies src into dst.
func (be *Backend) UploadIndex(dst kernels.IndexBuffer, src []int32) error {
	d, err := i32("dst", dst, len(src))
	if err != nil {
		return fmt.Errorf("cpu: upload index: %w", err)
	}
	copy(d, src)
	return nil
}

// DownloadIndex copies the first len(dst) elements of src into dst.
func (be *Backend) DownloadIndex(dst []int32, src kernels.IndexBuffer) error {
	s, err := i32("src", src, len(dst))
	if err != nil {
		return fmt.Errorf("cpu: download index: %w", err)
	}
	copy(dst, s)
	return nil
}
