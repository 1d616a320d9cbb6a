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

static float gelu_erf1(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

#if defined(__AVX512F__)
/* gelu(x) = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), erfc by the Chebyshev fit of
 * Numerical Recipes (erfcc, relative error below 1.2e-7 everywhere, so the negative tail keeps its
 * relative accuracy too): for z >= 0, erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), and
 * erfc(-z) = 2 - erfc(z). libm's erff costs a call per element; GEGLU is ~5% of a UNet. */
static inline __m512 gelu512(__m512 x) {
    static const float c[10] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f, -0.18628806f,
                                0.27886807f, -1.13520398f, 1.48851587f, -0.82215223f, 0.17087277f};
    const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps((float)M_SQRT1_2));
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(c[9]);
    for (int i = 8; i >= 0; i--) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c[i]));
    const __m512 ec = _mm512_mul_ps(t, k_exp512(_mm512_fnmadd_ps(z, z, p)));          /* erfc(|x| / sqrt 2) */
    /* erfc(-x / sqrt 2): ec for x < 0, 2 - ec for x >= 0 */
    const __m512 e = _mm512_mask_sub_ps(ec, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), _mm512_set1_ps(2.0f), ec);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), e);
}
#endif

void k_gelu_erf(float *x, size_t n) {
#if defined(__AVX512F__)
    const size_t nv = n / 16;
#pragma omp parallel for schedule(static) if (n > K_PAR_MIN)
    for (size_t i = 0; i < nv; i++) _mm512_storeu_ps(x + 16 * i, gelu512(_mm512_loadu_ps(x + 16 * i)));
    for (size_t i = nv * 16; i < n; i++) x[i] = gelu_erf1(x[i]);
#else
#pragma omp parallel for schedule(static) if (n > K_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = gelu_erf1(x[i]);
#endif
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
        int i = 0;
#if defined(__AVX512F__)
        for (; i + 16 <= D; i += 16)
            _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), gelu512(_mm512_loadu_ps(g + i))));
#endif
        for (; i < D; i++) o[i] = a[i] * gelu_erf1(g[i]);
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
