// Direct 3×3 convolution kernels; see conv_direct.c.
void ffccpu_pad3(const float *src, long cs, long ns, int c, int n, int h, int w, float *dst);
void ffccpu_pack3(const float *w, int co, int ci, int flip, float *dst);
void ffccpu_fwd3(const float *x, int ic, int n, int h, int w, int s, const float *wp, int oc, float *y, long ycs, long yns);
void ffccpu_pixmajor3(const float *dy, long cs, long ns, int oc, int n, long hw, float *dst);
void ffccpu_dw3(const float *x, int ic, int n, int h, int w, int s, const float *dyT, int oc, float *dwT);
void ffccpu_packt3(const float *w, int co, int ci, float *dst);
void ffccpu_dxs3(const float *dyT, int oc, int n, int h, int w, int s, const float *wt, int ic, float *dx, long cs, long ns, float *tile);
