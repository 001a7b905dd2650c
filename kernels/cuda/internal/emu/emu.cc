//go:build cgo

// emu.cc: the CPU emulator behind emu.go: device memory on the C heap, a
// fiber scheduler that runs every CUDA thread of a block as a fiber on the
// calling OS thread (round-robin between barriers), the launch table
// built from the kernels' X-macros, and reference cuBLAS Sgemm/Sgemv.
//
// Global state lives here, guarded by mutexes: the live allocations and the
// scheduler (one launch at a time; block-shared memory is static, see emu.h).
// Fiber stacks (256 KiB each under a guard page, up to 1024 of them) are
// mapped on first use and kept for the life of the process.
#include "emu.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "emu_api.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "argument slots are little-endian");

// Bounds of the emu_shared section holding every __shared__ variable (null
// when there is none).
extern "C" char __start_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_emu_shared[] __attribute__((weak, visibility("hidden")));

namespace emu {

uint3 g_thread_idx, g_block_idx;
dim3 g_block_dim, g_grid_dim;

namespace {

enum Status { kOK = 0, kInvalid = 1, kDivergence = 2, kFailed = 3 };

__attribute__((format(printf, 4, 5))) int fail(int code, char* err, size_t errlen,
                                                const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

// ---- device memory -------------------------------------------------------

std::mutex heap_mu;
std::map<uintptr_t, uint64_t> heap_live;  // base -> size in bytes

// Allocations from kMapBytes up are mmapped: zeroed pages on first touch,
// so a large memory pool costs nothing until it is used.
constexpr uint64_t kMapBytes = 1 << 20;

uint64_t map_size(uint64_t bytes) {
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  return (bytes + page - 1) / page * page;
}

// in_heap reports whether [p, p+bytes) lies inside one live allocation (p
// may be its end when bytes is 0). Callers hold heap_mu.
bool in_heap(uintptr_t p, uint64_t bytes) {
  auto it = heap_live.upper_bound(p);
  if (it == heap_live.begin()) return false;
  --it;
  const uint64_t off = p - it->first;
  return off <= it->second && bytes <= it->second - off;
}

// check_ranges checks several (pointer, bytes) pairs; empty ones are skipped.
int check_ranges(std::initializer_list<std::pair<uintptr_t, uint64_t>> rs, char* err,
                 size_t errlen) {
  std::lock_guard<std::mutex> lk(heap_mu);
  for (auto [p, n] : rs) {
    if (n != 0 && !in_heap(p, n)) {
      return fail(kInvalid, err, errlen,
                  "[%#llx, +%llu bytes) is not inside one live device allocation",
                  (unsigned long long)p, (unsigned long long)n);
    }
  }
  return kOK;
}

// ---- fiber scheduler -----------------------------------------------------

constexpr size_t kStackBytes = 256 << 10;
constexpr unsigned kMaxThreads = 1024;

// Fibers switch with a few instructions on x86-64 (ffc_emu_switch below);
// elsewhere with ucontext, whose calls each make a sigprocmask system call.
#if defined(__x86_64__) && !defined(EMU_NO_FAST_SWITCH)
#define EMU_FAST_SWITCH 1
#endif

struct Fiber {
#ifdef EMU_FAST_SWITCH
  void* sp;  // saved stack pointer while suspended
#else
  ucontext_t ctx;
#endif
  char* stack = nullptr;  // kStackBytes above a PROT_NONE guard page
  uint3 tid;
  unsigned long barriers;  // barriers passed
  const char* file;        // where it waits
  int line;
  bool done;
};

struct Sched {
  std::mutex mu;  // one launch at a time
#ifdef EMU_FAST_SWITCH
  void* main_sp;
#else
  ucontext_t main;
#endif
  Fiber* cur = nullptr;
  void (*invoke)(const uint64_t*) = nullptr;
  const uint64_t* args = nullptr;
  Fiber fibers[kMaxThreads];
};
Sched sched;

#ifdef EMU_FAST_SWITCH
}  // namespace
}  // namespace emu

// ffc_emu_switch saves the callee-saved registers on the current stack,
// stores the stack pointer in *save_sp, and resumes the stack at new_sp.
extern "C" void ffc_emu_switch(void** save_sp, void* new_sp)
    __attribute__((visibility("hidden")));
__asm__(
    ".text\n"
    ".globl ffc_emu_switch\n"
    ".hidden ffc_emu_switch\n"
    ".type ffc_emu_switch, @function\n"
    "ffc_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size ffc_emu_switch, .-ffc_emu_switch\n");

namespace emu {
namespace {

void to_fiber(Fiber& f) { ffc_emu_switch(&sched.main_sp, f.sp); }
void to_sched(Fiber& f) { ffc_emu_switch(&f.sp, sched.main_sp); }

// fiber_start is where a new fiber's first switch returns to.
[[noreturn]] void fiber_start() {
  sched.invoke(sched.args);
  sched.cur->done = true;
  to_sched(*sched.cur);
  __builtin_unreachable();
}

bool init_fiber(Fiber& f) {
  // As if fiber_start had been called (return address 0) and had then
  // called ffc_emu_switch: six zeroed registers below its address.
  auto* top = reinterpret_cast<uint64_t*>(f.stack + kStackBytes);
  top[-1] = 0;
  top[-2] = reinterpret_cast<uint64_t>(&fiber_start);
  for (int i = 3; i <= 8; i++) top[-i] = 0;
  f.sp = top - 8;
  return true;
}
#else
void to_fiber(Fiber& f) { swapcontext(&sched.main, &f.ctx); }
void to_sched(Fiber& f) { swapcontext(&f.ctx, &sched.main); }

void fiber_start() {
  sched.invoke(sched.args);
  sched.cur->done = true;
  // returning resumes sched.main through uc_link
}

bool init_fiber(Fiber& f) {
  if (getcontext(&f.ctx) != 0) return false;
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = &sched.main;
  makecontext(&f.ctx, fiber_start, 0);
  return true;
}
#endif

bool alloc_stack(Fiber& f) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return false;
  if (mprotect(m, page, PROT_NONE) != 0) {
    munmap(m, kStackBytes + page);
    return false;
  }
  f.stack = static_cast<char*>(m) + page;
  return true;
}

// Shared-memory poisoning. All of emu_shared is filled with 0xFF before the
// first block of a launch; the bytes that block changed bound the kernel's
// shared memory, and only that range is refilled before the later blocks.
struct Poison {
  char* lo = __start_emu_shared;
  char* hi = __stop_emu_shared;

  void fill() {
    if (lo != nullptr && hi > lo) memset(lo, 0xFF, (size_t)(hi - lo));
  }
  void shrink() {
    while (lo < hi && (unsigned char)*lo == 0xFF) lo++;
    while (hi > lo && (unsigned char)hi[-1] == 0xFF) hi--;
  }
};

// run_block runs every thread of the current block to completion, or
// returns a description of the barrier divergence that stopped it.
int run_block(unsigned nthreads, Poison& poison, char* err, size_t errlen) {
  const dim3 bd = g_block_dim;
  for (unsigned i = 0; i < nthreads; i++) {
    Fiber& f = sched.fibers[i];
    if (!f.stack && !alloc_stack(f)) return fail(kFailed, err, errlen, "cannot map a fiber stack");
    if (!init_fiber(f)) return fail(kFailed, err, errlen, "cannot make a fiber context");
    f.tid = {i % bd.x, i / bd.x % bd.y, i / (bd.x * bd.y)};
    f.barriers = 0;
    f.file = nullptr;
    f.line = 0;
    f.done = false;
  }
  poison.fill();
  for (;;) {
    // One round: every live thread runs up to its next barrier or its end.
    for (unsigned i = 0; i < nthreads; i++) {
      Fiber& f = sched.fibers[i];
      if (f.done) continue;
      g_thread_idx = f.tid;
      sched.cur = &f;
      to_fiber(f);
    }
    sched.cur = nullptr;
    const Fiber* done = nullptr;
    const Fiber* wait = nullptr;
    for (unsigned i = 0; i < nthreads; i++) {
      const Fiber& f = sched.fibers[i];
      if (f.done) {
        if (!done) done = &f;
      } else if (!wait) {
        wait = &f;
      } else if (f.line != wait->line ||
                 (f.file != wait->file && strcmp(f.file, wait->file) != 0)) {
        return fail(kDivergence, err, errlen,
                    "thread (%u,%u,%u) waits at %s:%d, thread "
                    "(%u,%u,%u) at %s:%d",
                    wait->tid.x, wait->tid.y, wait->tid.z, wait->file, wait->line, f.tid.x,
                    f.tid.y, f.tid.z, f.file, f.line);
      }
    }
    if (!wait) return kOK;
    if (done) {
      return fail(kDivergence, err, errlen,
                  "thread (%u,%u,%u) exited while thread (%u,%u,%u) "
                  "waits at barrier %lu (%s:%d)",
                  done->tid.x, done->tid.y, done->tid.z, wait->tid.x, wait->tid.y,
                  wait->tid.z, wait->barriers, wait->file, wait->line);
    }
  }
}

// ---- launch table --------------------------------------------------------

struct Kernel {
  const char* name;
  int arity;
  uint64_t ptr_mask;  // bit i: parameter i is a pointer
  void (*invoke)(const uint64_t*);
};

template <typename T>
T unpack(const uint64_t& slot) {
  static_assert(std::is_pointer_v<T> || (std::is_arithmetic_v<T> && sizeof(T) <= 8),
                "kernel parameters must be pointers or scalars of at most 8 bytes");
  T v;
  std::memcpy(&v, &slot, sizeof(T));
  return v;
}

template <typename F>
struct Sig;
template <typename... A>
struct Sig<void (*)(A...)> {
  static constexpr int arity = sizeof...(A);
  static_assert(arity <= 64, "too many kernel parameters");
  static constexpr uint64_t ptr_mask = [] {
    uint64_t m = 0;
    int i = 0;
    ((m |= std::is_pointer_v<A> ? uint64_t(1) << i : 0, i++), ...);
    return m;
  }();
};

template <typename... A, size_t... I>
void call(void (*f)(A...), const uint64_t* args, std::index_sequence<I...>) {
  f(unpack<A>(args[I])...);
}

template <auto F>
void thunk(const uint64_t* args) {
  call(F, args, std::make_index_sequence<Sig<decltype(F)>::arity>{});
}

template <auto F>
constexpr Kernel entry(const char* name) {
  return {name, Sig<decltype(F)>::arity, Sig<decltype(F)>::ptr_mask, &thunk<F>};
}

const Kernel* find_kernel(const char* name);
size_t num_kernels();
const Kernel* kernel_at(size_t i);

// ---- reference cuBLAS (column-major, double accumulation) ----------------

// mat_bytes is the extent of a column-major rows x cols matrix with leading
// dimension ld.
uint64_t mat_bytes(int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  return uint64_t(ld * (cols - 1) + rows) * sizeof(float);
}

// vec_bytes is the extent of a vector of n elements with stride inc.
uint64_t vec_bytes(int64_t n, int64_t inc) {
  if (n == 0) return 0;
  return uint64_t(1 + (n - 1) * (inc < 0 ? -inc : inc)) * sizeof(float);
}

}  // namespace

void syncthreads(const char* file, int line) {
  Fiber* f = sched.cur;
  if (f == nullptr) {
    fprintf(stderr, "emu: __syncthreads outside a kernel launch\n");
    abort();
  }
  f->file = file;
  f->line = line;
  f->barriers++;
  to_sched(*f);
}

}  // namespace emu

using emu::fail;
using emu::kDivergence;
using emu::kFailed;
using emu::kInvalid;
using emu::kOK;

extern "C" {

int emu_malloc(int64_t bytes, uintptr_t* out, char* err, size_t errlen) {
  if (bytes <= 0) return fail(kInvalid, err, errlen, "cannot allocate %lld bytes", (long long)bytes);
  void* p;
  if ((uint64_t)bytes >= emu::kMapBytes) {
    p = mmap(nullptr, emu::map_size(bytes), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) p = nullptr;
  } else {
    const size_t size = ((size_t)bytes + 255) / 256 * 256;
    p = aligned_alloc(256, size);
    if (p != nullptr) memset(p, 0, size);
  }
  if (p == nullptr) {
    return fail(kFailed, err, errlen, "out of memory allocating %lld bytes", (long long)bytes);
  }
  std::lock_guard<std::mutex> lk(emu::heap_mu);
  emu::heap_live[(uintptr_t)p] = (uint64_t)bytes;
  *out = (uintptr_t)p;
  return kOK;
}

int emu_free(uintptr_t p, char* err, size_t errlen) {
  std::lock_guard<std::mutex> lk(emu::heap_mu);
  auto it = emu::heap_live.find(p);
  if (it == emu::heap_live.end()) {
    return fail(kInvalid, err, errlen, "free of %#llx, which is not a live allocation",
                (unsigned long long)p);
  }
  if (it->second >= emu::kMapBytes) {
    munmap((void*)p, emu::map_size(it->second));
  } else {
    free((void*)p);
  }
  emu::heap_live.erase(it);
  return kOK;
}

int emu_htod(uintptr_t dst, const void* src, int64_t bytes, char* err, size_t errlen) {
  if (bytes < 0) return fail(kInvalid, err, errlen, "negative size %lld", (long long)bytes);
  if (int rc = emu::check_ranges({{dst, uint64_t(bytes)}}, err, errlen)) return rc;
  if (bytes > 0) memcpy((void*)dst, src, (size_t)bytes);
  return kOK;
}

int emu_dtoh(void* dst, uintptr_t src, int64_t bytes, char* err, size_t errlen) {
  if (bytes < 0) return fail(kInvalid, err, errlen, "negative size %lld", (long long)bytes);
  if (int rc = emu::check_ranges({{src, uint64_t(bytes)}}, err, errlen)) return rc;
  if (bytes > 0) memcpy(dst, (const void*)src, (size_t)bytes);
  return kOK;
}

int emu_dtod(uintptr_t dst, uintptr_t src, int64_t bytes, char* err, size_t errlen) {
  if (bytes < 0) return fail(kInvalid, err, errlen, "negative size %lld", (long long)bytes);
  if (int rc = emu::check_ranges({{dst, uint64_t(bytes)}, {src, uint64_t(bytes)}}, err, errlen)) return rc;
  if (bytes > 0) memmove((void*)dst, (const void*)src, (size_t)bytes);
  return kOK;
}

int emu_memset_d32(uintptr_t dst, uint32_t v, int64_t n, char* err, size_t errlen) {
  if (n < 0) return fail(kInvalid, err, errlen, "negative count %lld", (long long)n);
  if (dst % 4 != 0) return fail(kInvalid, err, errlen, "%#llx is not 4-byte aligned", (unsigned long long)dst);
  if (int rc = emu::check_ranges({{dst, uint64_t(n) * 4}}, err, errlen)) return rc;
  uint32_t* p = (uint32_t*)dst;
  for (int64_t i = 0; i < n; i++) p[i] = v;
  return kOK;
}

int emu_launch(const char* name, const int64_t grid[3], const int64_t block[3],
               const uint64_t* args, int64_t nargs, char* err, size_t errlen) {
  const emu::Kernel* k = emu::find_kernel(name);
  if (k == nullptr) return fail(kInvalid, err, errlen, "unknown kernel %s", name);
  if (nargs != k->arity) {
    return fail(kInvalid, err, errlen, "%s takes %d arguments, got %lld", name, k->arity,
                (long long)nargs);
  }
  const int64_t gmax[3] = {2147483647, 65535, 65535}, bmax[3] = {1024, 1024, 64};
  for (int d = 0; d < 3; d++) {
    if (grid[d] < 1 || grid[d] > gmax[d] || block[d] < 1 || block[d] > bmax[d]) {
      return fail(kInvalid, err, errlen, "%s: bad launch dimensions grid (%lld,%lld,%lld) block (%lld,%lld,%lld)",
                  name, (long long)grid[0], (long long)grid[1], (long long)grid[2],
                  (long long)block[0], (long long)block[1], (long long)block[2]);
    }
  }
  const int64_t nthreads = block[0] * block[1] * block[2];
  if (nthreads > emu::kMaxThreads) {
    return fail(kInvalid, err, errlen, "%s: %lld threads per block, at most %u", name,
                (long long)nthreads, emu::kMaxThreads);
  }
  {
    std::lock_guard<std::mutex> lk(emu::heap_mu);
    for (int i = 0; i < k->arity; i++) {
      if ((k->ptr_mask >> i & 1) && args[i] != 0 && !emu::in_heap(args[i], 0)) {
        return fail(kInvalid, err, errlen, "%s: argument %d (%#llx) is not device memory",
                    name, i, (unsigned long long)args[i]);
      }
    }
  }
  std::vector<uint64_t> argv(args, args + nargs);
  std::lock_guard<std::mutex> lk(emu::sched.mu);
  emu::sched.invoke = k->invoke;
  emu::sched.args = argv.data();
  emu::g_grid_dim = dim3((unsigned)grid[0], (unsigned)grid[1], (unsigned)grid[2]);
  emu::g_block_dim = dim3((unsigned)block[0], (unsigned)block[1], (unsigned)block[2]);
  emu::Poison poison;
  bool first = true;
  for (unsigned z = 0; z < emu::g_grid_dim.z; z++) {
    for (unsigned y = 0; y < emu::g_grid_dim.y; y++) {
      for (unsigned x = 0; x < emu::g_grid_dim.x; x++) {
        emu::g_block_idx = {x, y, z};
        if (int rc = emu::run_block((unsigned)nthreads, poison, err, errlen)) {
          std::string msg(err);
          return fail(rc, err, errlen, "%s: block (%u,%u,%u): %s", name, x, y, z, msg.c_str());
        }
        if (first) poison.shrink(), first = false;
      }
    }
  }
  return kOK;
}

int emu_num_kernels(void) { return (int)emu::num_kernels(); }

const char* emu_kernel_name(int i) {
  const emu::Kernel* k = emu::kernel_at((size_t)i);
  return k ? k->name : nullptr;
}

int emu_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
              uintptr_t a, int64_t lda, uintptr_t b, int64_t ldb, float beta, uintptr_t c,
              int64_t ldc, char* err, size_t errlen) {
  const int64_t ar = transa ? k : m, ac = transa ? m : k;
  const int64_t br = transb ? n : k, bc = transb ? k : n;
  if (m < 0 || n < 0 || k < 0 || lda < std::max<int64_t>(1, ar) ||
      ldb < std::max<int64_t>(1, br) || ldc < std::max<int64_t>(1, m)) {
    return fail(kInvalid, err, errlen,
                "sgemm: invalid m=%lld n=%lld k=%lld lda=%lld ldb=%lld ldc=%lld", (long long)m,
                (long long)n, (long long)k, (long long)lda, (long long)ldb, (long long)ldc);
  }
  if (m == 0 || n == 0) return kOK;
  const bool read_ab = alpha != 0.0f && k > 0;
  if (int rc = emu::check_ranges({{a, read_ab ? emu::mat_bytes(ar, ac, lda) : 0},
                                  {b, read_ab ? emu::mat_bytes(br, bc, ldb) : 0},
                                  {c, emu::mat_bytes(m, n, ldc)}},
                                 err, errlen)) {
    return rc;
  }
  const float* A = (const float*)a;
  const float* B = (const float*)b;
  float* C = (float*)c;
  for (int64_t j = 0; j < n; j++) {
    for (int64_t i = 0; i < m; i++) {
      double acc = 0;
      if (read_ab) {
        for (int64_t l = 0; l < k; l++) {
          const float av = transa ? A[l + i * lda] : A[i + l * lda];
          const float bv = transb ? B[j + l * ldb] : B[l + j * ldb];
          acc += (double)av * (double)bv;
        }
      }
      float& cv = C[i + j * ldc];
      cv = (float)((double)alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * (double)cv));
    }
  }
  return kOK;
}

int emu_sgemv(int trans, int64_t m, int64_t n, float alpha, uintptr_t a, int64_t lda,
              uintptr_t x, int64_t incx, float beta, uintptr_t y, int64_t incy, char* err,
              size_t errlen) {
  if (m < 0 || n < 0 || lda < std::max<int64_t>(1, m) || incx == 0 || incy == 0) {
    return fail(kInvalid, err, errlen, "sgemv: invalid m=%lld n=%lld lda=%lld incx=%lld incy=%lld",
                (long long)m, (long long)n, (long long)lda, (long long)incx, (long long)incy);
  }
  if (m == 0 || n == 0) return kOK;
  const int64_t lx = trans ? m : n, ly = trans ? n : m;
  const bool read_ax = alpha != 0.0f;
  if (int rc = emu::check_ranges({{a, read_ax ? emu::mat_bytes(m, n, lda) : 0},
                                  {x, read_ax ? emu::vec_bytes(lx, incx) : 0},
                                  {y, emu::vec_bytes(ly, incy)}},
                                 err, errlen)) {
    return rc;
  }
  const float* A = (const float*)a;
  const float* X = (const float*)x;
  float* Y = (float*)y;
  // BLAS: a negative increment walks the vector from its far end.
  const int64_t x0 = incx < 0 ? (1 - lx) * incx : 0, y0 = incy < 0 ? (1 - ly) * incy : 0;
  for (int64_t i = 0; i < ly; i++) {
    double acc = 0;
    if (read_ax) {
      for (int64_t l = 0; l < lx; l++) {
        const float av = trans ? A[l + i * lda] : A[i + l * lda];
        acc += (double)av * (double)X[x0 + l * incx];
      }
    }
    float& yv = Y[y0 + i * incy];
    yv = (float)((double)alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * (double)yv));
  }
  return kOK;
}

}  // extern "C"

// ---- the kernels ---------------------------------------------------------
// Included last so that their macros cannot reach the emulator's code.

#include "selftest.cu"

#if __has_include("../../kernels.cu")
#include "../../kernels.cu"
#define EMU_HAVE_KERNELS_CU 1
// The compiled kernels.cu bytes, so a test can detect a stale build: Go's
// build cache does not track files that cgo sources #include.
__asm__(
    ".pushsection .rodata.ffc_emu_kernels_src,\"a\"\n"
    ".globl ffc_emu_kernels_src\n"
    ".hidden ffc_emu_kernels_src\n"
    "ffc_emu_kernels_src:\n"
    ".incbin \"../../kernels.cu\"\n"
    ".globl ffc_emu_kernels_src_end\n"
    ".hidden ffc_emu_kernels_src_end\n"
    "ffc_emu_kernels_src_end:\n"
    ".byte 0\n"
    ".popsection\n");
extern "C" const char ffc_emu_kernels_src[] __attribute__((visibility("hidden")));
extern "C" const char ffc_emu_kernels_src_end[] __attribute__((visibility("hidden")));
#endif

namespace emu {
namespace {

#define EMU_ENTRY(k) entry<&::k>(#k),
const Kernel kernels[] = {
    EMU_SELFTEST_KERNELS(EMU_ENTRY)
#if defined(EMU_HAVE_KERNELS_CU) && defined(FFC_KERNELS)
        FFC_KERNELS(EMU_ENTRY)
#endif
};
#undef EMU_ENTRY

const Kernel* find_kernel(const char* name) {
  for (const Kernel& k : kernels) {
    if (strcmp(k.name, name) == 0) return &k;
  }
  return nullptr;
}

size_t num_kernels() { return sizeof kernels / sizeof kernels[0]; }

const Kernel* kernel_at(size_t i) { return i < num_kernels() ? &kernels[i] : nullptr; }

}  // namespace
}  // namespace emu

extern "C" const char* emu_kernels_source(size_t* len) {
#ifdef EMU_HAVE_KERNELS_CU
  *len = (size_t)(ffc_emu_kernels_src_end - ffc_emu_kernels_src);
  return ffc_emu_kernels_src;
#else
  *len = 0;
  return nullptr;
#endif
}
