#include "diffusion/pipeline.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "diffusion/sampler.h"

int pipe_sched_config(ocd_sched_config *cfg, const char *json_text) {
    sched_config_default(cfg);
    if (!json_text) return 0;
    json_error_t err;
    json_t *o = json_loads(json_text, 0, &err);
    if (!o) return ocd_fail("scheduler config: %s (line %d)", err.text, err.line);
    int rc = sched_config_from_json(cfg, o);
    json_decref(o);
    return rc;
}

int pipe_init(pipe_ctx *p, sd_model *m, const ocd_sched_config *cfg) {
    memset(p, 0, sizeof *p);
    if (!m->unet || !m->vae || !m->text)
        return ocd_fail("the pipeline needs a UNet, a VAE and a text encoder; this model lacks the %s",
                        !m->unet ? "UNet" : !m->vae ? "VAE" : "text encoder");
    if (m->unet_cfg.in_ch != m->vae_cfg.latent_channels || m->unet_cfg.out_ch != m->unet_cfg.in_ch)
        return ocd_fail("the UNet (%d -> %d channels) does not fit the VAE's %d latent channels", m->unet_cfg.in_ch,
                        m->unet_cfg.out_ch, m->vae_cfg.latent_channels);
    if (m->unet_cfg.cross_dim != m->clip_cfg.hidden)
        return ocd_fail("the UNet's cross-attention width %d differs from the text encoder's %d", m->unet_cfg.cross_dim,
                        m->clip_cfg.hidden);
    ocd_sched_config c;
    if (cfg) c = *cfg;
    else if (pipe_sched_config(&c, m->files.scheduler_config)) return ocd_fail_context("%s", m->files.path ? m->files.path : "model");
    if (sched_init(&p->sched, &c)) return -1;
    p->m = m;
    p->scaling = m->vae_cfg.scaling_factor;
    return 0;
}

void pipe_free(pipe_ctx *p) {
    sched_free(&p->sched);
    memset(p, 0, sizeof *p);
}

int pipe_latent_channels(const pipe_ctx *p) { return p->m->unet_cfg.in_ch; }
int pipe_vae_factor(const pipe_ctx *p) { return vae_downscale(&p->m->vae_cfg); }

int pipe_encode_ids(pipe_ctx *p, const int32_t *ids, int B, float *emb) {
    return clip_encode(p->m->text, ids, B, emb);
}

int pipe_encode_prompt(pipe_ctx *p, const char *prompt, float *emb) {
    return sd_model_encode_prompt(p->m, prompt, emb);
}

void pipe_init_noise(uint64_t seed, float *lat, size_t n) { rng_normal(seed, PIPE_NOISE_STREAM, lat, n); }

/* The loop shared by sampling (invert = 0) and inversion (invert = 1). */
static int run_loop(pipe_ctx *p, const pipe_loop *L, const float *ctx_u, const float *ctx_c, float *lat, int h, int w,
                    int invert) {
    const ocd_schedule *s = L->sched ? L->sched : &p->sched;
    const unet_config *uc = &p->m->unet_cfg;
    if (L->steps < 1 || L->steps > OCD_MAX_STEPS || L->steps > s->T)
        return ocd_fail("steps must be in 1..%d, got %d", OCD_MAX_STEPS < s->T ? OCD_MAX_STEPS : s->T, L->steps);
    if (h < 1 || w < 1) return ocd_fail("bad latent size %dx%d", w, h);
    if (!ctx_c) return ocd_fail("no conditional text embedding");
    if (invert && L->solver != OCD_SOLVER_DDIM) return ocd_fail("inversion is implemented for DDIM only");
    int cfg = L->guidance != 1.0f;
    if (cfg && !ctx_u) return ocd_fail("guidance %g needs an unconditional embedding", L->guidance);

    /* the plan is ~16 KB: on the heap like every other buffer of the loop */
    ocd_plan *plan = malloc(sizeof *plan);
    if (!plan) return ocd_fail("out of memory");
    if (sched_plan(plan, s, invert ? OCD_SOLVER_DDIM : L->solver, L->steps)) { free(plan); return -1; }

    const int B = cfg ? 2 : 1, N = L->steps, n_ctx = p->m->clip_cfg.n_pos, D = uc->cross_dim;
    const size_t n = (size_t)uc->in_ch * h * w, nctx = (size_t)n_ctx * D;
    /* every buffer before the first step */
    float *x_in = malloc(sizeof(float) * n * B);       /* [B, C, h, w] the UNet's input */
    float *eps = malloc(sizeof(float) * n * B);        /* [B, C, h, w] its output */
    float *ctx = malloc(sizeof(float) * nctx * B);     /* [B, 77, D] = [uncond, cond] or [cond] */
    float *prev_x0 = malloc(sizeof(float) * n);        /* [C, h, w] DPM-Solver++ history */
    int rc = -1;
    if (!x_in || !eps || !ctx || !prev_x0) { ocd_fail("out of memory"); goto done; }
    if (cfg) memcpy(ctx, ctx_u, sizeof(float) * nctx);
    memcpy(ctx + (B - 1) * nctx, ctx_c, sizeof(float) * nctx);
    dpmpp_state st;
    dpmpp_init(&st, prev_x0, n);
    if (L->latents_traj) memcpy(L->latents_traj, lat, sizeof(float) * n);
    if (p->progress) progress_phase(p->progress, L->phase ? L->phase : invert ? "invert" : "sample", N);

    for (int i = 0; i < N; i++) {
        int k = invert ? N - 1 - i : i;   /* inversion walks the plan backwards: timesteps ascending */
        float t[2] = {(float)plan->timesteps[k], (float)plan->timesteps[k]};
        for (int b = 0; b < B; b++) memcpy(x_in + b * n, lat, sizeof(float) * n);
        if (unet_forward(p->m->unet, x_in, t, ctx, n_ctx, B, h, w, NULL, eps)) {
            ocd_fail_context("step %d/%d (t=%d)", i + 1, N, plan->timesteps[k]);
            goto done;
        }
        p->unet_calls++;
        if (cfg) cfg_combine(eps, eps + n, L->guidance, eps, n);
        if (L->eps_traj) memcpy(L->eps_traj + i * n, eps, sizeof(float) * n);
        if (L->timesteps) L->timesteps[i] = plan->timesteps[k];
        if ((invert ? sampler_invert_step(plan, k, lat, eps, lat, NULL, n)
                    : sampler_step(plan, &st, k, k + 1, lat, eps, lat, NULL, n)))
            goto done;
        if (L->latents_traj) memcpy(L->latents_traj + (i + 1) * n, lat, sizeof(float) * n);
        if (p->progress) progress_step(p->progress);
    }
    rc = 0;
done:
    free(plan); free(x_in); free(eps); free(ctx); free(prev_x0);
    return rc;
}

int pipe_sample(pipe_ctx *p, const pipe_loop *L, const float *ctx_u, const float *ctx_c, float *lat, int h, int w) {
    return run_loop(p, L, ctx_u, ctx_c, lat, h, w, 0);
}

int pipe_invert(pipe_ctx *p, const pipe_loop *L, const float *ctx_u, const float *ctx_c, float *lat, int h, int w) {
    return run_loop(p, L, ctx_u, ctx_c, lat, h, w, 1);
}

int pipe_vae_encode(pipe_ctx *p, const float *image, int H, int W, float *z0) {
    const vae_config *c = &p->m->vae_cfg;
    int f = vae_downscale(c);
    if (H % f || W % f || H < f || W < f) return ocd_fail("image %dx%d: sides must be positive multiples of %d", W, H, f);
    size_t n = (size_t)c->latent_channels * (H / f) * (W / f);
    float *logvar = malloc(sizeof(float) * n);   /* [C, h, w], unused: the mean is the latent */
    if (!logvar) return ocd_fail("out of memory");
    int rc = vae_encode(p->m->vae, image, H, W, z0, logvar);
    free(logvar);
    if (rc) return -1;
    for (size_t i = 0; i < n; i++) z0[i] *= p->scaling;
    return 0;
}

int pipe_vae_decode(pipe_ctx *p, const float *z, int h, int w, float *image) {
    size_t n = (size_t)p->m->vae_cfg.latent_channels * h * w;
    float *zs = malloc(sizeof(float) * n);   /* [C, h, w] z / scaling: the decoder's input */
    if (!zs) return ocd_fail("out of memory");
    for (size_t i = 0; i < n; i++) zs[i] = z[i] / p->scaling;
    int rc = vae_decode(p->m->vae, zs, h, w, image);
    free(zs);
    return rc;
}
