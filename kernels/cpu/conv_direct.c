//go:build cgo && amd64

// Direct 3×3 convolution kernels (padding 1, stride 1 or more) with AVX2 and FMA,
// for ConvForward and ConvBackward (conv_direct.go). They read a padded
// copy of the input (channels × images × (H+2) × (W+2), zero border), so
// no column matrix is built and no bounds are checked in the inner loops.
//
// Forward (and, at stride 1, the input gradient: a forward pass of dy with
// the weights transposed and flipped) vectorises over output channels: a block of 16
// output channels × 6 output pixels is held in 12 ymm accumulators; per
// input channel and tap it loads two vectors of packed weights and
// broadcasts 6 input values. The weight gradient vectorises over output
// channels too: 16 output channels × 6 column-matrix rows (channel, tap),
// reducing over the pixels with the output gradient laid out pixel-major.

#include <immintrin.h>
#include <string.h>
#include "conv_direct.h"

// The 12 accumulators of the kernels below: 6 rows (pixels, or
// column-matrix rows) × 2 vectors of 8 channels.
#define ACC12_ZERO()                                                   \
	__m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps();   \
	__m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();   \
	__m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps();   \
	__m256 a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();   \
	__m256 a40 = _mm256_setzero_ps(), a41 = _mm256_setzero_ps();   \
	__m256 a50 = _mm256_setzero_ps(), a51 = _mm256_setzero_ps()

// ACC12_FMA adds v0·x and v1·x to row j's accumulators for each row j,
// x the float at pj + off broadcast (ACC12_ROW does one row).
#define ACC12_ROW(p, off, j, v0, v1)                                    \
	do {                                                            \
		__m256 b = _mm256_broadcast_ss((p) + (off));            \
		a##j##0 = _mm256_fmadd_ps(v0, b, a##j##0);              \
		a##j##1 = _mm256_fmadd_ps(v1, b, a##j##1);              \
	} while (0)
#define ACC12_FMA(p0, p1, p2, p3, p4, p5, off, v0, v1)                  \
	do {                                                            \
		ACC12_ROW(p0, off, 0, v0, v1);                          \
		ACC12_ROW(p1, off, 1, v0, v1);                          \
		ACC12_ROW(p2, off, 2, v0, v1);                          \
		ACC12_ROW(p3, off, 3, v0, v1);                          \
		ACC12_ROW(p4, off, 4, v0, v1);                          \
		ACC12_ROW(p5, off, 5, v0, v1);                          \
	} while (0)

// ACC12_LOAD loads row j's accumulators from t + 16·j.
#define ACC12_LOAD(t)                                                                \
	do {                                                                         \
		a00 = _mm256_loadu_ps(t); a01 = _mm256_loadu_ps((t) + 8);            \
		a10 = _mm256_loadu_ps((t) + 16); a11 = _mm256_loadu_ps((t) + 24);    \
		a20 = _mm256_loadu_ps((t) + 32); a21 = _mm256_loadu_ps((t) + 40);    \
		a30 = _mm256_loadu_ps((t) + 48); a31 = _mm256_loadu_ps((t) + 56);    \
		a40 = _mm256_loadu_ps((t) + 64); a41 = _mm256_loadu_ps((t) + 72);    \
		a50 = _mm256_loadu_ps((t) + 80); a51 = _mm256_loadu_ps((t) + 88);    \
	} while (0)

// ACC12_STORE stores row j's accumulators at t + 16·j.
#define ACC12_STORE(t)                                                               \
	do {                                                                         \
		_mm256_storeu_ps((t), a00); _mm256_storeu_ps((t) + 8, a01);          \
		_mm256_storeu_ps((t) + 16, a10); _mm256_storeu_ps((t) + 24, a11);    \
		_mm256_storeu_ps((t) + 32, a20); _mm256_storeu_ps((t) + 40, a21);    \
		_mm256_storeu_ps((t) + 48, a30); _mm256_storeu_ps((t) + 56, a31);    \
		_mm256_storeu_ps((t) + 64, a40); _mm256_storeu_ps((t) + 72, a41);    \
		_mm256_storeu_ps((t) + 80, a50); _mm256_storeu_ps((t) + 88, a51);    \
	} while (0)

// ffccpu_pad3 copies the planes of n images of c channels into dst, laid out
// [c][n][h+2][w+2] with a zero border. Plane (image i, channel k) of src
// starts at src + k*cs + i*ns.
void ffccpu_pad3(const float *src, long cs, long ns, int c, int n, int h, int w, float *dst) {
	int hp = h + 2, wp = w + 2;
	for (int k = 0; k < c; k++) {
		for (int i = 0; i < n; i++) {
			const float *s = src + k * cs + i * ns;
			float *d = dst + ((long)k * n + i) * hp * wp;
			memset(d, 0, sizeof(float) * wp);
			for (int y = 0; y < h; y++) {
				float *row = d + (long)(y + 1) * wp;
				row[0] = 0;
				memcpy(row + 1, s + (long)y * w, sizeof(float) * w);
				row[w + 1] = 0;
			}
			memset(d + (long)(h + 1) * wp, 0, sizeof(float) * wp);
		}
	}
}

// ffccpu_pack3 packs weights for the forward kernel: dst[ob][ci][tap][16]
// with ob over ceil(co/16) blocks, zero beyond co. With flip it packs the
// weights of the input gradient instead: the roles of co and ci swapped
// and the taps reversed, w'[ci][co][8−tap] = w[co][ci][tap].
void ffccpu_pack3(const float *w, int co, int ci, int flip, float *dst) {
	int oc = flip ? ci : co, ic = flip ? co : ci;
	int blocks = (oc + 15) / 16;
	for (int b = 0; b < blocks; b++) {
		for (int k = 0; k < ic; k++) {
			for (int t = 0; t < 9; t++) {
				float *d = dst + (((long)b * ic + k) * 9 + t) * 16;
				for (int j = 0; j < 16; j++) {
					int o = b * 16 + j;
					float v = 0;
					if (o < oc) {
						v = flip ? w[((long)k * ci + o) * 9 + 8 - t] : w[((long)o * ci + k) * 9 + t];
					}
					d[j] = v;
				}
			}
		}
	}
}

// fwd_block computes 16 output channels (packed weights wp, ic input
// channels) at 6 pixels whose padded-input offsets are in[0..5], and
// stores them pixel-major, t[j*16 + o], or with add adds them there.
__attribute__((target("avx2,fma")))
static void fwd_block(const float *x, long xcs, int wp_, const float *wp, int ic, const long in[6], float *t, int add) {
	ACC12_ZERO();
	if (add) {
		ACC12_LOAD(t);
	}
	const float *p0 = x + in[0], *p1 = x + in[1], *p2 = x + in[2];
	const float *p3 = x + in[3], *p4 = x + in[4], *p5 = x + in[5];
	for (int k = 0; k < ic; k++) {
#pragma GCC unroll 1
		for (int kh = 0; kh < 3; kh++) {
			long r = (long)kh * wp_;
			for (int kw = 0; kw < 3; kw++) {
				long off = r + kw;
				__m256 w0 = _mm256_loadu_ps(wp), w1 = _mm256_loadu_ps(wp + 8);
				wp += 16;
				ACC12_FMA(p0, p1, p2, p3, p4, p5, off, w0, w1);
			}
		}
		p0 += xcs; p1 += xcs; p2 += xcs; p3 += xcs; p4 += xcs; p5 += xcs;
	}
	ACC12_STORE(t);
}

// tilePix is the output pixels of one image a forward pass computes into
// its tile (tilePix × 16 channels, pixel-major, in L1) before writing the
// tile to the output planes by 8×8 transposes.
#define tilePix 96

// fwdChunk is the input channels a forward block sums before moving to the
// next chunk: their weights for 16 output channels, 18 KiB, stay in L1.
#define fwdChunk 32

static void transpose8(const float *src, long ss, float *dst, long ds);

// untile writes channels [0, valid) of the first np pixels of the tile t
// (pixel-major, 16 a pixel) to y[o*ycs + p].
__attribute__((target("avx2,fma")))
static void untile(const float *t, int np, int valid, float *y, long ycs) {
	int v8 = valid / 8 * 8, n8 = np / 8 * 8;
	for (int o = 0; o < v8; o += 8) {
		for (int p = 0; p < n8; p += 8) {
			transpose8(t + p * 16 + o, 16, y + o * ycs + p, ycs);
		}
		for (int p = n8; p < np; p++) {
			for (int k = o; k < o + 8; k++) {
				y[k * ycs + p] = t[p * 16 + k];
			}
		}
	}
	for (int o = v8; o < valid; o++) {
		for (int p = 0; p < np; p++) {
			y[o * ycs + p] = t[p * 16 + o];
		}
	}
}

// ffccpu_fwd3 sets y for n images from the padded input x ([ic][n][h+2][w+2])
// and the packed weights wp (ffccpu_pack3, oc output channels), with stride
// s: y[o*ycs + i*yns + p] for output channel o, image i, output pixel p of
// ho×wo, ho = (h−1)/s + 1, wo = (w−1)/s + 1.
__attribute__((target("avx2,fma")))
void ffccpu_fwd3(const float *x, int ic, int n, int h, int w, int s, const float *wp, int oc,
              float *y, long ycs, long yns) {
	long hp = h + 2, wpd = w + 2, xcs = (long)n * hp * wpd;
	long wo = (w - 1) / s + 1, hw = ((h - 1) / s + 1) * wo;
	int blocks = (oc + 15) / 16;
	float tile[16 * (tilePix + 6)]; // a last block of 6 may start at tilePix − 1
	long in[(tilePix + 5) / 6][6];
	for (int b = 0; b < blocks; b++) {
		const float *wb = wp + (long)b * ic * 9 * 16;
		int valid = oc - b * 16 < 16 ? oc - b * 16 : 16;
		for (int i = 0; i < n; i++) {
			const float *xi = x + (long)i * hp * wpd;
			long oh = 0, ow = 0;
			for (long q0 = 0; q0 < hw; q0 += tilePix) {
				int np = hw - q0 < tilePix ? (int)(hw - q0) : tilePix;
				for (int q = 0; q < np; q += 6) {
					int npix = np - q < 6 ? np - q : 6;
					for (int j = 0; j < 6; j++) {
						in[q / 6][j] = oh * s * wpd + ow * s;
						if (j < npix - 1 && ++ow == wo) {
							ow = 0;
							oh++;
						}
					}
					if (++ow == wo) {
						ow = 0;
						oh++;
					}
				}
				// Input channels by chunks whose weights (chunk·9·16
				// floats) stay in L1 across the tile's blocks.
				for (int k0 = 0; k0 < ic; k0 += fwdChunk) {
					int kc = ic - k0 < fwdChunk ? ic - k0 : fwdChunk;
					for (int q = 0; q < np; q += 6) {
						fwd_block(xi + k0 * xcs, xcs, (int)wpd, wb + (long)k0 * 9 * 16, kc, in[q / 6], tile + q * 16, k0 > 0);
					}
				}
				untile(tile, np, valid, y + (long)b * 16 * ycs + i * yns + q0, ycs);
			}
		}
	}
}

// transpose8 writes the 8×8 block src[r*ss + c] (r, c < 8) transposed:
// dst[c*ds + r].
__attribute__((target("avx2,fma")))
static void transpose8(const float *src, long ss, float *dst, long ds) {
	__m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss);
	__m256 r2 = _mm256_loadu_ps(src + 2 * ss), r3 = _mm256_loadu_ps(src + 3 * ss);
	__m256 r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss);
	__m256 r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
	__m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
	__m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
	__m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
	__m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
	__m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
	__m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
	__m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
	_mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
	_mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
	_mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
	_mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
	_mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
	_mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
	_mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
	_mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// ffccpu_pixmajor3 writes dy (oc channels, [o*cs + i*ns + p]) for n images
// of hw pixels pixel-major into dst: dst[(i*hw + p)*ocp + o], ocp = oc
// rounded up to 16, zero beyond oc. Whole 8×8 blocks move by transposes.
__attribute__((target("avx2,fma")))
void ffccpu_pixmajor3(const float *dy, long cs, long ns, int oc, int n, long hw, float *dst) {
	int ocp = (oc + 15) / 16 * 16, oc8 = oc / 8 * 8;
	long hw8 = hw / 8 * 8;
	for (int i = 0; i < n; i++) {
		float *di = dst + (long)i * hw * ocp;
		const float *si = dy + i * ns;
		for (int o = 0; o < oc8; o += 8) {
			for (long p = 0; p < hw8; p += 8) {
				transpose8(si + o * cs + p, cs, di + p * ocp + o, ocp);
			}
		}
		for (long p = 0; p < hw; p++) {
			float *d = di + p * ocp;
			int o0 = p < hw8 ? oc8 : 0;
			for (int o = o0; o < oc; o++) {
				d[o] = si[o * cs + p];
			}
			for (int o = oc; o < ocp; o++) {
				d[o] = 0;
			}
		}
	}
}

// dw_block accumulates, for 16 output channels (dyT + column offset) and
// 6 column-matrix rows with padded-input base pointers xs[0..5], the sum
// over the n images' pixels of dy·x into dwT[row*oc + o] for the valid
// rows and channels.
__attribute__((target("avx2,fma")))
static void dw_block(const float *const xs[6], int n, int h, int w, int s, long xns, const float *dyT, int ocp,
                     float *dwT, const int rows[6], int nrows, int oc, int o0) {
	ACC12_ZERO();
	long wpd = w + 2, ho = (h - 1) / s + 1, wo = (w - 1) / s + 1;
	for (int i = 0; i < n; i++) {
		for (long oh = 0; oh < ho; oh++) {
			long base = i * xns + oh * s * wpd;
			const float *p0 = xs[0] + base, *p1 = xs[1] + base, *p2 = xs[2] + base;
			const float *p3 = xs[3] + base, *p4 = xs[4] + base, *p5 = xs[5] + base;
			const float *d = dyT + ((long)i * ho + oh) * wo * ocp;
			for (long ow = 0; ow < wo * s; ow += s) {
				__m256 d0 = _mm256_loadu_ps(d), d1 = _mm256_loadu_ps(d + 8);
				d += ocp;
				ACC12_FMA(p0, p1, p2, p3, p4, p5, ow, d0, d1);
			}
		}
	}
	float t[6][16];
	ACC12_STORE(t[0]);
	int valid = oc - o0 < 16 ? oc - o0 : 16;
	for (int j = 0; j < nrows; j++) {
		float *d = dwT + (long)rows[j] * oc + o0;
		for (int o = 0; o < valid; o++) {
			d[o] += t[j][o];
		}
	}
}

// ffccpu_dw3 adds to dwT (ic·9 rows × oc, the weight gradient transposed) the
// products of the padded input x ([ic][n][h+2][w+2]) and the pixel-major
// output gradient dyT (ffccpu_pixmajor3) over n images, with stride s.
__attribute__((target("avx2,fma")))
void ffccpu_dw3(const float *x, int ic, int n, int h, int w, int s, const float *dyT, int oc, float *dwT) {
	long hp = h + 2, wpd = w + 2, xns = hp * wpd, xcs = (long)n * xns;
	int ocp = (oc + 15) / 16 * 16, nr = ic * 9;
	for (int r0 = 0; r0 < nr; r0 += 6) {
		int rows[6];
		const float *xs[6];
		int nrows = nr - r0 < 6 ? nr - r0 : 6;
		for (int j = 0; j < 6; j++) {
			int r = r0 + (j < nrows ? j : nrows - 1);
			int k = r / 9, t = r % 9;
			rows[j] = r;
			xs[j] = x + k * xcs + (t / 3) * wpd + t % 3;
		}
		for (int o0 = 0; o0 < oc; o0 += 16) {
			dw_block(xs, n, h, w, s, xns, dyT + o0, ocp, dwT, rows, nrows, oc, o0);
		}
	}
}

// ffccpu_packt3 packs w (co × ci·9) for ffccpu_dxs3: dst[cb][tap][o][16] =
// w[o][cb·16 + l][tap], zero for channels beyond ci.
void ffccpu_packt3(const float *w, int co, int ci, float *dst) {
	int blocks = (ci + 15) / 16;
	for (int b = 0; b < blocks; b++) {
		for (int t = 0; t < 9; t++) {
			for (int o = 0; o < co; o++) {
				float *d = dst + (((long)b * 9 + t) * co + o) * 16;
				for (int l = 0; l < 16; l++) {
					int k = b * 16 + l;
					d[l] = k < ci ? w[((long)o * ci + k) * 9 + t] : 0;
				}
			}
		}
	}
}

// dxs_block adds, for 16 input channels (packed weights wt of one tap, oc
// output channels) and 6 output-gradient pixels (pixel-major rows d[j] of
// dyT), Σ_o w·dy to the pixel-major tile rows t[j].
__attribute__((target("avx2,fma")))
static void dxs_block(const float *wt, int oc, const float *const d[6], float *const t[6]) {
	ACC12_ZERO();
	const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
	for (int o = 0; o < oc; o++) {
		__m256 w0 = _mm256_loadu_ps(wt), w1 = _mm256_loadu_ps(wt + 8);
		wt += 16;
		ACC12_FMA(d0, d1, d2, d3, d4, d5, o, w0, w1);
	}
#define ADDT(j, lo, hi) \
	_mm256_storeu_ps(t[j], _mm256_add_ps(_mm256_loadu_ps(t[j]), lo)); \
	_mm256_storeu_ps(t[j] + 8, _mm256_add_ps(_mm256_loadu_ps(t[j] + 8), hi));
	ADDT(0, a00, a01) ADDT(1, a10, a11) ADDT(2, a20, a21)
	ADDT(3, a30, a31) ADDT(4, a40, a41) ADDT(5, a50, a51)
#undef ADDT
}

// ffccpu_dxs3 sets the input gradient dx of a 3×3 convolution with padding
// 1 and stride s for n images of h×w (dx[k*cs + i*ns + p] for input
// channel k, image i, pixel p) from the pixel-major output gradient dyT
// (ffccpu_pixmajor3, oc channels) and the weights packed by ffccpu_packt3:
// each output-gradient pixel scatters Σ_o w·dy to its 9 taps' positions in
// a padded pixel-major tile of one image and 16 channels, whose inside is
// then written out. tile holds (h+2)·(w+2)·16 + 16 floats.
__attribute__((target("avx2,fma")))
void ffccpu_dxs3(const float *dyT, int oc, int n, int h, int w, int s, const float *wt, int ic,
                 float *dx, long cs, long ns, float *tile) {
	long wpd = w + 2, ho = (h - 1) / s + 1, wo = (w - 1) / s + 1, hw = ho * wo;
	int ocp = (oc + 15) / 16 * 16, blocks = (ic + 15) / 16;
	float *sink = tile + (h + 2) * wpd * 16; // the repeated pixels of a short block add here
	for (int b = 0; b < blocks; b++) {
		int valid = ic - b * 16 < 16 ? ic - b * 16 : 16;
		for (int i = 0; i < n; i++) {
			memset(tile, 0, sizeof(float) * (h + 2) * wpd * 16);
			const float *di = dyT + (long)i * hw * ocp;
			for (int t = 0; t < 9; t++) {
				const float *wtt = wt + ((long)b * 9 + t) * oc * 16;
				long off = (t / 3) * wpd + t % 3;
				long oh = 0, ow = 0;
				for (long q = 0; q < hw; q += 6) {
					const float *d[6];
					float *tt[6];
					for (int j = 0; j < 6; j++) {
						if (q + j >= hw) {
							d[j] = di + (hw - 1) * ocp;
							tt[j] = sink;
							continue;
						}
						d[j] = di + (q + j) * ocp;
						tt[j] = tile + (oh * s * wpd + ow * s + off) * 16;
						if (++ow == wo) {
							ow = 0;
							oh++;
						}
					}
					dxs_block(wtt, oc, d, tt);
				}
			}
			for (int y = 0; y < h; y++) {
				untile(tile + ((y + 1) * wpd + 1) * 16, w, valid, dx + (long)b * 16 * cs + i * ns + (long)y * w, cs);
			}
		}
	}
}
