/* Edits that mean something, on the trained toy model (models/toy-sd): the bundled clip of a red
 * circle on grass edited to a blue circle. The object must turn blue in at least 7 of 8 frames,
 * and FateZero's attention fusion must keep the background closer to the source than plain
 * inversion + regeneration. Also: with guidance 1, target = source, no fusion and per-frame
 * attention, the video edit equals single-image reconstruction frame by frame. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "diffusion/pipeline.h"
#include "edit/fatezero.h"
#include "io/image.h"
#include "kernels/kernels.h"
#include "io/video.h"
#include "nn/sd_model.h"
#include "testlib.h"
#include "edit/toyjudge.h"

#define TOY_MODEL "models/toy-sd"
#define TOY_CLIP "examples/toy-clip"
#define S 64

/* The toy edit the README runs; tests/cli/edit.sh runs the same through `ocd edit`. */
static void toy_params(fz_params *p) {
    fz_default_params(p);
    p->source = "a red circle on green grass";
    p->target = "a blue circle on green grass";
    p->steps = 20;
    p->cfg = 5.0f;
    p->self_replace = 0.9;
    /* No blend words: the toy model's cross-attention is spatially flat (every normalised
     * "circle" score exceeds 0.9 at every level), so the blend mask would be all ones and
     * switch self-attention replacement off; full replacement keeps the background best. */
    p->least_sc_channel = 64;
}

static void to_rgb(const float *x, int F, uint8_t *rgb) {
    for (int f = 0; f < F; f++) image_from_f32(x + (size_t)f * 3 * S * S, S, S, rgb + (size_t)f * S * S * 3);
}

/* Returns frames that turned blue; bg PSNR (mean over frames) in *bg_psnr. */
static int judge(const char *label, const uint8_t *src, const uint8_t *out, int F, double *bg_psnr) {
    int blue = 0;
    double sum = 0;
    char colours[256] = "";
    uint8_t mask[S * S], keep[S * S];
    for (int f = 0; f < F; f++) {
        toy_object_colour(src + (size_t)f * S * S * 3, S, S, mask);
        toy_background_of(mask, S, S, 3, keep);
        int c = toy_object_colour(out + (size_t)f * S * S * 3, S, S, NULL);
        blue += c == TOY_BLUE;
        sum += toy_psnr_masked(src + (size_t)f * S * S * 3, out + (size_t)f * S * S * 3, S, S, keep);
        strncat(colours, c >= 0 ? toy_colour_names[c] : "none", sizeof colours - strlen(colours) - 2);
        strncat(colours, " ", sizeof colours - strlen(colours) - 1);
    }
    *bg_psnr = sum / F;
    printf("      %s: %d/%d blue, background PSNR %.2f dB; colours: %s\n", label, blue, F, *bg_psnr, colours);
    return blue;
}

/* Returns the fused edit's background PSNR (0 when it failed). */
static double toy_edit(sd_model *m, const float *frames, const uint8_t *src_rgb, int F) {
    fz_params p;
    float *out = malloc(sizeof(float) * F * 3 * S * S);
    uint8_t *rgb = malloc((size_t)F * S * S * 3);
    double bg_fused = 0, bg_plain = 0;
    int blue_fused = -1, blue_plain = -1;
    fz_report rep;

    toy_params(&p);
    if (fz_edit(m, frames, F, S, S, &p, out, &rep)) t_check(0, "toy edit (fusion)", "%s", ocd_last_error());
    else {
        to_rgb(out, F, rgb);
        blue_fused = judge("fusion", src_rgb, rgb, F, &bg_fused);
        printf("      fusion run: invert %.2f s, edit %.2f s, %d UNet calls, store %.2f MiB\n", rep.t_invert, rep.t_edit,
               rep.unet_calls, rep.store_ram_bytes / 1048576.0);
    }
    toy_params(&p);
    p.fusion = 0;
    if (fz_edit(m, frames, F, S, S, &p, out, &rep)) t_check(0, "toy edit (plain)", "%s", ocd_last_error());
    else {
        to_rgb(out, F, rgb);
        blue_plain = judge("plain inversion + regeneration", src_rgb, rgb, F, &bg_plain);
    }
    t_check(blue_fused >= 7, "toy edit: red -> blue circle", "%d of %d frames blue (need 7)", blue_fused, F);
    t_check(bg_fused > bg_plain, "toy edit: fusion keeps the background", "background PSNR %.2f dB with fusion, %.2f dB plain (plain: %d blue)",
            bg_fused, bg_plain, blue_plain);
    free(out);
    free(rgb);
    return bg_fused;
}

/* The same fused edit with the UNet and the VAE in bf16 (--precision bf16): the edit must still
 * succeed and keep the background about as well as fp32 (inversion is where rounding would
 * show: the reconstruction drifts). */
static void toy_edit_bf16(sd_model *m, const float *frames, const uint8_t *src_rgb, int F, double bg_fp32) {
    if (!k_bf16_available()) { t_check(1, "toy edit in bf16", "skipped: no AMX-BF16"); return; }
    if (unet_set_precision(m->unet, 1) || vae_set_precision(m->vae, 1)) { t_check(0, "toy edit in bf16", "%s", ocd_last_error()); return; }
    fz_params p;
    float *out = malloc(sizeof(float) * F * 3 * S * S);
    uint8_t *rgb = malloc((size_t)F * S * S * 3);
    double bg = 0;
    int blue = -1;
    toy_params(&p);
    if (fz_edit(m, frames, F, S, S, &p, out, NULL)) t_check(0, "toy edit (bf16)", "%s", ocd_last_error());
    else {
        to_rgb(out, F, rgb);
        blue = judge("fusion, bf16", src_rgb, rgb, F, &bg);
    }
    t_check(blue >= 7 && bg > bg_fp32 - 1.0, "toy edit in bf16: red -> blue, background within 1 dB of fp32",
            "%d of %d frames blue, background PSNR %.2f dB (fp32 %.2f dB)", blue, F, bg, bg_fp32);
    free(out);
    free(rgb);
    unet_set_precision(m->unet, 0);
    vae_set_precision(m->vae, 0);
}

/* --cfg 1, target = source, no fusion, per-frame attention == pipe_invert + pipe_sample per frame. */
static void reconstruction_equivalence(sd_model *m, const float *frames) {
    const int F = 2, steps = 8;
    fz_params p;
    toy_params(&p);
    p.target = p.source;
    p.cfg = 1.0f;
    p.fusion = 0;
    p.xframe = XF_SELF;
    p.clip_norm = 0; /* per-frame GroupNorm statistics, as single images have */
    p.steps = steps;
    float *out = malloc(sizeof(float) * F * 3 * S * S);
    if (fz_edit(m, frames, F, S, S, &p, out, NULL)) { t_check(0, "reconstruction equivalence", "%s", ocd_last_error()); free(out); return; }
    pipe_ctx pc;
    if (pipe_init(&pc, m, NULL)) { t_check(0, "pipe_init", "%s", ocd_last_error()); free(out); return; }
    const int h = S / 8, C = pipe_latent_channels(&pc);
    float *emb = malloc(sizeof(float) * 77 * m->clip_cfg.hidden), *z = malloc(sizeof(float) * C * h * h);
    float *img = malloc(sizeof(float) * 3 * S * S);
    double worst = 0;
    int ok = !pipe_encode_prompt(&pc, p.source, emb);
    for (int f = 0; ok && f < F; f++) {
        pipe_loop L = {.solver = OCD_SOLVER_DDIM, .steps = steps, .guidance = 1.0f};
        ok = !pipe_vae_encode(&pc, frames + (size_t)f * 3 * S * S, S, S, z) && !pipe_invert(&pc, &L, NULL, emb, z, h, h) &&
             !pipe_sample(&pc, &L, NULL, emb, z, h, h) && !pipe_vae_decode(&pc, z, h, h, img);
        for (int i = 0; ok && i < 3 * S * S; i++) {
            double d = img[i] - out[(size_t)f * 3 * S * S + i];
            if (d < 0) d = -d;
            if (d > worst) worst = d;
        }
    }
    t_check(ok && worst < 1e-4, "edit (cfg 1, no fusion, self) == reconstruct", "%s max abs diff %.3g over %d frames",
            ok ? "" : ocd_last_error(), worst, F);
    pipe_free(&pc);
    free(emb); free(z); free(img); free(out);
}

int main(int argc, char **argv) {
    (void)argc;
    sd_model m;
    if (!t_check(sd_model_load(&m, TOY_MODEL, 0) == 0, "load toy model", "%s", TOY_MODEL)) return t_summary(argv[0]);
    ocd_video v;
    if (!t_check(video_read(TOY_CLIP, 0, 1, 8, &v) == 0, "read toy clip", "%s", ocd_last_error())) {
        sd_model_free(&m);
        return t_summary(argv[0]);
    }
    float *frames = video_preprocess(&v, S);
    uint8_t *src_rgb = malloc((size_t)v.n * S * S * 3);
    to_rgb(frames, v.n, src_rgb);
    double dummy;
    int red = judge("source clip", src_rgb, src_rgb, v.n, &dummy);
    (void)red;
    reconstruction_equivalence(&m, frames);
    if (!t_quick()) { /* minutes under sanitizers: the plain run covers it */
        const double bg = toy_edit(&m, frames, src_rgb, v.n);
        toy_edit_bf16(&m, frames, src_rgb, v.n, bg);
    }
    free(frames);
    free(src_rgb);
    video_free(&v);
    sd_model_free(&m);
    return t_summary(argv[0]);
}
