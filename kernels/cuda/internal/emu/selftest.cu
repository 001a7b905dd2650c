// selftest.cu: kernels that test the emulator itself (emu_test.go). They
// follow the conventions of kernels/cuda/kernels.cu and compile with nvcc too.

// emu_test_block_sum writes one partial sum per block: a grid-stride
// accumulation, then a tree reduction in shared memory that works for any
// blockDim.x (a barrier per level).
extern "C" __global__ void __launch_bounds__(1024)
    emu_test_block_sum(const float* __restrict__ x, float* __restrict__ partial, int n) {
  __shared__ float sh[1024];
  const unsigned int tid = threadIdx.x;
  float acc = 0.0f;
  for (int i = blockIdx.x * blockDim.x + tid; i < n; i += blockDim.x * gridDim.x) {
    acc += __ldg(&x[i]);
  }
  sh[tid] = acc;
  __syncthreads();
  for (unsigned int s = 1; s < blockDim.x; s *= 2) {
    if (tid % (2 * s) == 0 && tid + s < blockDim.x) sh[tid] += sh[tid + s];
    __syncthreads();
  }
  if (tid == 0) partial[blockIdx.x] = sh[0];
}

// emu_test_scan computes the inclusive prefix sum of each blockDim.x-long
// segment of in (Hillis-Steele, double-buffered, a barrier per step).
extern "C" __global__ void emu_test_scan(const int* __restrict__ in, int* __restrict__ out,
                                         int n) {
  __shared__ int buf[2][1024];
  const int tid = threadIdx.x;
  const int i = blockIdx.x * blockDim.x + tid;
  int src = 0;
  buf[0][tid] = i < n ? in[i] : 0;
  __syncthreads();
  for (int off = 1; off < (int)blockDim.x; off *= 2) {
    int v = buf[src][tid];
    if (tid >= off) v += buf[src][tid - off];
    buf[1 - src][tid] = v;
    src = 1 - src;
    __syncthreads();
  }
  if (i < n) out[i] = buf[src][tid];
}

#define EMU_TEST_TILE 16

// emu_test_transpose transposes a row-major rows x cols matrix through a
// shared tile; launch with a 2-D grid of 16x16 blocks.
extern "C" __global__ void emu_test_transpose(const float* __restrict__ in,
                                              float* __restrict__ out, int rows, int cols) {
  __shared__ float tile[EMU_TEST_TILE][EMU_TEST_TILE + 1];
  int x = blockIdx.x * EMU_TEST_TILE + threadIdx.x;
  int y = blockIdx.y * EMU_TEST_TILE + threadIdx.y;
  if (x < cols && y < rows) tile[threadIdx.y][threadIdx.x] = in[y * cols + x];
  __syncthreads();
  x = blockIdx.y * EMU_TEST_TILE + threadIdx.x;
  y = blockIdx.x * EMU_TEST_TILE + threadIdx.y;
  if (x < rows && y < cols) out[y * rows + x] = tile[threadIdx.x][threadIdx.y];
}

// emu_test_index3d writes, for each point of an nx x ny x nz box covered by
// a 3-D grid of 3-D blocks, its coordinates and its linear thread id in the
// block; thread (0,0,0) of block (0,0,0) also writes gridDim and blockDim.
extern "C" __global__ void emu_test_index3d(int* __restrict__ out, int* __restrict__ dims,
                                            int nx, int ny, int nz) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  const int z = blockIdx.z * blockDim.z + threadIdx.z;
  if (x == 0 && y == 0 && z == 0) {
    dims[0] = gridDim.x, dims[1] = gridDim.y, dims[2] = gridDim.z;
    dims[3] = blockDim.x, dims[4] = blockDim.y, dims[5] = blockDim.z;
  }
  if (x >= nx || y >= ny || z >= nz) return;
  int* o = out + 4 * ((z * ny + y) * nx + x);
  o[0] = x, o[1] = y, o[2] = z;
  o[3] = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}

// emu_test_params echoes its scalar parameters so the test can check how
// argument slots are unpacked.
extern "C" __global__ void emu_test_params(int* iout, float* fout, double* dout,
                                           const double* din, int a, float b, int c,
                                           float d) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  iout[0] = a, iout[1] = c, iout[2] = __float_as_int(b), iout[3] = min(a, c);
  iout[4] = max(a, c), iout[5] = min(a, blockDim.x) == blockDim.x ? 1 : 0;
  fout[0] = b, fout[1] = d, fout[2] = max(b, d), fout[3] = __int_as_float(c);
  dout[0] = din[0] * 2.0 + a;
}

__device__ __forceinline__ float emu_test_f(float v) {
  if (isnan(v)) return -1.0f;
  if (isinf(v)) return v > 0.0f ? INFINITY : -INFINITY;
  const float m = fminf(v, 0.0f);
  return __expf(-fabsf(v)) + rsqrtf(1.0f + v * v) + __fdividef(v, 4.0f) + logf(2.0f + m * m) +
         (isfinite(v) ? 0.0f : NAN);
}

// emu_test_math applies emu_test_f elementwise.
extern "C" __global__ void emu_test_math(const float* __restrict__ x, float* __restrict__ y,
                                         int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = emu_test_f(x[i]);
}

// emu_test_exit_early returns before a barrier in threads below k: barrier
// divergence unless k is 0 or at least blockDim.x.
extern "C" __global__ void emu_test_exit_early(int* out, int k) {
  if ((int)threadIdx.x < k) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

// emu_test_split_barrier makes odd and even threads wait at different
// barriers: divergence as soon as the block has two threads.
extern "C" __global__ void emu_test_split_barrier(int* out) {
  if (threadIdx.x % 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// emu_test_shared_uninit reads shared memory before writing it: the
// emulator fills it with 0xFF bytes before every block, so each block sees
// -1 whatever the previous block left there.
extern "C" __global__ void emu_test_shared_uninit(int* out) {
  __shared__ int sh[64];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sh[threadIdx.x];
  __syncthreads();
  sh[threadIdx.x] = 7;
}

#define EMU_SELFTEST_KERNELS(X) \
  X(emu_test_block_sum)         \
  X(emu_test_scan)              \
  X(emu_test_transpose)         \
  X(emu_test_index3d)           \
  X(emu_test_params)            \
  X(emu_test_math)              \
  X(emu_test_exit_early)        \
  X(emu_test_split_barrier)     \
  X(emu_test_shared_uninit)
