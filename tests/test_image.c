/* Images: PNG/JPEG round trips (incl. grey, alpha, palette, 16-bit PNGs), float
 * conversions, and the antialiased bilinear resize + crops against hand-computed values. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "io/image.h"
#include "testlib.h"

static char g_dir[64] = "/tmp/ocd_test_image_XXXXXX";

static double psnr(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se == 0 ? 99.0 : 10 * log10(255.0 * 255.0 / (se / n));
}

static int dir_entries(const char *dir) { /* entries other than . and .. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* Writes an arbitrary PNG layout with libpng directly (rows already packed). */
static int write_raw_png(const char *path, int w, int h, int ct, int depth, const uint8_t *data, size_t rowbytes,
                         const png_color *pal, int npal) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, &info);
        fclose(f);
        return -1;
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, w, h, depth, ct, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(p, info, pal, npal);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, data + (size_t)y * rowbytes);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
    return 0;
}

static void test_png_jpeg(void) {
    char path[128];
    int w = 37, h = 23;
    ocd_image a, b;
    image_alloc(&a, w, h);
    srand(7);
    for (int i = 0; i < w * h * 3; i++) a.rgb[i] = (uint8_t)(rand() & 255);
    snprintf(path, sizeof path, "%s/a.png", g_dir);
    int ok = image_write(path, &a) == 0 && image_read(path, &b) == 0;
    t_check(ok && b.w == w && b.h == h && !memcmp(a.rgb, b.rgb, (size_t)w * h * 3), "png round trip 37x23 exact",
            "%s", ok ? "" : ocd_last_error());
    image_free(&b);

    /* JPEG of a smooth picture: lossy but close. */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = a.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)(128 + 60 * sin(x * 0.3));
        }
    snprintf(path, sizeof path, "%s/a.jpg", g_dir);
    ok = image_write(path, &a) == 0 && image_read(path, &b) == 0;
    double q = ok ? psnr(a.rgb, b.rgb, (size_t)w * h * 3) : 0;
    t_check(ok && b.w == w && b.h == h && q > 35, "jpeg round trip (q95)", "PSNR %.2f dB (> 35) %s", q,
            ok ? "" : ocd_last_error());
    FILE *f = fopen(path, "rb");
    unsigned char m[3] = {0};
    if (f) {
        if (fread(m, 1, 3, f) != 3) m[0] = 0;
        fclose(f);
    }
    t_check(m[0] == 0xFF && m[1] == 0xD8, "jpeg chosen by extension", "magic %02x %02x", m[0], m[1]);
    image_free(&b);

    /* Truncated JPEG and PNG: clear errors. */
    char cut[160];
    snprintf(cut, sizeof cut, "%s/cut.jpg", g_dir);
    size_t len = 0;
    char *data = NULL;
    if ((f = fopen(path, "rb"))) {
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        rewind(f);
        data = malloc(len);
        if (fread(data, 1, len, f) != len) len = 0;
        fclose(f);
    }
    if ((f = fopen(cut, "wb"))) {
        fwrite(data, 1, len / 2, f);
        fclose(f);
    }
    free(data);
    int r = image_read(cut, &b);
    t_check(r != 0 && strstr(ocd_last_error(), "truncated"), "truncated jpeg -> error", "%s", ocd_last_error());
    snprintf(path, sizeof path, "%s/a.png", g_dir);
    snprintf(cut, sizeof cut, "%s/cut.png", g_dir);
    if ((f = fopen(path, "rb"))) {
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        rewind(f);
        data = malloc(len);
        if (fread(data, 1, len, f) != len) len = 0;
        fclose(f);
        if ((f = fopen(cut, "wb"))) {
            fwrite(data, 1, len / 2, f);
            fclose(f);
        }
        free(data);
    }
    r = image_read(cut, &b);
    t_check(r != 0 && strstr(ocd_last_error(), "PNG"), "truncated png -> error", "%s", ocd_last_error());
    r = image_read("tests/data/FIXTURES.md", &b);
    t_check(r != 0 && strstr(ocd_last_error(), "not a PNG or JPEG"), "text file -> error", "%s", ocd_last_error());
    r = image_read("/nonexistent/x.png", &b);
    t_check(r != 0 && strstr(ocd_last_error(), "No such file"), "missing file -> error", "%s", ocd_last_error());

    /* Failed writes leave nothing: missing directory, and a zero-size image. */
    r = image_write("/nonexistent-dir/x.png", &a);
    t_check(r != 0, "write into missing dir -> error", "%s", ocd_last_error());
    int before = dir_entries(g_dir);
    snprintf(path, sizeof path, "%s/empty.png", g_dir);
    r = image_write_rgb(path, a.rgb, 0, 5);
    t_check(r != 0 && dir_entries(g_dir) == before && access(path, F_OK) != 0, "failed write leaves no file", "%s",
            ocd_last_error());
    image_free(&a);
}

static void test_png_layouts(void) {
    char path[128];
    ocd_image b;
    int w = 5, h = 3;
    uint8_t grey[15], rgba[60], rgb16[90], idx[15];
    for (int i = 0; i < 15; i++) {
        grey[i] = (uint8_t)(i * 17);
        idx[i] = (uint8_t)(i % 3);
        for (int c = 0; c < 4; c++) rgba[i * 4 + c] = (uint8_t)(i * 10 + c);
        for (int c = 0; c < 3; c++) { /* big-endian 16-bit: high byte i*16+c, low byte 0xAB */
            rgb16[i * 6 + c * 2] = (uint8_t)(i * 16 + c);
            rgb16[i * 6 + c * 2 + 1] = 0xAB;
        }
    }
    png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {1, 2, 3}};
    int ok = 1;
    snprintf(path, sizeof path, "%s/grey.png", g_dir);
    if (write_raw_png(path, w, h, PNG_COLOR_TYPE_GRAY, 8, grey, 5, NULL, 0) || image_read(path, &b)) ok = 0;
    else
        for (int i = 0; i < 15; i++) ok &= b.rgb[i * 3] == grey[i] && b.rgb[i * 3 + 1] == grey[i] && b.rgb[i * 3 + 2] == grey[i];
    image_free(&b);
    t_check(ok, "png grey8 -> RGB", "%s", ok ? "replicated" : ocd_last_error());
    ok = 1;
    snprintf(path, sizeof path, "%s/rgba.png", g_dir);
    if (write_raw_png(path, w, h, PNG_COLOR_TYPE_RGBA, 8, rgba, 20, NULL, 0) || image_read(path, &b)) ok = 0;
    else
        for (int i = 0; i < 15; i++)
            for (int c = 0; c < 3; c++) ok &= b.rgb[i * 3 + c] == rgba[i * 4 + c];
    image_free(&b);
    t_check(ok, "png rgba -> RGB (alpha dropped)", "%s", ok ? "" : ocd_last_error());
    ok = 1;
    snprintf(path, sizeof path, "%s/rgb16.png", g_dir);
    if (write_raw_png(path, w, h, PNG_COLOR_TYPE_RGB, 16, rgb16, 30, NULL, 0) || image_read(path, &b)) ok = 0;
    else
        for (int i = 0; i < 15; i++)
            for (int c = 0; c < 3; c++) ok &= b.rgb[i * 3 + c] == i * 16 + c;
    image_free(&b);
    t_check(ok, "png rgb16 -> RGB8 (high byte)", "%s", ok ? "" : ocd_last_error());
    ok = 1;
    snprintf(path, sizeof path, "%s/pal.png", g_dir);
    if (write_raw_png(path, w, h, PNG_COLOR_TYPE_PALETTE, 8, idx, 5, pal, 3) || image_read(path, &b)) ok = 0;
    else
        for (int i = 0; i < 15; i++)
            ok &= b.rgb[i * 3] == pal[idx[i]].red && b.rgb[i * 3 + 1] == pal[idx[i]].green &&
                  b.rgb[i * 3 + 2] == pal[idx[i]].blue;
    image_free(&b);
    t_check(ok, "png palette -> RGB", "%s", ok ? "" : ocd_last_error());
    uint8_t bits[3] = {0xA0, 0x50, 0xF8}; /* 1-bit grey, 5 px per row */
    ok = 1;
    snprintf(path, sizeof path, "%s/g1.png", g_dir);
    if (write_raw_png(path, w, h, PNG_COLOR_TYPE_GRAY, 1, bits, 1, NULL, 0) || image_read(path, &b)) ok = 0;
    else
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) ok &= b.rgb[(y * w + x) * 3 + 1] == ((bits[y] >> (7 - x)) & 1 ? 255 : 0);
    image_free(&b);
    t_check(ok, "png grey1 -> RGB", "%s", ok ? "" : ocd_last_error());
}

static void test_f32(void) {
    uint8_t rgb[256 * 3], back[256 * 3];
    float x[256 * 3];
    for (int i = 0; i < 256 * 3; i++) rgb[i] = (uint8_t)((i * 7) & 255);
    image_to_f32(rgb, 256, 1, x);
    image_from_f32(x, 256, 1, back);
    t_check(!memcmp(rgb, back, sizeof rgb), "u8 -> f32 -> u8 exact (all 256 values)", " ");
    int ok = fabsf(x[0] - (-1.0f)) < 1e-7f; /* rgb[0] = 0 is channel 0 of pixel 0 */
    float pos[3] = {1.5f, -3.0f, 0.0f / 1.0f}, neg[3];
    uint8_t o[3];
    image_from_f32(pos, 1, 1, o);
    ok &= o[0] == 255 && o[1] == 0 && o[2] == 128; /* 0 -> 0.5*255 = 127.5 -> round half even = 128 */
    neg[0] = 1.0f / 255.0f * 2.0f - 1.0f; /* exactly 1 -> 1 */
    neg[1] = -1.0f + 2.0f * 2.5f / 255.0f; /* 2.5 -> half-even -> 2 */
    neg[2] = NAN;
    image_from_f32(neg, 1, 1, o);
    ok &= o[0] == 1 && (o[1] == 2 || o[1] == 3) && o[2] == 0;
    t_check(ok, "f32 -> u8 clamps and rounds", "%d %d %d", o[0], o[1], o[2]);
}

static void test_resize(void) {
    /* 4x4 -> 2x2 with antialias: the triangle filter widened to support 2 gives
     * weights (3,3,1)/7 and (1,3,3)/7 per axis (hand computed, torch semantics). */
    float src[16], dst[4], ref[4];
    for (int i = 0; i < 16; i++) src[i] = (float)i;
    resize_bilinear_aa(src, 1, 4, 4, dst, 2, 2);
    float r0 = (0 * 3 + 1 * 3 + 2 * 1) / 7.0f, r1 = (1 * 1 + 2 * 3 + 3 * 3) / 7.0f; /* one row 0..3 */
    ref[0] = r0 + 4 * r0, ref[1] = r1 + 4 * r0, ref[2] = r0 + 4 * r1, ref[3] = r1 + 4 * r1; /* x + 4y separable */
    t_close("resize 4x4 -> 2x2 antialias", dst, ref, 4, 1e-5, 1e-6);
    /* Constant stays constant, any ratio. */
    float c[7 * 11], cd[3 * 5];
    for (int i = 0; i < 77; i++) c[i] = 0.25f;
    resize_bilinear_aa(c, 1, 7, 11, cd, 3, 5);
    float cr[15];
    for (int i = 0; i < 15; i++) cr[i] = 0.25f;
    t_close("resize constant 11x7 -> 5x3", cd, cr, 15, 1e-6, 1e-6);
    /* Identity is an exact copy. */
    float id[16];
    resize_bilinear_aa(src, 1, 4, 4, id, 4, 4);
    t_close("resize identity", id, src, 16, 0, 0);
    /* 2x upscale = plain half-pixel bilinear with edge clamping: [0,1] -> [0,.25,.75,1]. */
    float u[2] = {0, 1}, ud[4], ur[4] = {0, 0.25f, 0.75f, 1};
    resize_bilinear_aa(u, 1, 1, 2, ud, 1, 4);
    t_close("resize 2 -> 4 upscale", ud, ur, 4, 1e-6, 0);
    /* 3 -> 2 (scale 1.5, support 1.5): hand-computed
     * out0: centre .75, inputs 0..1 (xmax=int(2.75)=2): w = 1-|(j+.5-.75)/1.5| = 5/6, 1/6... */
    float t3[3] = {0, 3, 6}, t2[2];
    resize_bilinear_aa(t3, 1, 1, 3, t2, 1, 2);
    /* out0: j=0 w=1-.25/1.5=.8333, j=1 w=1-.75/1.5=.5 -> (0*.8333+3*.5)/1.3333 = 1.125
     * out1 (centre 2.25, xmin=int(1.25)=1, xmax=3): j=1 w=.5, j=2 w=.8333 -> (1.5+5)/1.3333 = 4.875 */
    float t2r[2] = {1.125f, 4.875f};
    t_close("resize 3 -> 2 antialias", t2, t2r, 2, 1e-5, 0);

    /* FateZero short-side + centre crop: 2 channels of 4x6 -> size 2: short side 4 -> 2,
     * long = int(2/4*6) = 3, crop left (3-2)//2 = 0. Compare with resize then crop. */
    float img[2 * 4 * 6], mid[2 * 2 * 3], crop[2 * 2 * 2];
    for (int i = 0; i < 48; i++) img[i] = sinf(i * 0.7f);
    float *got = resize_short_center_crop(img, 2, 4, 6, 2);
    resize_bilinear_aa(img, 2, 4, 6, mid, 2, 3);
    crop_f32(mid, 2, 2, 3, 0, 0, crop, 2, 2);
    t_close("short side 4x6 -> 2 + centre crop", got, crop, 8, 0, 0);
    free(got);
    /* Portrait 7 wide x 10 high -> size 4: long = int(4/7*10) = 5, top = (5-4)//2 = 0;
     * 9 wide x 20 high -> size 4: long = int(4/9*20) = 8, top = 2. */
    float p[9 * 20], pm[4 * 8], pc[16];
    for (int i = 0; i < 180; i++) p[i] = (float)(i % 9) + 0.1f * (float)(i / 9);
    got = resize_short_center_crop(p, 1, 20, 9, 4);
    resize_bilinear_aa(p, 1, 20, 9, pm, 8, 4);
    crop_f32(pm, 1, 8, 4, 2, 0, pc, 4, 4);
    t_close("short side 9x20 -> 4 (long 8, top 2)", got, pc, 16, 0, 0);
    free(got);
    int oh = 0, ow = 0;
    got = resize_crop_multiple(p, 1, 20, 9, 19, 13, 8, &oh, &ow);
    t_check(got && oh == 8 && ow == 16, "resize to 19x13 then crop to multiples of 8", "-> %dx%d", ow, oh);
    free(got);
    got = resize_crop_multiple(p, 1, 20, 9, 7, 13, 8, &oh, &ow);
    t_check(!got, "crop to multiple larger than image -> error", "%s", ocd_last_error());
}

int main(int argc, char **argv) {
    (void)argc;
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_png_jpeg();
    test_png_layouts();
    test_f32();
    test_resize();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return t_summary(argv[0]);
}
