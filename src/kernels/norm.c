/* GroupNorm (optionally fused with SiLU) and LayerNorm.
 * Statistics are two-pass in double: torch's float32 one-pass GroupNorm loses ~1e-4
 * relative on large planes, the double pass makes us the accurate side of that gap.
 * Each group's (row's) sums run in one thread in index order: thread-count independent. */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/simd.h"

#define K_GN_MAX_STACK_GROUPS 256

/* sum of x (sq = 0) or of (x - mean)^2 (sq = 1), in double with 8 interleaved partial
 * sums so the loop vectorises; the order is fixed by n alone. */
static double sum_dev2(const float *x, size_t n, double mean, int sq) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            double d = x[i + l] - mean;
            acc[l] += sq ? d * d : d;
        }
    for (; i < n; i++) {
        double d = x[i] - mean;
        acc[0] += sq ? d * d : d;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void k_group_norm(float *y, const float *x, const float *gamma, const float *beta,
                  int C, int HW, int G, float eps, int silu) {
    if (C <= 0 || HW <= 0 || G <= 0) return;
    const int cg = C / G;
    const size_t gsize = (size_t)cg * HW;
    double stack_stats[2 * K_GN_MAX_STACK_GROUPS];
    double *stats = G <= K_GN_MAX_STACK_GROUPS ? stack_stats : malloc(sizeof(double) * 2 * G);
    if (!stats) { k_group_norm_ref(y, x, gamma, beta, C, HW, G, eps, silu); return; }
    const int big = (size_t)C * HW > 16384;
#pragma omp parallel for schedule(static) if (big)
    for (int g = 0; g < G; g++) {
        const float *xg = x + (size_t)g * gsize;
        double mean = sum_dev2(xg, gsize, 0.0, 0) / (double)gsize;
        double var = sum_dev2(xg, gsize, mean, 1) / (double)gsize;
        stats[2 * g] = mean;
        stats[2 * g + 1] = 1.0 / sqrt(var + eps);
    }
#pragma omp parallel for schedule(static) if (big)
    for (int c = 0; c < C; c++) {
        int g = c / cg;
        /* subtract the mean in double: folding it into a float bias would cancel
         * catastrophically when |mean| >> std */
        const double mean = stats[2 * g], a = stats[2 * g + 1] * gamma[c], b = beta[c];
        const float *xc = x + (size_t)c * HW;
        float *yc = y + (size_t)c * HW;
        int i = 0;
#if defined(__AVX512F__)
        if (silu) { /* same double affine as below, SiLU on 16 floats at a time */
            const __m512d vm = _mm512_set1_pd(mean), va = _mm512_set1_pd(a), vb = _mm512_set1_pd(b);
            for (; i + 16 <= HW; i += 16) {
                __m512 xv = _mm512_loadu_ps(xc + i);
                __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(xv));
                __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xv), 1)));
                lo = _mm512_fmadd_pd(_mm512_sub_pd(lo, vm), va, vb);
                hi = _mm512_fmadd_pd(_mm512_sub_pd(hi, vm), va, vb);
                __m512 t = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
                _mm512_storeu_ps(yc + i, k_silu512(t));
            }
        }
#endif
        if (silu)
            for (; i < HW; i++) { float t = (float)((xc[i] - mean) * a + b); yc[i] = t / (1.0f + expf(-t)); }
        else
            for (int i = 0; i < HW; i++) yc[i] = (float)((xc[i] - mean) * a + b);
    }
    if (stats != stack_stats) free(stats);
}

void k_group_norm_ref(float *y, const float *x, const float *gamma, const float *beta,
                      int C, int HW, int G, float eps, int silu) {
    const int cg = C / G;
    for (int g = 0; g < G; g++) {
        const size_t n = (size_t)cg * HW, o = (size_t)g * n;
        double s = 0, v = 0;
        for (size_t i = 0; i < n; i++) s += x[o + i];
        double mean = s / (double)n;
        for (size_t i = 0; i < n; i++) v += (x[o + i] - mean) * (x[o + i] - mean);
        double rstd = 1.0 / sqrt(v / (double)n + eps);
        for (int c = g * cg; c < (g + 1) * cg; c++)
            for (int i = 0; i < HW; i++) {
                size_t k = (size_t)c * HW + i;
                double t = (x[k] - mean) * rstd * gamma[c] + beta[c];
                y[k] = (float)(silu ? t / (1.0 + exp(-t)) : t);
            }
    }
}

void k_layer_norm(float *y, const float *x, const float *gamma, const float *beta, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * C > 16384)
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        double s = 0, v = 0;
        for (int i = 0; i < C; i++) s += xr[i];
        double mean = s / C;
        for (int i = 0; i < C; i++) { double d = xr[i] - mean; v += d * d; }
        double rstd = 1.0 / sqrt(v / C + eps);
        for (int i = 0; i < C; i++) yr[i] = (float)((xr[i] - mean) * rstd * gamma[i] + beta[i]);
    }
}
