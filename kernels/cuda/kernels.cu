// kernels.cu: the custom CUDA kernels of the FFC trainer's kernels/cuda
// backend. `make ptx` compiles this file to PTX for sm_80 and sm_90
// (kernels/cuda/ptx, embedded in the Go package); kernels/cuda/internal/emu
// compiles the same file as C++ to run it on the CPU in tests.
//
// Conventions (the Go side in kernels/cuda/*.go relies on them):
//   - every kernel is extern "C", __launch_bounds__(FFC_MAX_BLOCK) (any
//     block size up to 1024 must launch), named ffc_*, listed in FFC_KERNELS at the
//     end of the file, and takes only float*, int*, double* pointers (const
//     or not), int and float parameters: the launcher passes one 8-byte
//     slot per parameter;
//   - block sizes are powers of two between 32 and 1024 (tree reductions);
//   - reductions use fixed-size shared arrays (FFC_MAX_BLOCK entries) and
//     accumulate in double where the CPU backend does;
//   - every __syncthreads() is reached by all threads of a block: a block
//     leaves early only as a whole (uniform conditions);
//   - out-of-range indices are skipped (rows left alone or zeroed as
//     documented); the Go side checks them first unless told not to.

#define FFC_MAX_BLOCK 1024
#define FFC_MAX_TOPK 64

// ---------------------------------------------------------------------------
// Helpers

__device__ __forceinline__ long long ffc_gtid() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long ffc_gstride() {
    return (long long)blockDim.x * gridDim.x;
}

// ffc_reduce_sum_d sums v over the block; every thread gets the total.
// s must hold blockDim.x doubles.
__device__ double ffc_reduce_sum_d(double v, double* s) {
    unsigned t = threadIdx.x;
    s[t] = v;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h) s[t] += s[t + h];
        __syncthreads();
    }
    double r = s[0];
    __syncthreads();
    return r;
}

// ffc_reduce_max_f is the block maximum of v (NaN ignored where a number
// exists); every thread gets it. s must hold blockDim.x floats.
__device__ float ffc_reduce_max_f(float v, float* s) {
    unsigned t = threadIdx.x;
    s[t] = v;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h) s[t] = fmaxf(s[t], s[t + h]);
        __syncthreads();
    }
    float r = s[0];
    __syncthreads();
    return r;
}

// ---------------------------------------------------------------------------
// Elementwise

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_fill(float* x, int n, float v) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) x[i] = v;
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_add(const float* a, const float* b, float* dst, int n) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) dst[i] = a[i] + b[i];
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_mul(const float* a, const float* b, float* dst, int n) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) dst[i] = a[i] * b[i];
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_scale(float* x, int n, float alpha) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) x[i] = alpha * x[i];
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_add_scalar(float* x, int n, float beta) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) x[i] = x[i] + beta;
}

// ffc_axpby: y = alpha·x + beta·y; with beta = 0, y is not read.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_axpby(const float* x, float* y, int n, float alpha, float beta) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) {
        float v = alpha * x[i];
        if (beta != 0.0f) v += beta * y[i];
        y[i] = v;
    }
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_relu(const float* x, float* y, int n) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) {
        float v = x[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_relu_backward(const float* x, const float* dy, float* dx, int n) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

// ffc_sum_partial writes each block's sum of x (grid-strided) to part.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_sum_partial(const float* x, int n, double* part) {
    __shared__ double s[FFC_MAX_BLOCK];
    double acc = 0;
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) acc += (double)x[i];
    double tot = ffc_reduce_sum_d(acc, s);
    if (threadIdx.x == 0) part[blockIdx.x] = tot;
}

// ffc_nonfinite_partial writes each block's count of NaN and ±Inf to part.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_nonfinite_partial(const float* x, int n, double* part) {
    __shared__ double s[FFC_MAX_BLOCK];
    double acc = 0;
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) {
        float v = x[i];
        float d = v - v;  // NaN exactly for NaN and ±Inf
        if (d != d) acc += 1;
    }
    double tot = ffc_reduce_sum_d(acc, s);
    if (threadIdx.x == 0) part[blockIdx.x] = tot;
}

// ffc_sum_final sums the partials with one block: out[0] = Σ part.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_sum_final(const double* part, int nparts, double* out) {
    __shared__ double s[FFC_MAX_BLOCK];
    double acc = 0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += part[i];
    double tot = ffc_reduce_sum_d(acc, s);
    if (threadIdx.x == 0) out[0] = tot;
}

// ffc_sgd is torch.optim.SGD with dampening 0 (see kernels.Optimizer).
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_sgd(float* w, const float* g, float* v, int n, float lr, float mu, float wd, int nesterov) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) {
        float d = g[i] + wd * w[i];
        float vi = mu * v[i] + d;
        v[i] = vi;
        if (nesterov) {
            w[i] -= lr * (d + mu * vi);
        } else {
            w[i] -= lr * vi;
        }
    }
}

// ---------------------------------------------------------------------------
// Convolution lowering and layout

__device__ __forceinline__ long long ffc_plane(int layout, int n, int c, int N, int C, int HW) {
    // layout 0 = NCHW, 1 = CNHW (kernels.Layout)
    return layout == 1 ? ((long long)c * N + n) * HW : ((long long)n * C + c) * HW;
}

// ffc_im2col: one thread per column-matrix element; row (c·K+kh)·K+kw,
// column (n·OH+oh)·OW+ow.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_im2col(const float* x, float* col, int N, int C, int H, int W, int K, int S, int P,
                                      int OH, int OW, int layout) {
    long long cols = (long long)N * OH * OW;
    long long total = (long long)C * K * K * cols;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        long long r = e / cols;
        long long j = e - r * cols;
        int n = (int)(j / ((long long)OH * OW));
        int rem = (int)(j - (long long)n * OH * OW);
        int oh = rem / OW, ow = rem - (rem / OW) * OW;
        int c = (int)(r / (K * K));
        int kk = (int)(r - (long long)c * K * K);
        int kh = kk / K, kw = kk - (kk / K) * K;
        int ih = oh * S - P + kh, iw = ow * S - P + kw;
        float v = 0.0f;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[ffc_plane(layout, n, c, N, C, H * W) + (long long)ih * W + iw];
        col[e] = v;
    }
}

// ffc_col2im: one thread per input element, gathering every column entry
// that im2col would have read from it (no atomics, deterministic).
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_col2im(const float* col, float* dx, int N, int C, int H, int W, int K, int S, int P,
                                      int OH, int OW, int layout) {
    long long cols = (long long)N * OH * OW;
    long long total = (long long)N * C * H * W;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        int iw = (int)(e % W);
        long long q = e / W;
        int ih = (int)(q % H);
        q /= H;
        int n, c;
        if (layout == 1) {
            n = (int)(q % N);
            c = (int)(q / N);
        } else {
            c = (int)(q % C);
            n = (int)(q / C);
        }
        float acc = 0.0f;
        for (int kh = 0; kh < K; kh++) {
            int th = ih + P - kh;
            if (th < 0 || th % S != 0) continue;
            int oh = th / S;
            if (oh >= OH) continue;
            for (int kw = 0; kw < K; kw++) {
                int tw = iw + P - kw;
                if (tw < 0 || tw % S != 0) continue;
                int ow = tw / S;
                if (ow >= OW) continue;
                long long r = ((long long)c * K + kh) * K + kw;
                acc += col[r * cols + ((long long)n * OH + oh) * OW + ow];
            }
        }
        dx[e] = acc;
    }
}

// ffc_swap_axes: dst[j][i][t] = src[i][j][t] for src viewed as [a][b][inner].
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_swap_axes(const float* src, float* dst, int a, int b, int inner) {
    long long total = (long long)a * b * inner;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        int t = (int)(e % inner);
        long long q = e / inner;
        int i = (int)(q % a);
        int j = (int)(q / a);
        dst[e] = src[((long long)i * b + j) * inner + t];
    }
}

// ffc_add_channel: x[o][c][i] += bias[c].
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_add_channel(const float* bias, float* x, int outer, int C, int inner) {
    long long total = (long long)outer * C * inner;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        int c = (int)((e / inner) % C);
        x[e] += bias[c];
    }
}

// ffc_channel_sum: one block per channel, dst[c] += Σ_{o,i} x[o][c][i].
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_channel_sum(const float* x, float* dst, int outer, int C, int inner) {
    __shared__ double s[FFC_MAX_BLOCK];
    int c = blockIdx.x;
    long long m = (long long)outer * inner;
    double acc = 0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        long long o = e / inner, i = e - o * inner;
        acc += (double)x[(o * C + c) * inner + i];
    }
    double tot = ffc_reduce_sum_d(acc, s);
    if (threadIdx.x == 0) dst[c] += (float)tot;
}

// ---------------------------------------------------------------------------
// Batch normalisation, PReLU, L2 normalisation: one block per channel/row.

__device__ __forceinline__ long long ffc_chan_at(long long e, int C, int c, int inner) {
    long long o = e / inner, i = e - o * inner;
    return (o * C + c) * inner + i;
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_bn_train(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                                        float* invStd, float* runMean, float* runVar, int hasRun, int outer, int C,
                                        int inner, float eps, float momentum) {
    __shared__ double s[FFC_MAX_BLOCK];
    int c = blockIdx.x;
    long long m = (long long)outer * inner;
    double acc = 0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) acc += (double)x[ffc_chan_at(e, C, c, inner)];
    double sum = ffc_reduce_sum_d(acc, s);
    double mu = m > 0 ? sum / (double)m : 0.0;
    acc = 0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        double d = (double)x[ffc_chan_at(e, C, c, inner)] - mu;
        acc += d * d;
    }
    double ss = ffc_reduce_sum_d(acc, s);
    double var = m > 0 ? ss / (double)m : 0.0;
    double inv = 1.0 / sqrt(var + (double)eps);
    double a = (double)gamma[c] * inv;
    double b = (double)beta[c] - mu * a;
    float a32 = (float)a, b32 = (float)b;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        long long at = ffc_chan_at(e, C, c, inner);
        y[at] = x[at] * a32 + b32;
    }
    if (threadIdx.x == 0) {
        mean[c] = (float)mu;
        invStd[c] = (float)inv;
        if (hasRun && m > 0) {
            double unbiased = m > 1 ? ss / (double)(m - 1) : var;
            double mo = (double)momentum;
            runMean[c] = (float)((1 - mo) * (double)runMean[c] + mo * mu);
            runVar[c] = (float)((1 - mo) * (double)runVar[c] + mo * unbiased);
        }
    }
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_bn_infer(const float* x, const float* gamma, const float* beta, const float* runMean,
                                        const float* runVar, float* y, int outer, int C, int inner, float eps) {
    long long total = (long long)outer * C * inner;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        int c = (int)((e / inner) % C);
        double a = (double)gamma[c] / sqrt((double)runVar[c] + (double)eps);
        double b = (double)beta[c] - (double)runMean[c] * a;
        y[e] = x[e] * (float)a + (float)b;
    }
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_bn_backward(const float* x, const float* gamma, const float* mean, const float* invStd,
                                           const float* dy, float* dx, float* dgamma, float* dbeta, int outer, int C,
                                           int inner) {
    __shared__ double s[FFC_MAX_BLOCK];
    int c = blockIdx.x;
    long long m = (long long)outer * inner;
    double mu = (double)mean[c], inv = (double)invStd[c];
    double a1 = 0, a2 = 0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        long long at = ffc_chan_at(e, C, c, inner);
        double g = (double)dy[at];
        a1 += g;
        a2 += g * ((double)x[at] - mu) * inv;
    }
    double sdy = ffc_reduce_sum_d(a1, s);
    double sdyx = ffc_reduce_sum_d(a2, s);
    if (threadIdx.x == 0) {
        dbeta[c] += (float)sdy;
        dgamma[c] += (float)sdyx;
    }
    if (m == 0) return;  // uniform: no barrier follows
    double k = (double)gamma[c] * inv;
    double kx = -k * sdyx / (double)m * inv;
    double k0 = -k * sdy / (double)m - kx * mu;
    float k32 = (float)k, kx32 = (float)kx, k032 = (float)k0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        long long at = ffc_chan_at(e, C, c, inner);
        dx[at] = k32 * dy[at] + kx32 * x[at] + k032;
    }
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_prelu(const float* x, const float* slope, float* y, int outer, int C, int inner) {
    long long total = (long long)outer * C * inner;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        int c = (int)((e / inner) % C);
        float v = x[e];
        y[e] = v > 0.0f ? v : slope[c] * v;
    }
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_prelu_backward(const float* x, const float* slope, const float* dy, float* dx,
                                              float* dslope, int outer, int C, int inner) {
    __shared__ double s[FFC_MAX_BLOCK];
    int c = blockIdx.x;
    long long m = (long long)outer * inner;
    float a = slope[c];
    double acc = 0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        long long at = ffc_chan_at(e, C, c, inner);
        float v = x[at], g = dy[at];
        if (v > 0.0f) {
            dx[at] = g;
        } else {
            acc += (double)g * (double)v;
            dx[at] = a * g;
        }
    }
    double tot = ffc_reduce_sum_d(acc, s);
    if (threadIdx.x == 0) dslope[c] += (float)tot;
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_l2norm(const float* x, float* y, float* norms, int rows, int cols, float eps) {
    __shared__ double s[FFC_MAX_BLOCK];
    int r = blockIdx.x;
    const float* xr = x + (long long)r * cols;
    float* yr = y + (long long)r * cols;
    double acc = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) acc += (double)xr[i] * (double)xr[i];
    double nrm = sqrt(ffc_reduce_sum_d(acc, s));
    float inv = (float)(1.0 / fmax(nrm, (double)eps));
    for (int i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = xr[i] * inv;
    if (threadIdx.x == 0) norms[r] = (float)nrm;
}

extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_l2norm_backward(const float* y, const float* norms, const float* dy, float* dx, int rows,
                                               int cols, float eps) {
    __shared__ double s[FFC_MAX_BLOCK];
    int r = blockIdx.x;
    const float* yr = y + (long long)r * cols;
    const float* dyr = dy + (long long)r * cols;
    float* dxr = dx + (long long)r * cols;
    double nrm = (double)norms[r];
    if (nrm <= (double)eps) {  // uniform per block
        float inv = 1.0f / eps;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) dxr[i] = dyr[i] * inv;
        return;
    }
    double acc = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) acc += (double)yr[i] * (double)dyr[i];
    float d = (float)ffc_reduce_sum_d(acc, s);
    float inv = (float)(1.0 / nrm);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) dxr[i] = (dyr[i] - yr[i] * d) * inv;
}

// ---------------------------------------------------------------------------
// Rows of the pool: gather, scatter, index checks

// ffc_gather_rows: dst[i] = src[idx[i]], zero where idx[i] < 0 or ≥ srcRows.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_gather_rows(const float* src, const int* idx, float* dst, int n, int cols, int srcRows) {
    long long total = (long long)n * cols;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        int i = (int)(e / cols);
        int col = (int)(e - (long long)i * cols);
        int j = idx[i];
        dst[e] = (j >= 0 && j < srcRows) ? src[(long long)j * cols + col] : 0.0f;
    }
}

// ffc_scatter_owner: owner[idx[i]] = the largest i naming that row (owner
// filled with −1 first), so that the last of repeated indices wins.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_scatter_owner(const int* idx, int* owner, int n, int dstRows) {
    for (long long i = ffc_gtid(); i < n; i += ffc_gstride()) {
        int j = idx[i];
        if (j >= 0 && j < dstRows) atomicMax(owner + j, (int)i);
    }
}

// ffc_scatter_rows: dst[idx[i]] = src[i] for the owning i of each row.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_scatter_rows(const float* src, const int* idx, const int* owner, float* dst, int n,
                                            int cols, int dstRows) {
    long long total = (long long)n * cols;
    for (long long e = ffc_gtid(); e < total; e += ffc_gstride()) {
        int i = (int)(e / cols);
        int col = (int)(e - (long long)i * cols);
        int j = idx[i];
        if (j >= 0 && j < dstRows && owner[j] == i) dst[(long long)j * cols + col] = src[e];
    }
}

// ffc_check_index: out[0] = the first i with idx[i] ≥ limit, or −1 (one
// block).
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_check_index(const int* idx, int n, int limit, int* out) {
    __shared__ int s[FFC_MAX_BLOCK];
    int first = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (idx[i] >= limit) {
            first = i;
            break;
        }
    }
    unsigned t = threadIdx.x;
    s[t] = first;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h) s[t] = min(s[t], s[t + h]);
        __syncthreads();
    }
    if (t == 0) out[0] = s[0] == 0x7fffffff ? -1 : s[0];
}

// ---------------------------------------------------------------------------
// Losses: one block per row.

// Margin kinds as kernels.MarginKind: 0 none, 1 CosFace, 2 ArcFace.
__device__ void ffc_margin_target(int kind, double m, double c, double* phi, double* dphi) {
    if (kind == 1) {
        *phi = c - m;
        *dphi = 1;
        return;
    }
    if (kind == 2) {
        c = fmax(-1.0, fmin(1.0, c));
        double th = cos(3.14159265358979323846 - m);
        if (c > th) {
            double sn = sqrt(fmax(0.0, 1 - c * c));
            *phi = c * cos(m) - sn * sin(m);
            *dphi = cos(m) + c * sin(m) / fmax(sn, 1e-4);  // kernels.ArcSinFloor
            return;
        }
        *phi = c - sin(3.14159265358979323846 - m) * m;
        *dphi = 1;
        return;
    }
    *phi = c;
    *dphi = 1;
}

// ffc_margin_ce: fused margin softmax cross-entropy. Pass 1 reads the row
// once for the running maximum and the rescaled sum of exponentials (online
// softmax); pass 2 writes the gradient. grad may be cos itself; rows with
// target < 0 (or ≥ cols) are not touched. hasGrad/hasLoss select the outputs.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_margin_ce(const float* cos_, const int* targets, float* grad, float* rowLoss, int rows,
                                         int cols, int kind, float S, float M, float gradScale, int hasGrad,
                                         int hasLoss) {
    __shared__ float sm[FFC_MAX_BLOCK];
    __shared__ double sd[FFC_MAX_BLOCK];
    int r = blockIdx.x;
    int t = targets[r];
    if (t < 0 || t >= cols) return;  // uniform per block
    const float* row = cos_ + (long long)r * cols;
    double phi, dphi;
    ffc_margin_target(kind, (double)M, (double)row[t], &phi, &dphi);
    // Pass 1: per-thread running maximum m and sum s of e^(z−m) over j ≠ t.
    float mx = -INFINITY, sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        if (j == t) continue;
        float z = S * row[j];
        if (z > mx) {
            sum = sum * expf(mx - z) + 1.0f;
            mx = z;
        } else {
            sum += expf(z - mx);
        }
    }
    float bmax = ffc_reduce_max_f(mx, sm);
    double zt = (double)S * phi;
    double shift = fmax((double)bmax, zt);
    double part = sum > 0.0f ? (double)sum * exp((double)mx - shift) : 0.0;
    double tot = ffc_reduce_sum_d(part, sd);
    double et = exp(zt - shift);
    tot += et;
    if (hasLoss && threadIdx.x == 0) rowLoss[r] = (float)(log(tot) - (zt - shift));
    if (!hasGrad) return;  // uniform
    float* g = grad + (long long)r * cols;
    float f = (float)((double)gradScale * (double)S / tot);
    float sh = (float)shift;
    // row[t] was read by every thread above (phi) before the barriers of the
    // reductions, so grad may overwrite cos.
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        if (j == t) {
            g[j] = (float)((double)gradScale * (double)S * (et / tot - 1) * dphi);
        } else {
            g[j] = expf(S * row[j] - sh) * f;
        }
    }
}

// ffc_topk_local keeps, for one thread, the k largest (value, column) of its
// strided share of the row, NaN ranked as −Inf, ties by ascending column.
// Returns the count kept (≤ k).
__device__ int ffc_topk_local(const float* row, int cols, int k, float* kv, int* ki) {
    int cnt = 0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = row[j];
        if (v != v) v = -INFINITY;
        if (cnt == k && !(v > kv[k - 1])) continue;
        int p = cnt < k ? cnt : k - 1;
        if (cnt < k) cnt++;
        while (p > 0 && v > kv[p - 1]) {
            kv[p] = kv[p - 1];
            ki[p] = ki[p - 1];
            p--;
        }
        kv[p] = v;
        ki[p] = j;
    }
    return cnt;
}

// ffc_topk_merge merges the threads' lists: k rounds of a block arg-max
// (value descending, column ascending). outV/outI (shared, k entries)
// receive the keys (NaN as −Inf) and columns. Every thread must call it.
__device__ void ffc_topk_merge(int k, const float* kv, const int* ki, int cnt, float* sv, int* si, int* sw,
                               float* outV, int* outI) {
    unsigned t = threadIdx.x;
    int head = 0;
    for (int p = 0; p < k; p++) {
        bool has = head < cnt;
        sv[t] = has ? kv[head] : -INFINITY;
        si[t] = has ? ki[head] : 0x7fffffff;
        sw[t] = t;
        __syncthreads();
        for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
            if (t < h) {
                float a = sv[t], b = sv[t + h];
                int ia = si[t], ib = si[t + h];
                if (b > a || (b == a && ib < ia)) {
                    sv[t] = b;
                    si[t] = ib;
                    sw[t] = sw[t + h];
                }
            }
            __syncthreads();
        }
        if (t == 0) {
            outV[p] = sv[0];
            outI[p] = si[0];
        }
        if ((unsigned)sw[0] == t) head++;
        __syncthreads();
    }
}

// ffc_topk: the k largest values of each row and their columns.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_topk(const float* x, float* vals, int* idx, int rows, int cols, int k) {
    __shared__ float sv[FFC_MAX_BLOCK];
    __shared__ int si[FFC_MAX_BLOCK];
    __shared__ int sw[FFC_MAX_BLOCK];
    __shared__ float ov[FFC_MAX_TOPK];
    __shared__ int oi[FFC_MAX_TOPK];
    float kv[FFC_MAX_TOPK];
    int ki[FFC_MAX_TOPK];
    int r = blockIdx.x;
    const float* row = x + (long long)r * cols;
    int cnt = ffc_topk_local(row, cols, k, kv, ki);
    ffc_topk_merge(k, kv, ki, cnt, sv, si, sw, ov, oi);
    for (int p = threadIdx.x; p < k; p += blockDim.x) {
        vals[(long long)r * k + p] = row[oi[p]];
        idx[(long long)r * k + p] = oi[p];
    }
}

// ffc_fresh_topk: fresh-ID loss Σ max(topK(cos), 0) per selected row
// (targets null, hasTargets 0, or targets[r] < 0) and its gradient.
extern "C" __global__ void __launch_bounds__(FFC_MAX_BLOCK) ffc_fresh_topk(const float* cos_, const int* targets, float* grad, float* rowLoss, int rows,
                                          int cols, int k, float gradScale, int hasTargets, int hasGrad, int hasLoss) {
    __shared__ float sv[FFC_MAX_BLOCK];
    __shared__ int si[FFC_MAX_BLOCK];
    __shared__ int sw[FFC_MAX_BLOCK];
    __shared__ float ov[FFC_MAX_TOPK];
    __shared__ int oi[FFC_MAX_TOPK];
    float kv[FFC_MAX_TOPK];
    int ki[FFC_MAX_TOPK];
    int r = blockIdx.x;
    if (hasTargets && targets[r] >= 0) return;  // uniform per block
    const float* row = cos_ + (long long)r * cols;
    int cnt = ffc_topk_local(row, cols, k, kv, ki);
    ffc_topk_merge(k, kv, ki, cnt, sv, si, sw, ov, oi);
    if (hasLoss && threadIdx.x == 0) {
        double loss = 0;
        for (int p = 0; p < k; p++)
            if (ov[p] > 0.0f) loss += (double)ov[p];
        rowLoss[r] = (float)loss;
    }
    if (!hasGrad) return;  // uniform
    float* g = grad + (long long)r * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) g[j] = 0.0f;
    __syncthreads();
    for (int p = threadIdx.x; p < k; p += blockDim.x)
        if (ov[p] > 0.0f) g[oi[p]] = gradScale;
}

// FFC_KERNELS lists every kernel above (the emulator's launch table and the
// Go side's name list are checked against it).
#define FFC_KERNELS(X)                                                                                           \
    X(ffc_fill) X(ffc_add) X(ffc_mul) X(ffc_scale) X(ffc_add_scalar) X(ffc_axpby) X(ffc_relu) X(ffc_relu_backward) \
    X(ffc_sum_partial) X(ffc_nonfinite_partial) X(ffc_sum_final) X(ffc_sgd) X(ffc_im2col) X(ffc_col2im)          \
    X(ffc_swap_axes) X(ffc_add_channel) X(ffc_channel_sum) X(ffc_bn_train) X(ffc_bn_infer) X(ffc_bn_backward)     \
    X(ffc_prelu) X(ffc_prelu_backward) X(ffc_l2norm) X(ffc_l2norm_backward) X(ffc_gather_rows)                    \
    X(ffc_scatter_owner) X(ffc_scatter_rows) X(ffc_check_index) X(ffc_margin_ce) X(ffc_topk) X(ffc_fresh_topk)
