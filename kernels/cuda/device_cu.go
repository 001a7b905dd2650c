//go:build cuda

package cuda

/*
#cgo LDFLAGS: -ldl
#cgo linux CFLAGS: -I/usr/local/cuda/include
#cgo linux LDFLAGS: -L/usr/local/cuda/lib64 -L/usr/lib/x86_64-linux-gnu
#include <dlfcn.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <cuda.h>
#include <cublas_v2.h>

// cuBLAS is opened with dlopen rather than linked, so that one binary runs
// with whichever cuBLAS the GPU machine has (libcublas.so.11, .12 or .13:
// these entry points have kept their ABI). The function pointer types come
// from the cublas_v2.h this was compiled with, which checks the calls.
static void* ffc_blas_lib;
static __typeof__(&cublasCreate_v2) ffc_p_create;
static __typeof__(&cublasDestroy_v2) ffc_p_destroy;
static __typeof__(&cublasSetStream_v2) ffc_p_set_stream;
static __typeof__(&cublasSetMathMode) ffc_p_set_math_mode;
static __typeof__(&cublasGetVersion_v2) ffc_p_get_version;
static __typeof__(&cublasSgemm_v2) ffc_p_sgemm;
static __typeof__(&cublasSgemv_v2) ffc_p_sgemv;
static char ffc_blas_err[512];
static char ffc_blas_path[256];

// ffc_blas_open loads cuBLAS once; it returns NULL or an error message.
static const char* ffc_blas_open(const char* override) {
	if (ffc_blas_lib) return NULL;
	const char* names[] = {override, "libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11",
	                       "/usr/local/cuda/lib64/libcublas.so", NULL};
	void* lib = NULL;
	ffc_blas_err[0] = 0;
	for (int i = 0; i < 6 && !lib; i++) {
		if (!names[i] || !names[i][0]) continue;
		lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
		if (lib) snprintf(ffc_blas_path, sizeof ffc_blas_path, "%s", names[i]);
		else if (!ffc_blas_err[0]) snprintf(ffc_blas_err, sizeof ffc_blas_err, "%s", dlerror());
	}
	if (!lib) return ffc_blas_err;
#define FFC_SYM(var, name) \
	if (!(*(void**)&var = dlsym(lib, name))) { \
		snprintf(ffc_blas_err, sizeof ffc_blas_err, "%s: no symbol %s", ffc_blas_path, name); \
		dlclose(lib); \
		return ffc_blas_err; \
	}
	FFC_SYM(ffc_p_create, "cublasCreate_v2")
	FFC_SYM(ffc_p_destroy, "cublasDestroy_v2")
	FFC_SYM(ffc_p_set_stream, "cublasSetStream_v2")
	FFC_SYM(ffc_p_set_math_mode, "cublasSetMathMode")
	FFC_SYM(ffc_p_get_version, "cublasGetVersion_v2")
	FFC_SYM(ffc_p_sgemm, "cublasSgemm_v2")
	FFC_SYM(ffc_p_sgemv, "cublasSgemv_v2")
#undef FFC_SYM
	ffc_blas_lib = lib;
	return NULL;
}

static const char* ffc_blas_loaded(void) { return ffc_blas_path; }

// Device addresses cross from Go as uintptr_t and become pointers here, so
// that Go never converts an integer back into a pointer.
static cublasStatus_t ffc_cublas_create(cublasHandle_t* h, uintptr_t stream, int tf32, int* version) {
	cublasStatus_t st = ffc_p_create(h);
	if (st != CUBLAS_STATUS_SUCCESS) return st;
	st = ffc_p_set_stream(*h, (cudaStream_t)stream);
	if (st != CUBLAS_STATUS_SUCCESS) return st;
	st = ffc_p_get_version(*h, version);
	if (st != CUBLAS_STATUS_SUCCESS) return st;
	return ffc_p_set_math_mode(*h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

static cublasStatus_t ffc_cublas_destroy(cublasHandle_t h) { return ffc_p_destroy(h); }

static cublasStatus_t ffc_sgemm(cublasHandle_t h, int ta, int tb, int m, int n, int k, float alpha, uintptr_t a,
                                int lda, uintptr_t b, int ldb, float beta, uintptr_t c, int ldc) {
	return ffc_p_sgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha,
	                   (const float*)a, lda, (const float*)b, ldb, &beta, (float*)c, ldc);
}

static cublasStatus_t ffc_sgemv(cublasHandle_t h, int t, int m, int n, float alpha, uintptr_t a, int lda, uintptr_t x,
                                float beta, uintptr_t y) {
	return ffc_p_sgemv(h, t ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, &alpha, (const float*)a, lda, (const float*)x, 1,
	                   &beta, (float*)y, 1);
}
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"gorgonia.org/cu"
)

// New opens GPU o.Device, allocates the memory pool, loads the PTX and
// creates the cuBLAS handle. It needs an NVIDIA driver and a GPU of compute
// capability 8.0 or later.
func New(o Options) (*Backend, error) {
	d, err := openDevice(o.Device, o.TF32)
	if err != nil {
		return nil, fmt.Errorf("cuda: new: %w", err)
	}
	free, err := d.freeBytes()
	if err != nil {
		_ = d.close()
		return nil, fmt.Errorf("cuda: new: %w", err)
	}
	be, err := newBackend(d, o, free/10*8, 256, "cuda-"+d.label)
	if err != nil {
		_ = d.close()
		return nil, err
	}
	be.arch = d.arch
	return be, nil
}

// cuDevice is a GPU driven through gorgonia.org/cu (driver API) and cuBLAS.
type cuDevice struct {
	dev    cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	mod    cu.Module
	fns    [numKernels]cu.Function
	blas   C.cublasHandle_t
	label  string
	arch   string
	open   struct{ ctx, stream, mod, blas bool }
}

// cuResult wraps a cuBLAS status.
type cublasError C.cublasStatus_t

func (e cublasError) Error() string { return fmt.Sprintf("cuBLAS status %d", int(e)) }

func blasErr(st C.cublasStatus_t) error {
	if st != C.CUBLAS_STATUS_SUCCESS {
		return cublasError(st)
	}
	return nil
}

// do runs fn on a locked OS thread with the device's context current.
func (d *cuDevice) do(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(d.ctx); err != nil {
		return fmt.Errorf("set context: %w", err)
	}
	return fn()
}

func openDevice(ordinal int, tf32 bool) (d *cuDevice, err error) {
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("count devices: %w", err)
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("device %d: %d CUDA device(s) present", ordinal, n)
	}
	override := C.CString(os.Getenv("FFC_CUBLAS"))
	defer C.free(unsafe.Pointer(override))
	if msg := C.ffc_blas_open(override); msg != nil {
		return nil, fmt.Errorf("load cuBLAS (set FFC_CUBLAS to the path of libcublas.so.N or add its folder to LD_LIBRARY_PATH): %s", C.GoString(msg))
	}
	d = &cuDevice{}
	defer func() {
		if err != nil {
			_ = d.close()
		}
	}()
	if d.dev, err = cu.GetDevice(ordinal); err != nil {
		return nil, fmt.Errorf("device %d: %w", ordinal, err)
	}
	name, err := d.dev.Name()
	if err != nil {
		return nil, fmt.Errorf("device %d name: %w", ordinal, err)
	}
	major, err := d.dev.Attribute(cu.ComputeCapabilityMajor)
	if err != nil {
		return nil, fmt.Errorf("device %d compute capability: %w", ordinal, err)
	}
	minor, err := d.dev.Attribute(cu.ComputeCapabilityMinor)
	if err != nil {
		return nil, fmt.Errorf("device %d compute capability: %w", ordinal, err)
	}
	arch, ptx, ok := ptxFor(major, minor)
	if !ok {
		return nil, fmt.Errorf("device %d (%s) has compute capability %d.%d; the embedded PTX needs 8.0 or later", ordinal, name, major, minor)
	}
	d.arch = arch
	d.label = fmt.Sprintf("%s (sm_%d%d, PTX %s)", name, major, minor, arch)
	if d.ctx, err = d.dev.RetainPrimaryCtx(); err != nil {
		return nil, fmt.Errorf("retain primary context: %w", err)
	}
	d.open.ctx = true
	err = d.do(func() error {
		var err error
		if d.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
			return fmt.Errorf("create stream: %w", err)
		}
		d.open.stream = true
		if d.mod, err = cu.LoadData(ptx); err != nil {
			return fmt.Errorf("load PTX (%s): %w", arch, err)
		}
		d.open.mod = true
		for k := range numKernels {
			if d.fns[k], err = d.mod.Function(kernelNames[k]); err != nil {
				return fmt.Errorf("kernel %s: %w", kernelNames[k], err)
			}
		}
		// cu.Stream holds only the CUstream pointer; read it for cuBLAS.
		s := *(*uintptr)(unsafe.Pointer(&d.stream))
		var version C.int
		if err := blasErr(C.ffc_cublas_create(&d.blas, C.uintptr_t(s), boolInt(tf32), &version)); err != nil {
			return fmt.Errorf("cuBLAS handle: %w", err)
		}
		d.open.blas = true
		d.label += fmt.Sprintf(", cuBLAS %d from %s", int(version), C.GoString(C.ffc_blas_loaded()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func (d *cuDevice) name() string { return d.label }

func (d *cuDevice) freeBytes() (free int64, err error) {
	err = d.do(func() error {
		var err error
		free, _, err = cu.MemInfo()
		return err
	})
	return free, err
}

func (d *cuDevice) malloc(bytes int64) (p uintptr, err error) {
	err = d.do(func() error {
		dp, err := cu.MemAlloc(bytes)
		p = uintptr(dp)
		return err
	})
	return p, err
}

func (d *cuDevice) free(p uintptr) error {
	return d.do(func() error { return cu.MemFree(cu.DevicePtr(p)) })
}

func (d *cuDevice) htod(dst uintptr, src unsafe.Pointer, bytes int64) error {
	// From pageable memory the call returns once src is staged.
	return d.do(func() error { return cu.MemcpyHtoDAsync(cu.DevicePtr(dst), src, bytes, d.stream) })
}

func (d *cuDevice) dtoh(dst unsafe.Pointer, src uintptr, bytes int64) error {
	return d.do(func() error {
		if err := cu.MemcpyDtoHAsync(dst, cu.DevicePtr(src), bytes, d.stream); err != nil {
			return err
		}
		return d.stream.Synchronize()
	})
}

func (d *cuDevice) dtod(dst, src uintptr, bytes int64) error {
	return d.do(func() error { return cu.MemcpyDtoDAsync(cu.DevicePtr(dst), cu.DevicePtr(src), bytes, d.stream) })
}

func (d *cuDevice) memsetD32(dst uintptr, v uint32, n int64) error {
	return d.do(func() error { return cu.MemsetD32Async(cu.DevicePtr(dst), uint(v), n, d.stream) })
}

func (d *cuDevice) launch(k kernel, g, b dim3, args []uint64) error {
	params := make([]unsafe.Pointer, len(args))
	for j := range args {
		params[j] = unsafe.Pointer(&args[j])
	}
	err := d.do(func() error {
		return d.fns[k].Launch(g.x, g.y, g.z, b.x, b.y, b.z, 0, d.stream, params)
	})
	if err != nil {
		return fmt.Errorf("launch %s grid %v block %v: %w", k, g, b, err)
	}
	return nil
}

func (d *cuDevice) sgemm(transA, transB bool, m, n, k int, alpha float32, a uintptr, lda int, b uintptr, ldb int, beta float32, c uintptr, ldc int) error {
	return d.do(func() error {
		return blasErr(C.ffc_sgemm(d.blas, boolInt(transA), boolInt(transB), C.int(m), C.int(n), C.int(k), C.float(alpha),
			C.uintptr_t(a), C.int(lda), C.uintptr_t(b), C.int(ldb), C.float(beta), C.uintptr_t(c), C.int(ldc)))
	})
}

func (d *cuDevice) sgemv(trans bool, m, n int, alpha float32, a uintptr, lda int, x uintptr, beta float32, y uintptr) error {
	return d.do(func() error {
		return blasErr(C.ffc_sgemv(d.blas, boolInt(trans), C.int(m), C.int(n), C.float(alpha), C.uintptr_t(a), C.int(lda),
			C.uintptr_t(x), C.float(beta), C.uintptr_t(y)))
	})
}

func (d *cuDevice) sync() error {
	return d.do(func() error { return d.stream.Synchronize() })
}

func (d *cuDevice) close() error {
	if !d.open.ctx {
		return nil
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	keep(d.do(func() error {
		if d.open.blas {
			keep(blasErr(C.ffc_cublas_destroy(d.blas)))
		}
		if d.open.mod {
			keep(d.mod.Unload())
		}
		if d.open.stream {
			keep(d.stream.Destroy())
		}
		return nil
	}))
	keep(d.dev.ReleasePrimaryCtx())
	d.open.ctx, d.open.blas, d.open.mod, d.open.stream = false, false, false, false
	return first
}
