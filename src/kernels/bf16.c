/* BF16 linear and convolution on the AMX tile unit (TDPBF16PS: C[16x16] fp32 +=
 * A[16x32] bf16 . B[32x16] bf16, B stored as 16 rows of (k, k+1) pairs).
 *
 * Both kernels run the same 32x32 block: four C tiles, two A and two B tiles per k-step of
 * 32, k-steps in a fixed order (so each output is one fixed-order sum, whatever the thread
 * count or the task split).
 *
 *  - Linear y[M, N] = x W^T: A = x rounded to bf16 ([M, kp], rows padded to 32, converted
 *    per chunk of rows), B = W packed as [N/16][kp/2][16 cols][2]: one B tile is 1 KiB of
 *    contiguous memory. C tiles are rows of y: stored in place when whole.
 *  - Convolution, stride 1 (taps layout): C = W X, rows = output channels, columns = 16
 *    consecutive positions of the zero-padded band grid (as the fp32 direct conv: tap (ky, kx)
 *    is a shift by ky*wp + kx). A = W packed as [co][tap][ci rounded to 32], B = the band as
 *    channel pairs [ci/2][rows*wp][2] (fp32 -> bf16 once per band, the x2 upsampling of
 *    k_conv2d_up2 applied by that copy). Columns in the padding are dropped on store.
 *  - Convolution, other strides (cols layout): the band is gathered as im2col pairs
 *    [K/2][positions][2] and multiplied by W as stored ([co][K rounded to 32]).
 * Tile state is configured per thread inside each parallel region and released at its end. */
#include "kernels/kernels.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"

#include <sys/mman.h>
#include <unistd.h>

#define BF_CAP ((size_t)1 << 22) /* dwords per band (16 MiB), as the fp32 conv's scratch cap */
#define BF_SLACK 128             /* zeroed dwords after a band: blocks read up to 32 positions past it */
#define BF_MR 128                /* linear: rows of x per task */
#define BF_MIN_TASKS 8           /* linear: split the columns when there are fewer row blocks */
#define BF_PG 4                  /* conv: 32-position blocks per task */

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

uint16_t k_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN stays a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float k_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------ packing */

k_bf16_weight k_bf16_linear_desc(int K, int N) {
    k_bf16_weight d = {.kind = K_BF16_LINEAR, .rows = N, .cols = K, .kp = round_up(K, 32), .rp = round_up(N, 32)};
    return d;
}

k_bf16_weight k_bf16_conv_desc(int co, int ci, int kh, int kw, int stride) {
    k_bf16_weight d = {.kind = stride == 1 ? K_BF16_CONV_TAPS : K_BF16_CONV_COLS, .rows = co, .cols = ci * kh * kw,
                       .ci = ci, .kh = kh, .kw = kw, .rp = round_up(co, 16)};
    d.kp = stride == 1 ? kh * kw * round_up(ci, 32) : round_up(ci * kh * kw, 32);
    return d;
}

size_t k_bf16_packed_elems(const k_bf16_weight *d) { return (size_t)d->rp * d->kp; }

/* Index in the packed array of element (r, k) of the logical W[rows, cols]. */
static size_t packed_index(const k_bf16_weight *d, int r, int k) {
    if (d->kind == K_BF16_LINEAR) return (((size_t)(r / 16) * (d->kp / 2) + k / 2) * 16 + r % 16) * 2 + k % 2;
    if (d->kind == K_BF16_CONV_COLS) return (size_t)r * d->kp + k;
    const int T = d->kh * d->kw, c = k / T, t = k % T, cip = d->kp / T;
    return (size_t)r * d->kp + (size_t)t * cip + c;
}

void k_bf16_pack(const k_bf16_weight *d, uint16_t *dst, const float *w) {
    memset(dst, 0, sizeof(uint16_t) * k_bf16_packed_elems(d));
#pragma omp parallel for schedule(static) if ((size_t)d->rows * d->cols > 65536)
    for (int r = 0; r < d->rows; r++)
        for (int k = 0; k < d->cols; k++) dst[packed_index(d, r, k)] = k_f32_to_bf16(w[(size_t)r * d->cols + k]);
}

void k_bf16_unpack(const k_bf16_weight *d, float *w, const uint16_t *src) {
#pragma omp parallel for schedule(static) if ((size_t)d->rows * d->cols > 65536)
    for (int r = 0; r < d->rows; r++)
        for (int k = 0; k < d->cols; k++) w[(size_t)r * d->cols + k] = k_bf16_to_f32(src[packed_index(d, r, k)]);
}

/* ------------------------------------------------------------------ references */

static float *round_copy(const float *x, size_t n) {
    float *r = malloc(sizeof(float) * (n ? n : 1));
    if (r) for (size_t i = 0; i < n; i++) r[i] = k_bf16_to_f32(k_f32_to_bf16(x[i]));
    return r;
}

static float *unpacked(const k_bf16_weight *w) {
    float *f = malloc(sizeof(float) * (size_t)w->rows * w->cols);
    if (f) k_bf16_unpack(w, f, w->p);
    return f;
}

void k_linear_bf16_ref(float *y, const float *x, const k_bf16_weight *w, const float *b, int M, int K, int N) {
    float *xr = round_copy(x, (size_t)M * K), *wf = unpacked(w);
    if (xr && wf) k_linear_ref(y, xr, wf, b, M, K, N);
    free(xr);
    free(wf);
}

void k_conv2d_bf16_ref(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s) {
    float *xr = round_copy(x, (size_t)s->ci * s->h * s->w), *wf = unpacked(w);
    if (xr && wf) k_conv2d_ref(y, xr, wf, b, s);
    free(xr);
    free(wf);
}

void k_conv2d_up2_bf16_ref(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s) {
    float *xr = round_copy(x, (size_t)s->ci * s->h * s->w), *wf = unpacked(w);
    if (xr && wf) k_conv2d_up2_ref(y, xr, wf, b, s);
    free(xr);
    free(wf);
}

/* ------------------------------------------------------------------ scratch sizes */

static int taps_band_rows(const k_conv_shape *s, int ho) {
    const size_t wp = (size_t)s->w + s->pad_l + s->pad_r, kp2 = (size_t)round_up(s->ci, 32) / 2;
    size_t r = BF_CAP / (kp2 * wp > 0 ? kp2 * wp : 1);
    r = r > (size_t)s->kh ? r - (size_t)(s->kh - 1) : 1;
    if (r > (size_t)ho) r = (size_t)(ho > 0 ? ho : 1);
    return (int)r;
}

static int cols_band_rows(const k_conv_shape *s, int ho, int wo) {
    const size_t kp2 = (size_t)round_up(s->ci * s->kh * s->kw, 32) / 2;
    size_t r = BF_CAP / (kp2 * (size_t)(wo > 0 ? wo : 1));
    if (r < 1) r = 1;
    if (r > (size_t)ho) r = (size_t)(ho > 0 ? ho : 1);
    return (int)r;
}

/* Scratch for a (virtual, already upsampled) shape; in floats (= dwords). */
static size_t bf_scratch(const k_conv_shape *s) {
    const int ho = k_conv_out_h(s), wo = k_conv_out_w(s);
    if (ho <= 0 || wo <= 0) return 0;
    if (s->stride == 1) {
        const size_t wp = (size_t)s->w + s->pad_l + s->pad_r, kp2 = (size_t)round_up(s->ci, 32) / 2;
        return kp2 * ((size_t)(taps_band_rows(s, ho) + s->kh - 1) * wp + BF_SLACK);
    }
    const size_t kp2 = (size_t)round_up(s->ci * s->kh * s->kw, 32) / 2;
    return kp2 * ((size_t)cols_band_rows(s, ho, wo) * wo + BF_SLACK);
}

size_t k_conv2d_bf16_scratch_floats(const k_conv_shape *s) { return bf_scratch(s); }

size_t k_conv2d_up2_bf16_scratch_floats(const k_conv_shape *s) {
    k_conv_shape u = *s;
    u.h *= 2;
    u.w *= 2;
    return bf_scratch(&u);
}

#include "kernels/amx.h"
#if defined(K_HAVE_AMX)
#include <cpuid.h>
#include <sys/syscall.h>

static int g_amx = -1;

int k_bf16_available(void) {
    int v = __atomic_load_n(&g_amx, __ATOMIC_ACQUIRE);
    if (v >= 0) return v;
    unsigned a, b, c, d;
    const char *off = getenv("OCD_NO_AMX");
    v = 0;
    /* CPUID.7.0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE; EBX bit 16 AVX512F, bit 30 AVX512BW */
    if (!(off && *off && strcmp(off, "0")) && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 22 & 1) &&
        (d >> 24 & 1) && (b >> 16 & 1) && (b >> 30 & 1))
        v = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
    __atomic_store_n(&g_amx, v, __ATOMIC_RELEASE);
    return v;
}

/* Four C tiles (rows a0/a1 x columns b0/b1) += sum over the k-steps. A step s reads A at
 * a + aoff[s] (row stride lda bytes) and B at b + boff[s] (row stride ldb bytes); the second
 * B tile starts b1 bytes after the first. C tile q starts from 16 rows at ci[q] (row stride
 * cis[q] bytes; 0 repeats one row) or from zero (ci NULL), and is stored to out[q] (row stride
 * os[q] bytes). */
BF_TARGET static void tile_block(const uint16_t *a0, const uint16_t *a1, size_t lda, const uint32_t *b, size_t b1,
                                 size_t ldb, const size_t *aoff, const size_t *boff, int nsteps,
                                 const float *const *ci, const size_t *cis, float *const *out, const size_t *os) {
    if (ci) {
        _tile_loadd(0, ci[0], cis[0]);
        _tile_loadd(1, ci[1], cis[1]);
        _tile_loadd(2, ci[2], cis[2]);
        _tile_loadd(3, ci[3], cis[3]);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    const char *bb = (const char *)b;
    for (int s = 0; s < nsteps; s++) {
        _tile_loadd(4, a0 + aoff[s], lda);
        _tile_loadd(6, bb + boff[s], ldb);
        _tile_loadd(7, bb + boff[s] + b1, ldb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + aoff[s], lda);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out[0], os[0]);
    _tile_stored(1, out[1], os[1]);
    _tile_stored(2, out[2], os[2]);
    _tile_stored(3, out[3], os[3]);
}

/* dst[i] = (bf16(e[i]) | bf16(o[i]) << 16) for n pairs. */
BF_TARGET static void pair_rows(uint32_t *dst, const float *e, const float *o, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i lo = _mm512_srli_epi32(k_bf_hi(_mm512_loadu_ps(e + i)), 16), hi = k_bf_hi(_mm512_loadu_ps(o + i));
        _mm512_storeu_si512(dst + i, _mm512_or_si512(lo, hi));
    }
    for (; i < n; i++) dst[i] = (uint32_t)k_f32_to_bf16(e[i]) | (uint32_t)k_f32_to_bf16(o[i]) << 16;
}

/* ------------------------------------------------------------------ linear */

/* One parallel region, no barrier but its end (on a loaded machine every barrier can cost a
 * scheduler time slice): each task converts its own BF_MR rows of x to bf16 and multiplies
 * them by one column block of W. Column blocks exist only to give small M enough tasks; the
 * conversion is repeated per block (for small M the weights dominate anyway). */
BF_TARGET static void linear_amx(float *y, const float *x, const k_bf16_weight *w, const float *b, int M, int K, int N) {
    const int kp = w->kp, ns = kp / 32, nmg = (M + BF_MR - 1) / BF_MR;
    const int ncb = OCD_MAX(1, OCD_MIN((N + 31) / 32, (BF_MIN_TASKS + nmg - 1) / nmg)), cw = round_up((N + ncb - 1) / ncb, 32);
    size_t *aoff = malloc(sizeof(size_t) * ns * 2), *boff = aoff + ns;
    float *bp = b ? calloc((size_t)w->rp, sizeof(float)) : NULL; /* bias padded to whole tiles */
    if (!aoff || (b && !bp)) { free(aoff); free(bp); k_linear_bf16_ref(y, x, w, b, M, K, N); return; }
    if (b) memcpy(bp, b, sizeof(float) * N);
    for (int s = 0; s < ns; s++) { aoff[s] = (size_t)32 * s; boff[s] = (size_t)s * 1024; } /* B: 16 x 64 bytes per step */
    const size_t bpanel = (size_t)(kp / 2) * 64;                                            /* bytes per 16 columns */
    int failed = 0;
#pragma omp parallel
    {
        uint16_t *xb = malloc(sizeof(uint16_t) * (size_t)BF_MR * kp); /* this task's rows [BF_MR, kp] */
        float c[4 * 256] __attribute__((aligned(64)));
        if (!xb) {
#pragma omp atomic write
            failed = 1;
        }
        k_tiles_on();
#pragma omp for schedule(dynamic)
        for (int t = 0; t < nmg * ncb; t++) {
            if (!xb) continue;
            const int m0 = (t / ncb) * BF_MR, mr = OCD_MIN(BF_MR, M - m0), jb = t % ncb;
            const int j1 = OCD_MIN(N, (jb + 1) * cw);
            for (int r = 0; r < round_up(mr, 32); r++) {
                uint16_t *d = xb + (size_t)r * kp;
                if (r >= mr) { memset(d, 0, sizeof(uint16_t) * kp); continue; }
                const float *src = x + (size_t)(m0 + r) * K;
                int i = 0;
                for (; i + 16 <= K; i += 16)
                    _mm256_storeu_si256((__m256i *)(d + i), k_bf16x16(_mm512_loadu_ps(src + i)));
                for (; i < K; i++) d[i] = k_f32_to_bf16(src[i]);
                for (; i < kp; i++) d[i] = 0;
            }
            for (int j0 = jb * cw; j0 < j1; j0 += 32) {
                const uint32_t *bt = (const uint32_t *)((const char *)w->p + (size_t)(j0 / 16) * bpanel);
                const float *cinit[4] = {bp + j0, bp + j0 + 16, bp + j0, bp + j0 + 16};
                const size_t cis[4] = {0, 0, 0, 0};
                for (int i0 = 0; i0 < mr; i0 += 32) {
                    const uint16_t *a0 = xb + (size_t)i0 * kp, *a1 = a0 + (size_t)16 * kp;
                    float *out[4];
                    size_t os[4];
                    int whole = 1;
                    for (int q = 0; q < 4; q++) {
                        const int r0 = m0 + i0 + (q >> 1) * 16, c0 = j0 + (q & 1) * 16;
                        if (r0 + 16 <= M && c0 + 16 <= N) { out[q] = y + (size_t)r0 * N + c0; os[q] = (size_t)N * 4; }
                        else { out[q] = c + q * 256; os[q] = 64; whole = 0; }
                    }
                    tile_block(a0, a1, (size_t)kp * 2, bt, bpanel, 64, aoff, boff, ns, b ? cinit : NULL, cis, out, os);
                    if (whole) continue;
                    for (int q = 0; q < 4; q++) { /* partial tiles went to c: copy what exists */
                        if (out[q] != c + q * 256) continue;
                        const int r0 = m0 + i0 + (q >> 1) * 16, c0 = j0 + (q & 1) * 16;
                        const int nr = OCD_MIN(16, M - r0), nc = OCD_MIN(16, N - c0);
                        if (nr <= 0 || nc <= 0) continue;
                        const __mmask16 mk = (__mmask16)((1u << nc) - 1);
                        for (int r = 0; r < nr; r++)
                            _mm512_mask_storeu_ps(y + (size_t)(r0 + r) * N + c0, mk, _mm512_load_ps(c + q * 256 + r * 16));
                    }
                }
            }
        }
        k_tiles_off();
        free(xb);
    }
    free(aoff);
    free(bp);
    if (failed) k_linear_bf16_ref(y, x, w, b, M, K, N);
}

void k_linear_bf16(float *y, const float *x, const k_bf16_weight *w, const float *b, int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    if (!k_bf16_available() || w->kind != K_BF16_LINEAR) { k_linear_bf16_ref(y, x, w, b, M, K, N); return; }
    linear_amx(y, x, w, b, M, K, N);
}

/* ------------------------------------------------------------------ convolution */

/* C tiles of a 32 x 32 block of y: rows co0.., positions p0.. of a band whose positions map
 * to y offsets through (wp, wo): p -> (p / wp) * wo + p % wp, kept when p % wp < wo, p < np. */
BF_TARGET static void conv_store(float *y, size_t yplane, const float *c, const float *b, int co, int co0, int p0, int np,
                                 int wp, int wo) {
    for (int h = 0; h < 2; h++) {
        const int q = p0 + 16 * h;
        __mmask16 m = 0;
        for (int l = 0; l < 16; l++)
            if (q + l < np && (q + l) % wp < wo) m |= (__mmask16)(1u << l);
        if (!m) continue;
        const size_t dst = (size_t)(q / wp) * wo + (size_t)OCD_MIN(q % wp, wo);
        for (int r = 0; r < 32 && co0 + r < co; r++) {
            const float *cr = c + ((r >> 4) * 2 + h) * 256 + (r & 15) * 16;
            __m512 v = _mm512_add_ps(_mm512_load_ps(cr), _mm512_set1_ps(b ? b[co0 + r] : 0.0f));
            _mm512_mask_compressstoreu_ps(y + (size_t)(co0 + r) * yplane + dst, m, v);
        }
    }
}

/* Multiplies W by the band xb[kp2][pstride] (pair rows) for positions [0, np): the k-steps
 * are (tap t, chunk j): A at t * cip + 32 j, B at 16 j rows + toff[t] positions. */
BF_TARGET static void conv_band(float *y, size_t yplane, int wp, int wo, int np, const uint32_t *xb, size_t pstride,
                                const k_bf16_weight *w, const float *b, const int *toff, int T, size_t *aoff, size_t *boff) {
    const int cip = w->kp / T, nj = cip / 32, ns = T * nj, co = w->rows;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < nj; j++) {
            aoff[t * nj + j] = (size_t)t * cip + (size_t)32 * j;
            boff[t * nj + j] = ((size_t)16 * j * pstride + (size_t)toff[t]) * 4;
        }
    const int ncb = (co + 31) / 32, npb = (np + 31) / 32, npg = (npb + BF_PG - 1) / BF_PG;
#pragma omp parallel
    {
        k_tiles_on();
        float c[4 * 256] __attribute__((aligned(64)));
#pragma omp for schedule(dynamic)
        for (int task = 0; task < ncb * npg; task++) {
            const int cb = task / npg, pg = task % npg, co0 = cb * 32;
            const uint16_t *a0 = w->p + (size_t)co0 * w->kp;
            const uint16_t *a1 = co0 + 16 < w->rp ? a0 + (size_t)16 * w->kp : a0; /* duplicate rows: never stored */
            for (int pb = pg * BF_PG; pb < OCD_MIN(npb, (pg + 1) * BF_PG); pb++) {
                float *out[4] = {c, c + 256, c + 512, c + 768};
                const size_t os[4] = {64, 64, 64, 64};
                tile_block(a0, a1, (size_t)w->kp * 2, xb + (size_t)pb * 32, 64, pstride * 4, aoff, boff, ns, NULL, NULL, out, os);
                conv_store(y, yplane, c, b, co, co0, pb * 32, np, wp, wo);
            }
        }
        k_tiles_off();
    }
}

/* Pair rows of the zero-padded (and, up = 2, upsampled) band: xb[c/2][t * wp + i] for padded
 * rows t of output rows starting at r0. */
BF_TARGET static void fill_taps(uint32_t *xb, size_t pstride, int nrows, int wp, const float *x, const k_conv_shape *s,
                                int r0, int up) {
    const int H = s->h, W = s->w, xh = H / up, xw = W / up, kp2 = round_up(s->ci, 32) / 2;
#pragma omp parallel
    {
        float *row = malloc(sizeof(float) * 2 * (size_t)wp);
#pragma omp for schedule(static)
        for (int cp = 0; cp < kp2; cp++) {
            uint32_t *d = xb + (size_t)cp * pstride;
            if (!row || 2 * cp >= s->ci) { /* padding channels; without memory the band stays zero */
                memset(d, 0, sizeof(uint32_t) * pstride);
                continue;
            }
            for (int t = 0; t < nrows; t++) {
                const int iy = r0 + t - s->pad_t;
                for (int h = 0; h < 2; h++) {
                    float *rr = row + (size_t)h * wp;
                    const int c = 2 * cp + h;
                    if (iy < 0 || iy >= H || c >= s->ci) { memset(rr, 0, sizeof(float) * wp); continue; }
                    const float *src = x + ((size_t)c * xh + iy / up) * xw;
                    for (int i = 0; i < s->pad_l; i++) rr[i] = 0.0f;
                    if (up == 2) for (int ix = 0; ix < W; ix++) rr[s->pad_l + ix] = src[ix >> 1];
                    else memcpy(rr + s->pad_l, src, sizeof(float) * W);
                    for (int i = s->pad_l + W; i < wp; i++) rr[i] = 0.0f;
                }
                pair_rows(d + (size_t)t * wp, row, row + wp, wp);
            }
            memset(d + (size_t)nrows * wp, 0, sizeof(uint32_t) * (pstride - (size_t)nrows * wp));
        }
        free(row);
    }
}

/* im2col pairs for output rows [r0, r0 + nr): xb[k/2][r * wo + ox], k = (c, ky, kx). */
BF_TARGET static void fill_cols(uint32_t *xb, size_t pstride, const float *x, const k_conv_shape *s, int r0, int nr, int wo,
                                int up) {
    const int K = s->ci * s->kh * s->kw, kp2 = round_up(K, 32) / 2, H = s->h, W = s->w, xh = H / up, xw = W / up;
#pragma omp parallel for schedule(static)
    for (int kp = 0; kp < kp2; kp++) {
        uint32_t *d = xb + (size_t)kp * pstride;
        memset(d, 0, sizeof(uint32_t) * pstride);
        for (int h = 0; h < 2; h++) {
            const int k = 2 * kp + h;
            if (k >= K) break;
            const int kx = k % s->kw, ky = (k / s->kw) % s->kh, c = k / (s->kw * s->kh);
            for (int r = 0; r < nr; r++) {
                const int iy = (r0 + r) * s->stride - s->pad_t + ky;
                if (iy < 0 || iy >= H) continue;
                const float *src = x + ((size_t)c * xh + iy / up) * xw;
                for (int ox = 0; ox < wo; ox++) {
                    const int ix = ox * s->stride - s->pad_l + kx;
                    if (ix < 0 || ix >= W) continue;
                    d[(size_t)r * wo + ox] |= (uint32_t)k_f32_to_bf16(src[ix / up]) << (16 * h);
                }
            }
        }
    }
}

BF_TARGET static void conv_amx(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s,
                               float *scratch, int up) {
    const int ho = k_conv_out_h(s), wo = k_conv_out_w(s);
    const size_t yplane = (size_t)ho * wo;
    uint32_t *xb = (uint32_t *)scratch;
    const int T = w->kind == K_BF16_CONV_TAPS ? s->kh * s->kw : 1, ns = w->kp / 32;
    size_t *aoff = malloc(sizeof(size_t) * 2 * ns), *boff = aoff ? aoff + ns : NULL;
    int *toff = malloc(sizeof(int) * T);
    if (!aoff || !toff) {
        free(aoff); free(toff);
        k_conv_shape o = *s; /* s is the virtual (upsampled) shape: the reference wants the stored one */
        o.h /= up;
        o.w /= up;
        if (up == 2) k_conv2d_up2_bf16_ref(y, x, w, b, &o);
        else k_conv2d_bf16_ref(y, x, w, b, s);
        return;
    }
    if (w->kind == K_BF16_CONV_TAPS) {
        const int wp = s->w + s->pad_l + s->pad_r, nb = taps_band_rows(s, ho);
        for (int ky = 0; ky < s->kh; ky++)
            for (int kx = 0; kx < s->kw; kx++) toff[ky * s->kw + kx] = ky * wp + kx;
        for (int r0 = 0; r0 < ho; r0 += nb) {
            const int nr = OCD_MIN(nb, ho - r0), nrows = nr + s->kh - 1;
            const size_t pstride = (size_t)nrows * wp + BF_SLACK;
            fill_taps(xb, pstride, nrows, wp, x, s, r0, up);
            conv_band(y + (size_t)r0 * wo, yplane, wp, wo, nr * wp, xb, pstride, w, b, toff, T, aoff, boff);
        }
    } else {
        const int nb = cols_band_rows(s, ho, wo);
        toff[0] = 0;
        for (int r0 = 0; r0 < ho; r0 += nb) {
            const int nr = OCD_MIN(nb, ho - r0);
            const size_t pstride = (size_t)nr * wo + BF_SLACK;
            fill_cols(xb, pstride, x, s, r0, nr, wo, up);
            conv_band(y + (size_t)r0 * wo, yplane, nr * wo, nr * wo, nr * wo, xb, pstride, w, b, toff, 1, aoff, boff);
        }
    }
    free(aoff);
    free(toff);
}

#else
int k_bf16_available(void) { return 0; }
static void linear_amx(float *y, const float *x, const k_bf16_weight *w, const float *b, int M, int K, int N) {
    k_linear_bf16_ref(y, x, w, b, M, K, N);
}
static void conv_amx(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s,
                     float *scratch, int up) {
    (void)scratch; (void)up; (void)y; (void)x; (void)w; (void)b; (void)s;
}
void k_linear_bf16(float *y, const float *x, const k_bf16_weight *w, const float *b, int M, int K, int N) {
    k_linear_bf16_ref(y, x, w, b, M, K, N);
}
#endif

void k_conv2d_bf16(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s, float *scratch) {
    if (k_conv_out_h(s) <= 0 || k_conv_out_w(s) <= 0 || s->co <= 0) return;
    if (!k_bf16_available()) { k_conv2d_bf16_ref(y, x, w, b, s); return; }
    conv_amx(y, x, w, b, s, scratch, 1);
}

void k_conv2d_up2_bf16(float *y, const float *x, const k_bf16_weight *w, const float *b, const k_conv_shape *s,
                       float *scratch) {
    k_conv_shape u = *s;
    u.h *= 2;
    u.w *= 2;
    if (k_conv_out_h(&u) <= 0 || k_conv_out_w(&u) <= 0 || s->co <= 0) return;
    if (!k_bf16_available()) { k_conv2d_up2_bf16_ref(y, x, w, b, s); return; }
    conv_amx(y, x, w, b, &u, scratch, 2);
}

/* ------------------------------------------------------------------ weight sets */

int k_bf16_set_add(k_bf16_set *s, float *w, k_bf16_weight d) {
    for (int i = 0; i < s->n; i++)
        if (s->e[i].key == w) return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        k_bf16_entry *e = realloc(s->e, sizeof *e * cap);
        if (!e) return ocd_fail("out of memory (bf16 weights)");
        s->e = e;
        s->cap = cap;
    }
    const size_t n = (size_t)d.rows * d.cols, pe = k_bf16_packed_elems(&d);
    uint16_t *p = malloc(sizeof(uint16_t) * (pe ? pe : 1));
    if (!p) return ocd_fail("out of memory (bf16 weights)");
    k_bf16_pack(&d, p, w);
    k_bf16_entry *e = &s->e[s->n++];
    e->key = w;
    e->n = n;
    e->inplace = pe * sizeof(uint16_t) <= n * sizeof(float);
    if (e->inplace) {
        memcpy(w, p, sizeof(uint16_t) * pe);
        free(p);
        p = (uint16_t *)w;
        /* hand the pages past the packed data back (large buffers are whole mmaps) */
        const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)(p + pe) + pg - 1) & ~(pg - 1),
                        hi = ((uintptr_t)(w + n)) & ~(pg - 1);
        if (n * sizeof(float) >= ((size_t)1 << 20) && hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
    e->d = d;
    e->d.p = p;
    s->sorted = 0;
    return 0;
}

static int cmp_entry(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const k_bf16_entry *)a)->key, y = (uintptr_t)((const k_bf16_entry *)b)->key;
    return x < y ? -1 : x > y;
}

const k_bf16_weight *k_bf16_set_find(k_bf16_set *s, const float *w) {
    if (!s->n) return NULL;
    if (!s->sorted) {
        qsort(s->e, s->n, sizeof *s->e, cmp_entry);
        s->sorted = 1;
    }
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s->e[mid].key == w) return &s->e[mid].d;
        if ((uintptr_t)s->e[mid].key < (uintptr_t)w) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void k_bf16_set_clear(k_bf16_set *s, int restore) {
    for (int i = 0; i < s->n; i++) {
        k_bf16_entry *e = &s->e[i];
        if (e->inplace && restore) {
            const size_t pe = k_bf16_packed_elems(&e->d);
            uint16_t *t = malloc(sizeof(uint16_t) * (pe ? pe : 1));
            if (t) { /* without memory the weights stay bf16 in place: zero them rather than misread */
                memcpy(t, e->d.p, sizeof(uint16_t) * pe);
                k_bf16_unpack(&e->d, e->key, t);
                free(t);
            } else memset(e->key, 0, sizeof(float) * e->n);
        } else if (!e->inplace) {
            free(e->d.p);
        }
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}

size_t k_bf16_set_bytes(const k_bf16_set *s) {
    size_t b = 0;
    for (int i = 0; i < s->n; i++) b += sizeof(uint16_t) * k_bf16_packed_elems(&s->e[i].d);
    return b;
}
