/* ControlNet (nn/controlnet.h) and the canny annotator (edit/canny.h): the goldens
 * controlnet_forward, controlnet_forward_nonsquare (residuals + controlled UNet eps) and canny
 * (exact), both ControlNet file layouts (diffusers folder, control_model.* F16 single file:
 * same numbers), config inference from shapes, presets and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "edit/canny.h"
#include "nn/controlnet.h"
#include "nn/sd_model.h"
#include "testlib.h"

#define TINY_CN TEST_DATA "/tiny-controlnet"
#define TINY_CN_LDM TEST_DATA "/tiny-controlnet-ldm.safetensors"

static sd_model g_sd;

/* Runs a controlnet_forward* golden; returns the residuals (caller frees) for cross-checks. */
static void run_forward_golden(const char *name, controlnet_model *cm, const char *label, controlnet_out *keep) {
    st_file *g = golden_open(name);
    const st_tensor *lt = st_find(g, "latent"), *ct = st_find(g, "context");
    const int B = (int)lt->shape[0], h = (int)lt->shape[2], w = (int)lt->shape[3];
    float *lat = golden_f32(g, "latent"), *ts = golden_f32(g, "timestep"), *ctx = golden_f32(g, "context");
    float *cond = golden_f32(g, "cond"), *sc = golden_f32(g, "conditioning_scale");
    float *eps = malloc(sizeof(float) * B * 4 * h * w);
    controlnet_out co;
    char what[128];
    snprintf(what, sizeof what, "%s forward (%s)", name, label);
    if (controlnet_out_alloc(&co, cm->net, B, h, w) ||
        controlnet_forward(cm->net, lat, ts, ctx, (int)ct->shape[1], B, h, w, cond, sc[0], 0, &co)) {
        t_check(0, what, "%s", ocd_last_error());
    } else {
        t_check(co.n == 12, what, "%d down residuals", co.n);
        char rn[32];
        for (int i = 0; i < co.n; i++) {
            snprintf(rn, sizeof rn, "down_res_%d", i);
            golden_check(g, rn, co.down[i], (size_t)B * co.c[i] * co.h[i] * co.w[i]);
        }
        golden_check(g, "mid_res", co.mid, (size_t)B * co.mid_c * co.mid_h * co.mid_w);
        unet_residuals res;
        controlnet_out_residuals(&co, &res);
        if (unet_forward_res(g_sd.unet, lat, ts, ctx, (int)ct->shape[1], B, h, w, NULL, &res, eps))
            t_check(0, what, "unet: %s", ocd_last_error());
        else golden_check(g, "eps", eps, (size_t)B * 4 * h * w);
    }
    if (keep) *keep = co;
    else controlnet_out_free(&co);
    free(lat); free(ts); free(ctx); free(cond); free(sc); free(eps);
    st_close(g);
}

static void test_layouts(void) {
    controlnet_model a, b;
    if (controlnet_load(&a, TINY_CN, 0)) { t_check(0, "load diffusers ControlNet", "%s", ocd_last_error()); return; }
    if (controlnet_load(&b, TINY_CN_LDM, 0)) {
        t_check(0, "load control_model.* ControlNet", "%s", ocd_last_error());
        controlnet_model_free(&a);
        return;
    }
    t_check(!strcmp(a.config_source, "config.json"), "diffusers layout: config from config.json", "%s", a.config_source);
    t_check(!strcmp(b.config_source, "file metadata"), "single file: config from metadata", "%s", b.config_source);
    t_check(controlnet_params(&a) == 385144 && controlnet_params(&b) == 385144, "both layouts: 385,144 parameters",
            "%lld / %lld", (long long)controlnet_params(&a), (long long)controlnet_params(&b));
    t_check(b.files.n_ignored_keys == 0 && b.files.n_keys == 338, "single file: all 338 control_model.* keys mapped",
            "%d keys, %d unused", b.files.n_keys, b.files.n_ignored_keys);
    t_check(a.cfg.n_embed == 4 && a.cfg.embed[0] == 8 && a.cfg.embed[3] == 64 && a.cfg.trunk.groups == 8 && !a.cfg.bgr,
            "config: embedding widths 8..64, 8 groups, rgb", "n_embed %d groups %d", a.cfg.n_embed, a.cfg.trunk.groups);
    controlnet_out ra, rb;
    run_forward_golden("controlnet_forward", &a, "diffusers folder", &ra);
    run_forward_golden("controlnet_forward", &b, "control_model.* F16 file", &rb);
    double d = 0;
    for (int i = 0; i < ra.n; i++)
        for (size_t k = 0; k < (size_t)ra.B * ra.c[i] * ra.h[i] * ra.w[i]; k++) d = fmax(d, fabs(ra.down[i][k] - rb.down[i][k]));
    t_check(d == 0, "both layouts give identical residuals (F16 weights are exact)", "max diff %g", d);
    controlnet_out_free(&ra);
    controlnet_out_free(&rb);
    run_forward_golden("controlnet_forward_nonsquare", &a, "diffusers folder", NULL);

    /* config from shapes: everything but the GroupNorm groups (not in the shapes) */
    controlnet_config ci;
    int rc = controlnet_config_infer(&ci, a.files.unet);
    t_check(!rc && ci.n_embed == 4 && ci.embed[1] == 16 && ci.embed[2] == 32 && ci.cond_channels == 3 &&
                ci.trunk.n_levels == 4 && ci.trunk.block_out[1] == 32 && ci.trunk.cross_dim == 32 && ci.trunk.down_attn[2] &&
                !ci.trunk.down_attn[3] && ci.trunk.layers_per_block == 2,
            "config inferred from shapes", "%s", rc ? ocd_last_error() : "");

    /* residual buffers must fit the call */
    controlnet_out co;
    float x[2 * 4 * 8 * 8] = {0}, t[2] = {500, 500}, *ctx = calloc(2 * 77 * 32, sizeof(float)), *cond = calloc(2 * 3 * 64 * 64, sizeof(float));
    if (!controlnet_out_alloc(&co, a.net, 1, 8, 8)) {
        rc = controlnet_forward(a.net, x, t, ctx, 77, 1, 8, 8, cond, 1, 0, &co);  /* ok */
        t_check(rc == 0, "forward on a 64x64 condition", "%s", rc ? ocd_last_error() : "");
        rc = controlnet_forward(a.net, x, t, ctx, 77, 2, 8, 8, cond, 1, 0, &co);
        t_check(rc < 0 && strstr(ocd_last_error(), "allocated"), "residual buffers of another batch: error", "%s", ocd_last_error());
        controlnet_out_free(&co);
    }
    free(ctx);
    free(cond);
    controlnet_model_free(&a);
    controlnet_model_free(&b);
}

static void test_presets(void) {
    controlnet_config c;
    int rc = controlnet_config_preset(&c, "sd15");
    t_check(!rc && c.trunk.block_out[0] == 320 && c.trunk.block_out[3] == 1280 && c.embed[0] == 16 && c.embed[3] == 256 &&
                c.trunk.cross_dim == 768 && controlnet_cond_factor(&c) == 8,
            "preset sd15: SD 1.5 ControlNet shapes", "%s", rc ? ocd_last_error() : "");
    rc = controlnet_config_preset(&c, "xl");
    t_check(rc < 0, "unknown preset refused", "%s", ocd_last_error());
    controlnet_model m;
    if (controlnet_load(&m, "random:tiny", 3)) { t_check(0, "random:tiny ControlNet", "%s", ocd_last_error()); return; }
    controlnet_out co;
    float x[4 * 8 * 8], t[1] = {250}, *ctx = calloc(77 * 32, sizeof(float)), *cond = calloc(3 * 64 * 64, sizeof(float));
    for (int i = 0; i < 256; i++) x[i] = sinf((float)i);
    rc = controlnet_out_alloc(&co, m.net, 1, 8, 8) || controlnet_forward(m.net, x, t, ctx, 77, 1, 8, 8, cond, 0.5f, 0, &co);
    int finite = !rc;
    for (int i = 0; finite && i < 16 * 64; i++) finite = isfinite(co.down[0][i]);
    t_check(finite, "random:tiny ControlNet runs, finite residuals", "%s", rc ? ocd_last_error() : "");
    controlnet_out_free(&co);
    free(ctx);
    free(cond);
    controlnet_model_free(&m);
    rc = controlnet_load(&m, TEST_DATA "/no-such-controlnet", 0);
    t_check(rc < 0 && strstr(ocd_last_error(), "no-such-controlnet"), "missing ControlNet path: error names it", "%s",
            ocd_last_error());
    rc = controlnet_load(&m, TINY_SD_LDM, 0);
    t_check(rc < 0, "an SD checkpoint is not a ControlNet", "%s", ocd_last_error());
}

static void test_canny(void) {
    st_file *g = golden_open("canny");
    const st_tensor *im = st_find(g, "image");
    const int N = (int)im->shape[0], H = (int)im->shape[1], W = (int)im->shape[2];
    const size_t pl = (size_t)H * W;
    uint8_t *er = malloc(N * pl), *gr = malloc(N * pl), *eg = malloc(N * pl);
    for (int i = 0; i < N; i++) {
        const uint8_t *img = (const uint8_t *)im->data + i * pl * 3;
        canny_rgb_to_gray(img, W, H, gr + i * pl);
        canny_u8(img, W, H, 3, CANNY_LOW, CANNY_HIGH, er + i * pl);
        canny_u8(gr + i * pl, W, H, 1, CANNY_LOW, CANNY_HIGH, eg + i * pl);
    }
    static const char *const names[3] = {"edges_rgb", "gray", "edges_gray"};
    const uint8_t *got[3] = {er, gr, eg};
    for (int k = 0; k < 3; k++) {
        const st_tensor *t = st_find(g, names[k]);
        long diff = 0, on = 0;
        for (size_t i = 0; i < N * pl; i++) { diff += got[k][i] != ((const uint8_t *)t->data)[i]; on += got[k][i] == 255; }
        t_check(t && diff == 0, names[k], "exact: %ld of %zu pixels differ (%ld at 255)", diff, N * pl, on);
    }
    /* the condition: edges of the RGB picture, 3 channels, 0/1 */
    float *cond = malloc(sizeof(float) * 3 * pl);
    canny_condition((const uint8_t *)im->data, W, H, cond);
    int ok = 1;
    for (size_t i = 0; i < pl; i++) ok &= cond[i] == er[i] / 255.0f && cond[pl + i] == cond[i] && cond[2 * pl + i] == cond[i];
    t_check(ok, "canny_condition = edges_rgb / 255 on 3 channels", " ");
    /* swapped thresholds are swapped back; a flat picture has no edges */
    uint8_t *e2 = malloc(pl);
    canny_u8((const uint8_t *)im->data, W, H, 3, CANNY_HIGH, CANNY_LOW, e2);
    t_check(!memcmp(e2, er, pl), "thresholds given high, low: same edges", " ");
    uint8_t flat[16 * 16 * 3];
    memset(flat, 77, sizeof flat);
    canny_u8(flat, 16, 16, 3, 100, 200, e2);
    int none = 1;
    for (int i = 0; i < 256; i++) none &= e2[i] == 0;
    t_check(none, "flat picture: no edges", " ");
    int rc = canny_u8(flat, 0, 16, 3, 100, 200, e2);
    t_check(rc < 0, "empty picture refused", "%s", ocd_last_error());
    free(er); free(gr); free(eg); free(cond); free(e2);
    st_close(g);
}

int main(void) {
    if (sd_model_load(&g_sd, TINY_SD, 0)) { fprintf(stderr, "%s\n", ocd_last_error()); return 2; }
    test_canny();
    test_layouts();
    test_presets();
    sd_model_free(&g_sd);
    return t_summary("test_controlnet");
}
