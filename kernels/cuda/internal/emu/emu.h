//go:build cgo

// emu.h: the CUDA shims that let a .cu kernel file compile as C++20 with g++
// and run on the CPU under the emulator's fiber scheduler (emu.cc).
//
// Supported: __global__, __device__, __host__, __forceinline__, __noinline__,
// __launch_bounds__(...), __restrict__, __shared__ (static arrays declared
// in function bodies), __syncthreads(), threadIdx/blockIdx/blockDim/gridDim,
// dim3/uint3, atomicAdd/Sub/Exch/Min/Max/And/Or/Xor/CAS, the <cmath> float functions, __expf, __logf, __fdividef,
// rsqrtf, isnan/isinf/isfinite, INFINITY/NAN, __float_as_int,
// __int_as_float, __float_as_uint, __uint_as_float, min/max, __ldg.
#ifndef FFC_EMU_H
#define FFC_EMU_H

#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// __restrict__ is already a g++ keyword.

// Blocks run one at a time, so block-shared memory is a function-local
// static. "used" keeps the compiler from assuming that an opaque call (the
// barrier's context switch) cannot touch it; the section lets the scheduler
// poison all shared memory before each block (0xFF bytes: NaN / -1), as on a
// GPU it starts uninitialised.
#define __shared__ static __attribute__((used, section("emu_shared")))

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
};

namespace emu {
extern uint3 g_thread_idx, g_block_idx;
extern dim3 g_block_dim, g_grid_dim;
// syncthreads suspends the calling CUDA thread until every thread of the
// block reaches a barrier; file and line identify the call site so that
// threads waiting at different barriers are reported as divergence.
void syncthreads(const char* file, int line);
}  // namespace emu

#define threadIdx (static_cast<const uint3&>(::emu::g_thread_idx))
#define blockIdx (static_cast<const uint3&>(::emu::g_block_idx))
#define blockDim (static_cast<const dim3&>(::emu::g_block_dim))
#define gridDim (static_cast<const dim3&>(::emu::g_grid_dim))
#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)

// Fast-math intrinsics: the accurate functions (glibc declares __expf and
// __logf itself, hence macros).
#define __expf(x) expf(x)
#define __logf(x) logf(x)
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline unsigned int __float_as_uint(float f) {
  unsigned int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline float __uint_as_float(unsigned int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

using std::isfinite;
using std::isinf;
using std::isnan;

// Atomics. Fibers switch only at barriers, so a plain read-modify-write is
// atomic here; the value operand converts to the pointee type as in CUDA.
template <typename T>
using emu_val = std::type_identity_t<T>;
#define EMU_ATOMIC(NAME, EXPR)                   \
  template <typename T>                          \
  inline T NAME(T* p, emu_val<T> v) {            \
    T old = *p;                                  \
    *p = (EXPR);                                 \
    return old;                                  \
  }
EMU_ATOMIC(atomicAdd, old + v)
EMU_ATOMIC(atomicSub, old - v)
EMU_ATOMIC(atomicExch, v)
EMU_ATOMIC(atomicMin, v < old ? v : old)
EMU_ATOMIC(atomicMax, v > old ? v : old)
EMU_ATOMIC(atomicAnd, old & v)
EMU_ATOMIC(atomicOr, old | v)
EMU_ATOMIC(atomicXor, old ^ v)
#undef EMU_ATOMIC
template <typename T>
inline T atomicCAS(T* p, emu_val<T> compare, emu_val<T> v) {
  T old = *p;
  if (old == compare) *p = v;
  return old;
}

// min and max with CUDA's overload set (mixed int/unsigned gives unsigned).
#define EMU_MINMAX(R, A, B)                           \
  inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
  inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
EMU_MINMAX(int, int, int)
EMU_MINMAX(unsigned int, unsigned int, unsigned int)
EMU_MINMAX(unsigned int, int, unsigned int)
EMU_MINMAX(unsigned int, unsigned int, int)
EMU_MINMAX(long long, long long, long long)
EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
#undef EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

#endif  // FFC_EMU_H
