/* Scaled dot-product attention, one head and one block of queries at a time:
 *   S[bq, Nk] = scale * q_h[bq, dh] k_h[Nk, dh]^T      (sgemm on the strided head slice)
 *   P = row softmax(S)  (max-subtracted, causal keys j > i get weight 0)
 *   out_h[bq, dh] = P v_h[Nk, dh]                        (sgemm, written with stride ldo)
 * The block height depends on Nq, Nk only, so results do not depend on the thread count;
 * softmax rows are split across OpenMP threads, the GEMMs across OpenBLAS threads. */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define K_ATTN_SCRATCH_CAP ((size_t)1 << 22) /* floats of scores per block (16 MiB) */

static int block_rows(int Nq, int Nk) {
    size_t r = K_ATTN_SCRATCH_CAP / (size_t)(Nk > 0 ? Nk : 1);
    if (r < 1) r = 1;
    if (r > (size_t)Nq) r = (size_t)(Nq > 0 ? Nq : 1);
    return (int)r;
}

#define FA_R 32      /* query rows per group (flash path): each K/V block is read once per 32 rows */
#define FA_MR 8      /* query rows per score micro-tile (8 x 48 accumulators in registers) */
#define FA_KB 192    /* keys per block (four micro-tiles of 48): amortises the per-row softmax work */
#define FA_MAXDH 256 /* head sizes up to this take the flash path; larger ones the sgemm blocks */

/* Row stride of the packed K^T: whole key blocks plus 16 floats, so that the dh rows of a
 * block never share one L1 set (a power-of-two stride such as 4096 floats would). */
static size_t round_keys(int Nk) { return (size_t)(Nk + FA_KB - 1) / FA_KB * FA_KB + 16; }

size_t k_attention_scratch_floats(int Nq, int Nk) {
    size_t blocks = (size_t)block_rows(Nq, Nk) * (size_t)(Nk > 0 ? Nk : 0);
    size_t flash = 2 * (size_t)FA_MAXDH * round_keys(Nk > 0 ? Nk : 0); /* one head's K^T and V */
    return blocks > flash ? blocks : flash;
}

#if defined(__AVX512F__)
#include "kernels/simd.h"

#define exp512 k_exp512

/* O[rows r, r+1][nv vectors] += sum_j P[row][j] v_j for j < nj (two rows share each V load). */
static inline __attribute__((always_inline)) void fa_pv2(float *O0, float *O1, const float *P0, const float *P1,
                                                         const float *v, int ldv, int nj, int nv, __mmask16 tail) {
    __m512 a[16], c[16];
#pragma GCC unroll 16
    for (int t = 0; t < nv; t++) { a[t] = _mm512_loadu_ps(O0 + 16 * t); c[t] = _mm512_loadu_ps(O1 + 16 * t); }
    for (int j = 0; j < nj; j++) {
        const float *vr = v + (size_t)j * ldv;
        __m512 p0 = _mm512_set1_ps(P0[j]), p1 = _mm512_set1_ps(P1[j]);
#pragma GCC unroll 16
        for (int t = 0; t < nv; t++) {
            __m512 vv = t == nv - 1 ? _mm512_maskz_loadu_ps(tail, vr + 16 * t) : _mm512_loadu_ps(vr + 16 * t);
            a[t] = _mm512_fmadd_ps(p0, vv, a[t]);
            c[t] = _mm512_fmadd_ps(p1, vv, c[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < nv; t++) { _mm512_storeu_ps(O0 + 16 * t, a[t]); _mm512_storeu_ps(O1 + 16 * t, c[t]); }
}

/* Four rows at once for small heads (dh <= 80): fewer V loads per FMA. */
static inline __attribute__((always_inline)) void fa_pv4(float *O, const float *P, const float *v, int ldv, int nj,
                                                         int nv, __mmask16 tail) {
    __m512 a[4][5];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 5
        for (int t = 0; t < nv; t++) a[r][t] = _mm512_loadu_ps(O + r * FA_MAXDH + 16 * t);
    for (int j = 0; j < nj; j++) {
        const float *vr = v + (size_t)j * ldv;
        __m512 vv[5];
#pragma GCC unroll 5
        for (int t = 0; t < nv; t++) vv[t] = t == nv - 1 ? _mm512_maskz_loadu_ps(tail, vr + 16 * t) : _mm512_loadu_ps(vr + 16 * t);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512 p = _mm512_set1_ps(P[r * FA_KB + j]);
#pragma GCC unroll 5
            for (int t = 0; t < nv; t++) a[r][t] = _mm512_fmadd_ps(p, vv[t], a[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 5
        for (int t = 0; t < nv; t++) _mm512_storeu_ps(O + r * FA_MAXDH + 16 * t, a[r][t]);
}

/* rows: a multiple of 4, at most FA_R */
static void fa_pv(float *O, const float *P, int rows, const float *v, int ldv, int nj, int nv, __mmask16 tail) {
    const int ld = FA_MAXDH;
    if (nv <= 5) {
        for (int i = 0; i < rows; i += 4) {
            float *o = O + (size_t)i * ld;
            const float *p = P + i * FA_KB;
            switch (nv) {
            case 1: fa_pv4(o, p, v, ldv, nj, 1, tail); break;
            case 2: fa_pv4(o, p, v, ldv, nj, 2, tail); break;
            case 3: fa_pv4(o, p, v, ldv, nj, 3, tail); break;
            case 4: fa_pv4(o, p, v, ldv, nj, 4, tail); break;
            default: fa_pv4(o, p, v, ldv, nj, 5, tail); break;
            }
        }
        return;
    }
    for (int i = 0; i < rows; i += 2) {
        float *o0 = O + (size_t)i * ld, *o1 = o0 + ld;
        const float *p0 = P + i * FA_KB, *p1 = p0 + FA_KB;
        switch (nv) { /* constant nv: the accumulators live in registers */
        case 1: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 1, tail); break;
        case 2: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 2, tail); break;
        case 3: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 3, tail); break;
        case 4: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 4, tail); break;
        case 5: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 5, tail); break;
        case 6: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 6, tail); break;
        case 8: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 8, tail); break;
        case 10: fa_pv2(o0, o1, p0, p1, v, ldv, nj, 10, tail); break;
        default:
            for (int t = 0; t < nv; t++) {
                __mmask16 m = t == nv - 1 ? tail : (__mmask16)0xFFFF;
                __m512 a = _mm512_loadu_ps(o0 + 16 * t), c = _mm512_loadu_ps(o1 + 16 * t);
                for (int j = 0; j < nj; j++) {
                    __m512 vv = _mm512_maskz_loadu_ps(m, v + (size_t)j * ldv + 16 * t);
                    a = _mm512_fmadd_ps(_mm512_set1_ps(p0[j]), vv, a);
                    c = _mm512_fmadd_ps(_mm512_set1_ps(p1[j]), vv, c);
                }
                _mm512_storeu_ps(o0 + 16 * t, a);
                _mm512_storeu_ps(o1 + 16 * t, c);
            }
        }
    }
}

/* Flash attention of one head for query rows [i0, i0 + nr), nr <= FA_R. kt[dh][nkp] is the
 * head's K^T, zero-padded to nkp keys. Scores live only in a FA_R x FA_KB tile; softmax is
 * online (running max m, running sum l, output rescaled when the max grows). */
static void fa_group(float *out, int ldo, const float *q, int ldq, const float *kt, int nkp, const float *v, int ldv,
                     int i0, int nr, int Nk, int dh, float scale, int causal) {
    float O[FA_R * FA_MAXDH] __attribute__((aligned(64)));
    float P[FA_R * FA_KB] __attribute__((aligned(64)));
    float m[FA_R], l[FA_R];
    const float *qr[FA_R];
    const int nv = (dh + 15) / 16, nrp = (nr + 3) & ~3; /* rows worked on: whole PV micro-tiles */
    const __mmask16 tail = dh % 16 ? (__mmask16)((1u << (dh % 16)) - 1) : (__mmask16)0xFFFF;
    for (int i = 0; i < FA_R; i++) {
        qr[i] = q + (size_t)(i0 + (i < nr ? i : nr - 1)) * ldq; /* padding rows repeat the last: never stored */
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(O, 0, sizeof(float) * FA_R * FA_MAXDH);
    const int nk_end = causal ? OCD_MIN(Nk, i0 + nr) : Nk;
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < nk_end; j0 += FA_KB) {
        const int nj = OCD_MIN(FA_KB, nk_end - j0);
        /* S[rb:rb+8, jb:jb+48] = scale q k^T, 8 x 48 in registers; the K block stays in L1/L2 for all rows */
        for (int rb = 0; rb < FA_R; rb += FA_MR) {
            if (rb >= nr) { /* padding rows of a short last group: never stored, skip their scores */
                for (int i = rb; i < nrp; i++) memset(P + i * FA_KB, 0, sizeof(float) * FA_KB);
                break;
            }
            for (int jb = 0; jb < nj; jb += 48) {
                __m512 acc[FA_MR][3];
#pragma GCC unroll 8
                for (int i = 0; i < FA_MR; i++) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
                const float *kd = kt + j0 + jb;
                const float *const *qg = qr + rb;
                for (int d = 0; d < dh; d++, kd += nkp) {
                    __m512 b0 = _mm512_loadu_ps(kd), b1 = _mm512_loadu_ps(kd + 16), b2 = _mm512_loadu_ps(kd + 32);
#pragma GCC unroll 8
                    for (int i = 0; i < FA_MR; i++) {
                        __m512 a = _mm512_set1_ps(qg[i][d]);
                        acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                        acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
                        acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
                    }
                }
#pragma GCC unroll 8
                for (int i = 0; i < FA_MR; i++)
                    for (int t = 0; t < 3; t++)
                        _mm512_store_ps(P + (rb + i) * FA_KB + jb + 16 * t, _mm512_mul_ps(acc[i][t], vscale));
            }
        }
        const int nvec = (nj + 15) / 16;
        for (int i = 0; i < nrp; i++) {
            /* keys j0 + 16t + lane valid iff < nk_end and (causal) <= the row's query */
            int lim = causal ? OCD_MIN(nk_end, i0 + OCD_MIN(i, nr - 1) + 1) : nk_end;
            lim -= j0;
            float *S = P + i * FA_KB;
            __m512 mx = _mm512_set1_ps(-INFINITY);
            for (int t = 0; t < nvec; t++) {
                int n = lim - 16 * t;
                __mmask16 vm = n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
                mx = _mm512_mask_max_ps(mx, vm, mx, _mm512_load_ps(S + 16 * t));
            }
            float bm = _mm512_reduce_max_ps(mx);
            float mn = bm > m[i] ? bm : m[i];
            float alpha = m[i] == -INFINITY ? 0.0f : expf(m[i] - mn);
            __m512 vmn = _mm512_set1_ps(mn), sum = _mm512_setzero_ps();
            for (int t = 0; t < nvec; t++) {
                int n = lim - 16 * t;
                __mmask16 vm = n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
                __m512 p = _mm512_maskz_mov_ps(vm, exp512(_mm512_sub_ps(_mm512_load_ps(S + 16 * t), vmn)));
                sum = _mm512_add_ps(sum, p);
                _mm512_store_ps(S + 16 * t, p);
            }
            if (mn != -INFINITY) { /* a row with no valid key yet keeps m = -inf, l = 0 */
                l[i] = l[i] * alpha + _mm512_reduce_add_ps(sum);
                if (alpha != 1.0f) {
                    __m512 va = _mm512_set1_ps(alpha);
                    for (int t = 0; t < nv; t++)
                        _mm512_storeu_ps(O + i * FA_MAXDH + 16 * t, _mm512_mul_ps(va, _mm512_loadu_ps(O + i * FA_MAXDH + 16 * t)));
                }
                m[i] = mn;
            }
        }
        fa_pv(O, P, nrp, v + (size_t)j0 * ldv, ldv, nj, nv, tail);
    }
    for (int i = 0; i < nr; i++) {
        float *o = out + (size_t)(i0 + i) * ldo;
        const float inv = 1.0f / l[i];
        for (int d = 0; d < dh; d++) o[d] = O[i * FA_MAXDH + d] * inv;
    }
}

static void flash_attention(float *out, int ldo, const float *q, int ldq, const float *k, int ldk, const float *v, int ldv,
                            int Nq, int Nk, int heads, int dh, float scale, int causal, float *kt) {
    const int nkp = (int)round_keys(Nk), ng = (Nq + FA_R - 1) / FA_R, dhp = (dh + 15) / 16 * 16;
    float *vp = kt + (size_t)FA_MAXDH * nkp; /* [Nk, dhp] */
    for (int h = 0; h < heads; h++) {
        const size_t ho = (size_t)h * dh;
#pragma omp parallel
        {
#pragma omp for schedule(static) nowait
            for (int d = 0; d < dh; d++) {
                float *row = kt + (size_t)d * nkp;
                for (int j = 0; j < Nk; j++) row[j] = k[(size_t)j * ldk + ho + d];
                for (int j = Nk; j < nkp; j++) row[j] = 0.0f;
            }
#pragma omp for schedule(static)
            for (int j = 0; j < Nk; j++) { /* contiguous V rows, zero-padded to whole vectors */
                float *row = vp + (size_t)j * dhp;
                memcpy(row, v + (size_t)j * ldv + ho, sizeof(float) * dh);
                for (int d = dh; d < dhp; d++) row[d] = 0.0f;
            }
#pragma omp for schedule(dynamic, 4)
            for (int g = 0; g < ng; g++)
                fa_group(out + ho, ldo, q + ho, ldq, kt, nkp, vp, dhp, g * FA_R, OCD_MIN(FA_R, Nq - g * FA_R), Nk, dh,
                         scale, causal);
        }
    }
}
#endif

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
#if defined(__AVX512F__)
    if (dh <= FA_MAXDH) {
        flash_attention(out, ldo, q, ldq, k, ldk, v, ldv, Nq, Nk, heads, dh, scale, causal, scratch);
        return;
    }
#endif
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
