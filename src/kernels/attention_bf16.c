/* Flash attention on the AMX tile unit: k, v and the softmax weights rounded to bf16, q split
 * into two bf16 parts (q = hi + lo, both multiplied: the scores lose only k's rounding, which
 * keeps the tiny UNet's bf16 error under 1e-2), the online softmax and the sums in fp32.
 *
 * Per head, K and V are packed once into B-tile layouts (1 KiB of contiguous memory per tile):
 *   kq [Nkp/16 key blocks][dq/2 dim pairs][16 keys]   S = Q K^T  (k-steps over the head dims)
 *   vq [dv/16 col blocks][Nkp/2 key pairs][16 cols]   O += P V   (k-steps over the keys)
 * with dq = dh rounded up to 32, dv = dh rounded up to 16, Nkp = Nk rounded up to 32, zeros in
 * the padding. Query rows go in groups of 32 (two A row tiles, hi and lo); each group walks the
 * keys in blocks of AB_KB: four C tiles of S per 32 keys, the running max / sum per row, the weights
 * P rounded to bf16 (the row sum adds the rounded values, so P's rounding does not bias the
 * normalisation), then O [32, dv] (fp32, in L1) += P V, two column tiles at a time.
 * A group's work does not depend on which thread runs it: bit-identical for any thread count. */
#include "kernels/kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "kernels/amx.h"
#include "kernels/simd.h"

#define AB_R 32      /* query rows per group */
#define AB_KB 128    /* keys per block: S [32, 128] fp32 and P [32, 128] bf16 stay in L1 */
#define AB_MAXDH 256 /* larger heads take k_attention (its scratch bound covers these packings) */

void k_attention_bf16_ref(float *out, int ldo, const float *q, int ldq, const float *k, int ldk, const float *v,
                          int ldv, int Nq, int Nk, int heads, int dh, float scale) {
    const int C = heads * dh;
    float *qr = malloc(sizeof(float) * ((size_t)Nq + 2 * (size_t)Nk) * (C > 0 ? C : 1));
    if (!qr) return;
    float *kr = qr + (size_t)Nq * C, *vr = kr + (size_t)Nk * C;
    for (int i = 0; i < Nq; i++)
        for (int c = 0; c < C; c++) qr[(size_t)i * C + c] = q[(size_t)i * ldq + c]; /* split exactly enough */
    for (int j = 0; j < Nk; j++)
        for (int c = 0; c < C; c++) {
            kr[(size_t)j * C + c] = k_bf16_to_f32(k_f32_to_bf16(k[(size_t)j * ldk + c]));
            vr[(size_t)j * C + c] = k_bf16_to_f32(k_f32_to_bf16(v[(size_t)j * ldv + c]));
        }
    k_attention_ref(out, ldo, qr, C, kr, C, vr, C, Nq, Nk, heads, dh, scale, 0);
    free(qr);
}

#if defined(K_HAVE_AMX)

/* kq: key j's dims as bf16 pairs, the pair p of key j at [j / 16][p][j % 16]. */
BF_TARGET static void pack_k(uint32_t *kq, const float *k, int ldk, int Nk, int nkp, int dh, int dq) {
    const __mmask16 all = 0xFFFF;
#pragma omp for schedule(static)
    for (int j = 0; j < nkp; j++) {
        uint16_t row[AB_MAXDH] __attribute__((aligned(64)));
        for (int d = 0; d < dq; d += 16) {
            const int n = j < Nk ? OCD_MIN(16, dh - d) : 0;
            const __mmask16 m = n >= 16 ? all : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
            _mm256_store_si256((__m256i *)(row + d), k_bf16x16(_mm512_maskz_loadu_ps(m, k + (size_t)j * ldk + d)));
        }
        uint32_t *dst = kq + (size_t)(j / 16) * (dq / 2) * 16 + j % 16;
        const uint32_t *pairs = (const uint32_t *)row;
        for (int p = 0; p < dq / 2; p++) dst[(size_t)p * 16] = pairs[p];
    }
}

/* vq: column block c, key pair jp: 16 dwords (bf16 of key 2jp | key 2jp + 1 << 16). */
BF_TARGET static void pack_v(uint32_t *vq, const float *v, int ldv, int Nk, int nkp, int dh, int dv) {
#pragma omp for schedule(static)
    for (int jp = 0; jp < nkp / 2; jp++) {
        const int j0 = 2 * jp, j1 = 2 * jp + 1;
        for (int c = 0; c < dv / 16; c++) {
            const int n = OCD_MIN(16, dh - 16 * c);
            const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
            __m512 e = _mm512_maskz_loadu_ps(j0 < Nk ? m : 0, v + (size_t)j0 * ldv + 16 * c);
            __m512 o = _mm512_maskz_loadu_ps(j1 < Nk ? m : 0, v + (size_t)j1 * ldv + 16 * c);
            __m512i w = _mm512_or_si512(_mm512_srli_epi32(k_bf_hi(e), 16), k_bf_hi(o));
            _mm512_storeu_si512(vq + ((size_t)c * (nkp / 2) + jp) * 16, w);
        }
    }
}

/* One group: query rows [i0, i0 + nr) of one head (q, out already offset to the head). */
BF_TARGET static void ab_group(float *out, int ldo, const float *q, int ldq, const uint32_t *kq, const uint32_t *vq,
                               int i0, int nr, int Nk, int nkp, int dh, int dq, int dv, float scale) {
    uint16_t Q[AB_R * AB_MAXDH] __attribute__((aligned(64))); /* [32, dq] bf16(q) */
    uint16_t Ql[AB_R * AB_MAXDH] __attribute__((aligned(64))); /* [32, dq] bf16(q - bf16(q)) */
    float S[AB_R * AB_KB] __attribute__((aligned(64)));      /* [32, AB_KB] scores */
    uint16_t P[AB_R * AB_KB] __attribute__((aligned(64)));   /* [32, AB_KB] weights */
    float O[AB_R * AB_MAXDH] __attribute__((aligned(64)));   /* [32, dv] */
    float m[AB_R], l[AB_R];
    for (int i = 0; i < AB_R; i++) {
        const float *src = q + (size_t)(i0 + (i < nr ? i : nr - 1)) * ldq; /* padding rows repeat the last: never stored */
        for (int d = 0; d < dq; d += 16) {
            const int n = OCD_MIN(16, dh - d);
            const __mmask16 mk = n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
            const __m512 x = _mm512_maskz_loadu_ps(mk, src + d);
            const __m512i hi = k_bf_hi(x);
            _mm256_store_si256((__m256i *)(Q + i * dq + d), _mm512_cvtepi32_epi16(_mm512_srli_epi32(hi, 16)));
            _mm256_store_si256((__m256i *)(Ql + i * dq + d), k_bf16x16(_mm512_sub_ps(x, _mm512_castsi512_ps(hi))));
        }
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(O, 0, sizeof(float) * AB_R * dv);
    const __m512 vscale = _mm512_set1_ps(scale);
    const int nsq = dq / 32, ncv = dv / 16;
    for (int j0 = 0; j0 < Nk; j0 += AB_KB) {
        const int nj = OCD_MIN(AB_KB, Nk - j0), nkb = (nj + 31) / 32 * 32;
        /* S = Q K^T: 32 rows x 32 keys per four tiles */
        for (int jc = 0; jc < nkb; jc += 32) {
            const uint32_t *b0 = kq + (size_t)((j0 + jc) / 16) * (dq / 2) * 16, *b1 = b0 + (size_t)(dq / 2) * 16;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int s = 0; s < nsq; s++) {
                _tile_loadd(4, Q + 32 * s, dq * 2);
                _tile_loadd(6, b0 + (size_t)s * 256, 64);
                _tile_loadd(7, b1 + (size_t)s * 256, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_loadd(5, Q + 16 * dq + 32 * s, dq * 2);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
                _tile_loadd(4, Ql + 32 * s, dq * 2);
                _tile_loadd(5, Ql + 16 * dq + 32 * s, dq * 2);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, S + jc, AB_KB * 4);
            _tile_stored(1, S + jc + 16, AB_KB * 4);
            _tile_stored(2, S + 16 * AB_KB + jc, AB_KB * 4);
            _tile_stored(3, S + 16 * AB_KB + jc + 16, AB_KB * 4);
        }
        /* online softmax; keys past Nk get weight 0 */
        for (int i = 0; i < AB_R; i++) {
            float *s = S + i * AB_KB;
            __m512 mx = _mm512_set1_ps(-INFINITY);
            for (int t = 0; t < nkb / 16; t++) {
                const int n = nj - 16 * t;
                const __mmask16 vm = n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
                __m512 x = _mm512_mul_ps(_mm512_load_ps(s + 16 * t), vscale);
                _mm512_store_ps(s + 16 * t, x);
                mx = _mm512_mask_max_ps(mx, vm, mx, x);
            }
            const float bm = _mm512_reduce_max_ps(mx), mn = bm > m[i] ? bm : m[i];
            const float alpha = m[i] == -INFINITY ? 0.0f : expf(m[i] - mn);
            const __m512 vmn = _mm512_set1_ps(mn);
            __m512 sum = _mm512_setzero_ps();
            for (int t = 0; t < nkb / 16; t++) {
                const int n = nj - 16 * t;
                const __mmask16 vm = n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
                __m512i pb = k_bf_hi(_mm512_maskz_mov_ps(vm, k_exp512(_mm512_sub_ps(_mm512_load_ps(s + 16 * t), vmn))));
                sum = _mm512_add_ps(sum, _mm512_castsi512_ps(pb));
                _mm256_store_si256((__m256i *)(P + i * AB_KB + 16 * t), _mm512_cvtepi32_epi16(_mm512_srli_epi32(pb, 16)));
            }
            l[i] = l[i] * alpha + _mm512_reduce_add_ps(sum);
            if (alpha != 1.0f) {
                const __m512 va = _mm512_set1_ps(alpha);
                for (int t = 0; t < ncv; t++)
                    _mm512_store_ps(O + i * dv + 16 * t, _mm512_mul_ps(va, _mm512_load_ps(O + i * dv + 16 * t)));
            }
            m[i] = mn;
        }
        /* O += P V: two column tiles (or the last one alone) x both row tiles */
        for (int c = 0; c < ncv; c += 2) {
            const int two = c + 1 < ncv;
            const uint32_t *v0 = vq + ((size_t)c * (nkp / 2) + j0 / 2) * 16, *v1 = v0 + (size_t)(nkp / 2) * 16;
            _tile_loadd(0, O + 16 * c, dv * 4);
            _tile_loadd(2, O + 16 * dv + 16 * c, dv * 4);
            if (two) {
                _tile_loadd(1, O + 16 * (c + 1), dv * 4);
                _tile_loadd(3, O + 16 * dv + 16 * (c + 1), dv * 4);
            }
            for (int s = 0; s < nkb / 32; s++) {
                _tile_loadd(4, P + 32 * s, AB_KB * 2);
                _tile_loadd(5, P + 16 * AB_KB + 32 * s, AB_KB * 2);
                _tile_loadd(6, v0 + (size_t)s * 256, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(2, 5, 6);
                if (two) {
                    _tile_loadd(7, v1 + (size_t)s * 256, 64);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(3, 5, 7);
                }
            }
            _tile_stored(0, O + 16 * c, dv * 4);
            _tile_stored(2, O + 16 * dv + 16 * c, dv * 4);
            if (two) {
                _tile_stored(1, O + 16 * (c + 1), dv * 4);
                _tile_stored(3, O + 16 * dv + 16 * (c + 1), dv * 4);
            }
        }
    }
    for (int i = 0; i < nr; i++) {
        float *o = out + (size_t)(i0 + i) * ldo;
        const float inv = 1.0f / l[i];
        for (int d = 0; d < dh; d++) o[d] = O[i * dv + d] * inv;
    }
}

BF_TARGET static void attention_amx(float *out, int ldo, const float *q, int ldq, const float *k, int ldk, const float *v,
                                    int ldv, int Nq, int Nk, int heads, int dh, float scale, float *scratch) {
    const int dq = (dh + 31) / 32 * 32, dv = (dh + 15) / 16 * 16, nkp = (Nk + 31) / 32 * 32, ng = (Nq + AB_R - 1) / AB_R;
    uint32_t *kq = (uint32_t *)scratch, *vq = kq + (size_t)nkp * dq / 2;
#pragma omp parallel
    {
        k_tiles_on();
        for (int h = 0; h < heads; h++) {
            const size_t ho = (size_t)h * dh;
            pack_k(kq, k + ho, ldk, Nk, nkp, dh, dq); /* omp for: ends in a barrier */
            pack_v(vq, v + ho, ldv, Nk, nkp, dh, dv);
#pragma omp for schedule(dynamic, 4)
            for (int g = 0; g < ng; g++)
                ab_group(out + ho, ldo, q + ho, ldq, kq, vq, g * AB_R, OCD_MIN(AB_R, Nq - g * AB_R), Nk, nkp, dh, dq, dv,
                         scale);
        }
        k_tiles_off();
    }
}
#endif

void k_attention_bf16(float *out, int ldo, const float *q, int ldq, const float *k, int ldk, const float *v, int ldv,
                      int Nq, int Nk, int heads, int dh, float scale, float *scratch) {
    if (Nq <= 0 || Nk <= 0 || heads <= 0 || dh <= 0) return;
#if defined(K_HAVE_AMX)
    if (dh <= AB_MAXDH && k_bf16_available()) {
        attention_amx(out, ldo, q, ldq, k, ldk, v, ldv, Nq, Nk, heads, dh, scale, scratch);
        return;
    }
#endif
    k_attention(out, ldo, q, ldq, k, ldk, v, ldv, Nq, Nk, heads, dh, scale, 0, scratch);
}
