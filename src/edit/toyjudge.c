#include "edit/toyjudge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const toy_colour_names[TOY_N_COLOURS] = {"red", "green", "blue", "yellow", "purple", "orange", "white", "black"};

/* The toy world's palette (fixtures README), RGB in [0, 1]. */
static const float k_palette[TOY_N_COLOURS][3] = {
    {0.90f, 0.10f, 0.10f}, {0.15f, 0.85f, 0.15f}, {0.10f, 0.20f, 0.90f}, {0.95f, 0.90f, 0.10f},
    {0.55f, 0.15f, 0.75f}, {1.00f, 0.55f, 0.05f}, {0.97f, 0.97f, 0.97f}, {0.05f, 0.05f, 0.05f},
};

static int cmp_u8(const void *a, const void *b) { return *(const uint8_t *)a - *(const uint8_t *)b; }

static uint8_t median_u8(uint8_t *v, int n) {
    qsort(v, n, 1, cmp_u8);
    return v[n / 2];
}

int toy_object_colour(const uint8_t *rgb, int w, int h, uint8_t *mask_out) {
    const int n = w * h;
    uint8_t *diff = calloc(n, 1);
    int *label = calloc(n, sizeof *label), *queue = malloc(sizeof(int) * n);
    if (!diff || !label || !queue) { /* out of memory: no verdict */
        free(diff); free(label); free(queue);
        if (mask_out) memset(mask_out, 0, n);
        return -1;
    }
    /* per-row background: median of the 4 leftmost and 4 rightmost pixels */
    for (int y = 0; y < h; y++) {
        uint8_t bg[3], v[8];
        for (int c = 0; c < 3; c++) {
            for (int k = 0; k < 4; k++) {
                v[k] = rgb[(y * w + k) * 3 + c];
                v[4 + k] = rgb[(y * w + w - 1 - k) * 3 + c];
            }
            bg[c] = median_u8(v, 8);
        }
        for (int x = 0; x < w; x++) {
            float d = 0;
            for (int c = 0; c < 3; c++) {
                float e = (rgb[(y * w + x) * 3 + c] - bg[c]) / 255.0f;
                d += e * e;
            }
            diff[y * w + x] = sqrtf(d) > 0.25f;
        }
    }
    /* largest 4-connected component of the differing pixels */
    int best = 0, best_size = 0, next = 0;
    for (int s = 0; s < n; s++) {
        if (!diff[s] || label[s]) continue;
        int head = 0, tail = 0, size = 0;
        label[s] = ++next;
        queue[tail++] = s;
        while (head < tail) {
            int i = queue[head++], x = i % w, y = i / w;
            size++;
            const int nb[4] = {x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1};
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0 && diff[nb[k]] && !label[nb[k]]) { label[nb[k]] = next; queue[tail++] = nb[k]; }
        }
        if (size > best_size) { best_size = size; best = next; }
    }
    int colour = -1;
    if (best_size >= 4) {
        uint8_t *vals = malloc(best_size);
        float med[3];
        for (int c = 0; c < 3 && vals; c++) {
            int k = 0;
            for (int i = 0; i < n; i++) if (label[i] == best) vals[k++] = rgb[i * 3 + c];
            med[c] = median_u8(vals, k) / 255.0f;
        }
        float bd = 1e9f;
        for (int p = 0; p < TOY_N_COLOURS && vals; p++) {
            float d = 0;
            for (int c = 0; c < 3; c++) d += (med[c] - k_palette[p][c]) * (med[c] - k_palette[p][c]);
            if (d < bd) { bd = d; colour = p; }
        }
        free(vals);
    }
    if (mask_out) for (int i = 0; i < n; i++) mask_out[i] = best_size >= 4 && label[i] == best;
    free(diff);
    free(label);
    free(queue);
    return colour;
}

double toy_psnr_masked(const uint8_t *a, const uint8_t *b, int w, int h, const uint8_t *keep) {
    double se = 0;
    long cnt = 0;
    for (int i = 0; i < w * h; i++) {
        if (!keep[i]) continue;
        for (int c = 0; c < 3; c++) {
            double d = (a[i * 3 + c] - b[i * 3 + c]) / 255.0;
            se += d * d;
        }
        cnt += 3;
    }
    if (!cnt) return 0;
    double mse = se / cnt;
    return mse > 0 ? 10 * log10(1.0 / mse) : 99.0;
}

void toy_background_of(const uint8_t *obj, int w, int h, int margin, uint8_t *keep) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int near = 0;
            for (int dy = -margin; dy <= margin && !near; dy++)
                for (int dx = -margin; dx <= margin && !near; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (yy >= 0 && yy < h && xx >= 0 && xx < w && obj[yy * w + xx]) near = 1;
                }
            keep[y * w + x] = !near;
        }
}
