/* Object-Centric Sampling (ocd-method.md 5): the foreground mask, the crop box, the two
 * branches' bookkeeping, the blend, and the cost formula. Plain array functions on latents
 * [n, C, h, w] and masks [F, h, w] so that they can be tested without a UNet; the pipeline that
 * drives them is fatezero.c.
 *
 * Geometry: the crop box is in latent pixels and aligned to `align` = 2^(downsamplings of the
 * UNet) (8 for SD 1.x), so that at every UNet level the crop is a whole block of that level's
 * token grid: level l holds rows [y0 >> l, (y0 >> l) + hl) where hl is the crop height halved l
 * times as the UNet halves ((s - 1) / 2 + 1). */
#ifndef OCD_EDIT_OCS_H
#define OCD_EDIT_OCS_H

#include <stddef.h>
#include <stdint.h>

#include "edit/tome.h"

typedef struct {
    int y0, x0, h, w;    /* latent pixels; h = 0: empty */
} ocs_box;

/* out [F, h, w] of 0/1 = adaptive max pool of m [F, Hm, Wm] (values in [0, 1], > 0.5 is
 * foreground): a latent pixel is foreground if any of its input pixels is (thin objects
 * survive the downscale). */
void ocs_mask_resize(const float *m, int F, int Hm, int Wm, int h, int w, float *out);
/* mask [F, h, w] := (mask > th) ? 1 : 0. Returns the foreground pixel count. */
long ocs_mask_binarize(float *mask, int F, int h, int w, float th);
/* Square dilation by r pixels (a (2r+1)^2 max filter, clipped at the border). scratch [h*w]. */
void ocs_mask_dilate(float *mask, int F, int h, int w, int r, float *scratch);

/* Union bounding box of mask > 0.5 over all frames, grown by pad, snapped outwards to multiples
 * of align (so its size is a multiple of align unless the frame edge clips it), clamped to the
 * frame. Returns 1 with *box set, 0 for an empty mask (box->h = box->w = 0). */
int ocs_crop_box(const float *mask, int F, int h, int w, int pad, int align, ocs_box *box);
/* Fraction of the frame the box covers. */
double ocs_box_area(const ocs_box *b, int h, int w);
/* The box at UNet level l (l halvings of the latent grid). */
ocs_box ocs_box_level(const ocs_box *b, int level);

/* out [n, C, b.h, b.w] = x [n, C, h, w] cropped. */
void ocs_crop(const float *x, int n, int C, int h, int w, const ocs_box *b, float *out);
/* Feathered blend mask: 1 on the mask, 0.5 on pixels within one pixel (8-neighbourhood) of it,
 * 0 elsewhere and outside the box (a 1-pixel linear ramp). mask [F, h, w] of 0/1, out [F, h, w]. */
void ocs_feather(const float *mask, int F, int h, int w, const ocs_box *b, float *out);
/* z [F, C, h, w] := M paste(z_fg) + (1 - M) z   (z holds the background branch), M [F, h, w] the
 * feathered mask, z_fg [F, C, b.h, b.w]. */
void ocs_blend(float *z, const float *z_fg, const float *M, int F, int C, int h, int w, const ocs_box *b);

/* Blend step b = round(beta N), in [0, N]. */
int ocs_blend_step(int N, double beta);
/* Whether OCS runs (ocd-method.md 5.2 item 5) on the foreground mask [F, h, w] of an N-step run:
 * a blend step b = round(beta N) >= 1, a non-empty mask, and a crop (grown by pad, aligned to the
 * 2^(n_levels - 1) of the UNet's downsamplings: 8 for SD 1.x) covering at most max_area of the
 * frame. Returns b with *box and *area set, or 0 with the reason appended to note[cap]. */
int ocs_decide(const float *mask, int F, int h, int w, int N, double beta, int pad, int n_levels, double max_area,
               ocs_box *box, double *area, char *note, size_t cap);
/* Full-frame UNet calls of an OCS edit: b * area + ceil(b / phi) + (N - b). */
double ocs_cost(int N, int b, int phi, double area);

/* Token indices (row-major, frame-major) of the box's tokens in n_frames frames of a Hf x Wf grid:
 * idx [n_frames * lb.h * lb.w] (lb: the box at this level). */
void ocs_box_tokens(const ocs_box *lb, int n_frames, int Hf, int Wf, int32_t *idx);
/* The merge plan `full` (over n_frames frames of Hf x Wf tokens, TOME_LAYOUT_TOKEN) restricted to
 * the box's tokens: tokens of the box that share a full-frame output row share a crop row (so a
 * source merged into a destination inside the box is merged into it here too; sources whose
 * destination lies outside the box merge only with each other). Crop rows in ascending order of
 * their first token, so an identity plan gives an identity plan. row_map: [full->n_out] scratch.
 * out->cap >= n_frames * lb.h * lb.w. Allocates nothing. */
int ocs_crop_plan(const tome_plan *full, const ocs_box *lb, int n_frames, int Hf, int Wf, int32_t *row_map,
                  tome_plan *out);

#endif
