/* Still images: PNG / JPEG files <-> RGB8, RGB8 <-> float [-1,1] NCHW, and the resize +
 * crop the reference pipelines apply to their inputs (algorithms.md A.2).
 * All pixel buffers are row-major, channels last for uint8 ([h, w, 3]) and channels
 * first for float ([c, h, w]). */
#ifndef OCD_IO_IMAGE_H
#define OCD_IO_IMAGE_H

#include <stdint.h>

typedef struct {
    int w, h;
    uint8_t *rgb; /* [h, w, 3] */
} ocd_image;

/* PNG (any bit depth / colour type; 16-bit keeps the high byte, grey is replicated,
 * palette expanded, alpha dropped as PIL's convert('RGB') does) or JPEG (grey/YCbCr),
 * chosen by the file's magic bytes, not its name. */
int image_read(const char *path, ocd_image *out);
/* By extension: .jpg/.jpeg (quality 95, 4:2:0) else PNG. Written to a temporary file in
 * the same directory and renamed, so a failure never leaves a partial file at `path`. */
int image_write(const char *path, const ocd_image *img);
int image_write_rgb(const char *path, const uint8_t *rgb /* [h, w, 3] */, int w, int h);
int image_alloc(ocd_image *img, int w, int h); /* zeroed pixels */
void image_free(ocd_image *img);

/* uint8 -> x/255*2-1 and back: clamp(x/2+0.5, 0, 1), round-half-even(x*255). */
void image_to_f32(const uint8_t *rgb /* [h, w, 3] */, int w, int h, float *x /* [3, h, w] */);
void image_from_f32(const float *x /* [3, h, w] */, int w, int h, uint8_t *rgb /* [h, w, 3] */);

/* Bilinear resize with torch's `antialias=True` semantics (F.interpolate / torchvision
 * Resize): half-pixel centres, triangle filter widened by the scale when downscaling,
 * weights renormalised at the borders. Separable, horizontal pass first like torch.
 * Same size = exact copy. */
int resize_bilinear_aa(const float *src /* [c, h, w] */, int c, int h, int w,
                       float *dst /* [c, oh, ow] */, int oh, int ow);
/* dst = src[:, top:top+oh, left:left+ow]; the window must lie inside src. */
void crop_f32(const float *src /* [c, h, w] */, int c, int h, int w, int top, int left,
              float *dst /* [c, oh, ow] */, int oh, int ow);
/* FateZero's preprocessing (A.2): short side -> `size`, long side = int(size/short*long),
 * then the centre size x size crop at ((H-size)//2, (W-size)//2). Returns a malloc'd
 * [c, size, size] buffer, NULL + error on failure. */
float *resize_short_center_crop(const float *src /* [c, h, w] */, int c, int h, int w, int size);
/* Resize to rw x rh, then centre-crop to the largest multiple of `multiple` (8 for the
 * VAE, 64 to keep every UNet level even) in each dimension. Returns [c, *oh, *ow]. */
float *resize_crop_multiple(const float *src /* [c, h, w] */, int c, int h, int w, int rw, int rh,
                            int multiple, int *oh, int *ow);

/* Atomic-write helpers shared with video.c: creates "<dir>/.<name>.XXXXXX" next to
 * `path` (tmp gets the name, cap >= strlen(path)+16) and returns its open fd, -1 + error. */
int ocd_tmp_beside(const char *path, char *tmp, int cap);
/* rename(tmp, path); on failure unlinks tmp and sets the error. */
int ocd_commit_tmp(const char *tmp, const char *path);

#endif
