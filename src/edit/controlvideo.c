/* ControlVideo pipeline (see controlvideo.h). */
#include "edit/controlvideo.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "diffusion/sampler.h"
#include "edit/canny.h"
#include "edit/ocs.h"
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
    /* the OCD accelerations: off; their values when switched on */
    p->ocd.tome_min_tokens = 64;
    p->ocd.ocs_phi = 4;
    p->ocd.ocs_blend = 0.5;
    p->ocd.ocs_pad = 2;
    p->ocd.ocs_max_area = 0.6;
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

/* The UNet level of a layer with an H-row grid in a pass on a lat_h-row latent (sizes halve with ceil). */
static int level_of(int lat_h, int H) {
    int l = 0;
    for (int s = lat_h; s > H && l < 7; s = (s + 1) / 2) l++;
    return l;
}

int cv_hook_plan_buffers(cv_hook_state *st, const unet_config *u, int n_frames, int h, int w) {
    const size_t tok = (size_t)n_frames * h * w;
    size_t kv = 0, sb = 0;
    for (int l = 0, hh = h, ww = w; l < u->n_levels; l++, hh = (hh + 1) / 2, ww = (ww + 1) / 2) {
        kv = OCD_MAX(kv, (size_t)n_frames * hh * ww * u->block_out[l]);
        sb = OCD_MAX(sb, tome_kv_scratch_bytes(&st->tp, hh, ww, n_frames, u->block_out[l]));
    }
    if (tok > 0x7fffffff) return ocd_fail("token merging: %zu tokens in one attention", tok);
    if (tome_plan_init(&st->plan, (int)tok) || !(st->dst = ocd_malloc(sizeof(int32_t) * tok)) || !(st->fg = ocd_malloc(tok)) ||
        !(st->tscratch = ocd_malloc(sb ? sb : 1)) || !(st->km = ocd_malloc(sizeof(float) * kv)) ||
        !(st->vm = ocd_malloc(sizeof(float) * kv))) {
        cv_hook_free(st);
        return -1;
    }
    st->tscratch_bytes = sb, st->kv_merged_floats = kv;
    st->plan_layer = -1, st->plan_k = NULL;
    return 0;
}

void cv_hook_free(cv_hook_state *st) {
    tome_plan_free(&st->plan);
    free(st->dst); free(st->fg); free(st->tscratch); free(st->km); free(st->vm);
    st->dst = NULL, st->fg = NULL, st->tscratch = NULL, st->km = st->vm = NULL;
    st->tscratch_bytes = st->kv_merged_floats = 0;
}

/* The call's plan over the n_kv frames of keys k (list positions pos[]; concatenated) and the
 * merged K/V (when the plan merges anything). */
static int make_plan(cv_hook_state *st, const unet_attn_call *c, const float *k, const float *v, int n_kv, const int *pos) {
    const int H = c->H, W = c->W, hw = H * W, cells = tome_n_cells(H, W, st->tp.sx, st->tp.sy);
    int fr[CV_MAX_FRAMES];
    const uint8_t *fg = NULL;
    for (int i = 0; i < n_kv; i++) {
        fr[i] = st->frames ? st->frames[pos[i]] : pos[i];
        if (tome_draw_dst(st->seed, c->timestep, c->layer, fr[i], H, W, st->tp.sx, st->tp.sy, st->dst + (size_t)i * cells)) return -1;
        if (st->mask && st->tp.lambda > 0.0f) {
            tome_pool_mask(st->mask + (size_t)fr[i] * st->mask_h * st->mask_w, st->mask_h, st->mask_w, H, W, st->fg + (size_t)i * hw);
            fg = st->fg;
        }
    }
    tome_plan *pl = &st->plan;
    if (tome_kv_plan(&st->tp, k, c->C, H, W, n_kv, st->dst, fg, st->tscratch, st->tscratch_bytes, pl)) return -1;
    const int lv = level_of(st->lat_h, H);
    st->tokens_in[lv] += pl->n_tok, st->tokens_merged[lv] += pl->n_tok - pl->n_out;
    if (pl->r > 0) {
        if ((size_t)pl->n_out * c->C > st->kv_merged_floats) return ocd_fail("controlvideo: merged K/V buffer too small");
        tome_merge_kv(pl, k, v, c->C, st->km, st->vm);
        st->plan_flops += 2.0 * pl->n_src * pl->n_dst * c->C;   /* the cosine products of the matching */
    }
    if (st->probe) st->probe(st->probe_user, c, n_kv, fr, pl, fg);
    st->plan_layer = c->layer, st->plan_k = c->k;
    return 0;
}

int cv_attend(void *user, const unet_attn_call *c) {
    cv_hook_state *st = user;
    if (c->is_cross) return unet_attend_plain(c);
    const size_t blk = (size_t)c->Nk * c->C;
    const float *k = c->k, *v = c->v;   /* pair = 0: all items of the call, contiguous in list order */
    int nkv = c->batch, pos[CV_MAX_FRAMES];
    if (st->pair && c->batch > 2) {     /* positions 0 and batch-1 (with 2 items: already contiguous) */
        if (2 * blk * 2 > st->kv_buf_floats) return ocd_fail("controlvideo: attention buffer too small");
        float *kb = st->kv_buf, *vb = st->kv_buf + 2 * blk;
        memcpy(kb, c->k, sizeof(float) * blk);
        memcpy(kb + blk, c->k + (size_t)(c->batch - 1) * blk, sizeof(float) * blk);
        memcpy(vb, c->v, sizeof(float) * blk);
        memcpy(vb + blk, c->v + (size_t)(c->batch - 1) * blk, sizeof(float) * blk);
        k = kb, v = vb, nkv = 2;
    }
    int Nk = nkv * c->Nk;
    if (st->merge) {
        /* one plan per call: made at item 0, the same keys for every item after it */
        if (c->b == 0 || st->plan_layer != c->layer || st->plan_k != c->k) {
            if (nkv > CV_MAX_FRAMES) return ocd_fail("controlvideo: %d frames in one attention (at most %d)", nkv, CV_MAX_FRAMES);
            for (int i = 0; i < nkv; i++) pos[i] = st->pair && i == 1 ? c->batch - 1 : i;   /* pair: positions 0 and -1 */
            if (make_plan(st, c, k, v, nkv, pos)) return -1;
        }
        if (st->plan.r > 0) k = st->km, v = st->vm, Nk = st->plan.n_out;   /* r = 0: K and V as they are */
    }
    unet_attention(c, c->q + (size_t)c->b * c->Nq * c->C, k, v, Nk);
    st->extra_flops += 4.0 * c->Nq * ((double)Nk - c->Nk) * c->C;   /* the UNet counts one frame's keys */
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

/* What a pass runs on: the full frame, or the Object-Centric Sampling crop. */
typedef struct {
    int h, w, H, W;            /* latent and condition size */
    size_t n1;                 /* floats per latent frame C*h*w */
    const float *cond;         /* [F, cond_ch, H, W] */
    controlnet_out co;         /* ControlNet residuals for up to F frames */
    const float *mask;         /* [F, h, w] foreground for OC-ToMe, NULL = none */
} cv_geom;

typedef struct {
    pipe_ctx *p;
    controlnet *cn;
    const cv_params *prm;
    int F, C, h, w, H, W, n_ctx, D, cond_ch;
    size_t n1;                 /* floats per full latent frame C*h*w */
    const float *emb;          /* [2, n_ctx, D] */
    cv_geom full, crop;
    const cv_geom *g;          /* the running pass's */
    int *keys, nk, *list;      /* the hierarchical sampler's key frames; a pass's frame list */
    float *x_in;               /* [F, C, h, w] gathered UNet / ControlNet input */
    float *cond_in;            /* [F, cond_ch, H, W] gathered conditions */
    float *t_in;               /* [F] */
    float *ctx_in;             /* [F, n_ctx, D] */
    float *eps_h[2];           /* [F, C, h, w] per CFG half, list order */
    float *sm_frames, *sm_img, *sm_z;   /* smoother: [F, 3, H, W], [3, H, W], [C, h, w] */
    cv_hook_state hook_st;
    cv_stats *st;
} cv_run;

/* Appends a fallback / decision to the stats' note ("; "-separated). */
static void note(cv_stats *st, const char *fmt, ...) OCD_PRINTF(2, 3);
static void note(cv_stats *st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ocd_note_vadd(st->note, sizeof st->note, fmt, ap);
    va_end(ap);
}

/* eps_out[frames[j]] for j >= out_from = guided eps of the list `frames` (n items) at timestep t
 * on latents lat [F, C, h, w] of the running geometry; pair: the clips' attention (positions 0
 * and -1) else fully cross-frame. */
static int run_pass(cv_run *r, const int *frames, int n, int out_from, int pair, int t, const float *lat, float *eps_out) {
    const cv_params *prm = r->prm;
    const cv_geom *g = r->g;
    const int cfg = prm->guidance != 1.0f;
    const size_t nc = (size_t)r->cond_ch * g->H * g->W, nctx = (size_t)r->n_ctx * r->D;
    for (int j = 0; j < n; j++) {
        memcpy(r->x_in + j * g->n1, lat + (size_t)frames[j] * g->n1, sizeof(float) * g->n1);
        memcpy(r->cond_in + j * nc, g->cond + (size_t)frames[j] * nc, sizeof(float) * nc);
        r->t_in[j] = (float)t;
    }
    controlnet_out co = g->co;   /* buffers for F frames serve any list of n <= F */
    co.B = n;
    cv_hook_state *hs = &r->hook_st;
    hs->pair = pair, hs->frames = frames, hs->lat_h = g->h;
    hs->mask = g->mask, hs->mask_h = g->h, hs->mask_w = g->w;
    unet_attn_hook hook = {.attend = cv_attend, .user = hs, .kv_frames_max = pair ? 2 : n};
#ifdef UNET_HAS_NORM_FRAMES
    hook.norm_frames = n;   /* ControlVideo's GroupNorm runs on [b, c, f, h, w]: statistics over the list */
#endif
    for (int half = cfg ? 0 : 1; half < 2; half++) {
        for (int j = 0; j < n; j++) memcpy(r->ctx_in + j * nctx, r->emb + half * nctx, sizeof(float) * nctx);
        double t0 = ocd_now();
        if (controlnet_forward(r->cn, r->x_in, r->t_in, r->ctx_in, r->n_ctx, n, g->h, g->w, r->cond_in, prm->control_scale,
                               CV_NORM_FRAMES(n), &co))
            return -1;
        double t1 = ocd_now();
        hs->extra_flops = 0;
        unet_residuals res;
        controlnet_out_residuals(&co, &res);
#ifdef UNET_RES_MID_IN_PLACE
        res.mid_in_place = prm->residuals_asis;
#endif
        if (unet_forward_res(r->p->m->unet, r->x_in, r->t_in, r->ctx_in, r->n_ctx, n, g->h, g->w, &hook, &res, r->eps_h[half]))
            return -1;
        r->p->unet_calls++;
        cv_stats *st = r->st;
        st->t_controlnet += t1 - t0;
        st->t_unet += ocd_now() - t1;
        st->unet_calls++;
        st->unet_frames += n;
        st->controlnet_frames += n;
        st->unet_flops += unet_last_flops(r->p->m->unet) + hs->extra_flops;
        st->controlnet_flops += controlnet_last_flops(r->cn);
    }
    for (int j = out_from; j < n; j++) {
        float *e = eps_out + (size_t)frames[j] * g->n1;
        if (cfg) cfg_combine(r->eps_h[0] + j * g->n1, r->eps_h[1] + j * g->n1, prm->guidance, e, g->n1);
        else memcpy(e, r->eps_h[1] + j * g->n1, sizeof(float) * g->n1);
    }
    return 0;
}

/* eps [F, C, h, w] = the guided eps of every frame at timestep t on lat (running geometry): one
 * fully cross-frame pass, or the hierarchical sampler's key-frame pass and clip passes. */
static int guided_eps(cv_run *r, int t, const float *lat, float *eps) {
    const int F = r->F;
    if (!r->prm->window) {
        for (int f = 0; f < F; f++) r->list[f] = f;
        if (run_pass(r, r->list, F, 0, 0, t, lat, eps)) return -1;
    } else {
        if (run_pass(r, r->keys, r->nk, 0, 0, t, lat, eps)) return -1;    /* (1) key frames together */
        for (int k = 0; k + 1 < r->nk; k++) {                             /* (2) each clip between them */
            int m = 0;
            r->list[m++] = r->keys[k];
            r->list[m++] = r->keys[k + 1];   /* only in the clip's GroupNorm statistics; its output is dropped */
            for (int f = r->keys[k] + 1; f < r->keys[k + 1]; f++) r->list[m++] = f;
            if (m > 2 && run_pass(r, r->list, m, 2, 1, t, lat, eps)) return -1;
        }
    }
    r->st->full_frame_evals += (double)r->g->h * r->g->w / ((double)r->h * r->w);
    return 0;
}

/* The interleaved-frame smoother (C.3) on the step's data prediction x0 [F, C, h, w]; writes the
 * smoothed latent at the step's target level into lat. i = the step index. */
static int smooth(cv_run *r, int i, float a_prev, const float *x0, const float *eps, float *lat) {
    const int F = r->F, H = r->H, W = r->W;
    const size_t px = (size_t)3 * H * W;
    float *fr = r->sm_frames, *img = r->sm_img, *z = r->sm_z;   /* [F, 3, H, W] in [0, 1], one frame, one latent */
    if (cv_decode(r->p, x0, F, r->h, r->w, fr)) return -1;
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
    for (int f = 0; f < F; f++) {
        for (size_t q = 0; q < px; q++) img[q] = 2 * fr[(size_t)f * px + q] - 1;
        if (pipe_vae_encode(r->p, img, H, W, z)) return -1;
        for (size_t q = 0; q < r->n1; q++) lat[f * r->n1 + q] = sa * z[q] + sb * eps[f * r->n1 + q];
    }
    return 0;
}

static int check_inputs(pipe_ctx *p, controlnet *cn, const cv_params *prm, int F, int h, int w) {
    const unet_config *u = &p->m->unet_cfg, *t = &controlnet_get_config(cn)->trunk;
    const cv_ocd_params *o = &prm->ocd;
    if (F < 1 || F > CV_MAX_FRAMES) return ocd_fail("controlvideo: %d frames (1..%d)", F, CV_MAX_FRAMES);
    if (h < 1 || w < 1) return ocd_fail("controlvideo: bad latent size %dx%d", w, h);
    if (prm->steps < 1 || prm->steps > OCD_MAX_STEPS) return ocd_fail("controlvideo: steps must be in 1..%d", OCD_MAX_STEPS);
    if (prm->window == 1 || prm->window < 0) return ocd_fail("controlvideo: window %d (0 = off, else >= 2)", prm->window);
    if (prm->n_smooth < 0 || prm->n_smooth > CV_MAX_SMOOTH) return ocd_fail("controlvideo: at most %d smoother steps", CV_MAX_SMOOTH);
    if (!(o->tome_ratio >= 0.0f && o->tome_ratio <= 1.0f) || o->tome_min_tokens < 0 || !(o->oc_tome_lambda >= 0.0f))
        return ocd_fail("controlvideo: bad token-merging settings (ratio %g in [0, 1], min tokens %d >= 0, lambda %g >= 0)",
                        o->tome_ratio, o->tome_min_tokens, o->oc_tome_lambda);
    if (o->ocs && (o->ocs_phi < 1 || !(o->ocs_blend >= 0 && o->ocs_blend <= 1) || o->ocs_pad < 0 || !(o->ocs_max_area >= 0)))
        return ocd_fail("controlvideo: bad OCS settings (phi %d >= 1, blend %g in [0, 1], pad %d >= 0, max area %g >= 0)", o->ocs_phi,
                        o->ocs_blend, o->ocs_pad, o->ocs_max_area);
    if (o->mask_dilate < 0) return ocd_fail("controlvideo: mask dilation %d < 0", o->mask_dilate);
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

/* Whether OCS runs: switched on, a mask given, then ocs_decide. Returns b and sets *box, or 0 with
 * the reason in the note. */
static int ocs_go(cv_run *r, const float *mask, ocs_box *box) {
    const cv_ocd_params *o = &r->prm->ocd;
    if (!o->ocs) return 0;
    if (!mask) { note(r->st, "OCS off: no foreground mask (give --mask): plain sampling"); return 0; }
    double area;
    const int b = ocs_decide(mask, r->F, r->h, r->w, r->prm->steps, o->ocs_blend, o->ocs_pad, r->p->m->unet_cfg.n_levels,
                             o->ocs_max_area, box, &area, r->st->note, sizeof r->st->note);
    if (b) r->st->ocs_area = area;
    return b;
}

static int step_failed(int i, int N, int t, const char *branch) {
    return ocd_fail_context("controlvideo step %d/%d (t=%d%s)", i + 1, N, t, branch);
}

int cv_generate(pipe_ctx *p, controlnet *cn, const cv_params *prm, const float *emb, const float *cond, int F,
                const float *init_noise, int h, int w, float *lat, cv_stats *stats) {
    if (check_inputs(p, cn, prm, F, h, w)) return -1;
    const controlnet_config *cc = controlnet_get_config(cn);
    const unet_config *u = &p->m->unet_cfg;
    const cv_ocd_params *o = &prm->ocd;
    const int f8 = controlnet_cond_factor(cc), N = prm->steps;
    cv_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    cv_run r = {.p = p, .cn = cn, .prm = prm, .F = F, .C = u->in_ch, .h = h, .w = w, .H = f8 * h, .W = f8 * w,
                .n_ctx = p->m->clip_cfg.n_pos, .D = u->cross_dim, .cond_ch = cc->cond_channels, .emb = emb, .st = stats};
    r.n1 = (size_t)r.C * h * w;
    const size_t n = r.n1 * F, hw = (size_t)h * w, ncond = (size_t)F * r.cond_ch * r.H * r.W;
    r.full = (cv_geom){.h = h, .w = w, .H = r.H, .W = r.W, .n1 = r.n1, .cond = cond};
    r.g = &r.full;
    cv_hook_state *hs = &r.hook_st;
    /* every buffer of the run is allocated here, before the first step */
    r.keys = malloc(sizeof(int) * (F + 1));
    r.list = malloc(sizeof(int) * (F + 1));
    /* largest Nk * C over the UNet's levels (sizes halve with ceil): the pair-mode K/V buffer */
    size_t kvmax = 0;
    for (int l = 0, hh = h, ww = w; l < u->n_levels; l++, hh = (hh + 1) / 2, ww = (ww + 1) / 2)
        kvmax = OCD_MAX(kvmax, (size_t)hh * ww * u->block_out[l]);
    hs->kv_buf_floats = 4 * kvmax;
    hs->kv_buf = malloc(sizeof(float) * hs->kv_buf_floats);
    r.x_in = malloc(sizeof(float) * n);
    r.cond_in = malloc(sizeof(float) * ncond);
    r.t_in = malloc(sizeof(float) * F);
    r.ctx_in = malloc(sizeof(float) * (size_t)F * r.n_ctx * r.D);
    r.eps_h[0] = malloc(sizeof(float) * n);
    r.eps_h[1] = malloc(sizeof(float) * n);
    float *eps = malloc(sizeof(float) * n), *x0 = malloc(sizeof(float) * n), *prev_x0 = malloc(sizeof(float) * n);
    ocd_plan *plan = malloc(sizeof *plan);
    /* the foreground mask (OC-ToMe, OCS): binarised at 0.5, dilated as asked */
    const int want_mask = o->mask && (o->ocs || (o->tome_ratio > 0.0f && o->oc_tome_lambda > 0.0f));
    float *mask = want_mask ? malloc(sizeof(float) * F * hw) : NULL, *mscratch = want_mask ? malloc(sizeof(float) * hw) : NULL;
    /* Object-Centric Sampling's branch latents, solver history, blend mask, cropped conditions and mask */
    float *zbg = NULL, *zc = NULL, *prev_c = NULL, *feather = NULL, *cond_c = NULL, *mask_c = NULL;
    int smooth_on = 0, rc = -1, b = 0;
    for (int s = 0; s < prm->n_smooth; s++) smooth_on |= prm->smooth_steps[s] >= 1 && prm->smooth_steps[s] <= N;
    if (smooth_on) {
        r.sm_frames = malloc(sizeof(float) * F * 3 * r.H * r.W);
        r.sm_img = malloc(sizeof(float) * 3 * r.H * r.W);
        r.sm_z = malloc(sizeof(float) * r.n1);
    }
    if (!r.keys || !r.list || !hs->kv_buf || !r.x_in || !r.cond_in || !r.t_in || !r.ctx_in || !r.eps_h[0] || !r.eps_h[1] ||
        !eps || !x0 || !prev_x0 || !plan || (want_mask && (!mask || !mscratch)) ||
        (smooth_on && (!r.sm_frames || !r.sm_img || !r.sm_z))) {
        ocd_fail("out of memory");
        goto done;
    }
    if (controlnet_out_alloc(&r.full.co, cn, F, h, w)) goto done;
    if (mask) {
        memcpy(mask, o->mask, sizeof(float) * F * hw);
        ocs_mask_binarize(mask, F, h, w, 0.5f);
        ocs_mask_dilate(mask, F, h, w, o->mask_dilate, mscratch);
    }
    /* 3D token merging (OC-ToMe's lambda only reorders what is merged: nothing at ratio 0) */
    hs->merge = o->tome_ratio > 0.0f;
    if (hs->merge) {
        tome_params_default(&hs->tp);
        hs->tp.ratio = o->tome_ratio, hs->tp.min_tokens = o->tome_min_tokens, hs->tp.lambda = o->oc_tome_lambda;
        hs->seed = o->tome_seed;
        hs->probe = prm->plan_probe, hs->probe_user = prm->plan_probe_user;
        if (cv_hook_plan_buffers(hs, u, F, h, w)) goto done;
        if (o->oc_tome_lambda > 0.0f) {
            if (mask) r.full.mask = mask;
            else note(stats, "Object-Centric ToMe: no foreground mask (give --mask): plain token merging");
        }
    }
    if (sched_plan(plan, &p->sched, prm->solver, N)) goto done;
    if (prm->window && (r.nk = cv_key_frames(F, prm->window, r.keys)) < 0) goto done;
    ocs_box box;
    if ((b = ocs_go(&r, mask, &box)) > 0) {
        const size_t ncc = (size_t)F * r.cond_ch * f8 * box.h * f8 * box.w;
        zbg = malloc(sizeof(float) * n), zc = malloc(sizeof(float) * n), prev_c = malloc(sizeof(float) * n);
        feather = malloc(sizeof(float) * F * hw), mask_c = malloc(sizeof(float) * F * hw), cond_c = malloc(sizeof(float) * ncc);
        if (!zbg || !zc || !prev_c || !feather || !mask_c || !cond_c) { ocd_fail("out of memory"); goto done; }
        /* the crop's conditions are the same box at the condition's resolution (f8 x the latent) */
        const ocs_box box8 = {box.y0 * f8, box.x0 * f8, box.h * f8, box.w * f8};
        ocs_crop(cond, F, r.cond_ch, r.H, r.W, &box8, cond_c);
        ocs_crop(mask, F, 1, h, w, &box, mask_c);
        r.crop = (cv_geom){.h = box.h, .w = box.w, .H = box8.h, .W = box8.w, .n1 = (size_t)r.C * box.h * box.w, .cond = cond_c,
                           .mask = r.full.mask ? mask_c : NULL};
        if (controlnet_out_alloc(&r.crop.co, cn, F, box.h, box.w)) goto done;
        for (int s = 0; s < prm->n_smooth; s++)
            if (prm->smooth_steps[s] >= N - b + 1 && prm->smooth_steps[s] <= N)
                note(stats, "smoother at step %d skipped: inside the OCS branches", N - prm->smooth_steps[s]);
    }

    dpmpp_state ds;
    dpmpp_init(&ds, prev_x0, n);
    for (int f = 0; f < F; f++) memcpy(lat + f * r.n1, init_noise, sizeof(float) * r.n1);
    if (prm->latents_traj) memcpy(prm->latents_traj, lat, sizeof(float) * n);
    if (p->progress) progress_phase(p->progress, "control", N);
    if (b > 0) {
        /* background branch: the full frame at steps 0, phi, 2 phi, ... of [0, b), each jumping to the next */
        memcpy(zbg, lat, sizeof(float) * n);
        for (int k = 0; k < b; k += o->ocs_phi) {
            const int kt = OCD_MIN(k + o->ocs_phi, b), t = plan->timesteps[k];
            if (guided_eps(&r, t, zbg, eps)) { step_failed(k, N, t, ", background branch"); goto done; }
            if (sampler_step(plan, &ds, k, kt, zbg, eps, zbg, NULL, n)) goto done;
            for (int j = k; j < kt; j++) {
                if (prm->eps_traj) memcpy(prm->eps_traj + j * n, eps, sizeof(float) * n);
                if (prm->timesteps) prm->timesteps[j] = plan->timesteps[j];
                if (prm->latents_traj) memcpy(prm->latents_traj + (size_t)(j + 1) * n, zbg, sizeof(float) * n);
            }
        }
        /* foreground branch: the crop, steps 0..b-1, its own solver history */
        const size_t nc = r.crop.n1 * F;
        dpmpp_state dc;
        dpmpp_init(&dc, prev_c, nc);
        ocs_crop(lat, F, r.C, h, w, &box, zc);
        r.g = &r.crop;
        for (int i = 0; i < b; i++) {
            const int t = plan->timesteps[i];
            if (guided_eps(&r, t, zc, eps)) { step_failed(i, N, t, ", foreground crop"); goto done; }
            if (sampler_step(plan, &dc, i, i + 1, zc, eps, zc, NULL, nc)) goto done;
            if (p->progress) progress_step(p->progress);
        }
        r.g = &r.full;
        /* blend at t_b: lat = M paste(z_fg) + (1 - M) z_bg, M feathered by one pixel; the history restarts */
        ocs_feather(mask, F, h, w, &box, feather);
        memcpy(lat, zbg, sizeof(float) * n);
        ocs_blend(lat, zc, feather, F, r.C, h, w, &box);
        if (prm->latents_traj) memcpy(prm->latents_traj + (size_t)b * n, lat, sizeof(float) * n);
        dpmpp_reset(&ds);
    }
    /* joint steps b..N-1 on the full frame (all steps without OCS) */
    for (int i = b; i < N; i++) {
        const int t = plan->timesteps[i];
        if (guided_eps(&r, t, lat, eps)) { step_failed(i, N, t, ""); goto done; }
        if (prm->eps_traj) memcpy(prm->eps_traj + i * n, eps, sizeof(float) * n);
        if (prm->timesteps) prm->timesteps[i] = t;
        if (sampler_step(plan, &ds, i, i + 1, lat, eps, lat, x0, n)) goto done;
        for (int s = 0; s < prm->n_smooth; s++)
            if (prm->smooth_steps[s] > 0 && N - i == prm->smooth_steps[s]) {
                double t0 = ocd_now();
                if (smooth(&r, i, plan->alpha_bar_prev[i], x0, eps, lat)) { step_failed(i, N, t, ", smoother"); goto done; }
                dpmpp_reset(&ds);   /* the multistep history no longer describes this latent */
                stats->smoothed++, stats->t_smoother += ocd_now() - t0;
                break;
            }
        if (prm->latents_traj) memcpy(prm->latents_traj + (size_t)(i + 1) * n, lat, sizeof(float) * n);
        if (p->progress) progress_step(p->progress);
    }
    rc = 0;
done:
    memcpy(stats->tokens_in, hs->tokens_in, sizeof stats->tokens_in);
    memcpy(stats->tokens_merged, hs->tokens_merged, sizeof stats->tokens_merged);
    stats->plan_flops = hs->plan_flops;
    cv_hook_free(hs);
    controlnet_out_free(&r.full.co);
    controlnet_out_free(&r.crop.co);
    free(r.keys); free(r.list); free(hs->kv_buf); free(r.x_in); free(r.cond_in); free(r.t_in); free(r.ctx_in);
    free(r.eps_h[0]); free(r.eps_h[1]); free(eps); free(x0); free(prev_x0); free(plan);
    free(r.sm_frames); free(r.sm_img); free(r.sm_z);
    free(mask); free(mscratch); free(zbg); free(zc); free(prev_c); free(feather); free(cond_c); free(mask_c);
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
