/* Element-wise activations, GEGLU, nearest-neighbour resize and 2-D transpose.
 * All are embarrassingly parallel: any split gives identical results. */
#include "kernels/kernels.h"

#include <math.h>

#include "kernels/simd.h"

#define K_PAR_MIN ((size_t)1 << 15) /* below this, threads cost more than they save */

void k_silu(float *x, size_t n) {
#if defined(__AVX512F__)
    const size_t nv = n / 16;
#pragma omp parallel for schedule(static) if (n > K_PAR_MIN)
    for (size_t i = 0; i < nv; i++) _mm512_storeu_ps(x + 16 * i, k_silu512(_mm512_loadu_ps(x + 16 * i)));
    for (size_t i = nv * 16; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
#else
#pragma omp parallel for schedule(static) if (n > K_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
#endif
}

void k_gelu_erf(float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > K_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void k_quick_gelu(float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > K_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void k_add(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > K_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void k_geglu(float *out, const float *in, int N, int D) {
#pragma omp parallel for schedule(static) if ((size_t)N * D > K_PAR_MIN)
    for (int r = 0; r < N; r++) {
        const float *a = in + (size_t)r * 2 * D, *g = a + D;
        float *o = out + (size_t)r * D;
        for (int i = 0; i < D; i++) o[i] = a[i] * (0.5f * g[i] * (1.0f + erff(g[i] * (float)M_SQRT1_2)));
    }
}

/* torch's nearest_idx(): identity, exact halving for x2, else floor(dst * (float)(in/out))
 * evaluated in float as torch does (it can differ from the exact rational floor). */
static int nearest_src(int dst, int in, int out) {
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    float scale = (float)in / (float)out;
    int s = (int)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

void k_upsample_nearest(float *y, const float *x, int C, int H, int W, int Ho, int Wo) {
#pragma omp parallel for schedule(static) if ((size_t)C * Ho * Wo > K_PAR_MIN)
    for (int c = 0; c < C; c++)
        for (int oy = 0; oy < Ho; oy++) {
            const float *src = x + ((size_t)c * H + nearest_src(oy, H, Ho)) * W;
            float *dst = y + ((size_t)c * Ho + oy) * Wo;
            if (Wo == 2 * W)
                for (int ox = 0; ox < Wo; ox++) dst[ox] = src[ox >> 1];
            else
                for (int ox = 0; ox < Wo; ox++) dst[ox] = src[nearest_src(ox, W, Wo)];
        }
}

/* Tiled so both the reads and the writes stay within a few cache lines per tile. */
void k_transpose(float *y, const float *x, int rows, int cols) {
    enum { T = 32 };
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > K_PAR_MIN)
    for (int r0 = 0; r0 < rows; r0 += T)
        for (int c0 = 0; c0 < cols; c0 += T) {
            int r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) y[(size_t)c * rows + r] = x[(size_t)r * cols + c];
        }
}
