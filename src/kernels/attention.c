/* Scaled dot-product attention, one head and one block of queries at a time:
 *   S[bq, Nk] = scale * q_h[bq, dh] k_h[Nk, dh]^T      (sgemm on the strided head slice)
 *   P = row softmax(S)  (max-subtracted, causal keys j > i get weight 0)
 *   out_h[bq, dh] = P v_h[Nk, dh]                        (sgemm, written with stride ldo)
 * The block height depends on Nq, Nk only, so results do not depend on the thread count;
 * softmax rows are split across OpenMP threads, the GEMMs across OpenBLAS threads. */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

#include "base/util.h"

#define K_ATTN_SCRATCH_CAP ((size_t)1 << 22) /* floats of scores per block (16 MiB) */

static int block_rows(int Nq, int Nk) {
    size_t r = K_ATTN_SCRATCH_CAP / (size_t)(Nk > 0 ? Nk : 1);
    if (r < 1) r = 1;
    if (r > (size_t)Nq) r = (size_t)(Nq > 0 ? Nq : 1);
    return (int)r;
}

size_t k_attention_scratch_floats(int Nq, int Nk) {
    return (size_t)block_rows(Nq, Nk) * (size_t)(Nk > 0 ? Nk : 0);
}

/* Softmax of rows [0, nr) of S[nr, Nk]; row r is query q0 + r. */
static void softmax_rows(float *S, int nr, int Nk, int q0, int causal) {
#pragma omp parallel for schedule(static) if ((size_t)nr * Nk > 16384)
    for (int r = 0; r < nr; r++) {
        float *s = S + (size_t)r * Nk;
        int n = causal ? OCD_MIN(Nk, q0 + r + 1) : Nk;
        float m = -INFINITY;
        for (int j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
        double sum = 0;
        for (int j = 0; j < n; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++) s[j] *= inv;
        for (int j = n; j < Nk; j++) s[j] = 0.0f;
    }
}

void k_attention(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                 const float *v, int ldv, int Nq, int Nk, int heads, int dh, float scale,
                 int causal, float *scratch) {
    if (Nq <= 0 || Nk <= 0 || heads <= 0 || dh <= 0) return;
    const int bq = block_rows(Nq, Nk);
    for (int h = 0; h < heads; h++) {
        const size_t ho = (size_t)h * dh;
        for (int q0 = 0; q0 < Nq; q0 += bq) {
            int nr = OCD_MIN(bq, Nq - q0);
            /* causal: keys past the block's last query are masked for every row */
            int nk = causal ? OCD_MIN(Nk, q0 + nr) : Nk;
            k_gemm(0, 1, nr, nk, dh, scale, q + (size_t)q0 * ldq + ho, ldq, k + ho, ldk, 0.0f, scratch, nk);
            softmax_rows(scratch, nr, nk, q0, causal);
            k_gemm(0, 0, nr, dh, nk, 1.0f, scratch, nk, v + ho, ldv, 0.0f, out + (size_t)q0 * ldo + ho, ldo);
        }
    }
}

void k_attention_ref(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                     const float *v, int ldv, int Nq, int Nk, int heads, int dh, float scale, int causal) {
    double *p = malloc(sizeof(double) * (size_t)(Nk > 0 ? Nk : 1));
    if (!p) return;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < Nq; i++) {
            const float *qi = q + (size_t)i * ldq + (size_t)h * dh;
            int n = causal ? OCD_MIN(Nk, i + 1) : Nk;
            double m = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                const float *kj = k + (size_t)j * ldk + (size_t)h * dh;
                double s = 0;
                for (int d = 0; d < dh; d++) s += (double)qi[d] * kj[d];
                p[j] = s * scale;
                if (p[j] > m) m = p[j];
            }
            for (int j = 0; j < n; j++) { p[j] = exp(p[j] - m); sum += p[j]; }
            float *oi = out + (size_t)i * ldo + (size_t)h * dh;
            for (int d = 0; d < dh; d++) {
                double acc = 0;
                for (int j = 0; j < n; j++) acc += p[j] * v[(size_t)j * ldv + (size_t)h * dh + d];
                oi[d] = (float)(acc / sum);
            }
        }
    free(p);
}
