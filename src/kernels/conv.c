/* 2-D convolution (NCHW, one image) as im2col + sgemm over bands of output rows.
 *
 * For a band of output rows [r0, r1) the column matrix col[K, (r1-r0)*Wo] with
 * K = ci*kh*kw is built, then y[co, band] = W[co, K] col[K, band] + b in one sgemm
 * whose output row stride is Ho*Wo (the band is contiguous inside each output plane).
 * The band height is chosen from the shape alone (so is every reduction order) and
 * bounds the scratch to K_CONV_SCRATCH_CAP floats unless a single row needs more.
 * A 1x1 stride-1 unpadded conv is already a GEMM over x[ci, HW]: no im2col. */
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* 4M floats = 16 MiB: large enough that sgemm runs on wide panels, small enough to
 * stay cheap beside SD-sized activations. */
#define K_CONV_SCRATCH_CAP ((size_t)1 << 22)

int k_conv_out_h(const k_conv_shape *s) {
    int n = s->h + s->pad_t + s->pad_b - s->kh;
    return n < 0 || s->stride <= 0 ? 0 : n / s->stride + 1;
}

int k_conv_out_w(const k_conv_shape *s) {
    int n = s->w + s->pad_l + s->pad_r - s->kw;
    return n < 0 || s->stride <= 0 ? 0 : n / s->stride + 1;
}

static int is_pointwise(const k_conv_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->stride == 1 && !s->pad_t && !s->pad_b && !s->pad_l && !s->pad_r;
}

/* Output rows per band. */
static int band_rows(const k_conv_shape *s) {
    int ho = k_conv_out_h(s), wo = k_conv_out_w(s);
    size_t row = (size_t)s->ci * s->kh * s->kw * (size_t)(wo > 0 ? wo : 1);
    size_t r = K_CONV_SCRATCH_CAP / row;
    if (r < 1) r = 1;
    if (r > (size_t)ho) r = (size_t)(ho > 0 ? ho : 1);
    return (int)r;
}

static size_t dc_scratch_floats(const k_conv_shape *s);
static int dc_usable(const k_conv_shape *s, int up);

size_t k_conv2d_scratch_floats(const k_conv_shape *s) {
    if (k_conv3x3_wino_usable(s, 1)) return k_conv3x3_wino_scratch_floats(s, 1);
    if (dc_usable(s, 1)) return dc_scratch_floats(s);
    if (is_pointwise(s)) return 0;
    int wo = k_conv_out_w(s);
    return (size_t)s->ci * s->kh * s->kw * (size_t)band_rows(s) * (size_t)(wo > 0 ? wo : 0);
}

/* col[K, nr*wo] for output rows [r0, r0+nr). s describes the (virtual) input; with
 * up = 2 it is the nearest x2 upsampling of the stored x[ci, h/2, w/2]. */
static void im2col_band(float *col, const float *x, const k_conv_shape *s, int r0, int nr, int wo, int up) {
    const int K = s->ci * s->kh * s->kw, H = s->h, W = s->w, st = s->stride;
    const int xh = H / up, xw = W / up;   /* stored plane */
    const size_t ncol = (size_t)nr * wo;
#pragma omp parallel for schedule(static) if (ncol * (size_t)K > 32768)
    for (int kk = 0; kk < K; kk++) {
        int kx = kk % s->kw, ky = (kk / s->kw) % s->kh, c = kk / (s->kw * s->kh);
        const float *xc = x + (size_t)c * xh * xw;
        float *dst = col + (size_t)kk * ncol;
        /* output columns whose input column lies inside the image: ox in [ox0, ox1) */
        int off = kx - s->pad_l;                 /* ix = ox*st + off */
        int ox0 = off >= 0 ? 0 : (-off + st - 1) / st;
        int ox1 = W - off <= 0 ? 0 : (W - off - 1) / st + 1;
        if (ox1 > wo) ox1 = wo;
        if (ox0 > ox1) ox0 = ox1;
        for (int r = 0; r < nr; r++) {
            int iy = (r0 + r) * st - s->pad_t + ky;
            float *d = dst + (size_t)r * wo;
            if (iy < 0 || iy >= H) { memset(d, 0, sizeof(float) * wo); continue; }
            const float *src = xc + (size_t)(iy / up) * xw;
            for (int ox = 0; ox < ox0; ox++) d[ox] = 0.0f;
            if (up == 2) for (int ox = ox0; ox < ox1; ox++) d[ox] = src[(ox * st + off) >> 1];
            else if (st == 1) memcpy(d + ox0, src + ox0 + off, sizeof(float) * (ox1 - ox0));
            else for (int ox = ox0; ox < ox1; ox++) d[ox] = src[ox * st + off];
            for (int ox = ox1; ox < wo; ox++) d[ox] = 0.0f;
        }
    }
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* ---- direct convolution (stride 1), AVX-512 ----
 * The input band is copied once into a zero-padded buffer xp[ci, rows, Wp] (Wp = w +
 * pad_l + pad_r; the nearest x2 upsampling is applied by that copy). On the padded grid an
 * output position p = oy*Wp + ox reads tap (ky, kx) of channel c at xp[c][p + ky*Wp + kx]:
 * for a tile of DC_NR consecutive positions that is one contiguous (unaligned) load, so
 * the GEMM's B operand is the input itself, never an im2col matrix. Positions with ox >= wo
 * are computed and dropped on store (2/(w+2) of the work). The A operand is the weight
 * tensor as stored: W[co, ci*kh*kw] rows are exactly the k order we walk, so DC_MR rows
 * are read as DC_MR sequential streams (no packing needed, nothing to keep beside it).
 * Each output element is one fixed-order sum over k: independent of threads and tiles. */
#define DC_MR 8                 /* output channels per micro-tile */
#define DC_NV 3                 /* 16-float vectors per micro-tile */
#define DC_NR (16 * DC_NV)      /* positions per micro-tile */
#define DC_CHUNK 8              /* micro-tile rows (of DC_MR channels) per task */
#define DC_SLACK (DC_NR + 64)   /* zeroed floats after the band: tiles may read past the end */

static int dc_usable(const k_conv_shape *s, int up) {
    return s->stride == 1 && !(up == 1 && is_pointwise(s)) && s->w + s->pad_l + s->pad_r >= s->kw;
}

static int dc_band_rows(const k_conv_shape *s) {
    const int ho = k_conv_out_h(s), wp = s->w + s->pad_l + s->pad_r;
    size_t per_row = (size_t)s->ci * wp;
    size_t r = K_CONV_SCRATCH_CAP / (per_row ? per_row : 1);
    r = r > (size_t)s->kh ? r - (size_t)(s->kh - 1) : 1;
    if (r > (size_t)ho) r = (size_t)(ho > 0 ? ho : 1);
    return (int)r;
}

static size_t dc_scratch_floats(const k_conv_shape *s) {
    const int wp = s->w + s->pad_l + s->pad_r;
    return (size_t)s->ci * (size_t)(dc_band_rows(s) + s->kh - 1) * wp + DC_SLACK;
}

/* One micro-tile: channels [co0, co0 + DC_MR) x positions [p0, p0 + DC_NR) of the band. */
static void dc_tile(float *y, size_t yplane, const float *xp, size_t xplane, int wp, const float *w, const float *b,
                    const k_conv_shape *s, int co0, int p0, const __mmask16 *m, const size_t *dst) {
    const int K = s->ci * s->kh * s->kw;
    const float *wr[DC_MR];
    __m512 acc[DC_MR][DC_NV];
#pragma GCC unroll 8
    for (int i = 0; i < DC_MR; i++) {
        int o = co0 + i < s->co ? co0 + i : s->co - 1; /* rows past co: duplicates, never stored */
        wr[i] = w + (size_t)o * K;
        __m512 bv = _mm512_set1_ps(b ? b[o] : 0.0f);
#pragma GCC unroll 3
        for (int j = 0; j < DC_NV; j++) acc[i][j] = bv;
    }
    int k = 0;
    for (int c = 0; c < s->ci; c++) {
        const float *xc = xp + (size_t)c * xplane + p0;
        for (int ky = 0; ky < s->kh; ky++) {
            const float *xr = xc + (size_t)ky * wp;
            for (int kx = 0; kx < s->kw; kx++, k++) {
                __m512 b0 = _mm512_loadu_ps(xr + kx), b1 = _mm512_loadu_ps(xr + kx + 16), b2 = _mm512_loadu_ps(xr + kx + 32);
#pragma GCC unroll 8
                for (int i = 0; i < DC_MR; i++) {
                    __m512 a = _mm512_set1_ps(wr[i][k]);
                    acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
                    acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < DC_MR; i++) {
        if (co0 + i >= s->co) break;
        float *yo = y + (size_t)(co0 + i) * yplane;
#pragma GCC unroll 3
        for (int j = 0; j < DC_NV; j++)
            if (m[j]) _mm512_mask_compressstoreu_ps(yo + dst[j], m[j], acc[i][j]);
    }
}

/* Fills the padded band xp[ci, nrows, wp] for padded rows starting at output row r0. */
static void dc_fill(float *xp, size_t xplane, int nrows, int wp, const float *x, const k_conv_shape *s, int r0, int up) {
    const int H = s->h, W = s->w, xh = H / up, xw = W / up;
#pragma omp for schedule(static)
    for (int c = 0; c < s->ci; c++) {
        const float *xc = x + (size_t)c * xh * xw;
        float *d = xp + (size_t)c * xplane;
        for (int t = 0; t < nrows; t++, d += wp) {
            int iy = r0 + t - s->pad_t;
            if (iy < 0 || iy >= H) { memset(d, 0, sizeof(float) * wp); continue; }
            const float *src = xc + (size_t)(iy / up) * xw;
            for (int i = 0; i < s->pad_l; i++) d[i] = 0.0f;
            if (up == 2) for (int ix = 0; ix < W; ix++) d[s->pad_l + ix] = src[ix >> 1];
            else memcpy(d + s->pad_l, src, sizeof(float) * W);
            for (int i = s->pad_l + W; i < wp; i++) d[i] = 0.0f;
        }
    }
}

static void dc_conv(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s, float *scratch, int up) {
    const int ho = k_conv_out_h(s), wo = k_conv_out_w(s), wp = s->w + s->pad_l + s->pad_r;
    const size_t yplane = (size_t)ho * wo;
    const int nb = dc_band_rows(s), ncb = (s->co + DC_MR - 1) / DC_MR, nch = (ncb + DC_CHUNK - 1) / DC_CHUNK;
    for (int r0 = 0; r0 < ho; r0 += nb) {
        const int nr = OCD_MIN(nb, ho - r0), nrows = nr + s->kh - 1, np = nr * wp, nt = (np + DC_NR - 1) / DC_NR;
        const size_t xplane = (size_t)nrows * wp;
        float *yb = y + (size_t)r0 * wo;
#pragma omp parallel
        {
            dc_fill(scratch, xplane, nrows, wp, x, s, r0, up);
#pragma omp single
            memset(scratch + (size_t)s->ci * xplane, 0, sizeof(float) * DC_SLACK);
            /* implicit barrier: the band is complete */
#pragma omp for schedule(dynamic)
            for (int task = 0; task < nt * nch; task++) {
                const int tile = task / nch, ch = task % nch, p0 = tile * DC_NR;
                __mmask16 m[DC_NV];
                size_t dst[DC_NV];
                for (int j = 0; j < DC_NV; j++) {
                    int q = p0 + 16 * j;
                    m[j] = 0;
                    dst[j] = (size_t)(q / wp) * wo + (size_t)OCD_MIN(q % wp, wo);
                    for (int l = 0; l < 16; l++)
                        if (q + l < np && (q + l) % wp < wo) m[j] |= (__mmask16)(1u << l);
                }
                const int cb1 = OCD_MIN(ncb, (ch + 1) * DC_CHUNK);
                for (int cb = ch * DC_CHUNK; cb < cb1; cb++)
                    dc_tile(yb, yplane, scratch, xplane, wp, w, b, s, cb * DC_MR, p0, m, dst);
            }
        }
    }
}
#else
static int dc_usable(const k_conv_shape *s, int up) { (void)s; (void)up; return 0; }
static size_t dc_scratch_floats(const k_conv_shape *s) { (void)s; return 0; }
static void dc_conv(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s, float *scratch, int up) {
    (void)y; (void)x; (void)w; (void)b; (void)s; (void)scratch; (void)up;
}
#endif

static void conv2d(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s, float *scratch,
                   int up) {
    if (k_conv_out_h(s) <= 0 || k_conv_out_w(s) <= 0 || s->co <= 0) return;
    if (k_conv3x3_wino_usable(s, 1)) { k_conv3x3_wino(y, x, 1, w, b, s, up, scratch); return; }
    if (dc_usable(s, up)) { dc_conv(y, x, w, b, s, scratch, up); return; }
    const int ho = k_conv_out_h(s), wo = k_conv_out_w(s), co = s->co;
    const size_t plane = (size_t)ho * wo;
    if (ho <= 0 || wo <= 0 || co <= 0) return;
    const int K = s->ci * s->kh * s->kw;
    const float beta = b ? 1.0f : 0.0f;
    if (b) {
#pragma omp parallel for schedule(static) if (plane * co > 65536)
        for (int o = 0; o < co; o++)
            for (size_t i = 0; i < plane; i++) y[(size_t)o * plane + i] = b[o];
    }
    if (up == 1 && is_pointwise(s)) {
        k_gemm(0, 0, co, (int)plane, K, 1.0f, w, K, x, (int)plane, beta, y, (int)plane);
        return;
    }
    const int nb = band_rows(s);
    for (int r0 = 0; r0 < ho; r0 += nb) {
        int nr = OCD_MIN(nb, ho - r0);
        im2col_band(scratch, x, s, r0, nr, wo, up);
        k_gemm(0, 0, co, nr * wo, K, 1.0f, w, K, scratch, nr * wo, beta, y + (size_t)r0 * wo, (int)plane);
    }
}

void k_conv2d(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s, float *scratch) {
    conv2d(y, x, w, b, s, scratch, 1);
}

size_t k_conv2d_batch_scratch_floats(const k_conv_shape *s, int B) {
    return k_conv3x3_wino_usable(s, B) ? k_conv3x3_wino_scratch_floats(s, B) : k_conv2d_scratch_floats(s);
}

void k_conv2d_batch(float *y, const float *x, int B, const float *w, const float *b, const k_conv_shape *s,
                    float *scratch) {
    if (B < 1 || k_conv_out_h(s) <= 0 || k_conv_out_w(s) <= 0 || s->co <= 0) return;
    if (k_conv3x3_wino_usable(s, B)) { k_conv3x3_wino(y, x, B, w, b, s, 1, scratch); return; }
    const size_t xs = (size_t)s->ci * s->h * s->w, ys = (size_t)s->co * k_conv_out_h(s) * k_conv_out_w(s);
    for (int i = 0; i < B; i++) k_conv2d(y + i * ys, x + i * xs, w, b, s, scratch);
}

/* The upsampled plane is never stored: im2col reads the low-resolution one. */
static k_conv_shape up2_shape(const k_conv_shape *s) {
    k_conv_shape u = *s;
    u.h *= 2;
    u.w *= 2;
    return u;
}

int k_conv_up2_out_h(const k_conv_shape *s) { k_conv_shape u = up2_shape(s); return k_conv_out_h(&u); }
int k_conv_up2_out_w(const k_conv_shape *s) { k_conv_shape u = up2_shape(s); return k_conv_out_w(&u); }

size_t k_conv2d_up2_scratch_floats(const k_conv_shape *s) {
    k_conv_shape u = up2_shape(s);
    if (k_conv3x3_wino_usable(&u, 1)) return k_conv3x3_wino_scratch_floats(&u, 1);
    if (dc_usable(&u, 2)) return dc_scratch_floats(&u);
    size_t n = k_conv2d_scratch_floats(&u);
    /* the pointwise shortcut does not apply to a virtual input: size the band anyway */
    if (!n) n = (size_t)u.ci * band_rows(&u) * (size_t)k_conv_out_w(&u);
    return n;
}

void k_conv2d_up2(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s, float *scratch) {
    k_conv_shape u = up2_shape(s);
    conv2d(y, x, w, b, &u, scratch, 2);
}

void k_conv2d_up2_ref(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s) {
    k_conv_shape u = up2_shape(s);
    float *t = malloc(sizeof(float) * (size_t)s->ci * u.h * u.w);
    if (!t) return;
    for (int c = 0; c < s->ci; c++)
        for (int iy = 0; iy < u.h; iy++)
            for (int ix = 0; ix < u.w; ix++)
                t[((size_t)c * u.h + iy) * u.w + ix] = x[((size_t)c * s->h + iy / 2) * s->w + ix / 2];
    k_conv2d_ref(y, t, w, b, &u);
    free(t);
}

void k_conv2d_ref(float *y, const float *x, const float *w, const float *b, const k_conv_shape *s) {
    const int ho = k_conv_out_h(s), wo = k_conv_out_w(s);
    for (int o = 0; o < s->co; o++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                double acc = b ? b[o] : 0.0;
                for (int c = 0; c < s->ci; c++)
                    for (int ky = 0; ky < s->kh; ky++) {
                        int iy = oy * s->stride - s->pad_t + ky;
                        if (iy < 0 || iy >= s->h) continue;
                        for (int kx = 0; kx < s->kw; kx++) {
                            int ix = ox * s->stride - s->pad_l + kx;
                            if (ix < 0 || ix >= s->w) continue;
                            acc += (double)x[((size_t)c * s->h + iy) * s->w + ix] *
                                   w[(((size_t)o * s->ci + c) * s->kh + ky) * s->kw + kx];
                        }
                    }
                y[((size_t)o * ho + oy) * wo + ox] = (float)acc;
            }
}
