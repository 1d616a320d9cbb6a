/* Video: the bundled clip against its PNG frames, frame selection, mp4 / gif / PNG-folder
 * round trips of a synthetic clip, grids, and the error cases (missing, not a video, no
 * video stream, truncated, too few frames, failed writes leave nothing behind). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "io/image.h"
#include "io/video.h"
#include "testlib.h"

#define CLIP "examples/toy-clip/clip.mp4"
static char g_dir[64] = "/tmp/ocd_test_video_XXXXXX";

static double psnr(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se == 0 ? 99.0 : 10 * log10(255.0 * 255.0 / (se / n));
}

static double video_psnr(const ocd_video *a, const ocd_video *b) { /* worst frame */
    double worst = 99;
    for (int i = 0; i < a->n && i < b->n; i++) {
        double p = psnr(a->frames[i], b->frames[i], (size_t)a->w * a->h * 3);
        worst = p < worst ? p : worst;
    }
    return worst;
}

static int dir_entries(const char *dir) {
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

static int copy_prefix(const char *from, const char *to, double frac) {
    FILE *f = fopen(from, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)len);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    FILE *g = fopen(to, "wb");
    if (g) {
        fwrite(buf, 1, (size_t)(got * frac), g);
        fclose(g);
    }
    free(buf);
    return g ? 0 : -1;
}

/* Moving gradient: 8 frames of 64x48 (or any size), smooth so codecs keep it well. */
static void make_clip(ocd_video *v, int n, int w, int h) {
    video_alloc(v, n, w, h);
    v->fps = 8;
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t *p = v->frames[i] + ((size_t)y * w + x) * 3;
                p[0] = (uint8_t)((x * 3 + i * 8) % 256 * 0.7 + 30);
                p[1] = (uint8_t)(40 + y * 150 / h);
                p[2] = (uint8_t)(128 + 90 * sin((x + y) * 0.08 + i * 0.4));
            }
}

static void test_bundled_clip(void) {
    ocd_video v;
    int r = video_read(CLIP, 0, 1, 8, &v);
    t_check(r == 0 && v.n == 8 && v.w == 64 && v.h == 64, "read clip.mp4: 8 frames 64x64", "n %d %dx%d fps %.3g %s",
            v.n, v.w, v.h, v.fps, r ? ocd_last_error() : "");
    if (r) return;
    double worst = 99;
    for (int i = 0; i < 8; i++) {
        char path[128];
        ocd_image im;
        snprintf(path, sizeof path, "examples/toy-clip/frame_%02d.png", i);
        if (image_read(path, &im)) {
            worst = 0;
            break;
        }
        double p = psnr(v.frames[i], im.rgb, (size_t)64 * 64 * 3);
        worst = p < worst ? p : worst;
        image_free(&im);
    }
    /* The clip is H.264 of a grass texture: `ffmpeg -i clip.mp4 -pix_fmt rgb24` itself gets
     * 28.0 dB against the PNGs (29.1 dB with accurate_rnd + full_chroma_int, as here). */
    t_check(worst > 28.5, "clip.mp4 vs frame_0*.png", "worst-frame PSNR %.2f dB (> 28.5; ffmpeg CLI 28.0)", worst);

    ocd_video all, sel;
    r = video_read(CLIP, 0, 1, 0, &all);
    t_check(r == 0 && all.n == 8, "read clip.mp4 n=0 -> all frames", "n %d", all.n);
    r = video_read(CLIP, 1, 2, 3, &sel);
    int same = r == 0 && sel.n == 3;
    for (int i = 0; same && i < 3; i++) same = !memcmp(sel.frames[i], v.frames[1 + 2 * i], 64 * 64 * 3);
    t_check(same, "start 1 stride 2 n 3 -> frames 1,3,5", "%s", r ? ocd_last_error() : "");
    video_free(&sel);
    r = video_read(CLIP, 3, 2, 0, &sel);
    t_check(r == 0 && sel.n == 3, "start 3 stride 2 n 0 -> 3,5,7", "n %d", sel.n);
    video_free(&sel);
    r = video_read(CLIP, 0, 1, 20, &sel);
    t_check(r != 0 && strstr(ocd_last_error(), "only 8 frames"), "20 frames asked of 8 -> error", "%s",
            ocd_last_error());
    r = video_read(CLIP, 2, 3, 3, &sel); /* needs frame 8 */
    t_check(r != 0 && strstr(ocd_last_error(), "need 9"), "start 2 stride 3 n 3 -> error", "%s", ocd_last_error());

    /* The same clip as a folder of PNG frames. */
    ocd_video fold;
    r = video_read("examples/toy-clip", 0, 1, 8, &fold);
    ocd_image f7 = {0};
    int same7 = r == 0 && fold.n == 8 && image_read("examples/toy-clip/frame_07.png", &f7) == 0 &&
                !memcmp(f7.rgb, fold.frames[7], 64 * 64 * 3);
    image_free(&f7);
    t_check(same7 && fold.w == 64 && video_psnr(&fold, &v) > 28.5, "read folder of frames (sorted, exact)",
            "n %d, PSNR vs mp4 %.2f dB %s", fold.n, r ? 0 : video_psnr(&fold, &v), r ? ocd_last_error() : "");

    /* A.2 preprocessing: 64x64 -> 32: exact 2x antialiased downscale of x/255*2-1. */
    float *t = video_preprocess(&fold, 32);
    int ok = t != NULL;
    if (ok) {
        float *x = malloc(sizeof(float) * 3 * 64 * 64), *ref = malloc(sizeof(float) * 3 * 32 * 32);
        image_to_f32(fold.frames[5], 64, 64, x);
        resize_bilinear_aa(x, 3, 64, 64, ref, 32, 32);
        t_close("video_preprocess frame 5 (64 -> 32)", t + (size_t)5 * 3 * 32 * 32, ref, 3 * 32 * 32, 0, 0);
        free(x);
        free(ref);
    }
    free(t);
    video_free(&fold);
    video_free(&all);
    video_free(&v);
}

static void test_errors(void) {
    char path[160];
    ocd_video v;
    int r = video_read("/nonexistent/clip.mp4", 0, 1, 8, &v);
    t_check(r != 0 && strstr(ocd_last_error(), "No such file"), "missing file -> error", "%s", ocd_last_error());

    snprintf(path, sizeof path, "%s/text.mp4", g_dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < 50; i++) fprintf(f, "this is not a video, line %d\n", i);
    if (f) fclose(f);
    r = video_read(path, 0, 1, 8, &v);
    t_check(r != 0 && strstr(ocd_last_error(), "not a video"), "text file named .mp4 -> error", "%s",
            ocd_last_error());

    snprintf(path, sizeof path, "%s/cut.mp4", g_dir);
    copy_prefix(CLIP, path, 0.6);
    r = video_read(path, 0, 1, 8, &v);
    t_check(r != 0 && (strstr(ocd_last_error(), "truncated") || strstr(ocd_last_error(), "corrupt")),
            "truncated mp4 -> error", "%s", ocd_last_error());

    /* A WAV file: valid media, no video stream. */
    snprintf(path, sizeof path, "%s/tone.wav", g_dir);
    if ((f = fopen(path, "wb"))) {
        int n = 8000;
        unsigned char hdr[44] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ', 16, 0, 0, 0,
                                 1,   0,   1,   0,   0x40, 0x1F, 0, 0, 0x80, 0x3E, 0, 0, 2, 0, 16, 0,
                                 'd', 'a', 't', 'a', 0, 0, 0, 0};
        unsigned d = (unsigned)n * 2, rl = d + 36;
        memcpy(hdr + 4, &rl, 4);
        memcpy(hdr + 40, &d, 4);
        fwrite(hdr, 1, 44, f);
        for (int i = 0; i < n; i++) {
            short s = (short)(3000 * sin(i * 0.3));
            fwrite(&s, 2, 1, f);
        }
        fclose(f);
    }
    r = video_read(path, 0, 1, 8, &v);
    t_check(r != 0 && strstr(ocd_last_error(), "no video stream"), "audio-only file -> error", "%s",
            ocd_last_error());

    snprintf(path, sizeof path, "%s/emptydir", g_dir);
    mkdir(path, 0755);
    r = video_read(path, 0, 1, 0, &v);
    t_check(r != 0 && strstr(ocd_last_error(), "no .png"), "folder without frames -> error", "%s", ocd_last_error());
    rmdir(path);
    r = video_read(CLIP, 0, 0, 8, &v);
    t_check(r != 0, "stride 0 -> error", "%s", ocd_last_error());
}

static void test_round_trips(void) {
    char path[160];
    ocd_video src, back;
    make_clip(&src, 8, 64, 48);

    snprintf(path, sizeof path, "%s/synth.mp4", g_dir);
    int r = video_write(path, &src, 8);
    int r2 = r ? -1 : video_read(path, 0, 1, 0, &back);
    double q = r2 ? 0 : video_psnr(&src, &back);
    t_check(r2 == 0 && back.n == 8 && back.w == 64 && back.h == 48 && fabs(back.fps - 8) < 1e-6 && q > 30,
            "mp4 write + read 8x64x48", "encoder %s, n %d, %dx%d, fps %.3g, worst PSNR %.2f dB (> 30) %s",
            video_mp4_encoder(), back.n, back.w, back.h, back.fps, q, r || r2 ? ocd_last_error() : "");
    if (!r2) video_free(&back);

    /* The MPEG-4 part 2 fallback for FFmpeg builds without libx264. */
    setenv("OCD_MP4_ENCODER", "mpeg4", 1);
    snprintf(path, sizeof path, "%s/mpeg4.mp4", g_dir);
    r = video_write(path, &src, 8);
    r2 = r ? -1 : video_read(path, 0, 1, 0, &back);
    q = r2 ? 0 : video_psnr(&src, &back);
    t_check(r2 == 0 && back.n == 8 && back.w == 64 && q > 30, "mp4 (mpeg4 fallback) write + read",
            "encoder %s, n %d, worst PSNR %.2f dB (> 30) %s", video_mp4_encoder(), back.n, q,
            r || r2 ? ocd_last_error() : "");
    if (!r2) video_free(&back);
    unsetenv("OCD_MP4_ENCODER");

    /* Our mp4s put the index first (faststart) and mkv streams: cutting either must still be
     * reported as truncated rather than returned as a shorter clip. */
    const char *cuts[2] = {"synth.mp4", "mkv.mkv"};
    snprintf(path, sizeof path, "%s/mkv.mkv", g_dir);
    video_write(path, &src, 8);
    for (int k = 0; k < 2; k++) {
        char full[160], cut[160];
        snprintf(full, sizeof full, "%s/%s", g_dir, cuts[k]);
        snprintf(cut, sizeof cut, "%s/cut_%s", g_dir, cuts[k]);
        copy_prefix(full, cut, 0.6);
        r = video_read(cut, 0, 1, 0, &back);
        t_check(r != 0 && strstr(ocd_last_error(), "truncated"), "truncated file (index first) -> error", "%s: %s",
                cuts[k], ocd_last_error());
        if (!r) video_free(&back);
        unlink(cut);
    }
    unlink(path);

    /* Non-integer fps survives (time base 1/fps as a rational). */
    snprintf(path, sizeof path, "%s/ntsc.mp4", g_dir);
    r = video_write(path, &src, 30000.0 / 1001.0);
    r2 = r ? -1 : video_read(path, 0, 1, 0, &back);
    t_check(r2 == 0 && back.n == 8 && fabs(back.fps - 29.97) < 0.01, "mp4 at 29.97 fps", "n %d fps %.4f %s", back.n,
            r2 ? 0 : back.fps, r || r2 ? ocd_last_error() : "");
    if (!r2) video_free(&back);

    /* Odd size: padded to even by repeating the edge. */
    ocd_video odd;
    make_clip(&odd, 4, 63, 47);
    snprintf(path, sizeof path, "%s/odd.mp4", g_dir);
    r = video_write(path, &odd, 8);
    r2 = r ? -1 : video_read(path, 0, 1, 0, &back);
    double qo = 99;
    if (!r2 && back.w == 64 && back.h == 48)
        for (int i = 0; i < 4; i++)
            for (int y = 0; y < 47; y++) {
                double p = psnr(odd.frames[i] + (size_t)y * 63 * 3, back.frames[i] + (size_t)y * 64 * 3, 63 * 3);
                qo = p < qo ? p : qo;
            }
    t_check(r2 == 0 && back.w == 64 && back.h == 48 && qo > 25, "mp4 odd 63x47 -> padded 64x48",
            "%dx%d, worst row PSNR %.2f dB %s", back.w, back.h, qo, r || r2 ? ocd_last_error() : "");
    if (!r2) video_free(&back);
    video_free(&odd);

    snprintf(path, sizeof path, "%s/synth.gif", g_dir);
    r = video_write(path, &src, 10);
    r2 = r ? -1 : video_read(path, 0, 1, 0, &back);
    q = r2 ? 0 : video_psnr(&src, &back);
    t_check(r2 == 0 && back.n == 8 && back.w == 64 && back.h == 48 && q > 28, "gif write + read 8x64x48",
            "n %d, fps %.3g, worst PSNR %.2f dB (> 28) %s", back.n, r2 ? 0 : back.fps, q,
            r || r2 ? ocd_last_error() : "");
    if (!r2) video_free(&back);

    snprintf(path, sizeof path, "%s/frames/", g_dir);
    r = video_write(path, &src, 8);
    r2 = r ? -1 : video_read(path, 0, 1, 0, &back);
    int exact = r2 == 0 && back.n == 8;
    for (int i = 0; exact && i < 8; i++) exact = !memcmp(src.frames[i], back.frames[i], 64 * 48 * 3);
    char first[200];
    snprintf(first, sizeof first, "%s/frames/00000.png", g_dir);
    t_check(exact && access(first, F_OK) == 0, "png folder write + read exact", "%s", r || r2 ? ocd_last_error() : "");
    if (!r2) video_free(&back);
    /* Rewriting the folder replaces the earlier frames; a folder with other files is kept. */
    ocd_video shorter = src;
    shorter.n = 3;
    r = video_write(path, &shorter, 8);
    r2 = r ? -1 : video_read(path, 0, 1, 0, &back);
    t_check(r2 == 0 && back.n == 3, "png folder rewrite replaces old frames", "n %d %s", r2 ? 0 : back.n,
            r || r2 ? ocd_last_error() : "");
    if (!r2) video_free(&back);
    snprintf(path, sizeof path, "%s/frames/notes.txt", g_dir);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/frames", g_dir); /* no extension = folder as well */
    r = video_write(path, &src, 8);
    t_check(r != 0 && strstr(ocd_last_error(), "other files"), "folder with other files is not replaced", "%s",
            ocd_last_error());

    /* Side by side. */
    ocd_video sbs;
    r = video_side_by_side(&src, &src, &sbs);
    int ok = r == 0 && sbs.n == 8 && sbs.w == 128 && sbs.h == 48;
    ok = ok && !memcmp(sbs.frames[7] + 64 * 3, src.frames[7], 64 * 3) &&
         !memcmp(sbs.frames[7] + (size_t)47 * 128 * 3, src.frames[7] + (size_t)47 * 64 * 3, 64 * 3);
    t_check(ok, "side by side 2 x 64x48 -> 128x48", "%dx%d", sbs.w, sbs.h);
    video_free(&sbs);
    const ocd_video *three[3] = {&src, &src, &src};
    r = video_grid(three, 3, 0, &sbs);
    t_check(r == 0 && sbs.w == 128 && sbs.h == 96, "grid of 3 (cols ceil(sqrt 3) = 2)", "%dx%d", sbs.w, sbs.h);
    video_free(&sbs);

    /* Failed writes leave nothing behind: a frame missing half way, per output kind. */
    int before = dir_entries(g_dir);
    uint8_t *keep = src.frames[5];
    src.frames[5] = NULL;
    const char *names[3] = {"fail.mp4", "fail.gif", "failframes/"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[k]);
        r = video_write(path, &src, 8);
        int after = dir_entries(g_dir);
        t_check(r != 0 && after == before && strstr(ocd_last_error(), "missing"), "failed write leaves no file",
                "%s: %s (entries %d -> %d)", names[k], ocd_last_error(), before, after);
    }
    src.frames[5] = keep;
    snprintf(path, sizeof path, "%s/x.avi", g_dir);
    r = video_write(path, &src, 8);
    t_check(r != 0 && dir_entries(g_dir) == before, "unsupported extension -> error, no file", "%s",
            ocd_last_error());
    r = video_write("/nonexistent-dir/x.mp4", &src, 8);
    t_check(r != 0, "write into missing dir -> error", "%s", ocd_last_error());
    video_free(&src);
}

int main(int argc, char **argv) {
    (void)argc;
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bundled_clip();
    test_errors();
    test_round_trips();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return t_summary(argv[0]);
}
