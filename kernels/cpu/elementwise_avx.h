// AVX2 loops of batch normalisation and PReLU; see elementwise_avx.c.
int ffccpu_simd_supported(void);
double ffccpu_sum(const float *x, long n);
double ffccpu_sqdev(const float *x, long n, double mu);
typedef struct { double a, b; } ffccpu_pair;
ffccpu_pair ffccpu_graddev(const float *dy, const float *x, long n, double mu);
void ffccpu_affine(const float *x, long n, float a, float b, float *y);
void ffccpu_affine2(const float *dy, const float *x, long n, float k, float kx, float k0, float *dx);
void ffccpu_prelu(const float *x, long n, float slope, float *y);
double ffccpu_prelu_backward(const float *x, const float *dy, long n, float slope, float *dx);
