/* Text encoder and UNet against the PyTorch goldens, from the diffusers folder and from
 * the single LDM file (same weights, other names). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "io/model.h"
#include "nn/clip.h"
#include "nn/unet.h"
#include "nn/unet_internal.h"
#include "testlib.h"

static void check_text(model_files *m, const char *tag) {
    clip_config cc;
    char name[128];
    if ((m->text_config ? clip_config_from_json(&cc, m->text_config) : clip_config_infer(&cc, m->text)) != 0) {
        snprintf(name, sizeof name, "%s text config", tag);
        t_check(0, name, "%s", ocd_last_error());
        return;
    }
    clip_text *te = clip_new(&cc, m->text);
    snprintf(name, sizeof name, "%s text encoder load", tag);
    if (!t_check(te != NULL, name, "%s", te ? "ok" : ocd_last_error())) return;
    st_file *g = golden_open("text_encoder");
    const st_tensor *ids_t = st_find(g, "ids");
    int B = (int)ids_t->shape[0];
    int32_t *ids = malloc(sizeof(int32_t) * ids_t->numel);
    st_read_i32(ids_t, ids);
    float *out = malloc(sizeof(float) * B * 77 * cc.hidden);
    if (clip_encode(te, ids, B, out)) t_check(0, "clip_encode", "%s", ocd_last_error());
    else golden_check(g, "last_hidden_state", out, (size_t)B * 77 * cc.hidden);
    free(ids);
    free(out);
    clip_free(te);
    st_close(g);
}

static void check_unet_case(unet *u, const char *case_name) {
    st_file *g = golden_open(case_name);
    const st_tensor *lt = st_find(g, "latent"), *ct = st_find(g, "context");
    int B = (int)lt->shape[0], H = (int)lt->shape[2], W = (int)lt->shape[3], nc = (int)ct->shape[1];
    float *lat = golden_f32(g, "latent"), *ctx = golden_f32(g, "context"), *ts = golden_f32(g, "timestep");
    float *eps = malloc(sizeof(float) * lt->numel);
    if (unet_forward(u, lat, ts, ctx, nc, B, H, W, NULL, eps)) t_check(0, case_name, "%s", ocd_last_error());
    else golden_check(g, "eps", eps, (size_t)lt->numel);
    free(lat); free(ctx); free(ts); free(eps);
    st_close(g);
}

static void check_unet(model_files *m, const char *tag) {
    unet_config uc;
    char name[128];
    snprintf(name, sizeof name, "%s unet load", tag);
    if ((m->unet_config ? unet_config_from_json(&uc, m->unet_config) : unet_config_infer(&uc, m->unet)) != 0) {
        t_check(0, name, "%s", ocd_last_error());
        return;
    }
    unet *u = unet_new(&uc, m->unet);
    if (!t_check(u != NULL, name, "%s", u ? "ok" : ocd_last_error())) return;
    static const char *const cases[] = {"unet_b1", "unet_b2_cfg", "unet_b2_mixed", "unet_nonsquare", "unet_odd"};
    for (int i = 0; i < 5; i++) check_unet_case(u, cases[i]);
    /* a second call at the same size plans no new memory */
    int grows = unet_arena_grows(u);
    check_unet_case(u, "unet_odd");
    t_check(unet_arena_grows(u) == grows, "unet arena: no allocation on repeat", "arena %zu bytes, %d grows",
            unet_arena_bytes(u), unet_arena_grows(u));
    /* the feed-forward in blocks of 5 rows (ragged last block) gives the same eps, up to sgemm's
     * rounding (OpenBLAS picks its kernels by the row count) */
    {
        st_file *g = golden_open("unet_b2_cfg");
        const st_tensor *lt = st_find(g, "latent"), *ct = st_find(g, "context");
        int B = (int)lt->shape[0], H = (int)lt->shape[2], W = (int)lt->shape[3], nc = (int)ct->shape[1];
        float *lat = golden_f32(g, "latent"), *ctx = golden_f32(g, "context"), *ts = golden_f32(g, "timestep");
        float *e1 = malloc(sizeof(float) * lt->numel), *e2 = malloc(sizeof(float) * lt->numel);
        int rc = unet_forward(u, lat, ts, ctx, nc, B, H, W, NULL, e1);
        unet_set_ff_block(u, (size_t)5 * 12 * uc.block_out[uc.n_levels - 1]);
        rc = rc || unet_forward(u, lat, ts, ctx, nc, B, H, W, NULL, e2);
        unet_set_ff_block(u, 0);
        if (!rc) t_close("unet feed-forward in row blocks == whole", e2, e1, (size_t)lt->numel, 1e-5, 1e-5);
        else t_check(0, "unet feed-forward in row blocks == whole", "%s", ocd_last_error());
        free(lat); free(ctx); free(ts); free(e1); free(e2);
        st_close(g);
    }
    /* bf16 (AMX) against this fp32 build on the same inputs, then back to fp32 */
    {
        st_file *g = golden_open("unet_b2_cfg");
        const st_tensor *lt = st_find(g, "latent"), *ct = st_find(g, "context");
        int B = (int)lt->shape[0], H = (int)lt->shape[2], W = (int)lt->shape[3], nc = (int)ct->shape[1];
        float *lat = golden_f32(g, "latent"), *ctx = golden_f32(g, "context"), *ts = golden_f32(g, "timestep");
        float *e32 = malloc(sizeof(float) * lt->numel), *e16 = malloc(sizeof(float) * lt->numel);
        int rc = unet_forward(u, lat, ts, ctx, nc, B, H, W, NULL, e32) || unet_set_precision(u, 1) ||
                 unet_forward(u, lat, ts, ctx, nc, B, H, W, NULL, e16);
        double d2 = 0, r2 = 0;
        for (size_t i = 0; !rc && i < (size_t)lt->numel; i++) {
            d2 += ((double)e16[i] - e32[i]) * ((double)e16[i] - e32[i]);
            r2 += (double)e32[i] * e32[i];
        }
        snprintf(name, sizeof name, "%s unet bf16 vs fp32 (unet_b2_cfg)", tag);
        if (unet_precision_bf16(u))
            t_check(!rc && sqrt(d2 / r2) < 1e-2, name, "relative L2 error %.2e (< 1e-2), bf16 weights %.1f KiB",
                    sqrt(d2 / (r2 > 0 ? r2 : 1)), unet_bf16_weight_bytes(u) / 1024.0);
        else
            t_check(!rc, name, "no AMX-BF16 here: stayed fp32");
        rc = unet_set_precision(u, 0);
        t_check(!rc && !unet_precision_bf16(u), "unet back to fp32", "%s", rc ? ocd_last_error() : "ok");
        free(lat); free(ctx); free(ts); free(e32); free(e16);
        st_close(g);
    }
    unet_free(u);
}

int main(int argc, char **argv) {
    (void)argc;
    model_files m;
    if (!t_check(model_files_open(&m, TINY_SD) == 0, "open diffusers folder", "%s", TINY_SD)) return t_summary(argv[0]);
    check_text(&m, "folder");
    check_unet(&m, "folder");
    model_files_close(&m);
    if (!t_check(model_files_open(&m, TINY_SD_LDM) == 0, "open LDM single file", "%s", TINY_SD_LDM))
        return t_summary(argv[0]);
    /* 12 DDPM schedule buffers + the text encoder's position_ids buffer */
    t_check(m.n_ignored_keys == 13, "LDM file: extra keys ignored, counted", "%d ignored of %d keys", m.n_ignored_keys, m.n_keys);
    check_text(&m, "ldm");
    check_unet(&m, "ldm");
    model_files_close(&m);
    return t_summary(argv[0]);
}
