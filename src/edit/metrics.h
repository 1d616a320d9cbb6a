/* Fidelity metrics of edited clips (ocd-method.md 6): PSNR, SSIM, their masked variants and
 * frame-to-frame consistency, on what a viewer gets: RGB8 frames [h, w, 3] (a float output is
 * converted with image_from_f32 first, so clamping and rounding are those of the saved video).
 *
 * PSNR: 10 log10(255^2 / MSE), MSE over the 3 channels of the selected pixels; identical
 * inputs give MT_PSNR_MAX (not infinity, so tables and JSON stay finite).
 * SSIM (Wang et al. 2004): on luma Y = 0.299 R + 0.587 G + 0.114 B (BT.601, range 0..255),
 * an 11x11 Gaussian window with sigma 1.5, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2. The map
 * has one value per pixel: near the border the window is truncated and its weights
 * renormalised (MATLAB's reference keeps only the "valid" interior; on 64x64 frames that would
 * drop a third of the pixels, and masked means need a value under every mask pixel).
 *
 * Regions: a mask [h, w] (per frame; nonzero = inside). MT_ALL ignores it (may be NULL),
 * MT_INSIDE / MT_OUTSIDE select the pixels with mask != 0 / == 0. An empty selection gives NAN.
 * Clip functions pool over the clip: PSNR from the MSE over every selected pixel of every frame,
 * SSIM as the mean of the SSIM map over every selected pixel of every frame. */
#ifndef OCD_EDIT_METRICS_H
#define OCD_EDIT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define MT_PSNR_MAX 100.0

typedef enum { MT_ALL, MT_INSIDE, MT_OUTSIDE } mt_region;

/* 10 log10(255^2 / mse), MT_PSNR_MAX for mse <= 0 (or a PSNR above it), NAN for NAN. */
double mt_psnr_from_mse(double mse);

/* Sum of squared differences (in 0..255 units) over the selected pixels' channels; *count gets
 * the number of values summed (3 per pixel). */
double mt_sse(const uint8_t *a, const uint8_t *b /* [h, w, 3] */, int w, int h, const uint8_t *mask /* [h, w] */,
              mt_region r, size_t *count);
double mt_psnr(const uint8_t *a, const uint8_t *b, int w, int h, const uint8_t *mask, mt_region r);

/* Luma plane of an RGB8 image. y [h, w]. */
void mt_luma(const uint8_t *rgb /* [h, w, 3] */, int w, int h, float *y /* [h, w] */);
/* SSIM map [h, w] of two RGB8 images (luma). Returns 0, -1 + error when out of memory. */
int mt_ssim_map(const uint8_t *a, const uint8_t *b, int w, int h, float *map /* [h, w] */);
/* Mean of the SSIM map over the selected pixels; NAN when none (or out of memory). */
double mt_ssim(const uint8_t *a, const uint8_t *b, int w, int h, const uint8_t *mask, mt_region r);

/* Clips: F frames, frame f at a + f*h*w*3; mask [F, h, w] or NULL (only with MT_ALL). */
double mt_clip_psnr(const uint8_t *a, const uint8_t *b, int F, int w, int h, const uint8_t *mask, mt_region r);
double mt_clip_ssim(const uint8_t *a, const uint8_t *b, int F, int w, int h, const uint8_t *mask, mt_region r);
/* Frame-to-frame consistency: mean over f of PSNR(frame f, frame f+1), whole frames. NAN for F < 2. */
double mt_clip_consistency(const uint8_t *frames, int F, int w, int h);

#endif
