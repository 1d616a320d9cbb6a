#include "edit/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define SSIM_RADIUS 5          /* 11 x 11 window */
#define SSIM_SIGMA 1.5
#define SSIM_C1 (0.01 * 255 * 0.01 * 255)
#define SSIM_C2 (0.03 * 255 * 0.03 * 255)

static int selected(const uint8_t *mask, size_t i, mt_region r) {
    return r == MT_ALL || (r == MT_INSIDE ? mask[i] != 0 : mask[i] == 0);
}

double mt_psnr_from_mse(double mse) {
    if (isnan(mse)) return NAN;
    if (mse <= 0) return MT_PSNR_MAX;
    double p = 10.0 * log10(255.0 * 255.0 / mse);
    return p > MT_PSNR_MAX ? MT_PSNR_MAX : p;
}

double mt_sse(const uint8_t *a, const uint8_t *b, int w, int h, const uint8_t *mask, mt_region r, size_t *count) {
    double se = 0;
    size_t n = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        if (!selected(mask, i, r)) continue;
        for (int c = 0; c < 3; c++) {
            double d = (double)a[i * 3 + c] - b[i * 3 + c];
            se += d * d;
        }
        n += 3;
    }
    *count = n;
    return se;
}

double mt_psnr(const uint8_t *a, const uint8_t *b, int w, int h, const uint8_t *mask, mt_region r) {
    return mt_clip_psnr(a, b, 1, w, h, mask, r);
}

void mt_luma(const uint8_t *rgb, int w, int h, float *y) {
    for (size_t i = 0; i < (size_t)w * h; i++)
        y[i] = 0.299f * rgb[i * 3] + 0.587f * rgb[i * 3 + 1] + 0.114f * rgb[i * 3 + 2];
}

/* out = gaussian-filtered in (separable; truncated window renormalised at the borders). tmp [h, w]. */
static void blur(const double *in, int w, int h, const double *g /* [2R+1] */, double *tmp, double *out) {
    const int R = SSIM_RADIUS;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0, ws = 0;
            for (int k = -R; k <= R; k++) {
                int xx = x + k;
                if (xx < 0 || xx >= w) continue;
                s += g[k + R] * in[(size_t)y * w + xx];
                ws += g[k + R];
            }
            tmp[(size_t)y * w + x] = s / ws;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0, ws = 0;
            for (int k = -R; k <= R; k++) {
                int yy = y + k;
                if (yy < 0 || yy >= h) continue;
                s += g[k + R] * tmp[(size_t)yy * w + x];
                ws += g[k + R];
            }
            out[(size_t)y * w + x] = s / ws;
        }
}

int mt_ssim_map(const uint8_t *a, const uint8_t *b, int w, int h, float *map) {
    const size_t n = (size_t)w * h;
    double *buf = malloc(sizeof(double) * n * 11); /* 5 inputs, 5 filtered, 1 temp */
    float *ya = malloc(sizeof(float) * n), *yb = malloc(sizeof(float) * n);
    if (!buf || !ya || !yb) { free(buf); free(ya); free(yb); return ocd_fail("ssim: out of memory (%dx%d)", w, h); }
    double g[2 * SSIM_RADIUS + 1];
    for (int k = -SSIM_RADIUS; k <= SSIM_RADIUS; k++) g[k + SSIM_RADIUS] = exp(-(k * k) / (2 * SSIM_SIGMA * SSIM_SIGMA));
    mt_luma(a, w, h, ya);
    mt_luma(b, w, h, yb);
    double *in = buf, *fl = buf + 5 * n, *tmp = buf + 10 * n; /* in/fl: [5][n] = a, b, a^2, b^2, ab */
    for (size_t i = 0; i < n; i++) {
        double x = ya[i], y = yb[i];
        in[i] = x; in[n + i] = y; in[2 * n + i] = x * x; in[3 * n + i] = y * y; in[4 * n + i] = x * y;
    }
    for (int p = 0; p < 5; p++) blur(in + p * n, w, h, g, tmp, fl + p * n);
    for (size_t i = 0; i < n; i++) {
        double ma = fl[i], mb = fl[n + i];
        double sa = fl[2 * n + i] - ma * ma, sb = fl[3 * n + i] - mb * mb, sab = fl[4 * n + i] - ma * mb;
        /* written so that a == b gives exactly 1: 2*ma*mb == ma*ma + mb*mb, 2*sab == sa + sb */
        map[i] = (float)(((2 * ma * mb + SSIM_C1) * (2 * sab + SSIM_C2)) / ((ma * ma + mb * mb + SSIM_C1) * (sa + sb + SSIM_C2)));
    }
    free(buf); free(ya); free(yb);
    return 0;
}

double mt_ssim(const uint8_t *a, const uint8_t *b, int w, int h, const uint8_t *mask, mt_region r) {
    return mt_clip_ssim(a, b, 1, w, h, mask, r);
}

double mt_clip_psnr(const uint8_t *a, const uint8_t *b, int F, int w, int h, const uint8_t *mask, mt_region r) {
    if (r != MT_ALL && !mask) return NAN;
    const size_t fs = (size_t)w * h;
    double se = 0;
    size_t n = 0;
    for (int f = 0; f < F; f++) {
        size_t cnt;
        se += mt_sse(a + f * fs * 3, b + f * fs * 3, w, h, mask ? mask + f * fs : NULL, r, &cnt);
        n += cnt;
    }
    return n ? mt_psnr_from_mse(se / n) : NAN;
}

double mt_clip_ssim(const uint8_t *a, const uint8_t *b, int F, int w, int h, const uint8_t *mask, mt_region r) {
    if (r != MT_ALL && !mask) return NAN;
    const size_t fs = (size_t)w * h;
    float *map = malloc(sizeof(float) * fs);
    if (!map) return NAN;
    double s = 0;
    size_t n = 0;
    for (int f = 0; f < F; f++) {
        if (mt_ssim_map(a + f * fs * 3, b + f * fs * 3, w, h, map)) { free(map); return NAN; }
        const uint8_t *m = mask ? mask + f * fs : NULL;
        for (size_t i = 0; i < fs; i++)
            if (selected(m, i, r)) { s += map[i]; n++; }
    }
    free(map);
    return n ? s / n : NAN;
}

double mt_clip_consistency(const uint8_t *frames, int F, int w, int h) {
    if (F < 2) return NAN;
    const size_t fb = (size_t)w * h * 3;
    double s = 0;
    for (int f = 0; f + 1 < F; f++) s += mt_psnr(frames + f * fb, frames + (f + 1) * fb, w, h, NULL, MT_ALL);
    return s / (F - 1);
}
