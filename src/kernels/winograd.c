/* 3x3 convolution (stride 1, padding 1) by Winograd's minimal filtering F(2x2, 3x3)
 * (Lavin & Gray 2016), over a batch of images, fp32.
 *
 * Every 2x2 block of output ("tile") reads a 4x4 input patch d. With
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * the output is A^T [ sum_c (G g_oc G^T) .* (B^T d_c B) ] A, so each of the 16 points p of the
 * 4x4 transformed grid is one GEMM over channels:  M[p] (co x tiles) = U[p] (co x ci) V[p] (ci x tiles).
 * That is 16 multiply-adds per tile and channel pair where the direct convolution needs 36:
 * 2.25x fewer. The transforms' coefficients are 0, +-1 and +-1/2, so rounding stays at the level of
 * the direct sum (checked against k_conv2d_ref in test_kernels).
 *
 * Work is cut into bands of whole tile rows (global over the batch) and blocks of WG_COB output
 * channels, both sized from the shape alone so that scratch stays under WG_CAP floats:
 *   per band:  V = input transform of the band            [16][ci][nt]
 *     per co block:  U = weight transform of the block     [16][cob][ci]
 *                    M[p] = U[p] V[p], one single-threaded sgemm per p, the 16 spread over threads
 *                    output transform (+ bias) of the block into y.
 * The weights are transformed again for every band: the band holds thousands of tiles, so that
 * costs well under 1% of the GEMMs, and nothing beside the fp32 weights is kept in memory.
 * Each output element is one fixed sequence of operations whatever the thread count. */
#include "kernels/kernels.h"

#include <string.h>

#include <cblas.h>

#include "base/util.h"

#define WG_CAP ((size_t)1 << 24) /* floats of scratch per call (64 MiB) */
#define WG_COB_MIN 64            /* output channels per weight-transform block, at least */
#define WG_MIN_TILES 128         /* fewer tiles: the weight transform would not pay off */

typedef struct {
    int TH, TW;     /* tile rows / columns per image */
    int rows;       /* tile rows per band (global over the batch) */
    int cob;        /* output channels per block */
    size_t nt;      /* tiles per full band */
} wg_plan;

static int wg_shape_ok(const k_conv_shape *s) {
    return s->kh == 3 && s->kw == 3 && s->stride == 1 && s->pad_t == 1 && s->pad_b == 1 && s->pad_l == 1 &&
           s->pad_r == 1 && s->ci >= 16 && s->co >= 16 && s->h >= 1 && s->w >= 1;
}

static wg_plan wg_make_plan(const k_conv_shape *s, int B) {
    wg_plan p;
    p.TH = (s->h + 1) / 2, p.TW = (s->w + 1) / 2;
    /* as many output channels per block as a quarter of the cap holds: every block repacks V */
    int cob = (int)(WG_CAP / 4 / ((size_t)16 * s->ci)) / 16 * 16;
    p.cob = OCD_MIN(s->co, OCD_MAX(cob, WG_COB_MIN));
    const size_t u = (size_t)16 * p.cob * s->ci, per_tile = (size_t)16 * ((size_t)s->ci + (size_t)p.cob);
    size_t nt = WG_CAP > u ? (WG_CAP - u) / per_tile : 0;
    size_t rows = nt / (size_t)p.TW, all = (size_t)B * p.TH;
    if (rows < 1) rows = 1;
    if (rows > all) rows = all;
    /* equal bands: the last one is not a sliver */
    const size_t nb = (all + rows - 1) / rows;
    rows = (all + nb - 1) / nb;
    p.rows = (int)rows;
    p.nt = rows * (size_t)p.TW;
    return p;
}

static int wg_enabled = 1;

void k_conv_winograd_enable(int on) { wg_enabled = on != 0; }

int k_conv3x3_wino_usable(const k_conv_shape *s, int B) {
#if defined(__AVX512F__)
    const int simd = 1;
#else
    const int simd = 0; /* the transforms are written for AVX-512 only */
#endif
    return simd && wg_enabled && B >= 1 && wg_shape_ok(s) &&
           (size_t)B * ((s->h + 1) / 2) * ((s->w + 1) / 2) >= WG_MIN_TILES;
}

size_t k_conv3x3_wino_scratch_floats(const k_conv_shape *s, int B) {
    if (!k_conv3x3_wino_usable(s, B)) return 0;
    wg_plan p = wg_make_plan(s, B);
    return (size_t)16 * ((size_t)p.cob * s->ci + p.nt * ((size_t)s->ci + (size_t)p.cob));
}

#if defined(__AVX512F__)
#include <immintrin.h>

static __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

/* U[p][o][c] = (G g G^T)[p] for o in [co0, co0 + n); U planes are n x ci. Sixteen input channels
 * at a time: the 3x3 kernels of consecutive channels are 9 floats apart, so tap k of all sixteen
 * is one gather. */
static void wg_weights(float *U, const float *w, int ci, int co0, int n) {
    const size_t plane = (size_t)n * ci;
    const __m512i step = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32(9));
    const __m512 half = _mm512_set1_ps(0.5f);
#pragma omp for schedule(static)
    for (int o = 0; o < n; o++)
        for (int c0 = 0; c0 < ci; c0 += 16) {
            const __mmask16 m = lanes(ci - c0);
            const float *g = w + ((size_t)(co0 + o) * ci + c0) * 9;
            __m512 t[4][3];
            for (int j = 0; j < 3; j++) {
                const __m512 a = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(step, _mm512_set1_epi32(j)), g, 4);
                const __m512 b = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(step, _mm512_set1_epi32(3 + j)), g, 4);
                const __m512 c = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(step, _mm512_set1_epi32(6 + j)), g, 4);
                t[0][j] = a;
                t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(a, b), c));
                t[2][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(a, b), c));
                t[3][j] = c;
            }
            float *u = U + (size_t)o * ci + c0;
            for (int i = 0; i < 4; i++) {
                _mm512_mask_storeu_ps(u + (4 * i + 0) * plane, m, t[i][0]);
                _mm512_mask_storeu_ps(u + (4 * i + 1) * plane, m,
                                      _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])));
                _mm512_mask_storeu_ps(u + (4 * i + 2) * plane, m,
                                      _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])));
                _mm512_mask_storeu_ps(u + (4 * i + 3) * plane, m, t[i][2]);
            }
        }
}

/* V[p][c][t] for the band's tile rows [g0, g0 + rows): t = (g - g0) * TW + tx. x holds B images
 * [ci, h / up, w / up]; the convolution reads their nearest x`up` upsampling (h x w). */
static void wg_input(float *V, size_t ntb, const float *x, const k_conv_shape *s, int up, const wg_plan *p, int g0,
                     int rows) {
    const int H = s->h, W = s->w, xh = H / up, xw = W / up, TW = p->TW;
    const size_t plane = (size_t)s->ci * ntb;
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
#pragma omp for schedule(static)
    for (int task = 0; task < s->ci * rows; task++) {
        const int c = task / rows, g = g0 + task % rows, b = g / p->TH, ty = g % p->TH;
        const float *xc = x + ((size_t)b * s->ci + c) * xh * xw;
        float *vc = V + (size_t)c * ntb + (size_t)(g - g0) * TW;
        for (int tx0 = 0; tx0 < TW; tx0 += 16) {
            float d[4][48] __attribute__((aligned(64)));
            for (int r = 0; r < 4; r++) {
                const int iy = 2 * ty - 1 + r;
                if (iy < 0 || iy >= H) { for (int j = 0; j < 48; j += 16) _mm512_store_ps(d[r] + j, _mm512_setzero_ps()); continue; }
                const float *src = xc + (size_t)(up == 2 ? iy >> 1 : iy) * xw;
                /* d[r][j] = input column 2 tx0 - 1 + j, zero outside the image */
                const int ix0 = 2 * tx0 - 1, j0 = ix0 < 0 ? -ix0 : 0, j1 = OCD_MIN(34, W - ix0);
                for (int j = 0; j < j0; j++) d[r][j] = 0.0f;
                if (up == 2) for (int j = j0; j < j1; j++) d[r][j] = src[(ix0 + j) >> 1];
                else memcpy(d[r] + j0, src + ix0 + j0, sizeof(float) * (size_t)(j1 - j0));
                for (int j = j1; j < 48; j++) d[r][j] = 0.0f;
            }
            const __mmask16 m = lanes(TW - tx0);
            for (int i = 0; i < 4; i++) {
                /* rows of B^T d, two vectors wide, at column offsets 0 and 2 */
                __m512 lo[2], hi[2];
                for (int o = 0; o < 2; o++) {
                    const int j = 2 * o;
                    __m512 r0a = _mm512_loadu_ps(d[0] + j), r0b = _mm512_loadu_ps(d[0] + j + 16);
                    __m512 r1a = _mm512_loadu_ps(d[1] + j), r1b = _mm512_loadu_ps(d[1] + j + 16);
                    __m512 r2a = _mm512_loadu_ps(d[2] + j), r2b = _mm512_loadu_ps(d[2] + j + 16);
                    __m512 r3a = _mm512_loadu_ps(d[3] + j), r3b = _mm512_loadu_ps(d[3] + j + 16);
                    switch (i) {
                    case 0: lo[o] = _mm512_sub_ps(r0a, r2a); hi[o] = _mm512_sub_ps(r0b, r2b); break;
                    case 1: lo[o] = _mm512_add_ps(r1a, r2a); hi[o] = _mm512_add_ps(r1b, r2b); break;
                    case 2: lo[o] = _mm512_sub_ps(r2a, r1a); hi[o] = _mm512_sub_ps(r2b, r1b); break;
                    default: lo[o] = _mm512_sub_ps(r1a, r3a); hi[o] = _mm512_sub_ps(r1b, r3b); break;
                    }
                }
                /* column k of tile tx0 + l is element 2l + k of the row */
                const __m512 c0 = _mm512_permutex2var_ps(lo[0], ev, hi[0]), c1 = _mm512_permutex2var_ps(lo[0], od, hi[0]);
                const __m512 c2 = _mm512_permutex2var_ps(lo[1], ev, hi[1]), c3 = _mm512_permutex2var_ps(lo[1], od, hi[1]);
                float *v = vc + tx0;
                _mm512_mask_storeu_ps(v + (4 * i + 0) * plane, m, _mm512_sub_ps(c0, c2));
                _mm512_mask_storeu_ps(v + (4 * i + 1) * plane, m, _mm512_add_ps(c1, c2));
                _mm512_mask_storeu_ps(v + (4 * i + 2) * plane, m, _mm512_sub_ps(c2, c1));
                _mm512_mask_storeu_ps(v + (4 * i + 3) * plane, m, _mm512_sub_ps(c1, c3));
            }
        }
    }
}

/* y[b][co0 + o][...] = A^T M A + bias for the band's tiles and the block's n channels. */
static void wg_output(float *y, const float *M, size_t ntb, const float *bias, const k_conv_shape *s, const wg_plan *p,
                      int g0, int rows, int co0, int n) {
    const int H = s->h, W = s->w, TW = p->TW;
    const size_t plane = (size_t)n * ntb;
    const __m512i il = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ih = _mm512_add_epi32(il, _mm512_set1_epi32(8));
#pragma omp for schedule(static)
    for (int task = 0; task < n * rows; task++) {
        const int o = task / rows, g = g0 + task % rows, b = g / p->TH, ty = g % p->TH;
        const float *mo = M + (size_t)o * ntb + (size_t)(g - g0) * TW;
        float *yo = y + ((size_t)b * s->co + co0 + o) * H * W;
        const __m512 vb = _mm512_set1_ps(bias ? bias[co0 + o] : 0.0f);
        for (int tx0 = 0; tx0 < TW; tx0 += 16) {
            const __mmask16 m = lanes(TW - tx0);
            __m512 s0[4], s1[4];
            for (int k = 0; k < 4; k++) {
                const __m512 m0 = _mm512_maskz_loadu_ps(m, mo + tx0 + (0 + k) * plane);
                const __m512 m1 = _mm512_maskz_loadu_ps(m, mo + tx0 + (4 + k) * plane);
                const __m512 m2 = _mm512_maskz_loadu_ps(m, mo + tx0 + (8 + k) * plane);
                const __m512 m3 = _mm512_maskz_loadu_ps(m, mo + tx0 + (12 + k) * plane);
                s0[k] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                s1[k] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            const __m512 y00 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]), vb);
            const __m512 y01 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3]), vb);
            const __m512 y10 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]), vb);
            const __m512 y11 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3]), vb);
            const int x0 = 2 * tx0, nx = OCD_MIN(32, W - x0);
            const __mmask16 ml = lanes(nx), mh = lanes(nx - 16 > 0 ? nx - 16 : 0);
            for (int r = 0; r < 2; r++) {
                const int oy = 2 * ty + r;
                if (oy >= H) break;
                const __m512 a = r ? y10 : y00, c = r ? y11 : y01;
                float *dst = yo + (size_t)oy * W + x0;
                _mm512_mask_storeu_ps(dst, ml, _mm512_permutex2var_ps(a, il, c));
                if (mh) _mm512_mask_storeu_ps(dst + 16, mh, _mm512_permutex2var_ps(a, ih, c));
            }
        }
    }
}

void k_conv3x3_wino(float *y, const float *x, int B, const float *w, const float *b, const k_conv_shape *s, int up,
                    float *scratch) {
    const wg_plan p = wg_make_plan(s, B);
    const int all = B * p.TH, ci = s->ci;
    float *U = scratch, *V = U + (size_t)16 * p.cob * ci, *M = V + (size_t)16 * ci * p.nt;
    for (int g0 = 0; g0 < all; g0 += p.rows) {
        const int rows = OCD_MIN(p.rows, all - g0);
        const size_t ntb = (size_t)rows * p.TW;
        for (int co0 = 0; co0 < s->co; co0 += p.cob) {
            const int n = OCD_MIN(p.cob, s->co - co0);
#pragma omp parallel
            {
                if (co0 == 0) wg_input(V, ntb, x, s, up, &p, g0, rows);
                wg_weights(U, w, ci, co0, n);
                /* implicit barriers: V and U complete. OpenBLAS runs serially inside the region. */
#pragma omp for schedule(dynamic)
                for (int q = 0; q < 16; q++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, (int)ntb, ci, 1.0f, U + (size_t)q * n * ci,
                                ci, V + (size_t)q * ci * ntb, (int)ntb, 0.0f, M + (size_t)q * n * ntb, (int)ntb);
                wg_output(y, M, ntb, b, s, &p, g0, rows, co0, n);
            }
        }
    }
}
#else
void k_conv3x3_wino(float *y, const float *x, int B, const float *w, const float *b, const k_conv_shape *s, int up,
                    float *scratch) {
    (void)y; (void)x; (void)B; (void)w; (void)b; (void)s; (void)up; (void)scratch;
}
#endif
