/* GEMM and Linear over OpenBLAS cblas_sgemm, plus plain-loop twins.
 *
 * Thread-count independence: OpenBLAS's own threaded path blocks K differently from its
 * single-threaded path (and differently again for small N), so its results change with
 * the thread count. We therefore cut C into tiles whose sizes depend on the shape only
 * and run one single-threaded sgemm per tile from an OpenMP loop (the OpenMP build of
 * OpenBLAS runs serially inside an active parallel region). Packing is repeated per
 * tile, which costs ~1/TM + 1/TN of the arithmetic. */
#include "kernels/kernels.h"

#include <cblas.h>

#define K_GEMM_TM 256  /* target tile rows */
#define K_GEMM_TN 1024 /* target tile columns */

/* Splits n into ceil(n / target) near-equal tiles, sizes rounded up to 16 (a multiple
 * of every OpenBLAS micro-kernel width). */
static int tile_size(int n, int target) {
    int count = (n + target - 1) / target;
    int size = (n + count - 1) / count;
    return (size + 15) & ~15;
}

void k_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
            const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    const int tm = tile_size(M, K_GEMM_TM), tn = tile_size(N, K_GEMM_TN);
    const int nm = (M + tm - 1) / tm, nn = (N + tn - 1) / tn;
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    /* no `if` clause: the region must be active so that OpenBLAS stays serial */
#pragma omp parallel for schedule(dynamic)
    for (int t = 0; t < nm * nn; t++) {
        int i0 = (t / nn) * tm, j0 = (t % nn) * tn;
        int mi = M - i0 < tm ? M - i0 : tm, nj = N - j0 < tn ? N - j0 : tn;
        const float *a = trans_a ? A + i0 : A + (size_t)i0 * lda;
        const float *b = trans_b ? B + (size_t)j0 * ldb : B + j0;
        cblas_sgemm(CblasRowMajor, ta, tb, mi, nj, K, alpha, a, lda, b, ldb, beta, C + (size_t)i0 * ldc + j0, ldc);
    }
}

void k_gemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) {
                float a = trans_a ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                float b = trans_b ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
                s += (double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            /* beta == 0 must ignore C (it may hold garbage), as BLAS does */
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

void k_linear(float *y, const float *x, const float *w, const float *b, int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    float beta = 0.0f;
    if (b) {
        /* bias first, then accumulate: one pass over y instead of two */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) y[(size_t)i * N + j] = b[j];
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, beta, y, N);
}

void k_linear_ref(float *y, const float *x, const float *w, const float *b, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = b ? b[j] : 0.0;
            for (int p = 0; p < K; p++) s += (double)x[(size_t)i * K + p] * w[(size_t)j * K + p];
            y[(size_t)i * N + j] = (float)s;
        }
}
