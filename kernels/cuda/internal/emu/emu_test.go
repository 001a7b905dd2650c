//go:build cgo

package emu

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

// Argument slots, as the CUDA backend builds them.
func ptr(p uintptr) uint64 { return uint64(p) }
func i32(v int) uint64     { return uint64(uint32(int32(v))) }
func f32(v float32) uint64 { return uint64(math.Float32bits(v)) }

// dev allocates device memory holding a copy of host (zeroed bytes when
// host is nil) and frees it at the end of the test.
func dev[T float32 | int32 | float64](t testing.TB, host []T, n int) uintptr {
	t.Helper()
	size := int64(n) * int64(unsafe.Sizeof(T(0)))
	p, err := Malloc(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Free(p); err != nil {
			t.Error(err)
		}
	})
	if len(host) > 0 {
		HtoD(p, unsafe.Pointer(&host[0]), int64(len(host))*int64(unsafe.Sizeof(T(0))))
	}
	return p
}

func down[T float32 | int32 | float64](p uintptr, n int) []T {
	out := make([]T, n)
	if n > 0 {
		DtoH(unsafe.Pointer(&out[0]), p, int64(n)*int64(unsafe.Sizeof(T(0))))
	}
	return out
}

func launch(t *testing.T, name string, grid, block Dim3, args ...uint64) {
	t.Helper()
	if err := Launch(name, grid, block, args); err != nil {
		t.Fatal(err)
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

var xmacroEntry = regexp.MustCompile(`X\((\w+)\)`)

func TestNames(t *testing.T) {
	names := Names()
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("kernel %s registered twice", n)
		}
		seen[n] = true
	}
	for _, m := range xmacroEntry.FindAllStringSubmatch(selftestSource, -1) {
		if !seen[m[1]] {
			t.Errorf("self-test kernel %s not registered", m[1])
		}
	}
}

// TestKernelsSource checks that this build compiled the kernels.cu on disk
// (Go's build cache does not track it) and registered all its kernels.
func TestKernelsSource(t *testing.T) {
	compiled, ok := KernelsSource()
	disk, err := os.ReadFile("../../kernels.cu")
	switch {
	case errors.Is(err, os.ErrNotExist):
		if ok {
			t.Fatal("stale build: kernels.cu was compiled in but is gone; run go clean -cache")
		}
		t.Skip("no kernels/cuda/kernels.cu")
	case err != nil:
		t.Fatal(err)
	case fmt.Sprintf("%x", sha256.Sum256(disk)) != kernelsSHA256:
		t.Fatal("kernels.cu changed but source_hash.go was not regenerated: run make ptx")
	case !ok || !bytes.Equal(compiled, disk):
		t.Fatal("stale build: kernels.cu changed since the emulator was compiled; run go clean -cache")
	}
	names := Names()
	global := regexp.MustCompile(`__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(`)
	found := global.FindAllSubmatch(compiled, -1)
	if len(found) == 0 {
		t.Fatal("no __global__ kernel found in kernels.cu")
	}
	for _, m := range found {
		if !slices.Contains(names, string(m[1])) {
			t.Errorf("kernel %s of kernels.cu is not in FFC_KERNELS", m[1])
		}
	}
}

func TestBlockSum(t *testing.T) {
	for _, tc := range []struct{ n, grid, block int }{
		{1, 1, 1}, {50, 1, 1}, {37, 2, 33}, {1000, 3, 256}, {1001, 7, 1000}, {4097, 5, 1024}, {10, 4, 8},
	} {
		t.Run(fmt.Sprintf("n%d_g%d_b%d", tc.n, tc.grid, tc.block), func(t *testing.T) {
			x := make([]float32, tc.n)
			want := make([]float32, tc.grid)
			for i := range x {
				x[i] = float32(i%7 - 3) // small integers: every order sums exactly
				want[i/tc.block%tc.grid] += x[i]
			}
			px, pp := dev(t, x, tc.n), dev[float32](t, nil, tc.grid)
			launch(t, "emu_test_block_sum", Dim3{tc.grid, 1, 1}, Dim3{tc.block, 1, 1}, ptr(px), ptr(pp), i32(tc.n))
			if got := down[float32](pp, tc.grid); !slices.Equal(got, want) {
				t.Errorf("partials = %v, want %v", got, want)
			}
		})
	}
}

func TestScan(t *testing.T) {
	for _, tc := range []struct{ n, block int }{
		{1, 1}, {37, 64}, {1000, 1024}, {1025, 1024}, {300, 7}, {64, 32},
	} {
		t.Run(fmt.Sprintf("n%d_b%d", tc.n, tc.block), func(t *testing.T) {
			in := make([]int32, tc.n)
			want := make([]int32, tc.n)
			for i := range in {
				in[i] = int32(i*37%11 - 5)
				want[i] = in[i]
				if i%tc.block != 0 {
					want[i] += want[i-1]
				}
			}
			pi, po := dev(t, in, tc.n), dev[int32](t, nil, tc.n)
			launch(t, "emu_test_scan", Dim3{ceilDiv(tc.n, tc.block), 1, 1}, Dim3{tc.block, 1, 1}, ptr(pi), ptr(po), i32(tc.n))
			if got := down[int32](po, tc.n); !slices.Equal(got, want) {
				t.Errorf("scan = %v, want %v", got, want)
			}
		})
	}
}

func TestTranspose(t *testing.T) {
	for _, tc := range []struct{ rows, cols int }{{1, 1}, {16, 16}, {17, 33}, {40, 5}} {
		t.Run(fmt.Sprintf("%dx%d", tc.rows, tc.cols), func(t *testing.T) {
			in := make([]float32, tc.rows*tc.cols)
			want := make([]float32, len(in))
			for r := range tc.rows {
				for c := range tc.cols {
					in[r*tc.cols+c] = float32(r*1000 + c)
					want[c*tc.rows+r] = in[r*tc.cols+c]
				}
			}
			pi, po := dev(t, in, len(in)), dev[float32](t, nil, len(in))
			launch(t, "emu_test_transpose", Dim3{ceilDiv(tc.cols, 16), ceilDiv(tc.rows, 16), 1}, Dim3{16, 16, 1},
				ptr(pi), ptr(po), i32(tc.rows), i32(tc.cols))
			if got := down[float32](po, len(in)); !slices.Equal(got, want) {
				t.Errorf("transpose = %v, want %v", got, want)
			}
		})
	}
}

func TestIndex3D(t *testing.T) {
	for _, tc := range []struct {
		nx, ny, nz  int
		grid, block Dim3
	}{
		{5, 1, 1, Dim3{2, 1, 1}, Dim3{4, 1, 1}},
		{7, 5, 1, Dim3{3, 2, 1}, Dim3{3, 4, 1}},
		{6, 5, 3, Dim3{2, 3, 2}, Dim3{4, 2, 2}},
		{2, 3, 4, Dim3{1, 1, 1}, Dim3{2, 3, 4}},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d", tc.nx, tc.ny, tc.nz), func(t *testing.T) {
			n := tc.nx * tc.ny * tc.nz
			fill := make([]int32, 4*n)
			for i := range fill {
				fill[i] = -9
			}
			po, pd := dev(t, fill, 4*n), dev[int32](t, nil, 6)
			launch(t, "emu_test_index3d", tc.grid, tc.block, ptr(po), ptr(pd), i32(tc.nx), i32(tc.ny), i32(tc.nz))
			got := down[int32](po, 4*n)
			b := tc.block
			for z := range tc.nz {
				for y := range tc.ny {
					for x := range tc.nx {
						tid := x%b.X + b.X*(y%b.Y+b.Y*(z%b.Z))
						want := []int32{int32(x), int32(y), int32(z), int32(tid)}
						if o := got[4*((z*tc.ny+y)*tc.nx+x):][:4]; !slices.Equal(o, want) {
							t.Fatalf("point (%d,%d,%d) = %v, want %v", x, y, z, o, want)
						}
					}
				}
			}
			g := tc.grid
			if dims, want := down[int32](pd, 6), []int32{int32(g.X), int32(g.Y), int32(g.Z), int32(b.X), int32(b.Y), int32(b.Z)}; !slices.Equal(dims, want) {
				t.Errorf("gridDim, blockDim = %v, want %v", dims, want)
			}
		})
	}
}

func TestParams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, c   int
		b, d   float32
		hiBits uint64 // OR'ed into the scalar slots: only the low 32 bits count
	}{
		{"plain", 3, 5, 1.5, -2.25, 0},
		{"negative", -7, math.MinInt32, -2.5, float32(math.Inf(1)), 0},
		{"sign extended", -1, math.MaxInt32, float32(math.Copysign(0, -1)), 1e-30, 0xFFFFFFFF_00000000},
		{"garbage high bits", -123456, 42, 3.25, -1e30, 0xDEADBEEF_00000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pi, pf := dev[int32](t, nil, 6), dev[float32](t, nil, 4)
			pd, pdin := dev[float64](t, nil, 1), dev(t, []float64{0.125}, 1)
			launch(t, "emu_test_params", Dim3{1, 1, 1}, Dim3{2, 1, 1}, ptr(pi), ptr(pf), ptr(pd), ptr(pdin),
				i32(tc.a)|tc.hiBits, f32(tc.b)|tc.hiBits, i32(tc.c)|tc.hiBits, f32(tc.d)|tc.hiBits)
			wantMin := int32(0)
			if uint32(int32(tc.a)) >= 2 {
				wantMin = 1
			}
			wantI := []int32{int32(tc.a), int32(tc.c), int32(math.Float32bits(tc.b)), int32(min(tc.a, tc.c)), int32(max(tc.a, tc.c)), wantMin}
			if got := down[int32](pi, 6); !slices.Equal(got, wantI) {
				t.Errorf("ints = %v, want %v", got, wantI)
			}
			wantF := []float32{tc.b, tc.d, max(tc.b, tc.d), math.Float32frombits(uint32(int32(tc.c)))}
			gotF := down[float32](pf, 4)
			for i := range wantF {
				if math.Float32bits(gotF[i]) != math.Float32bits(wantF[i]) {
					t.Errorf("floats = %v, want %v", gotF, wantF)
					break
				}
			}
			if got, want := down[float64](pd, 1)[0], 0.25+float64(tc.a); got != want {
				t.Errorf("double = %v, want %v", got, want)
			}
		})
	}
}

func TestMath(t *testing.T) {
	x := []float32{0, 1, -1, 2.5, -3, 100, -100, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-20}
	f := func(v float64) float64 {
		switch {
		case math.IsNaN(v):
			return -1
		case math.IsInf(v, 0):
			return v
		}
		m := math.Min(v, 0)
		return math.Exp(-math.Abs(v)) + 1/math.Sqrt(1+v*v) + v/4 + math.Log(2+m*m)
	}
	px, py := dev(t, x, len(x)), dev[float32](t, nil, len(x))
	launch(t, "emu_test_math", Dim3{2, 1, 1}, Dim3{8, 1, 1}, ptr(px), ptr(py), i32(len(x)))
	got := down[float32](py, len(x))
	for i, v := range x {
		want := f(float64(v))
		if g := float64(got[i]); !(g == want || math.Abs(g-want) <= 1e-5*math.Max(1, math.Abs(want))) {
			t.Errorf("f(%v) = %v, want %v", v, g, want)
		}
	}
}

func TestDivergence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kernel string
		block  int
		args   func(out uintptr) []uint64
		diverg bool
	}{
		{"nobody leaves", "emu_test_exit_early", 4, func(o uintptr) []uint64 { return []uint64{ptr(o), i32(0)} }, false},
		{"whole block leaves", "emu_test_exit_early", 4, func(o uintptr) []uint64 { return []uint64{ptr(o), i32(4)} }, false},
		{"one thread leaves", "emu_test_exit_early", 4, func(o uintptr) []uint64 { return []uint64{ptr(o), i32(1)} }, true},
		{"all but one leave", "emu_test_exit_early", 64, func(o uintptr) []uint64 { return []uint64{ptr(o), i32(63)} }, true},
		{"one thread, one barrier", "emu_test_split_barrier", 1, func(o uintptr) []uint64 { return []uint64{ptr(o)} }, false},
		{"different barriers", "emu_test_split_barrier", 2, func(o uintptr) []uint64 { return []uint64{ptr(o)} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := dev[int32](t, nil, tc.block)
			err := Launch(tc.kernel, Dim3{2, 1, 1}, Dim3{tc.block, 1, 1}, tc.args(out))
			if tc.diverg != errors.Is(err, ErrDivergence) {
				t.Fatalf("err = %v, want divergence %v", err, tc.diverg)
			}
			if err != nil {
				t.Log(err)
			}
			// The emulator recovers: a good launch still works.
			launch(t, "emu_test_exit_early", Dim3{1, 1, 1}, Dim3{tc.block, 1, 1}, ptr(out), i32(0))
			if got := down[int32](out, tc.block); slices.ContainsFunc(got, func(v int32) bool { return v != 1 }) {
				t.Errorf("after the launch, out = %v, want all 1", got)
			}
		})
	}
}

func TestSharedMemoryStartsPoisoned(t *testing.T) {
	out := dev[int32](t, nil, 3*64)
	launch(t, "emu_test_shared_uninit", Dim3{3, 1, 1}, Dim3{64, 1, 1}, ptr(out))
	if got := down[int32](out, 3*64); slices.ContainsFunc(got, func(v int32) bool { return v != -1 }) {
		t.Errorf("uninitialised shared memory read %v, want all -1", got)
	}
}

func TestLaunchErrors(t *testing.T) {
	out := dev[int32](t, nil, 64)
	freed, err := Malloc(64)
	if err != nil {
		t.Fatal(err)
	}
	if err := Free(freed); err != nil {
		t.Fatal(err)
	}
	host := make([]int32, 4)
	one := Dim3{1, 1, 1}
	for _, tc := range []struct {
		name        string
		kernel      string
		grid, block Dim3
		args        []uint64
	}{
		{"unknown kernel", "emu_test_nope", one, one, []uint64{ptr(out)}},
		{"too few arguments", "emu_test_exit_early", one, one, []uint64{ptr(out)}},
		{"too many arguments", "emu_test_exit_early", one, one, []uint64{ptr(out), 0, 0}},
		{"zero grid", "emu_test_split_barrier", Dim3{0, 1, 1}, one, []uint64{ptr(out)}},
		{"zero block", "emu_test_split_barrier", one, Dim3{1, 0, 1}, []uint64{ptr(out)}},
		{"negative block", "emu_test_split_barrier", one, Dim3{-1, 1, 1}, []uint64{ptr(out)}},
		{"block over 1024 threads", "emu_test_split_barrier", one, Dim3{32, 33, 1}, []uint64{ptr(out)}},
		{"block z over 64", "emu_test_split_barrier", one, Dim3{1, 1, 65}, []uint64{ptr(out)}},
		{"grid y over 65535", "emu_test_split_barrier", Dim3{1, 65536, 1}, one, []uint64{ptr(out)}},
		{"host pointer", "emu_test_split_barrier", one, one, []uint64{uint64(uintptr(unsafe.Pointer(&host[0])))}},
		{"freed pointer", "emu_test_split_barrier", one, one, []uint64{ptr(freed)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Launch(tc.kernel, tc.grid, tc.block, tc.args)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			t.Log(err)
		})
	}
}

func TestMemory(t *testing.T) {
	for _, n := range []int64{0, -1} {
		if _, err := Malloc(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("Malloc(%d) err = %v, want ErrInvalid", n, err)
		}
	}
	p := dev[float32](t, nil, 37)
	if p%256 != 0 {
		t.Errorf("Malloc returned %#x, not 256-byte aligned", p)
	}
	if got := down[float32](p, 37); slices.ContainsFunc(got, func(v float32) bool { return v != 0 }) {
		t.Errorf("Malloc memory not zeroed: %v", got)
	}
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	HtoD(p, unsafe.Pointer(&x[0]), 32)
	DtoD(p+4, p, 16) // overlapping: memmove
	if got, want := down[float32](p, 8), []float32{1, 1, 2, 3, 4, 6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("after DtoD = %v, want %v", got, want)
	}
	MemsetD32(p+8, math.Float32bits(-0.5), 3)
	if got, want := down[float32](p, 8), []float32{1, 1, -0.5, -0.5, -0.5, 6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("after MemsetD32 = %v, want %v", got, want)
	}
	if err := Free(p + 4); !errors.Is(err, ErrInvalid) {
		t.Errorf("Free of an interior pointer: err = %v, want ErrInvalid", err)
	}
	q, err := Malloc(8)
	if err != nil {
		t.Fatal(err)
	}
	if err := Free(q); err != nil {
		t.Fatal(err)
	}
	if err := Free(q); !errors.Is(err, ErrInvalid) {
		t.Errorf("double Free: err = %v, want ErrInvalid", err)
	}
	big, err := Malloc(3<<20 + 5) // mmapped
	if err != nil {
		t.Fatal(err)
	}
	MemsetD32(big+3<<20-4, 0xFFFFFFFF, 1)
	if got := down[int32](big, 3<<20/4+1); got[len(got)-2] != -1 || slices.ContainsFunc(got[:len(got)-2], func(v int32) bool { return v != 0 }) || got[len(got)-1] != 0 {
		t.Error("large allocation not zeroed or not writable")
	}
	if err := Free(big); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(){
		"HtoD past the end":   func() { HtoD(p+4, unsafe.Pointer(&x[0]), 37*4) },
		"DtoH past the end":   func() { DtoH(unsafe.Pointer(&x[0]), p+37*4-4, 8) },
		"DtoD from freed":     func() { DtoD(p, q, 4) },
		"MemsetD32 too long":  func() { MemsetD32(p, 0, 38) },
		"MemsetD32 unaligned": func() { MemsetD32(p+2, 0, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// refGemm is cublasSgemm on column-major Go slices, accumulating in float64.
func refGemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for j := range n {
		for i := range m {
			s := 0.0
			for l := range k {
				ai, bi := i+l*lda, l+j*ldb
				if tA {
					ai = l + i*lda
				}
				if tB {
					bi = j + l*ldb
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			if beta == 0 {
				c[i+j*ldc] = float32(float64(alpha) * s)
			} else {
				c[i+j*ldc] = float32(float64(alpha)*s + float64(beta)*float64(c[i+j*ldc]))
			}
		}
	}
}

func random(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func nans(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.NaN())
	}
	return x
}

// close reports whether got matches want to float32 rounding, NaN
// (untouched padding) matching NaN.
func closeTo(got, want []float32) bool {
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(w) != math.IsNaN(g) || math.Abs(g-w) > 1e-5*math.Max(1, math.Abs(w)) {
			return false
		}
	}
	return true
}

func TestSgemm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 9, 13}, {4, 1, 6}} {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, beta := range []float32{0, -0.5} {
					m, n, k := sz[0], sz[1], sz[2]
					t.Run(fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v_beta%v", m, n, k, tA, tB, beta), func(t *testing.T) {
						ar, ac, br, bc := m, k, k, n
						if tA {
							ar, ac = k, m
						}
						if tB {
							br, bc = n, k
						}
						lda, ldb, ldc := ar+3, br+1, m+2 // padded leading dimensions
						a, b := random(r, lda*ac), random(r, ldb*bc)
						c := random(r, ldc*n)
						if beta == 0 {
							c = nans(ldc * n) // must not be read
						}
						for j := range n { // padding rows stay NaN either way
							for i := m; i < ldc; i++ {
								c[i+j*ldc] = float32(math.NaN())
							}
						}
						pa, pb, pc := dev(t, a, len(a)), dev(t, b, len(b)), dev(t, c, len(c))
						if err := Sgemm(tA, tB, m, n, k, 1.25, pa, lda, pb, ldb, beta, pc, ldc); err != nil {
							t.Fatal(err)
						}
						refGemm(tA, tB, m, n, k, 1.25, a, lda, b, ldb, beta, c, ldc)
						if got := down[float32](pc, len(c)); !closeTo(got, c) {
							t.Errorf("C = %v\nwant %v", got, c)
						}
					})
				}
			}
		}
	}
}

func TestSgemmErrors(t *testing.T) {
	p := dev[float32](t, nil, 64)
	for _, tc := range []struct {
		name          string
		tA, tB        bool
		m, n, k       int
		lda, ldb, ldc int
	}{
		{"negative m", false, false, -1, 2, 2, 2, 2, 2},
		{"lda < m", false, false, 4, 2, 2, 3, 2, 4},
		{"lda < k transposed", true, false, 4, 2, 3, 2, 3, 4},
		{"ldb < n transposed", false, true, 2, 4, 2, 2, 3, 2},
		{"ldc < m", false, false, 4, 2, 2, 4, 2, 3},
		{"A past the end", false, false, 9, 9, 9, 9, 9, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1, p, tc.lda, p, tc.ldb, 0, p, tc.ldc)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// refGemv is cublasSgemv on Go slices, accumulating in float64.
func refGemv(trans bool, m, n int, alpha float32, a []float32, lda int, x []float32, incx int, beta float32, y []float32, incy int) {
	lx, ly := n, m
	if trans {
		lx, ly = m, n
	}
	at := func(v []float32, l, i, inc int) *float32 {
		if inc < 0 {
			return &v[(l-1-i)*-inc]
		}
		return &v[i*inc]
	}
	for i := range ly {
		s := 0.0
		for l := range lx {
			ai := i + l*lda
			if trans {
				ai = l + i*lda
			}
			av := a[ai]
			s += float64(av) * float64(*at(x, lx, l, incx))
		}
		yv := at(y, ly, i, incy)
		if beta == 0 {
			*yv = float32(float64(alpha) * s)
		} else {
			*yv = float32(float64(alpha)*s + float64(beta)*float64(*yv))
		}
	}
}

func TestSgemv(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, sz := range [][2]int{{1, 1}, {5, 3}, {7, 11}} {
		for _, trans := range []bool{false, true} {
			for _, inc := range [][2]int{{1, 1}, {2, 3}, {-1, 1}, {1, -2}} {
				for _, beta := range []float32{0, 0.75} {
					m, n := sz[0], sz[1]
					t.Run(fmt.Sprintf("m%d_n%d_t%v_inc%v_beta%v", m, n, trans, inc, beta), func(t *testing.T) {
						lx, ly := n, m
						if trans {
							lx, ly = m, n
						}
						incx, incy := inc[0], inc[1]
						lda := m + 2
						a := random(r, lda*n)
						x := random(r, 1+(lx-1)*max(incx, -incx))
						y := nans(1 + (ly-1)*max(incy, -incy)) // gaps stay NaN
						for i := range ly {
							if beta != 0 {
								y[i*max(incy, -incy)] = float32(r.NormFloat64())
							}
						}
						pa, px, py := dev(t, a, len(a)), dev(t, x, len(x)), dev(t, y, len(y))
						if err := Sgemv(trans, m, n, -1.5, pa, lda, px, incx, beta, py, incy); err != nil {
							t.Fatal(err)
						}
						refGemv(trans, m, n, -1.5, a, lda, x, incx, beta, y, incy)
						if got := down[float32](py, len(y)); !closeTo(got, y) {
							t.Errorf("y = %v\nwant %v", got, y)
						}
					})
				}
			}
		}
	}
	p := dev[float32](t, nil, 16)
	for name, err := range map[string]error{
		"incx 0":     Sgemv(false, 2, 2, 1, p, 2, p, 0, 0, p, 1),
		"incy 0":     Sgemv(false, 2, 2, 1, p, 2, p, 1, 0, p, 0),
		"lda < m":    Sgemv(true, 3, 2, 1, p, 2, p, 1, 0, p, 1),
		"negative n": Sgemv(false, 2, -2, 1, p, 2, p, 1, 0, p, 1),
		"x past end": Sgemv(false, 2, 4, 1, p, 2, p+60, 1, 0, p, 1),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// TestConcurrent launches from several goroutines at once; launches are
// serialised inside, so every result is still right.
func TestConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for it := range 5 {
				n := 100 + 37*g + it
				in := make([]int32, n)
				for i := range in {
					in[i] = int32(i % 5)
				}
				pi, err := Malloc(int64(4 * n))
				if err != nil {
					t.Error(err)
					return
				}
				po, err := Malloc(int64(4 * n))
				if err != nil {
					t.Error(err)
					return
				}
				HtoD(pi, unsafe.Pointer(&in[0]), int64(4*n))
				if err := Launch("emu_test_scan", Dim3{1, 1, 1}, Dim3{1024, 1, 1}, []uint64{ptr(pi), ptr(po), i32(n)}); err != nil {
					t.Error(err)
				}
				got := down[int32](po, n)
				var s int32
				for i, v := range in {
					s += v
					if got[i] != s {
						t.Errorf("goroutine %d: scan[%d] = %d, want %d", g, i, got[i], s)
						break
					}
				}
				for _, p := range []uintptr{pi, po} {
					if err := Free(p); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkLaunch measures the cost per emulated thread of a kernel with
// barriers (the scan: 11 barriers per thread at 1024 threads per block).
func BenchmarkLaunch(b *testing.B) {
	const n = 1 << 16
	pi, po := dev[int32](b, nil, n), dev[int32](b, nil, n)
	for b.Loop() {
		if err := Launch("emu_test_scan", Dim3{n / 1024, 1, 1}, Dim3{1024, 1, 1}, []uint64{ptr(pi), ptr(po), i32(n)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/thread")
}
