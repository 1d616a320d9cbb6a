/* ControlVideo pipeline (see controlvideo.h). */
#include "edit/controlvideo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "diffusion/sampler.h"
#include "edit/canny.h"
#include "kernels/kernels.h"

/* ControlVideo's resnets apply torch's GroupNorm to [b, c, f, h, w]: statistics over every frame
 * of the pass (per CFG half), in the UNet and in its ControlNet alike. Without UNet support for
 * that (unet_attn_hook.norm_frames), frames are normalised one by one: close to, but not,
 * ControlVideo's numbers; cv_clip_groupnorm() tells the caller which. */
#ifdef UNET_HAS_NORM_FRAMES
#define CV_NORM_FRAMES(n) (n)
#else
#define CV_NORM_FRAMES(n) 0
#endif

const char CV_POS_PROMPT[] =
    " ,best quality, extremely detailed, HD, ultra-realistic, 8K, HQ, masterpiece, trending on artstation, art, smooth";
const char CV_NEG_PROMPT[] =
    "longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, worst quality, "
    "low quality, deformed body, bloated, ugly, unrealistic";

void cv_default_params(cv_params *p) {
    memset(p, 0, sizeof *p);
    p->solver = OCD_SOLVER_DDIM;
    p->steps = 50;
    p->guidance = 12.5f;
    p->control_scale = 1.0f;
    p->n_smooth = 2;
    p->smooth_steps[0] = 19;
    p->smooth_steps[1] = 20;
}

const char *cv_smoother_note(void) {
    return "interleaved-frame smoother: RIFE weights cannot be loaded yet, so frames are interpolated in pixel space "
           "((a + b) / 2) and re-encoded with the VAE posterior mean";
}

int cv_key_frames(int F, int window, int *keys) {
    if (F < 1 || window < 2) return ocd_fail("hierarchical sampler: %d frames, window %d (needs >= 1 frame, window >= 2)", F, window);
    int n = 0;
    for (int k = 0; k < F; k += window - 1) keys[n++] = k;
    if (keys[n - 1] != F - 1) keys[n++] = F - 1;
    return n;
}

int cv_clip_groupnorm(void) { return CV_NORM_FRAMES(2) == 2; }

int cv_default_window(int F) {
    int w = (int)sqrt((double)F);
    return w < 2 ? 2 : w;
}

/* ------------------------------------------------------------------ attention hook */

int cv_attend(void *user, const unet_attn_call *c) {
    cv_hook_state *st = user;
    if (c->is_cross) return unet_attend_plain(c);
    const size_t blk = (size_t)c->Nk * c->C;
    const float *k = c->k, *v = c->v;   /* pair = 0: all items of the call, contiguous in list order */
    int nkv = c->batch;
    if (st->pair && c->batch > 2) {     /* positions 0 and batch-1 (with 2 items: already contiguous) */
        if (2 * blk * 2 > st->kv_buf_floats) return ocd_fail("controlvideo: attention buffer too small");
        float *kb = st->kv_buf, *vb = st->kv_buf + 2 * blk;
        memcpy(kb, c->k, sizeof(float) * blk);
        memcpy(kb + blk, c->k + (size_t)(c->batch - 1) * blk, sizeof(float) * blk);
        memcpy(vb, c->v, sizeof(float) * blk);
        memcpy(vb + blk, c->v + (size_t)(c->batch - 1) * blk, sizeof(float) * blk);
        k = kb, v = vb, nkv = 2;
    }
    k_attention(c->out, c->C, c->q + (size_t)c->b * c->Nq * c->C, c->C, k, c->C, v, c->C, c->Nq, nkv * c->Nk, c->heads,
                c->dh, c->scale, 0, c->scratch);
    st->extra_flops += 4.0 * c->Nq * (double)(nkv - 1) * c->Nk * c->C;   /* the UNet counts one frame's keys */
    return 0;
}

/* ------------------------------------------------------------------ conditions */

int cv_condition_canny(const ocd_video *src, float *cond) {
    const size_t plane = (size_t)src->w * src->h;
    for (int f = 0; f < src->n; f++)
        if (canny_condition(src->frames[f], src->w, src->h, cond + (size_t)f * 3 * plane)) return ocd_fail_context("frame %d", f);
    return 0;
}

int cv_condition_from_video(const ocd_video *v, int F, int W, int H, float *cond) {
    if (v->n != F)
        return ocd_fail("the condition clip has %d frame%s, the video has %d: they must match frame for frame", v->n,
                        v->n == 1 ? "" : "s", F);
    if (v->w != W || v->h != H)
        return ocd_fail("the condition clip is %dx%d, the frames are generated at %dx%d: give conditions of that size "
                        "(or of the input video's size)", v->w, v->h, W, H);
    const size_t plane = (size_t)W * H;
    for (int f = 0; f < F; f++)
        for (size_t i = 0; i < plane; i++)
            for (int ch = 0; ch < 3; ch++) cond[((size_t)f * 3 + ch) * plane + i] = v->frames[f][3 * i + ch] / 255.0f;
    return 0;
}

/* ------------------------------------------------------------------ sampling */

typedef struct {
    pipe_ctx *p;
    controlnet *cn;
    const cv_params *prm;
    int F, C, h, w, H, W, n_ctx, D, cond_ch;
    size_t n1;                 /* floats per latent frame C*h*w */
    const float *emb;          /* [2, n_ctx, D] */
    const float *cond;         /* [F, cond_ch, H, W] */
    float *x_in;               /* [F, C, h, w] gathered UNet / ControlNet input */
    float *cond_in;            /* [F, cond_ch, H, W] gathered conditions */
    float *t_in;               /* [F] */
    float *ctx_in;             /* [F, n_ctx, D] */
    float *eps_h[2];           /* [F, C, h, w] per CFG half, list order */
    cv_hook_state hook_st;
    cv_stats *st;
} cv_run;

/* eps_out[frames[j]] for j >= out_from = guided eps of the list `frames` (n items) at timestep t
 * on latents lat [F, C, h, w]; pair: the clips' attention (positions 0 and -1) else fully
 * cross-frame. */
static int run_pass(cv_run *r, const int *frames, int n, int out_from, int pair, int t, const float *lat, float *eps_out) {
    const cv_params *prm = r->prm;
    const int cfg = prm->guidance != 1.0f;
    const size_t nc = (size_t)r->cond_ch * r->H * r->W, nctx = (size_t)r->n_ctx * r->D;
    for (int j = 0; j < n; j++) {
        memcpy(r->x_in + j * r->n1, lat + (size_t)frames[j] * r->n1, sizeof(float) * r->n1);
        memcpy(r->cond_in + j * nc, r->cond + (size_t)frames[j] * nc, sizeof(float) * nc);
        r->t_in[j] = (float)t;
    }
    controlnet_out co;
    if (controlnet_out_alloc(&co, r->cn, n, r->h, r->w)) return -1;
    r->hook_st.pair = pair;
    unet_attn_hook hook = {.attend = cv_attend, .user = &r->hook_st, .kv_frames_max = pair ? 2 : n};
#ifdef UNET_HAS_NORM_FRAMES
    hook.norm_frames = n;   /* ControlVideo's GroupNorm runs on [b, c, f, h, w]: statistics over the list */
#endif
    int rc = -1;
    for (int half = cfg ? 0 : 1; half < 2; half++) {
        for (int j = 0; j < n; j++) memcpy(r->ctx_in + j * nctx, r->emb + half * nctx, sizeof(float) * nctx);
        double t0 = ocd_now();
        if (controlnet_forward(r->cn, r->x_in, r->t_in, r->ctx_in, r->n_ctx, n, r->h, r->w, r->cond_in, prm->control_scale, CV_NORM_FRAMES(n), &co))
            goto done;
        double t1 = ocd_now();
        r->hook_st.extra_flops = 0;
        unet_residuals res;
        controlnet_out_residuals(&co, &res);
#ifdef UNET_RES_MID_IN_PLACE
        res.mid_in_place = prm->residuals_asis;
#endif
        if (unet_forward_res(r->p->m->unet, r->x_in, r->t_in, r->ctx_in, r->n_ctx, n, r->h, r->w, &hook, &res, r->eps_h[half]))
            goto done;
        r->p->unet_calls++;
        if (r->st) {
            r->st->t_controlnet += t1 - t0;
            r->st->t_unet += ocd_now() - t1;
            r->st->unet_calls++;
            r->st->unet_frames += n;
            r->st->controlnet_frames += n;
            r->st->unet_flops += unet_last_flops(r->p->m->unet) + r->hook_st.extra_flops;
            r->st->controlnet_flops += controlnet_last_flops(r->cn);
        }
    }
    for (int j = out_from; j < n; j++) {
        float *e = eps_out + (size_t)frames[j] * r->n1;
        if (cfg) cfg_combine(r->eps_h[0] + j * r->n1, r->eps_h[1] + j * r->n1, prm->guidance, e, r->n1);
        else memcpy(e, r->eps_h[1] + j * r->n1, sizeof(float) * r->n1);
    }
    rc = 0;
done:
    controlnet_out_free(&co);
    return rc;
}

/* The interleaved-frame smoother (C.3) on the step's data prediction x0 [F, C, h, w]; writes the
 * smoothed latent at the step's target level into lat. i = the step index. */
static int smooth(cv_run *r, int i, float a_prev, const float *x0, const float *eps, float *lat) {
    const int F = r->F, H = r->H, W = r->W;
    const size_t px = (size_t)3 * H * W;
    float *fr = malloc(sizeof(float) * px * F);   /* [F, 3, H, W] in [0, 1] */
    if (!fr) return ocd_fail("out of memory");
    int rc = -1;
    if (cv_decode(r->p, x0, F, r->h, r->w, fr)) goto done;
    /* RIFE(a, b) stand-in: the pixel-space midpoint */
#define MIX(dst, a, b) do { for (size_t q = 0; q < px; q++) fr[(size_t)(dst) * px + q] = \
        0.5f * (fr[(size_t)(a) * px + q] + fr[(size_t)(b) * px + q]); } while (0)
    if (i % 2 == 0) { /* refresh odd frames from their even neighbours */
        for (int v = 0; 2 * v + 2 < F; v++) MIX(2 * v + 1, 2 * v, 2 * v + 2);
    } else {          /* refresh even frames: nb = [0] + odd + ([F-1] if F odd) */
        int nb[CV_MAX_FRAMES + 2], m = 0;
        nb[m++] = 0;
        for (int f = 1; f < F; f += 2) nb[m++] = f;
        if (F % 2) nb[m++] = F - 1;
        for (int v = 0; v + 1 < m && 2 * v < F; v++) MIX(2 * v, nb[v], nb[v + 1]);
    }
#undef MIX
    const float sa = sqrtf(a_prev), sb = sqrtf(1 - a_prev);
    float *img = malloc(sizeof(float) * px), *z = malloc(sizeof(float) * r->n1);
    if (!img || !z) { free(img); free(z); ocd_fail("out of memory"); goto done; }
    for (int f = 0; f < F; f++) {
        for (size_t q = 0; q < px; q++) img[q] = 2 * fr[(size_t)f * px + q] - 1;
        if (pipe_vae_encode(r->p, img, H, W, z)) { free(img); free(z); goto done; }
        for (size_t q = 0; q < r->n1; q++) lat[f * r->n1 + q] = sa * z[q] + sb * eps[f * r->n1 + q];
    }
    free(img);
    free(z);
    rc = 0;
done:
    free(fr);
    return rc;
}

static int check_inputs(pipe_ctx *p, controlnet *cn, const cv_params *prm, int F, int h, int w) {
    const unet_config *u = &p->m->unet_cfg, *t = &controlnet_get_config(cn)->trunk;
    if (prm->ocd) return ocd_fail("controlvideo: the OCD accelerations (token merging, object-centric sampling) are not built yet");
    if (F < 1 || F > CV_MAX_FRAMES) return ocd_fail("controlvideo: %d frames (1..%d)", F, CV_MAX_FRAMES);
    if (h < 1 || w < 1) return ocd_fail("controlvideo: bad latent size %dx%d", w, h);
    if (prm->steps < 1 || prm->steps > OCD_MAX_STEPS) return ocd_fail("controlvideo: steps must be in 1..%d", OCD_MAX_STEPS);
    if (prm->window == 1 || prm->window < 0) return ocd_fail("controlvideo: window %d (0 = off, else >= 2)", prm->window);
    if (prm->n_smooth < 0 || prm->n_smooth > CV_MAX_SMOOTH) return ocd_fail("controlvideo: at most %d smoother steps", CV_MAX_SMOOTH);
#ifndef UNET_RES_MID_IN_PLACE
    if (prm->residuals_asis)
        return ocd_fail("controlvideo: ControlVideo's as-published residual quirk needs UNet support (unet_residuals.mid_in_place), "
                        "which this build lacks");
#endif
    if (t->in_ch != u->in_ch || t->n_levels != u->n_levels || t->layers_per_block != u->layers_per_block ||
        t->cross_dim != u->cross_dim)
        return ocd_fail("the ControlNet (%d levels, %d layers, cross dim %d) does not fit the UNet (%d, %d, %d)", t->n_levels,
                        t->layers_per_block, t->cross_dim, u->n_levels, u->layers_per_block, u->cross_dim);
    for (int l = 0; l < u->n_levels; l++)
        if (t->block_out[l] != u->block_out[l])
            return ocd_fail("the ControlNet's level %d has %d channels, the UNet's %d", l, t->block_out[l], u->block_out[l]);
    return 0;
}

int cv_generate(pipe_ctx *p, controlnet *cn, const cv_params *prm, const float *emb, const float *cond, int F,
                const float *init_noise, int h, int w, float *lat, cv_stats *stats) {
    if (check_inputs(p, cn, prm, F, h, w)) return -1;
    const controlnet_config *cc = controlnet_get_config(cn);
    const unet_config *u = &p->m->unet_cfg;
    const int f8 = controlnet_cond_factor(cc), N = prm->steps;
    cv_run r = {.p = p, .cn = cn, .prm = prm, .F = F, .C = u->in_ch, .h = h, .w = w, .H = f8 * h, .W = f8 * w,
                .n_ctx = p->m->clip_cfg.n_pos, .D = u->cross_dim, .cond_ch = cc->cond_channels, .emb = emb, .cond = cond,
                .st = stats};
    r.n1 = (size_t)r.C * h * w;
    const size_t n = r.n1 * F;
    if (stats) memset(stats, 0, sizeof *stats);
    /* the hierarchical sampler's frame lists */
    int *keys = malloc(sizeof(int) * (F + 1)), *list = malloc(sizeof(int) * (F + 1)), nk = 0;
    /* largest Nk * C over the UNet's levels (sizes halve with ceil): the pair-mode K/V buffer */
    size_t kvmax = 0;
    for (int l = 0, hh = h, ww = w; l < u->n_levels; l++, hh = (hh + 1) / 2, ww = (ww + 1) / 2)
        kvmax = OCD_MAX(kvmax, (size_t)hh * ww * u->block_out[l]);
    r.hook_st.kv_buf_floats = 4 * kvmax;
    r.hook_st.kv_buf = malloc(sizeof(float) * r.hook_st.kv_buf_floats);
    r.x_in = malloc(sizeof(float) * n);
    r.cond_in = malloc(sizeof(float) * (size_t)F * r.cond_ch * r.H * r.W);
    r.t_in = malloc(sizeof(float) * F);
    r.ctx_in = malloc(sizeof(float) * (size_t)F * r.n_ctx * r.D);
    r.eps_h[0] = malloc(sizeof(float) * n);
    r.eps_h[1] = malloc(sizeof(float) * n);
    float *eps = malloc(sizeof(float) * n), *x0 = malloc(sizeof(float) * n), *prev_x0 = malloc(sizeof(float) * n);
    ocd_plan *plan = malloc(sizeof *plan);
    int rc = -1;
    if (!keys || !list || !r.hook_st.kv_buf || !r.x_in || !r.cond_in || !r.t_in || !r.ctx_in || !r.eps_h[0] || !r.eps_h[1] ||
        !eps || !x0 || !prev_x0 || !plan) {
        ocd_fail("out of memory");
        goto done;
    }
    if (sched_plan(plan, &p->sched, prm->solver, N)) goto done;
    if (prm->window && (nk = cv_key_frames(F, prm->window, keys)) < 0) goto done;
    dpmpp_state ds;
    dpmpp_init(&ds, prev_x0, n);
    for (int f = 0; f < F; f++) memcpy(lat + f * r.n1, init_noise, sizeof(float) * r.n1);
    if (prm->latents_traj) memcpy(prm->latents_traj, lat, sizeof(float) * n);
    if (p->progress) progress_phase(p->progress, "control", N);
    for (int i = 0; i < N; i++) {
        const int t = plan->timesteps[i];
        if (!prm->window) {
            for (int f = 0; f < F; f++) list[f] = f;
            if (run_pass(&r, list, F, 0, 0, t, lat, eps)) goto step_fail;
        } else {
            if (run_pass(&r, keys, nk, 0, 0, t, lat, eps)) goto step_fail;    /* (1) key frames together */
            for (int k = 0; k + 1 < nk; k++) {                                 /* (2) each clip between them */
                int m = 0;
                list[m++] = keys[k];
                list[m++] = keys[k + 1];   /* only in the clip's GroupNorm statistics; its output is dropped */
                for (int f = keys[k] + 1; f < keys[k + 1]; f++) list[m++] = f;
                if (m > 2 && run_pass(&r, list, m, 2, 1, t, lat, eps)) goto step_fail;
            }
        }
        if (prm->eps_traj) memcpy(prm->eps_traj + i * n, eps, sizeof(float) * n);
        if (prm->timesteps) prm->timesteps[i] = t;
        if (sampler_step(plan, &ds, i, i + 1, lat, eps, lat, x0, n)) goto done;
        for (int s = 0; s < prm->n_smooth; s++)
            if (prm->smooth_steps[s] > 0 && N - i == prm->smooth_steps[s]) {
                double t0 = ocd_now();
                if (smooth(&r, i, plan->alpha_bar_prev[i], x0, eps, lat)) goto step_fail;
                dpmpp_reset(&ds);   /* the multistep history no longer describes this latent */
                if (stats) stats->smoothed++, stats->t_smoother += ocd_now() - t0;
                break;
            }
        if (prm->latents_traj) memcpy(prm->latents_traj + (size_t)(i + 1) * n, lat, sizeof(float) * n);
        if (p->progress) progress_step(p->progress);
        continue;
    step_fail:
        ocd_fail_context("controlvideo step %d/%d (t=%d)", i + 1, N, t);
        goto done;
    }
    rc = 0;
done:
    free(keys); free(list); free(r.hook_st.kv_buf); free(r.x_in); free(r.cond_in); free(r.t_in); free(r.ctx_in);
    free(r.eps_h[0]); free(r.eps_h[1]); free(eps); free(x0); free(prev_x0); free(plan);
    return rc;
}

int cv_decode(pipe_ctx *p, const float *lat, int F, int h, int w, float *frames) {
    const int f8 = pipe_vae_factor(p), C = pipe_latent_channels(p);
    const size_t px = (size_t)3 * h * f8 * w * f8;
    for (int f = 0; f < F; f++) {
        float *img = frames + f * px;
        if (pipe_vae_decode(p, lat + (size_t)f * C * h * w, h, w, img)) return ocd_fail_context("decoding frame %d", f);
        for (size_t q = 0; q < px; q++) {
            float v = img[q] / 2 + 0.5f;
            img[q] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
    }
    return 0;
}
