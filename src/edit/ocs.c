/* Object-Centric Sampling helpers (see ocs.h). */
#include "edit/ocs.h"

#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"

void ocs_mask_resize(const float *m, int F, int Hm, int Wm, int h, int w, float *out) {
    for (int f = 0; f < F; f++) {
        const float *mf = m + (size_t)f * Hm * Wm;
        for (int y = 0; y < h; y++) {
            const int y0 = (int)((long)y * Hm / h), y1 = (int)(((long)(y + 1) * Hm + h - 1) / h);
            for (int x = 0; x < w; x++) {
                const int x0 = (int)((long)x * Wm / w), x1 = (int)(((long)(x + 1) * Wm + w - 1) / w);
                float on = 0.0f;
                for (int yy = y0; yy < y1 && on == 0.0f; yy++)
                    for (int xx = x0; xx < x1; xx++)
                        if (mf[(size_t)yy * Wm + xx] > 0.5f) { on = 1.0f; break; }
                out[((size_t)f * h + y) * w + x] = on;
            }
        }
    }
}

long ocs_mask_binarize(float *mask, int F, int h, int w, float th) {
    long n = 0;
    for (size_t i = 0; i < (size_t)F * h * w; i++) {
        mask[i] = mask[i] > th ? 1.0f : 0.0f;
        n += mask[i] > 0.0f;
    }
    return n;
}

void ocs_mask_dilate(float *mask, int F, int h, int w, int r, float *scratch) {
    if (r <= 0) return;
    for (int f = 0; f < F; f++) {
        float *m = mask + (size_t)f * h * w;
        memcpy(scratch, m, sizeof(float) * h * w);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = 0.0f;
                for (int yy = y - r > 0 ? y - r : 0; yy <= y + r && yy < h && v == 0.0f; yy++)
                    for (int xx = x - r > 0 ? x - r : 0; xx <= x + r && xx < w; xx++)
                        if (scratch[yy * w + xx] > 0.5f) { v = 1.0f; break; }
                m[y * w + x] = v;
            }
    }
}

int ocs_crop_box(const float *mask, int F, int h, int w, int pad, int align, ocs_box *box) {
    int y0 = h, y1 = -1, x0 = w, x1 = -1;
    for (int f = 0; f < F; f++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (mask[((size_t)f * h + y) * w + x] > 0.5f) {
                    if (y < y0) y0 = y;
                    if (y > y1) y1 = y;
                    if (x < x0) x0 = x;
                    if (x > x1) x1 = x;
                }
    *box = (ocs_box){0, 0, 0, 0};
    if (y1 < 0) return 0;
    if (align < 1) align = 1;
    if (pad < 0) pad = 0;
    /* grow, snap outwards to the alignment grid ([y0, y1] inclusive -> [a, b) exclusive), clamp */
    int a = y0 - pad, b = y1 + 1 + pad, c = x0 - pad, d = x1 + 1 + pad;
    a = a < 0 ? 0 : a / align * align;
    c = c < 0 ? 0 : c / align * align;
    b = (b + align - 1) / align * align;
    d = (d + align - 1) / align * align;
    if (b > h) b = h;
    if (d > w) d = w;
    *box = (ocs_box){a, c, b - a, d - c};
    return 1;
}

double ocs_box_area(const ocs_box *b, int h, int w) {
    return h > 0 && w > 0 ? (double)b->h * b->w / ((double)h * w) : 0.0;
}

ocs_box ocs_box_level(const ocs_box *b, int level) {
    ocs_box o = *b;
    for (int l = 0; l < level; l++) {
        o.y0 /= 2, o.x0 /= 2;
        o.h = o.h > 0 ? (o.h - 1) / 2 + 1 : 0;
        o.w = o.w > 0 ? (o.w - 1) / 2 + 1 : 0;
    }
    return o;
}

void ocs_crop(const float *x, int n, int C, int h, int w, const ocs_box *b, float *out) {
    for (int i = 0; i < n * C; i++)
        for (int y = 0; y < b->h; y++)
            memcpy(out + ((size_t)i * b->h + y) * b->w, x + ((size_t)i * h + b->y0 + y) * w + b->x0, sizeof(float) * b->w);
}

void ocs_feather(const float *mask, int F, int h, int w, const ocs_box *b, float *out) {
    for (int f = 0; f < F; f++) {
        const float *m = mask + (size_t)f * h * w;
        float *o = out + (size_t)f * h * w;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = 0.0f;
                if (y >= b->y0 && y < b->y0 + b->h && x >= b->x0 && x < b->x0 + b->w) {
                    if (m[y * w + x] > 0.5f) v = 1.0f;
                    else
                        for (int yy = y > 0 ? y - 1 : 0; yy <= y + 1 && yy < h && v == 0.0f; yy++)
                            for (int xx = x > 0 ? x - 1 : 0; xx <= x + 1 && xx < w; xx++)
                                if (m[yy * w + xx] > 0.5f) { v = 0.5f; break; }
                }
                o[y * w + x] = v;
            }
    }
}

void ocs_blend(float *z, const float *z_fg, const float *M, int F, int C, int h, int w, const ocs_box *b) {
    for (int f = 0; f < F; f++)
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < b->h; y++)
                for (int x = 0; x < b->w; x++) {
                    const float m = M[((size_t)f * h + b->y0 + y) * w + b->x0 + x];
                    if (m == 0.0f) continue;
                    float *zz = z + (((size_t)f * C + ch) * h + b->y0 + y) * w + b->x0 + x;
                    const float fg = z_fg[(((size_t)f * C + ch) * b->h + y) * b->w + x];
                    *zz = m * fg + (1.0f - m) * *zz;
                }
}

int ocs_blend_step(int N, double beta) {
    long b = lround(beta * N);
    return (int)(b < 0 ? 0 : b > N ? N : b);
}

int ocs_decide(const float *mask, int F, int h, int w, int N, double beta, int pad, int n_levels, double max_area,
               ocs_box *box, double *area, char *note, size_t cap) {
    const int b = ocs_blend_step(N, beta);
    if (b < 1) { ocd_note_add(note, cap, "OCS off: blend step round(%g * %d) = 0: plain sampling", beta, N); return 0; }
    if (!ocs_crop_box(mask, F, h, w, pad, 1 << (n_levels > 1 ? n_levels - 1 : 0), box)) {
        ocd_note_add(note, cap, "OCS off: empty mask: plain sampling");
        return 0;
    }
    *area = ocs_box_area(box, h, w);
    if (*area > max_area) {
        ocd_note_add(note, cap, "OCS off: the crop %dx%d covers %.0f%% of the %dx%d latent (> %.0f%%): plain sampling", box->w,
                     box->h, 100.0 * *area, w, h, 100.0 * max_area);
        return 0;
    }
    return b;
}

double ocs_cost(int N, int b, int phi, double area) {
    if (phi < 1) phi = 1;
    return b * area + (double)((b + phi - 1) / phi) + (N - b);
}

void ocs_box_tokens(const ocs_box *lb, int n_frames, int Hf, int Wf, int32_t *idx) {
    size_t n = 0;
    for (int g = 0; g < n_frames; g++)
        for (int y = 0; y < lb->h; y++)
            for (int x = 0; x < lb->w; x++) idx[n++] = (int32_t)(((size_t)g * Hf + lb->y0 + y) * Wf + lb->x0 + x);
}

int ocs_crop_plan(const tome_plan *full, const ocs_box *lb, int n_frames, int Hf, int Wf, int32_t *row_map,
                  tome_plan *out) {
    const int Nc = n_frames * lb->h * lb->w;
    if (full->n_tok != n_frames * Hf * Wf) return ocd_fail("crop plan: plan of %d tokens, window of %d", full->n_tok, n_frames * Hf * Wf);
    if (Nc > out->cap) return ocd_fail("crop plan: %d tokens, capacity %d", Nc, out->cap);
    for (int m = 0; m < full->n_out; m++) row_map[m] = -1;
    int M = 0, t = 0;
    for (int g = 0; g < n_frames; g++)
        for (int y = 0; y < lb->h; y++)
            for (int x = 0; x < lb->w; x++, t++) {
                const int ft = (g * Hf + lb->y0 + y) * Wf + lb->x0 + x, r = full->into[ft];
                if (row_map[r] < 0) {
                    row_map[r] = M;
                    out->keep[M] = t;
                    out->count[M] = 0;
                    M++;
                }
                out->into[t] = row_map[r];
                out->count[row_map[r]]++;
            }
    out->n_tok = Nc, out->n_out = M, out->r = Nc - M;
    out->n_dst = M, out->n_src = Nc - M;  /* informative only */
    return 0;
}
