//go:build cgo

// emu_api.h: the C interface between emu.go and emu.cc. Every function that
// can fail returns 0 on success, or nonzero with a message in err (errlen
// bytes, NUL-terminated).
#ifndef FFC_EMU_API_H
#define FFC_EMU_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int emu_malloc(int64_t bytes, uintptr_t* out, char* err, size_t errlen);
int emu_free(uintptr_t p, char* err, size_t errlen);
int emu_htod(uintptr_t dst, const void* src, int64_t bytes, char* err, size_t errlen);
int emu_dtoh(void* dst, uintptr_t src, int64_t bytes, char* err, size_t errlen);
int emu_dtod(uintptr_t dst, uintptr_t src, int64_t bytes, char* err, size_t errlen);
int emu_memset_d32(uintptr_t dst, uint32_t v, int64_t n, char* err, size_t errlen);
int emu_launch(const char* name, const int64_t grid[3], const int64_t block[3],
               const uint64_t* args, int64_t nargs, char* err, size_t errlen);
int emu_num_kernels(void);
const char* emu_kernel_name(int i);
// emu_kernels_source returns the bytes of kernels.cu compiled into this
// build (NULL when it was absent at build time).
const char* emu_kernels_source(size_t* len);
int emu_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
              uintptr_t a, int64_t lda, uintptr_t b, int64_t ldb, float beta,
              uintptr_t c, int64_t ldc, char* err, size_t errlen);
int emu_sgemv(int trans, int64_t m, int64_t n, float alpha, uintptr_t a, int64_t lda,
              uintptr_t x, int64_t incx, float beta, uintptr_t y, int64_t incy,
              char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif  // FFC_EMU_API_H
