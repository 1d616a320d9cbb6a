/* Fidelity metrics (src/edit/metrics.h) against hand-computed values: PSNR of a known MSE, SSIM
 * of identical images = 1, symmetry, constant images (closed form), a brute-force 2-D SSIM,
 * masked variants (inside + outside = all), clip pooling and frame-to-frame consistency. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "edit/metrics.h"
#include "testlib.h"

#define W 24
#define H 20

static void fill(uint8_t *img, int w, int h, uint8_t v) { memset(img, v, (size_t)w * h * 3); }

static void random_img(uint8_t *img, int w, int h, uint64_t seed) {
    float *u = malloc(sizeof(float) * w * h * 3);
    rng_uniform(seed, 1, u, (size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) img[i] = (uint8_t)(u[i] * 255.99f);
    free(u);
}

/* Direct 2-D SSIM at one pixel: the 11x11 Gaussian window truncated to the image, renormalised. */
static double ssim_at_ref(const uint8_t *a, const uint8_t *b, int w, int h, int x, int y) {
    double s = 0, ma = 0, mb = 0, aa = 0, bb = 0, ab = 0;
    for (int dy = -5; dy <= 5; dy++)
        for (int dx = -5; dx <= 5; dx++) {
            int xx = x + dx, yy = y + dy;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
            double g = exp(-(dx * dx + dy * dy) / (2 * 1.5 * 1.5));
            const uint8_t *pa = a + ((size_t)yy * w + xx) * 3, *pb = b + ((size_t)yy * w + xx) * 3;
            double la = 0.299 * pa[0] + 0.587 * pa[1] + 0.114 * pa[2], lb = 0.299 * pb[0] + 0.587 * pb[1] + 0.114 * pb[2];
            s += g; ma += g * la; mb += g * lb; aa += g * la * la; bb += g * lb * lb; ab += g * la * lb;
        }
    ma /= s; mb /= s; aa = aa / s - ma * ma; bb = bb / s - mb * mb; ab = ab / s - ma * mb;
    const double C1 = 6.5025, C2 = 58.5225;
    return (2 * ma * mb + C1) * (2 * ab + C2) / ((ma * ma + mb * mb + C1) * (aa + bb + C2));
}

static void test_psnr(void) {
    uint8_t a[W * H * 3], b[W * H * 3];
    fill(a, W, H, 100);
    fill(b, W, H, 110); /* MSE 100 */
    double want = 10 * log10(65025.0 / 100);
    double got = mt_psnr(a, b, W, H, NULL, MT_ALL);
    t_check(fabs(got - want) < 1e-9, "psnr: MSE 100", "%.9f dB, want %.9f (err %.2g)", got, want, fabs(got - want));
    /* one channel of one pixel off by 51: MSE = 51^2 / (W*H*3) */
    memcpy(b, a, sizeof a);
    b[7 * 3 + 1] = 151;
    want = 10 * log10(65025.0 / (2601.0 / (W * H * 3)));
    got = mt_psnr(a, b, W, H, NULL, MT_ALL);
    t_check(fabs(got - want) < 1e-9, "psnr: one value off", "%.9f dB, want %.9f", got, want);
    t_check(mt_psnr(a, a, W, H, NULL, MT_ALL) == MT_PSNR_MAX && mt_psnr_from_mse(0) == MT_PSNR_MAX,
            "psnr: identical = MT_PSNR_MAX", "%g", MT_PSNR_MAX);
    t_check(fabs(mt_psnr_from_mse(65025.0) - 0) < 1e-12 && isnan(mt_psnr_from_mse(NAN)), "psnr_from_mse: 255^2 -> 0 dB, NAN -> NAN", " ");
}

static void test_ssim(void) {
    uint8_t a[W * H * 3], b[W * H * 3];
    random_img(a, W, H, 1);
    random_img(b, W, H, 2);
    double s_aa = mt_ssim(a, a, W, H, NULL, MT_ALL);
    t_check(s_aa == 1.0, "ssim: identical images = 1", "%.17g", s_aa);
    double s_ab = mt_ssim(a, b, W, H, NULL, MT_ALL), s_ba = mt_ssim(b, a, W, H, NULL, MT_ALL);
    t_check(fabs(s_ab - s_ba) < 1e-12 && s_ab < 0.2 && s_ab > -1, "ssim: symmetric, low for unrelated noise",
            "ssim(a,b) %.6f ssim(b,a) %.6f", s_ab, s_ba);
    /* constant grey images: sigma = 0, so SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) */
    uint8_t c1[W * H * 3], c2[W * H * 3];
    fill(c1, W, H, 100);
    fill(c2, W, H, 110);
    double want = (2 * 100.0 * 110 + 6.5025) / (100.0 * 100 + 110.0 * 110 + 6.5025), got = mt_ssim(c1, c2, W, H, NULL, MT_ALL);
    t_check(fabs(got - want) < 1e-5, "ssim: constant images (closed form)", "%.8f, want %.8f", got, want);
    /* brute-force 2-D window at every pixel, border included */
    float map[W * H];
    double worst = 0;
    random_img(b, W, H, 3);
    for (int i = 0; i < W * H * 3; i++) b[i] = (uint8_t)((a[i] * 3 + b[i]) / 4); /* correlated with a */
    if (mt_ssim_map(a, b, W, H, map)) { t_check(0, "ssim map", "failed"); return; }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double d = fabs(map[y * W + x] - ssim_at_ref(a, b, W, H, x, y));
            if (d > worst) worst = d;
        }
    t_check(worst < 1e-5, "ssim map == direct 2-D window (borders renormalised)", "max abs err %.3g", worst);
    double mild = mt_ssim(a, b, W, H, NULL, MT_ALL);
    t_check(mild > s_ab && mild < 1, "ssim: correlated image between noise and identity", "%.4f", mild);
}

static void test_masked(void) {
    uint8_t a[W * H * 3], b[W * H * 3], mask[W * H];
    random_img(a, W, H, 4);
    memcpy(b, a, sizeof a);
    /* right half (x >= 12) differs by exactly 10 in every channel; mask = left half */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            mask[y * W + x] = x < 12;
            if (x >= 12)
                for (int c = 0; c < 3; c++) {
                    uint8_t *p = b + ((size_t)y * W + x) * 3 + c;
                    *p = *p < 128 ? *p + 10 : *p - 10;
                }
        }
    double in = mt_psnr(a, b, W, H, mask, MT_INSIDE), out = mt_psnr(a, b, W, H, mask, MT_OUTSIDE);
    double all = mt_psnr(a, b, W, H, mask, MT_ALL), want_out = 10 * log10(65025.0 / 100), want_all = 10 * log10(65025.0 / 50);
    t_check(in == MT_PSNR_MAX && fabs(out - want_out) < 1e-9 && fabs(all - want_all) < 1e-9, "masked psnr",
            "inside %.3f (identical), outside %.6f (want %.6f), all %.6f (want %.6f)", in, out, want_out, all, want_all);
    /* SSIM: the pixel-weighted means of inside and outside make the whole-frame mean */
    double si = mt_ssim(a, b, W, H, mask, MT_INSIDE), so = mt_ssim(a, b, W, H, mask, MT_OUTSIDE), sa = mt_ssim(a, b, W, H, NULL, MT_ALL);
    double mix = (si * 12 * H + so * 12 * H) / (W * H);
    t_check(fabs(mix - sa) < 1e-9 && si > so, "masked ssim: inside/outside recombine, inside closer",
            "inside %.6f outside %.6f all %.6f (recombined %.6f)", si, so, sa, mix);
    uint8_t none[W * H];
    memset(none, 0, sizeof none);
    t_check(isnan(mt_psnr(a, b, W, H, none, MT_INSIDE)) && isnan(mt_ssim(a, b, W, H, none, MT_INSIDE)) &&
                isnan(mt_clip_psnr(a, b, 1, W, H, NULL, MT_INSIDE)),
            "masked: empty selection / no mask -> NAN", " ");
}

static void test_clip(void) {
    enum { F = 3 };
    uint8_t *a = malloc((size_t)F * W * H * 3), *b = malloc((size_t)F * W * H * 3);
    fill(a, W, H * F, 100);
    memcpy(b, a, (size_t)F * W * H * 3);
    fill(b + (size_t)W * H * 3, W, H, 110); /* frame 1 differs: MSE 100 on 1 of 3 frames */
    double got = mt_clip_psnr(a, b, F, W, H, NULL, MT_ALL), want = 10 * log10(65025.0 / (100.0 / 3));
    t_check(fabs(got - want) < 1e-9, "clip psnr pools the MSE over frames", "%.6f, want %.6f", got, want);
    /* consistency of b: frames 100, 110, 100: each pair MSE 100 */
    got = mt_clip_consistency(b, F, W, H);
    want = 10 * log10(65025.0 / 100);
    t_check(fabs(got - want) < 1e-9 && mt_clip_consistency(a, F, W, H) == MT_PSNR_MAX && isnan(mt_clip_consistency(a, 1, W, H)),
            "consistency: mean consecutive-frame PSNR", "%.6f, want %.6f; static clip %.0f; 1 frame NAN", got, want, MT_PSNR_MAX);
    double s = mt_clip_ssim(a, b, F, W, H, NULL, MT_ALL), s1 = mt_ssim(a + (size_t)W * H * 3, b + (size_t)W * H * 3, W, H, NULL, MT_ALL);
    t_check(fabs(s - (2 + s1) / 3) < 1e-9, "clip ssim = mean over frames' pixels", "%.8f vs %.8f", s, (2 + s1) / 3);
    free(a);
    free(b);
}

int main(int argc, char **argv) {
    (void)argc;
    test_psnr();
    test_ssim();
    test_masked();
    test_clip();
    return t_summary(argv[0]);
}
