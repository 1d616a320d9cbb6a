/* Canny edges exactly as OpenCV 4.6 computes them for 8-bit input (see canny.h). */
#include "edit/canny.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

void canny_rgb_to_gray(const uint8_t *rgb, int w, int h, uint8_t *gray) {
    for (long i = 0; i < (long)w * h; i++)
        gray[i] = (uint8_t)((9798 * rgb[3 * i] + 19235 * rgb[3 * i + 1] + 3735 * rgb[3 * i + 2] + 16384) >> 15);
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int canny_u8(const uint8_t *img, int w, int h, int channels, int low, int high, uint8_t *edges) {
    if (w < 1 || h < 1 || channels < 1 || channels > 4) return ocd_fail("canny: bad image %dx%dx%d", w, h, channels);
    if (low > high) { int t = low; low = high; high = t; }
    const int W2 = w + 2;   /* mag is padded by one pixel of zeros on every side */
    int *dx = malloc(sizeof(int) * w * h), *dy = malloc(sizeof(int) * w * h);    /* [h, w] of the chosen channel */
    int *mag = calloc((size_t)(h + 2) * W2, sizeof(int));                          /* [h+2, w+2] */
    uint8_t *state = calloc((size_t)w * h, 1);                                     /* 0 dropped, 1 kept, 2 edge */
    int *stack = malloc(sizeof(int) * w * h);
    if (!dx || !dy || !mag || !state || !stack) {
        free(dx); free(dy); free(mag); free(state); free(stack);
        return ocd_fail("out of memory");
    }
    /* 1-2: Sobel per channel with replicated borders, the channel of largest |dx| + |dy| */
    for (int r = 0; r < h; r++) {
        const int ru = clampi(r - 1, 0, h - 1), rd = clampi(r + 1, 0, h - 1);
        for (int c = 0; c < w; c++) {
            const int cl = clampi(c - 1, 0, w - 1), cr = clampi(c + 1, 0, w - 1);
            int best = -1, bx = 0, by = 0;
            for (int k = 0; k < channels; k++) {
#define P(y, x) ((int)img[((size_t)(y) * w + (x)) * channels + k])
                int gx = (P(ru, cr) + 2 * P(r, cr) + P(rd, cr)) - (P(ru, cl) + 2 * P(r, cl) + P(rd, cl));
                int gy = (P(rd, cl) + 2 * P(rd, c) + P(rd, cr)) - (P(ru, cl) + 2 * P(ru, c) + P(ru, cr));
#undef P
                int m = abs(gx) + abs(gy);
                if (m > best) best = m, bx = gx, by = gy;
            }
            dx[r * w + c] = bx, dy[r * w + c] = by;
            mag[(r + 1) * W2 + c + 1] = best;
        }
    }
    /* 3: non-maximum suppression with OpenCV's fixed-point angle test (tan 22.5 ~ 13573 / 2^15) */
    int top = 0;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) {
            const int *mp = mag + (r + 1) * W2 + c + 1;
            const int m = *mp;
            if (m <= low) continue;
            const int gx = dx[r * w + c], gy = dy[r * w + c];
            const int x = abs(gx), y = abs(gy) << 15, tg22x = x * 13573;
            int keep;
            if (y < tg22x) keep = m > mp[-1] && m >= mp[1];
            else if (y > tg22x + (x << 16)) keep = m > mp[-W2] && m >= mp[W2];
            else {
                const int s = (gx ^ gy) < 0 ? -1 : 1;
                keep = m > mp[-W2 - s] && m > mp[W2 + s];
            }
            if (!keep) continue;
            state[r * w + c] = 1;
            if (m > high) { state[r * w + c] = 2; stack[top++] = r * w + c; }
        }
    /* 4: hysteresis, 8-connected through kept pixels */
    while (top > 0) {
        const int i = stack[--top], r = i / w, c = i % w;
        for (int yy = r - 1; yy <= r + 1; yy++)
            for (int xx = c - 1; xx <= c + 1; xx++) {
                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                uint8_t *s = &state[yy * w + xx];
                if (*s == 1) { *s = 2; stack[top++] = yy * w + xx; }
            }
    }
    for (long i = 0; i < (long)w * h; i++) edges[i] = state[i] == 2 ? 255 : 0;
    free(dx); free(dy); free(mag); free(state); free(stack);
    return 0;
}

int canny_condition(const uint8_t *rgb, int w, int h, float *cond) {
    const size_t n = (size_t)w * h;
    uint8_t *e = malloc(n);
    if (!e) return ocd_fail("out of memory");
    if (canny_u8(rgb, w, h, 3, CANNY_LOW, CANNY_HIGH, e)) { free(e); return -1; }
    for (size_t i = 0; i < n; i++) cond[i] = cond[n + i] = cond[2 * n + i] = e[i] / 255.0f;
    free(e);
    return 0;
}
