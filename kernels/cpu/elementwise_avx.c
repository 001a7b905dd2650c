//go:build cgo && amd64

// AVX2 loops of batch normalisation and PReLU over one contiguous run of
// a channel (elementwise_avx.go); reductions accumulate in double, like
// the Go loops of reduce.go they replace on CPUs with AVX2 and FMA.

#include <immintrin.h>
#include "elementwise_avx.h"

int ffccpu_simd_supported(void) {
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

__attribute__((target("avx2,fma")))
static inline __m256d lo4(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }

__attribute__((target("avx2,fma")))
static inline __m256d hi4(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

__attribute__((target("avx2,fma")))
static inline double hsum(__m256d v) {
	__m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
	return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

__attribute__((target("avx2,fma")))
double ffccpu_sum(const float *x, long n) {
	__m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		a = _mm256_add_pd(a, lo4(v));
		b = _mm256_add_pd(b, hi4(v));
	}
	double s = hsum(_mm256_add_pd(a, b));
	for (; i < n; i++) s += x[i];
	return s;
}

__attribute__((target("avx2,fma")))
double ffccpu_sqdev(const float *x, long n, double mu) {
	__m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd(), m = _mm256_set1_pd(mu);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256d d0 = _mm256_sub_pd(lo4(v), m), d1 = _mm256_sub_pd(hi4(v), m);
		a = _mm256_fmadd_pd(d0, d0, a);
		b = _mm256_fmadd_pd(d1, d1, b);
	}
	double s = hsum(_mm256_add_pd(a, b));
	for (; i < n; i++) {
		double d = x[i] - mu;
		s += d * d;
	}
	return s;
}

__attribute__((target("avx2,fma")))
ffccpu_pair ffccpu_graddev(const float *dy, const float *x, long n, double mu) {
	__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
	__m256d b0 = _mm256_setzero_pd(), b1 = _mm256_setzero_pd(), m = _mm256_set1_pd(mu);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 g = _mm256_loadu_ps(dy + i), v = _mm256_loadu_ps(x + i);
		__m256d g0 = lo4(g), g1 = hi4(g);
		a0 = _mm256_add_pd(a0, g0);
		a1 = _mm256_add_pd(a1, g1);
		b0 = _mm256_fmadd_pd(g0, _mm256_sub_pd(lo4(v), m), b0);
		b1 = _mm256_fmadd_pd(g1, _mm256_sub_pd(hi4(v), m), b1);
	}
	double s = hsum(_mm256_add_pd(a0, a1)), t = hsum(_mm256_add_pd(b0, b1));
	for (; i < n; i++) {
		s += dy[i];
		t += (double)dy[i] * (x[i] - mu);
	}
	ffccpu_pair r = {s, t};
	return r;
}

__attribute__((target("avx2,fma")))
void ffccpu_affine(const float *x, long n, float a, float b, float *y) {
	__m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, vb));
	}
	for (; i < n; i++) y[i] = x[i] * a + b;
}

__attribute__((target("avx2,fma")))
void ffccpu_affine2(const float *dy, const float *x, long n, float k, float kx, float k0, float *dx) {
	__m256 vk = _mm256_set1_ps(k), vx = _mm256_set1_ps(kx), v0 = _mm256_set1_ps(k0);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 t = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vx, v0);
		_mm256_storeu_ps(dx + i, _mm256_fmadd_ps(_mm256_loadu_ps(dy + i), vk, t));
	}
	for (; i < n; i++) dx[i] = k * dy[i] + kx * x[i] + k0;
}

__attribute__((target("avx2,fma")))
void ffccpu_prelu(const float *x, long n, float slope, float *y) {
	__m256 s = _mm256_set1_ps(slope), z = _mm256_setzero_ps();
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256 pos = _mm256_cmp_ps(v, z, _CMP_GT_OQ);
		_mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_mul_ps(v, s), v, pos));
	}
	for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : x[i] * slope;
}

__attribute__((target("avx2,fma")))
double ffccpu_prelu_backward(const float *x, const float *dy, long n, float slope, float *dx) {
	__m256 s = _mm256_set1_ps(slope), z = _mm256_setzero_ps();
	__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i), g = _mm256_loadu_ps(dy + i);
		__m256 pos = _mm256_cmp_ps(v, z, _CMP_GT_OQ);
		_mm256_storeu_ps(dx + i, _mm256_blendv_ps(_mm256_mul_ps(g, s), g, pos));
		__m256 neg = _mm256_blendv_ps(v, z, pos); // x where x ≤ 0 (or NaN), else 0
		a0 = _mm256_fmadd_pd(lo4(g), lo4(neg), a0);
		a1 = _mm256_fmadd_pd(hi4(g), hi4(neg), a1);
	}
	double acc = hsum(_mm256_add_pd(a0, a1));
	for (; i < n; i++) {
		if (x[i] > 0) {
			dx[i] = dy[i];
		} else {
			dx[i] = dy[i] * slope;
			acc += (double)dy[i] * x[i];
		}
	}
	return acc;
}
