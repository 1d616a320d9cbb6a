#include "io/image.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jerror.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

/* ---------------------------------------------------------------- atomic writes */

int ocd_tmp_beside(const char *path, char *tmp, int cap) {
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) : 0;
    const char *name = slash ? slash + 1 : path;
    if (!*name) return ocd_fail("%s: output path names a directory, not a file", path);
    int n = slash ? snprintf(tmp, cap, "%.*s/.%s.XXXXXX", dirlen, path, name)
                  : snprintf(tmp, cap, ".%s.XXXXXX", name);
    if (n < 0 || n >= cap) return ocd_fail("%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return ocd_fail("%s: cannot create a file in that directory: %s", path, strerror(errno));
    fchmod(fd, 0644); /* mkstemp makes 0600; outputs are meant to be shared like any file */
    return fd;
}

int ocd_commit_tmp(const char *tmp, const char *path) {
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ocd_fail("%s: cannot rename the finished temporary file into place: %s", path, strerror(e));
    }
    return 0;
}

/* ---------------------------------------------------------------- basics */

int image_alloc(ocd_image *img, int w, int h) {
    img->w = img->h = 0;
    img->rgb = NULL;
    if (w <= 0 || h <= 0) return ocd_fail("invalid image size %dx%d", w, h);
    img->rgb = ocd_calloc((size_t)w * h, 3);
    if (!img->rgb) return -1;
    img->w = w;
    img->h = h;
    return 0;
}

void image_free(ocd_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

void image_to_f32(const uint8_t *rgb, int w, int h, float *x) {
    size_t hw = (size_t)w * h;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) x[c * hw + i] = rgb[i * 3 + c] / 255.0f * 2.0f - 1.0f;
}

void image_from_f32(const float *x, int w, int h, uint8_t *rgb) {
    size_t hw = (size_t)w * h;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = x[c * hw + i] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; /* also maps NaN to 0 below */
            float r = nearbyintf(v * 255.0f);       /* numpy round: half to even */
            rgb[i * 3 + c] = (uint8_t)(r >= 0.0f && r <= 255.0f ? r : 0.0f);
        }
}

/* ---------------------------------------------------------------- PNG */

/* libpng and libjpeg report errors by longjmp. All state lives in a heap context so
 * nothing is held in locals that setjmp could clobber. */
typedef struct {
    jmp_buf jb;
    char msg[200];
    FILE *f;
    png_structp png;
    png_infop info;
    png_bytep *rows;
    uint8_t *pix;
} png_ctx;

static void png_on_error(png_structp p, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(p);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jb, 1);
}
static void png_on_warning(png_structp p, png_const_charp msg) { (void)p; (void)msg; }

static void png_ctx_free(png_ctx *c, int reading) {
    if (c->png) {
        if (reading) png_destroy_read_struct(&c->png, &c->info, NULL);
        else png_destroy_write_struct(&c->png, &c->info);
    }
    free(c->rows);
    free(c->pix);
    free(c);
}

static int read_png(const char *path, FILE *f, ocd_image *out) {
    png_ctx *c = ocd_calloc(1, sizeof *c);
    if (!c) return -1;
    c->f = f;
    c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    if (c->png) c->info = png_create_info_struct(c->png);
    if (!c->png || !c->info) {
        png_ctx_free(c, 1);
        return ocd_fail("%s: out of memory starting the PNG reader", path);
    }
    if (setjmp(c->jb)) {
        int r = ocd_fail("%s: corrupt or truncated PNG (%s)", path, c->msg);
        png_ctx_free(c, 1);
        return r;
    }
    png_init_io(c->png, c->f);
    png_read_info(c->png, c->info);
    int w = (int)png_get_image_width(c->png, c->info), h = (int)png_get_image_height(c->png, c->info);
    int ct = png_get_color_type(c->png, c->info), depth = png_get_bit_depth(c->png, c->info);
    /* Everything -> 8-bit RGB: 16-bit keeps the high byte, alpha and tRNS are ignored. */
    if (depth == 16) png_set_strip_16(c->png);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    if (ct == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(c->png);
    if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    if (png_get_rowbytes(c->png, c->info) != (size_t)w * 3) {
        png_ctx_free(c, 1);
        return ocd_fail("%s: unsupported PNG layout (colour type %d, depth %d)", path, ct, depth);
    }
    c->pix = malloc((size_t)w * h * 3);
    c->rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!c->pix || !c->rows) {
        png_ctx_free(c, 1);
        return ocd_fail("%s: out of memory for a %dx%d image", path, w, h);
    }
    for (int y = 0; y < h; y++) c->rows[y] = c->pix + (size_t)y * w * 3;
    png_read_image(c->png, c->rows);
    png_read_end(c->png, NULL);
    out->w = w;
    out->h = h;
    out->rgb = c->pix;
    c->pix = NULL;
    png_ctx_free(c, 1);
    return 0;
}

static int write_png(const char *path, FILE *f, const uint8_t *rgb, int w, int h) {
    png_ctx *c = ocd_calloc(1, sizeof *c);
    if (!c) return -1;
    c->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    if (c->png) c->info = png_create_info_struct(c->png);
    c->rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!c->png || !c->info || !c->rows) {
        png_ctx_free(c, 0);
        return ocd_fail("%s: out of memory starting the PNG writer", path);
    }
    if (setjmp(c->jb)) {
        int r = ocd_fail("%s: writing PNG failed (%s)", path, c->msg);
        png_ctx_free(c, 0);
        return r;
    }
    png_init_io(c->png, f);
    png_set_IHDR(c->png, c->info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(c->png, 6);
    for (int y = 0; y < h; y++) c->rows[y] = (png_bytep)(rgb + (size_t)y * w * 3);
    png_write_info(c->png, c->info);
    png_write_image(c->png, c->rows);
    png_write_end(c->png, NULL);
    png_ctx_free(c, 0);
    return 0;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us a pointer to it */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    struct jpeg_decompress_struct d;
    struct jpeg_compress_struct e;
    int d_live, e_live, truncated;
    uint8_t *pix;
} jpg_ctx;

static void jpg_on_error(j_common_ptr cinfo) {
    jpg_ctx *c = (jpg_ctx *)cinfo->err;
    c->pub.format_message(cinfo, c->msg);
    longjmp(c->jb, 1);
}
static void jpg_on_message(j_common_ptr cinfo) { (void)cinfo; }
/* Warnings stay silent, except that a cut-off stream (libjpeg pads it with grey and only
 * warns) counts as an error, as it does for PIL. */
static void jpg_on_emit(j_common_ptr cinfo, int level) {
    jpg_ctx *c = (jpg_ctx *)cinfo->err;
    if (level < 0 && c->pub.msg_code == JWRN_JPEG_EOF) c->truncated = 1;
}

static void jpg_ctx_free(jpg_ctx *c) {
    if (c->d_live) jpeg_destroy_decompress(&c->d);
    if (c->e_live) jpeg_destroy_compress(&c->e);
    free(c->pix);
    free(c);
}

static int read_jpeg(const char *path, FILE *f, ocd_image *out) {
    jpg_ctx *c = ocd_calloc(1, sizeof *c);
    if (!c) return -1;
    c->d.err = jpeg_std_error(&c->pub);
    c->pub.error_exit = jpg_on_error;
    c->pub.output_message = jpg_on_message;
    c->pub.emit_message = jpg_on_emit;
    if (setjmp(c->jb)) {
        int r = ocd_fail("%s: corrupt or truncated JPEG (%s)", path, c->msg);
        jpg_ctx_free(c);
        return r;
    }
    jpeg_create_decompress(&c->d);
    c->d_live = 1;
    jpeg_stdio_src(&c->d, f);
    jpeg_read_header(&c->d, TRUE);
    if (c->d.jpeg_color_space == JCS_CMYK || c->d.jpeg_color_space == JCS_YCCK) {
        jpg_ctx_free(c);
        return ocd_fail("%s: CMYK JPEGs are not supported; convert it to RGB first", path);
    }
    c->d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&c->d);
    int w = (int)c->d.output_width, h = (int)c->d.output_height;
    c->pix = malloc((size_t)w * h * 3);
    if (!c->pix) {
        jpg_ctx_free(c);
        return ocd_fail("%s: out of memory for a %dx%d image", path, w, h);
    }
    while (c->d.output_scanline < c->d.output_height) {
        JSAMPROW row = c->pix + (size_t)c->d.output_scanline * w * 3;
        jpeg_read_scanlines(&c->d, &row, 1);
    }
    if (c->truncated) {
        jpg_ctx_free(c);
        return ocd_fail("%s: truncated JPEG (premature end of data)", path);
    }
    jpeg_finish_decompress(&c->d);
    out->w = w;
    out->h = h;
    out->rgb = c->pix;
    c->pix = NULL;
    jpg_ctx_free(c);
    return 0;
}

static int write_jpeg(const char *path, FILE *f, const uint8_t *rgb, int w, int h) {
    jpg_ctx *c = ocd_calloc(1, sizeof *c);
    if (!c) return -1;
    c->e.err = jpeg_std_error(&c->pub);
    c->pub.error_exit = jpg_on_error;
    c->pub.output_message = jpg_on_message;
    if (setjmp(c->jb)) {
        int r = ocd_fail("%s: writing JPEG failed (%s)", path, c->msg);
        jpg_ctx_free(c);
        return r;
    }
    jpeg_create_compress(&c->e);
    c->e_live = 1;
    jpeg_stdio_dest(&c->e, f);
    c->e.image_width = (JDIMENSION)w;
    c->e.image_height = (JDIMENSION)h;
    c->e.input_components = 3;
    c->e.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c->e);
    jpeg_set_quality(&c->e, 95, TRUE);
    jpeg_start_compress(&c->e, TRUE);
    while (c->e.next_scanline < c->e.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c->e.next_scanline * w * 3);
        jpeg_write_scanlines(&c->e, &row, 1);
    }
    jpeg_finish_compress(&c->e);
    jpg_ctx_free(c);
    return 0;
}

/* ---------------------------------------------------------------- files */

static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), m = strlen(ext);
    return n >= m && strcasecmp(path + n - m, ext) == 0;
}

int image_read(const char *path, ocd_image *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ocd_fail("%s: cannot open image: %s", path, strerror(errno));
    uint8_t magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    rewind(f);
    int r;
    if (got == 8 && png_sig_cmp(magic, 0, 8) == 0) r = read_png(path, f, out);
    else if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) r = read_jpeg(path, f, out);
    else r = ocd_fail("%s: not a PNG or JPEG file", path);
    fclose(f);
    return r;
}

int image_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
    if (!rgb || w <= 0 || h <= 0) return ocd_fail("%s: cannot write an empty image (%dx%d)", path, w, h);
    if (has_ext(path, ".jpg") || has_ext(path, ".jpeg")) {
        if (w > 65500 || h > 65500) return ocd_fail("%s: %dx%d is too large for JPEG", path, w, h);
    }
    size_t cap = strlen(path) + 16;
    char *tmp = ocd_malloc(cap);
    if (!tmp) return -1;
    int fd = ocd_tmp_beside(path, tmp, (int)cap);
    if (fd < 0) { free(tmp); return -1; }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int r = ocd_fail("%s: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return r;
    }
    int r = (has_ext(path, ".jpg") || has_ext(path, ".jpeg")) ? write_jpeg(path, f, rgb, w, h)
                                                             : write_png(path, f, rgb, w, h);
    if (fflush(f) != 0 || ferror(f)) r = r ? r : ocd_fail("%s: write failed: %s", path, strerror(errno));
    if (fclose(f) != 0 && r == 0) r = ocd_fail("%s: write failed: %s", path, strerror(errno));
    if (r == 0) r = ocd_commit_tmp(tmp, path);
    else unlink(tmp);
    free(tmp);
    return r;
}

int image_write(const char *path, const ocd_image *img) {
    return image_write_rgb(path, img->rgb, img->w, img->h);
}

/* ---------------------------------------------------------------- resize */

/* One axis of torch's antialiased bilinear (aten UpSampleKernel.cpp, _compute_indices_
 * min_size_weights_aa): all arithmetic in float like torch's opmath for float tensors. */
typedef struct {
    int taps;   /* max weights per output */
    int *lo;    /* [out] first input index */
    int *cnt;   /* [out] number of inputs used */
    float *w;   /* [out, taps] normalised weights */
} aa_axis;

static float aa_tri(float x) {
    if (x < 0.0f) x = -x;
    return x < 1.0f ? 1.0f - x : 0.0f;
}

static int aa_axis_make(int in, int out, aa_axis *a) {
    /* The float/double mix below copies torch's expression types, so borderline
     * window edges and weights round the same way. */
    float scale = (float)in / (float)out;
    float support = scale >= 1.0f ? scale : 1.0f; /* bilinear: interp_size/2 = 1, widened */
    float invscale = scale >= 1.0f ? (float)(1.0 / (double)scale) : 1.0f;
    a->taps = scale >= 1.0f ? (int)ceilf(support) * 2 + 1 : 2;
    a->lo = ocd_malloc(sizeof(int) * (size_t)out);
    a->cnt = ocd_malloc(sizeof(int) * (size_t)out);
    a->w = ocd_calloc((size_t)out * a->taps, sizeof(float));
    if (!a->lo || !a->cnt || !a->w) return -1;
    for (int i = 0; i < out; i++) {
        float center = (float)((double)scale * (i + 0.5));
        int xmin = (int)((double)(center - support) + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)((double)(center + support) + 0.5);
        if (xmax > in) xmax = in;
        int n = xmax - xmin;
        if (n > a->taps) n = a->taps;
        if (n < 0) n = 0;
        float *w = a->w + (size_t)i * a->taps, total = 0.0f;
        for (int j = 0; j < n; j++) {
            w[j] = aa_tri((float)(((double)((float)(j + xmin) - center) + 0.5) * (double)invscale));
            total += w[j];
        }
        if (total != 0.0f)
            for (int j = 0; j < n; j++) w[j] /= total;
        a->lo[i] = xmin;
        a->cnt[i] = n;
    }
    return 0;
}

static void aa_axis_free(aa_axis *a) {
    free(a->lo);
    free(a->cnt);
    free(a->w);
}

int resize_bilinear_aa(const float *src, int c, int h, int w, float *dst, int oh, int ow) {
    if (c <= 0 || h <= 0 || w <= 0 || oh <= 0 || ow <= 0)
        return ocd_fail("resize: invalid sizes %dx%d -> %dx%d", w, h, ow, oh);
    if (oh == h && ow == w) {
        memcpy(dst, src, sizeof(float) * (size_t)c * h * w);
        return 0;
    }
    aa_axis ax = {0}, ay = {0};
    float *tmp = ocd_malloc(sizeof(float) * (size_t)c * h * ow); /* [c, h, ow] */
    int r = -1;
    if (!tmp || aa_axis_make(w, ow, &ax) || aa_axis_make(h, oh, &ay)) goto done;
    /* Horizontal pass (skipped when the width is unchanged, like torch). */
    if (ow == w) memcpy(tmp, src, sizeof(float) * (size_t)c * h * w);
    else
        for (size_t row = 0; row < (size_t)c * h; row++) {
            const float *s = src + row * w;
            float *d = tmp + row * ow;
            for (int x = 0; x < ow; x++) {
                const float *wt = ax.w + (size_t)x * ax.taps;
                const float *sp = s + ax.lo[x];
                float acc = 0.0f;
                for (int j = 0; j < ax.cnt[x]; j++) acc += sp[j] * wt[j];
                d[x] = acc;
            }
        }
    /* Vertical pass. */
    for (int ch = 0; ch < c; ch++) {
        const float *s = tmp + (size_t)ch * h * ow;
        float *d = dst + (size_t)ch * oh * ow;
        if (oh == h) {
            memcpy(d, s, sizeof(float) * (size_t)h * ow);
            continue;
        }
        for (int y = 0; y < oh; y++) {
            const float *wt = ay.w + (size_t)y * ay.taps;
            float *drow = d + (size_t)y * ow;
            for (int x = 0; x < ow; x++) {
                float acc = 0.0f;
                for (int j = 0; j < ay.cnt[y]; j++) acc += s[(size_t)(ay.lo[y] + j) * ow + x] * wt[j];
                drow[x] = acc;
            }
        }
    }
    r = 0;
done:
    aa_axis_free(&ax);
    aa_axis_free(&ay);
    free(tmp);
    return r;
}

void crop_f32(const float *src, int c, int h, int w, int top, int left, float *dst, int oh, int ow) {
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < oh; y++)
            memcpy(dst + ((size_t)ch * oh + y) * ow, src + ((size_t)ch * h + top + y) * w + left,
                   sizeof(float) * (size_t)ow);
}

static float *resize_then_crop(const float *src, int c, int h, int w, int rh, int rw, int oh, int ow) {
    float *mid = ocd_malloc(sizeof(float) * (size_t)c * rh * rw); /* [c, rh, rw] */
    float *out = ocd_malloc(sizeof(float) * (size_t)c * oh * ow); /* [c, oh, ow] */
    if (!mid || !out || resize_bilinear_aa(src, c, h, w, mid, rh, rw)) {
        free(mid);
        free(out);
        return NULL;
    }
    crop_f32(mid, c, rh, rw, (rh - oh) / 2, (rw - ow) / 2, out, oh, ow);
    free(mid);
    return out;
}

float *resize_short_center_crop(const float *src, int c, int h, int w, int size) {
    if (size <= 0 || h <= 0 || w <= 0) {
        ocd_fail("resize: invalid size %d for a %dx%d image", size, w, h);
        return NULL;
    }
    /* FateZero short_size_scale: scale = size/short; long_target = int(scale*long) (doubles). */
    int rh, rw;
    if (h < w) {
        rh = size;
        rw = (int)((double)size / h * w);
    } else {
        rw = size;
        rh = (int)((double)size / w * h);
    }
    if (rh < size || rw < size) { /* cannot happen with exact arithmetic; guard rounding */
        rh = rh < size ? size : rh;
        rw = rw < size ? size : rw;
    }
    return resize_then_crop(src, c, h, w, rh, rw, size, size);
}

float *resize_crop_multiple(const float *src, int c, int h, int w, int rw, int rh, int multiple, int *oh,
                            int *ow) {
    if (multiple <= 0) multiple = 1;
    int ch = rh / multiple * multiple, cw = rw / multiple * multiple;
    if (rw <= 0 || rh <= 0 || ch <= 0 || cw <= 0) {
        ocd_fail("resize: %dx%d is smaller than the required multiple of %d", rw, rh, multiple);
        return NULL;
    }
    float *out = resize_then_crop(src, c, h, w, rh, rw, ch, cw);
    if (out) {
        *oh = ch;
        *ow = cw;
    }
    return out;
}
