/* FateZero pipeline: encode, DDIM inversion recording the attention store, editing with CFG and
 * attention fusion, decode (algorithms.md A; fixtures README "FateZero end to end"). */
#include "edit/fatezero.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/util.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "edit/ocs.h"
#include "edit/p2p.h"
#include "edit/tome.h"
#include "kernels/kernels.h"

#define FZ_MAX_RES 8   /* distinct token grids among the hooked layers */

enum { PH_NONE, PH_INVERT, PH_EDIT };

struct fz_ctx {
    sd_model *m;
    fz_params p;
    int F, H, W, h, w, N, lc, hidden, n_ctx;
    size_t lat;                    /* floats of one frame's latent: lc * h * w */
    ocd_schedule sched;
    int ts[OCD_MAX_STEPS];         /* DDIM timesteps, descending [N] */
    int n_layers;
    as_layer layers[AS_MAX_LAYERS];
    attn_store *store;
    p2p_tables *tab;               /* tables of the running edit */
    p2p_config pc;
    /* planned buffers */
    float *emb;                    /* [2F, n_ctx, hidden]: batch contexts */
    float *src_emb, *unc_emb, *tgt_emb; /* [n_ctx, hidden] */
    float *tvec;                   /* [2F] */
    float *xin, *eps, *z, *eps_g;  /* [F * lat] (the inversion's latent), [2F * lat], [F * lat], [F * lat] */
    float *P, *S;                  /* [heads * Nq * nk] of the largest hooked layer */
    float *kbuf, *vbuf;            /* cross-frame K/V gathers */
    float *store_scratch;
    float *bmaps;                  /* [AS_BLEND_LAYERS, heads * Nq0 * 77] blend-layer source maps of one frame */
    float *bscore;                 /* [F, Nq0] */
    float *mask_scratch;           /* [F * (Nq0 + max grid)] */
    int n_res, res_h[FZ_MAX_RES], res_w[FZ_MAX_RES];
    float *res_mask[FZ_MAX_RES];   /* [F, h, w] of the current step */
    int slot_res[AS_MAX_LAYERS];   /* hooked slot -> resolution index */
    int h0, w0, blend_heads;       /* blend layers' grid and heads */
    /* latent blending (A.9) */
    float *inv_traj;               /* [N+1, F * lat] */
    float *lb_sum;                 /* [F, Nq0] running target score */
    float *lb_mask, *lb_mask2;     /* [F, h, w] */
    uint8_t *need_cross, *need_blend, *need_self; /* [N] */
    /* solver (ocd-method.md 1): the editing plan; inversion runs the same levels backwards */
    ocd_plan plan;
    dpmpp_state st, st2;           /* DPM-Solver++ histories: full frame, crop */
    float *dpm_buf, *dpm_buf2;     /* [F * lat] each (DPM plans only) */
    /* K/V token merging (ocd-method.md 3-4) */
    int tome_on;
    tome_params tp;
    tome_plan_store *plans;        /* (timestep, layer, frame) -> plan, from the inversion */
    tome_plan tplan, cplan;        /* the call's plan; its restriction to the crop */
    int tok_max, c_max;            /* most window tokens of one self-attention call; widest layer */
    int32_t *dst;                  /* [tok_max] destination draws of a window's frames */
    uint8_t *fg;                   /* [tok_max] foreground of a window's tokens */
    int32_t *row_map, *rows, *keys;/* [tok_max] crop plan scratch, crop query rows, crop keys */
    float *mrow;                   /* [tok_max] crop rows of a self-blend mask */
    void *tscratch; size_t tscratch_bytes;
    float *km, *vm;                /* [tok_max * c_max] merged keys / values */
    double flop_adj;               /* attention flops of the running forward beyond the UNet's own count */
    fz_plan_probe probe; void *probe_user;
    /* foreground mask and Object-Centric Sampling (ocd-method.md 5) */
    float *mask;                   /* [F, h, w] 0/1, valid when mask_ready */
    int mask_ready, mask_from_blend, mask_k_end; /* blend-word mask: inversion steps [0, mask_k_end) */
    float *mask_acc;               /* [F, Nq0] blend-word score summed over those steps */
    int crop;                      /* the running forward is the foreground crop */
    ocs_box box;
    float *zc, *zbg, *feather;     /* [F * lat], [F * lat], [F, h, w] */
    /* run state */
    int phase, step;
    int branch0;                   /* CFG half of the running call's item 0 (editing runs the halves as two calls) */
    fz_report rep;
};

void fz_default_params(fz_params *p) {
    memset(p, 0, sizeof *p);
    p->negative = "";
    p->steps = 50;
    p->cfg = 7.5f;
    p->cross_replace = 0.8;
    p->self_replace = 0.6;
    p->blend_th = 0.3f;
    p->blend_level = -1;
    p->replace_mode = FZ_REPLACE_AUTO;
    p->xframe = XF_MID;
    p->least_sc_channel = 640;
    p->store_dtype = AS_F16;
    p->fusion = 1;
    p->clip_norm = 1;
    /* the accelerations: off (= the fatezero preset); their values when switched on */
    p->solver = OCD_SOLVER_DDIM;
    p->tome_ratio = 0.0f;
    p->tome_min_tokens = 64;
    p->tome_seed = 0;
    p->oc_tome_lambda = 0.0f;
    p->ocs = 0;
    p->ocs_phi = 4;
    p->ocs_blend = 0.5;
    p->ocs_pad = 2;
    p->ocs_max_area = 0.6;
    p->mask = NULL;
    p->mask_threshold = 0.3f;
    p->mask_dilate = 1;
}

/* Appends a fallback / decision to the report's note ("; "-separated). */
static void note(fz_ctx *c, const char *fmt, ...) OCD_PRINTF(2, 3);
static void note(fz_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ocd_note_vadd(c->rep.note, sizeof c->rep.note, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ attention hook */

static int has_blend(const fz_ctx *c) { return c->p.blend_words_src && *c->p.blend_words_src; }

/* out [Nq, C] = P [heads, Nq, Nk] . V [Nk, C] per head */
static void apply_v(float *out, const float *P, const float *v, int Nq, int Nk, int heads, int dh, int C) {
    for (int h = 0; h < heads; h++)
        k_gemm(0, 0, Nq, dh, Nk, 1.0f, P + (size_t)h * Nq * Nk, Nk, v + h * dh, C, 0.0f, out + h * dh, C);
}

static int is_blend_slot(const attn_store *s, int slot) {
    for (int i = 0; i < s->n_blend; i++)
        if (s->blend_slot[i] == slot) return 1;
    return 0;
}

/* The merge plan of a self-attention call (ocd-method.md 3): made in inversion from the source
 * keys of the call's window (each window frame's destinations drawn from (seed, timestep, layer,
 * frame); Object-Centric ToMe lowers the foreground sources' scores), stored under (timestep,
 * layer, frame) and reused verbatim by both CFG halves of that frame in editing; in the crop it is
 * restricted to the crop's tokens. */
static int merge_plan(fz_ctx *c, const unet_attn_call *call, const as_layer *L, int f, int nkv, const float *k,
                      const ocs_box *cb, const tome_plan **out) {
    const int t = call->timestep, Hf = L->H, Wf = L->W;
    if (c->phase == PH_INVERT) {
        int kv[XF_MAX_KV];
        xf_kv_frames(c->p.xframe, c->p.least_sc_channel, c->F, f, L->C, kv);
        const int cells = tome_n_cells(Hf, Wf, c->tp.sx, c->tp.sy), hw = c->h * c->w;
        const uint8_t *fg = NULL;
        for (int i = 0; i < nkv; i++) {
            if (tome_draw_dst(c->p.tome_seed, t, call->layer, kv[i], Hf, Wf, c->tp.sx, c->tp.sy, c->dst + (size_t)i * cells))
                return -1;
            if (c->tp.lambda > 0.0f && c->mask_ready) {
                tome_pool_mask(c->mask + (size_t)kv[i] * hw, c->h, c->w, Hf, Wf, c->fg + (size_t)i * Hf * Wf);
                fg = c->fg;
            }
        }
        if (tome_kv_plan(&c->tp, k, call->C, Hf, Wf, nkv, c->dst, fg, c->tscratch, c->tscratch_bytes, &c->tplan) ||
            tome_store_put(c->plans, t, call->layer, f, &c->tplan))
            return -1;
        *out = &c->tplan;
        return 0;
    }
    const int rc = tome_store_get(c->plans, t, call->layer, f, &c->tplan);
    if (rc < 0) return -1;
    if (!rc)
        return ocd_fail("token merging: no plan from the inversion for timestep %d, layer %d, frame %d (editing must run on "
                        "the inversion's timesteps)", t, call->layer, f);
    if (!c->crop) { *out = &c->tplan; return 0; }
    if (ocs_crop_plan(&c->tplan, cb, nkv, Hf, Wf, c->row_map, &c->cplan)) return -1;
    *out = &c->cplan;
    return 0;
}

static int fz_attend(void *user, const unet_attn_call *call) {
    fz_ctx *c = user;
    if (call->layer < 0 || call->layer >= c->n_layers) return ocd_fail("fatezero: unexpected attention layer %d", call->layer);
    const as_layer *L = &c->layers[call->layer];
    const int F = c->F, f = call->b % F, branch = c->branch0 + call->b / F;
    const float *k = call->k + (size_t)call->b * call->Nk * call->C, *v = call->v + (size_t)call->b * call->Nk * call->C;
    int nkv = 1;
    if (!call->is_cross) {
        nkv = xf_gather_kv(call, c->p.xframe, c->p.least_sc_channel, F, c->kbuf, c->vbuf, &k, &v);
        if (nkv < 0) return -1;
    }
    int Nk = nkv * call->Nk;
    const int Nq = call->Nq, C = call->C, heads = call->heads, dh = call->dh;
    const float *q = call->q + (size_t)call->b * Nq * C;
    /* the foreground crop at this level: its tokens are a block of the layer's full grid */
    ocs_box cb = {0, 0, 0, 0};
    if (c->crop) {
        cb = ocs_box_level(&c->box, L->level);
        if (cb.h != call->H || cb.w != call->W)
            return ocd_fail("OCS: layer %d sees a %dx%d crop, planned %dx%d", call->layer, call->H, call->W, cb.h, cb.w);
    }
    const tome_plan *plan = NULL;
    if (!call->is_cross && c->tome_on) {
        if (merge_plan(c, call, L, f, nkv, k, &cb, &plan)) return -1;
        if (c->probe) c->probe(c->probe_user, c->phase == PH_INVERT ? 0 : 1 + branch, call, f, nkv, plan);
        c->rep.tokens_in[L->level & 7] += Nk;
        c->rep.tokens_merged[L->level & 7] += Nk - plan->n_out;
        if (plan->r > 0) { /* r = 0: the identity layout, K and V as they are */
            tome_merge_kv(plan, k, v, C, c->km, c->vm);
            k = c->km, v = c->vm, Nk = plan->n_out;
        } else plan = NULL;
    }
    if (!call->is_cross) c->flop_adj += 4.0 * Nq * ((double)Nk - call->Nk) * C; /* the UNet counts Nk = own frame */
    int explicit_map = 0, edit = 0, lb = 0;
    const as_entry *e = NULL;
    if (L->hooked && c->store) {
        if (c->phase == PH_INVERT) {
            e = attn_store_entry(c->store, c->step, L->slot, call->is_cross);
            explicit_map = e && e->kind == AS_MAP;
        } else if (c->phase == PH_EDIT && branch == 1) { /* the cond half only */
            const int i = c->step;
            edit = call->is_cross ? c->tab->cross_active[i] : p2p_self_active(c->tab, i);
            lb = c->p.latent_blend && !c->crop && call->is_cross && is_blend_slot(c->store, L->slot);
            explicit_map = edit || lb;
        }
    }
    if (!explicit_map) {
        unet_attention(call, q, k, v, Nk);
        if (e && attn_store_record(c->store, c->step, call, NULL)) return -1;
        return 0;
    }
    /* hooked layer, maps materialised for this one item: [heads, Nq, Nk] */
    float *P = c->P;
    as_softmax_map(q, C, k, C, Nq, Nk, heads, dh, call->scale, P);
    if (c->phase == PH_INVERT) {
        if (attn_store_record(c->store, c->step, call, P)) return -1;
    } else {
        const int i = c->step;
        if (lb) { /* running sum of the edit's own cond cross maps (before replacement), target words */
            const float *mp[1] = {P};
            p2p_blend_score(mp, 1, heads, Nq, c->tab->blend_alpha[1], c->lb_sum + (size_t)f * Nq, 1);
        }
        if (edit) {
            /* the source map in this call's layout: the crop's rows and keys, the merged keys */
            as_view vw = {NULL, 0, NULL, 0, plan};
            if (c->crop) {
                ocs_box_tokens(&cb, 1, L->H, L->W, c->rows);
                vw.rows = c->rows, vw.n_rows = Nq;
                if (!call->is_cross) {
                    ocs_box_tokens(&cb, nkv, L->H, L->W, c->keys);
                    vw.keys = c->keys, vw.n_keys = nkv * Nq;
                }
            }
            if (attn_store_map_view(c->store, c->N - 1 - i, L->slot, call->is_cross, f, &vw, c->S, c->store_scratch)) return -1;
            if (call->is_cross) p2p_cross_edit(c->tab, i, c->S, P, heads, Nq);
            else {
                const float *M = NULL;
                if (c->tab->has_blend) {
                    const int r = c->slot_res[L->slot];
                    M = c->res_mask[r] + (size_t)f * L->H * L->W;
                    if (c->crop) {
                        for (int j = 0; j < Nq; j++) c->mrow[j] = M[c->rows[j]];
                        M = c->mrow;
                    }
                }
                p2p_self_blend(M, c->S, P, heads, Nq, Nk);
            }
        }
    }
    apply_v(call->out, P, v, Nq, Nk, heads, dh, C);
    return 0;
}

/* ------------------------------------------------------------ blend masks */

/* bscore [F, Nq0] = source blend-word score of inversion step k (A.8), words `alpha`. */
static int blend_score(fz_ctx *c, int k, const float *alpha) {
    const attn_store *s = c->store;
    const size_t per = (size_t)c->blend_heads * c->h0 * c->w0 * P2P_T;
    const float *mp[AS_BLEND_LAYERS];
    for (int f = 0; f < c->F; f++) {
        for (int l = 0; l < s->n_blend; l++) {
            if (attn_store_map(s, k, s->blend_slot[l], 1, f, c->bmaps + l * per, c->store_scratch)) return -1;
            mp[l] = c->bmaps + l * per;
        }
        p2p_blend_score(mp, s->n_blend, c->blend_heads, c->h0 * c->w0, alpha, c->bscore + (size_t)f * c->h0 * c->w0, 0);
    }
    return 0;
}

/* The self-attention masks of editing step i at every hooked resolution. */
static int step_masks(fz_ctx *c, int i) {
    if (blend_score(c, c->N - 1 - i, c->tab->blend_alpha[0])) return -1;
    for (int r = 0; r < c->n_res; r++)
        p2p_blend_mask(c->bscore, c->F, c->h0, c->w0, c->res_h[r], c->res_w[r], c->tab->blend_th, c->res_mask[r],
                       c->mask_scratch);
    return 0;
}

int fz_blend_mask(fz_ctx *c, int step, int h, int w, float *mask) {
    if (!c->store || !has_blend(c)) return ocd_fail("fz_blend_mask: no blend words or no recorded inversion");
    if (step < 0 || step >= c->N) return ocd_fail("fz_blend_mask: step %d out of range", step);
    if (h > c->h || w > c->w) return ocd_fail("fz_blend_mask: grid %dx%d larger than the latent", h, w);
    if (!c->tab->has_blend && !fz_tables(c, c->p.target)) return -1;
    const as_entry *e = attn_store_entry(c->store, c->N - 1 - step, c->store->blend_slot[0], 1);
    if (!e) return ocd_fail("fz_blend_mask: editing step %d uses no blend mask (not stored)", step);
    if (blend_score(c, c->N - 1 - step, c->tab->blend_alpha[0])) return -1;
    p2p_blend_mask(c->bscore, c->F, c->h0, c->w0, h, w, c->tab->blend_th, mask, c->mask_scratch);
    return 0;
}

/* ------------------------------------------------------------ context */

static void progress(const fz_ctx *c, const char *phase, int step, int total) {
    if (c->p.progress) c->p.progress(c->p.progress_user, phase, step, total);
}

static void fill_p2p_config(fz_ctx *c) {
    p2p_config *pc = &c->pc;
    memset(pc, 0, sizeof *pc);
    pc->steps = c->N;
    pc->cross_lo = 0.0, pc->cross_hi = c->p.cross_replace;
    pc->n_cross_words = c->p.n_cross_words;
    for (int k = 0; k < c->p.n_cross_words; k++) {
        pc->cross_word[k] = c->p.cross_words[k].word;
        pc->cross_word_lo[k] = c->p.cross_words[k].lo;
        pc->cross_word_hi[k] = c->p.cross_words[k].hi;
    }
    pc->self_lo = 0.0, pc->self_hi = c->p.self_replace;
    pc->replace_mode = c->p.replace_mode == FZ_REPLACE_REPLACE ? 2 : 1;
    pc->n_reweight = c->p.n_reweight;
    for (int k = 0; k < c->p.n_reweight; k++)
        pc->reweight_word[k] = c->p.reweight[k].word, pc->reweight_value[k] = c->p.reweight[k].value;
    pc->blend_words_src = c->p.blend_words_src;
    pc->blend_words_tgt = c->p.blend_words_tgt;
    pc->blend_th = c->p.blend_th;
}

/* Latent-blend window (A.9): after editing step i, counter i+1 strictly inside (int(0.2N), int(0.8N)). */
static int lb_active(const fz_ctx *c, int i) {
    const int cnt = i + 1;
    return c->p.latent_blend && cnt > (int)(0.2 * c->N) && cnt < (int)(0.8 * c->N);
}

/* Buffers of the accelerations (solver history, token merging, masks, OCS), all sized here so that
 * the step loops allocate nothing (the plan store grows in blocks while the inversion fills it). */
static int plan_accel(fz_ctx *c) {
    const fz_params *p = &c->p;
    const size_t n = (size_t)c->F * c->lat, hw = (size_t)c->h * c->w;
    if (!(p->tome_ratio >= 0.0f && p->tome_ratio <= 1.0f)) return ocd_fail("fatezero: tome_ratio %g is not in [0, 1]", p->tome_ratio);
    if (p->tome_min_tokens < 0 || !(p->oc_tome_lambda >= 0.0f)) return ocd_fail("fatezero: bad token-merging settings");
    if (p->ocs && (p->ocs_phi < 1 || !(p->ocs_blend >= 0 && p->ocs_blend <= 1) || p->ocs_pad < 0 || !(p->ocs_max_area >= 0)))
        return ocd_fail("fatezero: bad OCS settings (phi %d >= 1, blend %g in [0, 1], pad %d >= 0)", p->ocs_phi, p->ocs_blend, p->ocs_pad);
    if (p->mask_dilate < 0) return ocd_fail("fatezero: mask_dilate %d < 0", p->mask_dilate);
    if (c->plan.solver == OCD_SOLVER_DPMPP_2M &&
        (!(c->dpm_buf = ocd_malloc(sizeof(float) * n)) || !(c->dpm_buf2 = ocd_malloc(sizeof(float) * n))))
        return -1;
    const int want_mask = p->ocs || p->oc_tome_lambda > 0.0f;
    if (want_mask && !(c->mask = ocd_calloc(hw * c->F, sizeof(float)))) return -1;
    /* the blend-word mask (5.1): inversion cross maps of the first half of the inversion steps */
    c->mask_from_blend = want_mask && !p->mask && has_blend(c) && p->fusion;
    c->mask_k_end = (c->N + 1) / 2;
    if (c->mask_from_blend)
        for (int k = 0; k < c->mask_k_end; k++) c->need_blend[k] = 1;
    if (p->ocs && (!(c->zc = ocd_malloc(sizeof(float) * n)) || !(c->zbg = ocd_malloc(sizeof(float) * n)) ||
                   !(c->feather = ocd_malloc(sizeof(float) * hw * c->F))))
        return -1;
    c->tome_on = p->tome_ratio > 0.0f || p->oc_tome_lambda > 0.0f;
    /* window tokens and widths of the self-attention calls (also the crop's lists and masks) */
    const int kvf = xf_max_kv(p->xframe, c->F);
    tome_params_default(&c->tp);
    c->tp.ratio = p->tome_ratio, c->tp.min_tokens = p->tome_min_tokens, c->tp.lambda = p->oc_tome_lambda;
    for (int i = 0; i < c->n_layers; i++) {
        const as_layer *l = &c->layers[i];
        const int tok = kvf * l->H * l->W;
        if (tok > c->tok_max) c->tok_max = tok;
        if (l->C > c->c_max) c->c_max = l->C;
        const size_t sb = tome_kv_scratch_bytes(&c->tp, l->H, l->W, kvf, l->C);
        if (sb > c->tscratch_bytes) c->tscratch_bytes = sb;
    }
    if (p->ocs || c->tome_on) {
        const size_t tm = (size_t)c->tok_max;
        if (!(c->rows = ocd_malloc(sizeof(int32_t) * tm)) || !(c->keys = ocd_malloc(sizeof(int32_t) * tm)) ||
            !(c->mrow = ocd_malloc(sizeof(float) * tm)))
            return -1;
    }
    if (!c->tome_on) return 0;
    const size_t tm = (size_t)c->tok_max;
    /* room for every plan of the inversion (step x layer x frame, indices of at most 2 x tokens),
     * so that the inversion loop allocates nothing */
    size_t plan_bytes = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const size_t tok = (size_t)kvf * c->layers[i].H * c->layers[i].W;
        plan_bytes += (size_t)c->N * c->F * (2 * tok * (tok > 32768 ? 4 : 2) + 16);
    }
    if (!(c->plans = tome_store_new()) || tome_store_reserve(c->plans, c->N * c->n_layers * c->F, plan_bytes) ||
        tome_plan_init(&c->tplan, c->tok_max) || tome_plan_init(&c->cplan, c->tok_max) ||
        !(c->dst = ocd_malloc(sizeof(int32_t) * tm)) || !(c->fg = ocd_malloc(tm)) ||
        !(c->row_map = ocd_malloc(sizeof(int32_t) * tm)) || !(c->tscratch = ocd_malloc(c->tscratch_bytes ? c->tscratch_bytes : 1)) ||
        !(c->km = ocd_malloc(sizeof(float) * tm * c->c_max)) || !(c->vm = ocd_malloc(sizeof(float) * tm * c->c_max)))
        return -1;
    return 0;
}

fz_ctx *fz_new(sd_model *m, const fz_params *p, int F, int H, int W) {
    if (!m || !p || !m->unet || !m->vae || !m->text || !m->tok) { ocd_fail("fatezero: the model needs a UNet, a VAE and a text encoder"); return NULL; }
    if (F < 1 || H < 8 || W < 8) { ocd_fail("fatezero: bad clip size %d x %dx%d", F, H, W); return NULL; }
    if (p->steps < 1 || p->steps > OCD_MAX_STEPS || p->steps > P2P_MAX_STEPS) { ocd_fail("fatezero: steps %d out of range", p->steps); return NULL; }
    if (!p->source) { ocd_fail("fatezero: no source prompt"); return NULL; }
    if (p->n_cross_words > FZ_MAX_WORDS || p->n_reweight > FZ_MAX_WORDS || p->n_cross_words < 0 || p->n_reweight < 0) { ocd_fail("fatezero: too many per-word settings"); return NULL; }
    const int f = vae_downscale(vae_get_config(m->vae));
    if (H % f || W % f) { ocd_fail("fatezero: frame size %dx%d is not a multiple of %d", W, H, f); return NULL; }
    if (p->xframe == XF_ALL && F > XF_MAX_KV) { ocd_fail("fatezero: mode all supports at most %d frames", XF_MAX_KV); return NULL; }
    fz_ctx *c = ocd_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m, c->p = *p, c->F = F, c->H = H, c->W = W, c->h = H / f, c->w = W / f, c->N = p->steps;
    if (!c->p.negative) c->p.negative = "";
    const unet_config *uc = unet_get_config(m->unet);
    c->lc = uc->in_ch;
    c->lat = (size_t)c->lc * c->h * c->w;
    c->hidden = m->clip_cfg.hidden, c->n_ctx = m->clip_cfg.n_pos;
    if (uc->cross_dim != c->hidden) { ocd_fail("fatezero: text width %d != UNet cross_dim %d", c->hidden, uc->cross_dim); goto fail; }
    /* schedule: the model's scheduler config when it has one */
    ocd_sched_config sc;
    sched_config_default(&sc);
    if (m->files.scheduler_config) {
        json_error_t err;
        json_t *j = json_loads(m->files.scheduler_config, 0, &err);
        if (!j) { ocd_fail("scheduler config: %s", err.text); goto fail; }
        int rc = sched_config_from_json(&sc, j);
        json_decref(j);
        if (rc) goto fail;
    }
    if (sched_init(&c->sched, &sc)) goto fail;
    if (p->solver != OCD_SOLVER_DDIM && p->solver != OCD_SOLVER_DPMPP_2M) { ocd_fail("fatezero: unknown solver %d", p->solver); goto fail; }
    /* DDIM: the timesteps FateZero uses; DPM-Solver++: its own, and the inversion walks them backwards */
    if (sched_plan(&c->plan, &c->sched, (ocd_solver)p->solver, c->N)) goto fail;
    for (int i = 0; i < c->N; i++) c->ts[i] = c->plan.timesteps[i];
    /* layers */
    c->n_layers = as_layer_plan(uc, c->h, c->w, c->layers, AS_MAX_LAYERS);
    if (c->n_layers < 0) goto fail;
    if (c->n_layers != unet_n_attn_layers(m->unet)) { ocd_fail("fatezero: planned %d attention layers, UNet has %d", c->n_layers, unet_n_attn_layers(m->unet)); goto fail; }
    size_t pmax = 1, kvmax = 0, qk_max = 0;
    const int kvf = xf_max_kv(c->p.xframe, F);
    for (int i = 0; i < c->n_layers; i++) {
        const as_layer *l = &c->layers[i];
        const size_t Nq = (size_t)l->H * l->W;
        if (Nq * l->C > kvmax) kvmax = Nq * l->C;
        if (!l->hooked) continue;
        size_t nk = (size_t)kvf * Nq;
        if (nk < (size_t)c->n_ctx) nk = c->n_ctx;
        if ((size_t)l->heads * Nq * nk > pmax) pmax = (size_t)l->heads * Nq * nk;
        if ((Nq + 2 * nk) * l->C > qk_max) qk_max = (Nq + 2 * nk) * l->C; /* attn_store_scratch_floats */
        int r = 0;
        while (r < c->n_res && (c->res_h[r] != l->H || c->res_w[r] != l->W)) r++;
        if (r == c->n_res) {
            if (r == FZ_MAX_RES) { ocd_fail("fatezero: too many hooked resolutions"); goto fail; }
            c->res_h[r] = l->H, c->res_w[r] = l->W, c->n_res++;
        }
        c->slot_res[l->slot] = r;
    }
    const size_t xb = xf_buffer_floats(c->p.xframe, F, kvmax);
    c->tab = ocd_calloc(1, sizeof *c->tab);
    c->emb = ocd_malloc(sizeof(float) * 2 * F * c->n_ctx * c->hidden);
    c->src_emb = ocd_malloc(sizeof(float) * 3 * c->n_ctx * c->hidden);
    c->tvec = ocd_malloc(sizeof(float) * 2 * F);
    c->xin = ocd_malloc(sizeof(float) * F * c->lat);
    c->eps = ocd_malloc(sizeof(float) * 2 * F * c->lat);
    c->z = ocd_malloc(sizeof(float) * F * c->lat);
    c->eps_g = ocd_malloc(sizeof(float) * F * c->lat);
    c->need_cross = ocd_calloc(c->N, 3);
    if (!c->tab || !c->emb || !c->src_emb || !c->tvec || !c->xin || !c->eps || !c->z || !c->eps_g || !c->need_cross) goto fail;
    c->unc_emb = c->src_emb + (size_t)c->n_ctx * c->hidden;
    c->tgt_emb = c->unc_emb + (size_t)c->n_ctx * c->hidden;
    c->need_blend = c->need_cross + c->N, c->need_self = c->need_blend + c->N;
    if (xb && (!(c->kbuf = ocd_malloc(sizeof(float) * xb)) || !(c->vbuf = ocd_malloc(sizeof(float) * xb)))) goto fail;
    if (c->p.fusion) {
        if (!(c->P = ocd_malloc(sizeof(float) * pmax)) || !(c->S = ocd_malloc(sizeof(float) * pmax)) ||
            !(c->store_scratch = ocd_malloc(sizeof(float) * (qk_max > 1 ? qk_max : 1))))
            goto fail;
        /* which inversion steps k are read: editing step i = N-1-k */
        fill_p2p_config(c);
        const int rows = c->N + 1;
        for (int k = 0; k < c->N; k++) {
            const int i = c->N - 1 - k;
            int cross = i < (int)(c->p.cross_replace * rows);
            for (int w = 0; w < c->p.n_cross_words; w++)
                cross |= i >= (int)(c->p.cross_words[w].lo * rows) && i < (int)(c->p.cross_words[w].hi * rows);
            const int self = i < (int)(c->N * c->p.self_replace);
            c->need_cross[k] = (uint8_t)cross;
            c->need_self[k] = (uint8_t)self;
            c->need_blend[k] = (uint8_t)(has_blend(c) && (self || lb_active(c, i)));
        }
    }
    if (plan_accel(c)) goto fail;
    c->rep = (fz_report){0};
    return c;
fail:
    fz_free(c);
    return NULL;
}

/* Buffers that depend on the store (blend layers' grid). */
static int plan_blend(fz_ctx *c) {
    const attn_store *s = c->store;
    if (!has_blend(c) || c->bmaps) return 0;
    if (s->n_blend < 1) return ocd_fail("fatezero: blend words need the UNet's down_cross[2:4] / up_cross[0:3] layers");
    const as_layer *l0 = &s->layers[s->hooked_layer[s->blend_slot[0]]];
    for (int i = 1; i < s->n_blend; i++) {
        const as_layer *l = &s->layers[s->hooked_layer[s->blend_slot[i]]];
        if (l->H != l0->H || l->W != l0->W || l->heads != l0->heads)
            return ocd_fail("fatezero: the blend-mask layers differ in size (%dx%d vs %dx%d)", l->H, l->W, l0->H, l0->W);
    }
    c->h0 = l0->H, c->w0 = l0->W, c->blend_heads = l0->heads;
    const size_t Nq0 = (size_t)c->h0 * c->w0, big = (size_t)c->h * c->w;
    if (!(c->bmaps = ocd_malloc(sizeof(float) * AS_BLEND_LAYERS * c->blend_heads * Nq0 * P2P_T)) ||
        !(c->bscore = ocd_malloc(sizeof(float) * c->F * Nq0)) ||
        !(c->mask_scratch = ocd_malloc(sizeof(float) * c->F * (Nq0 + big))))
        return -1;
    for (int r = 0; r < c->n_res; r++)
        if (!(c->res_mask[r] = ocd_malloc(sizeof(float) * c->F * c->res_h[r] * c->res_w[r]))) return -1;
    if (c->mask_from_blend && !(c->mask_acc = ocd_malloc(sizeof(float) * c->F * Nq0))) return -1;
    if (c->p.latent_blend &&
        (!(c->lb_sum = ocd_malloc(sizeof(float) * c->F * Nq0)) || !(c->lb_mask = ocd_malloc(sizeof(float) * c->F * big)) ||
         !(c->lb_mask2 = ocd_malloc(sizeof(float) * c->F * big))))
        return -1;
    return 0;
}

void fz_free(fz_ctx *c) {
    if (!c) return;
    attn_store_free(c->store);
    sched_free(&c->sched);
    free(c->tab); free(c->emb); free(c->src_emb); free(c->tvec); free(c->xin); free(c->eps); free(c->z); free(c->eps_g);
    free(c->P); free(c->S); free(c->kbuf); free(c->vbuf); free(c->store_scratch);
    free(c->bmaps); free(c->bscore); free(c->mask_scratch);
    for (int r = 0; r < FZ_MAX_RES; r++) free(c->res_mask[r]);
    free(c->inv_traj); free(c->lb_sum); free(c->lb_mask); free(c->lb_mask2);
    free(c->need_cross);
    free(c->dpm_buf); free(c->dpm_buf2);
    tome_store_free(c->plans);
    tome_plan_free(&c->tplan); tome_plan_free(&c->cplan);
    free(c->dst); free(c->fg); free(c->row_map); free(c->rows); free(c->keys); free(c->mrow);
    free(c->tscratch); free(c->km); free(c->vm);
    free(c->mask); free(c->mask_acc); free(c->zc); free(c->zbg); free(c->feather);
    free(c);
}

const fz_report *fz_get_report(const fz_ctx *c) { return &c->rep; }
const attn_store *fz_store(const fz_ctx *c) { return c->store; }
const int *fz_timesteps(const fz_ctx *c) { return c->ts; }
const float *fz_mask(const fz_ctx *c) { return c->mask && c->mask_ready ? c->mask : NULL; }
void fz_set_plan_probe(fz_ctx *c, fz_plan_probe fn, void *user) { c->probe = fn, c->probe_user = user; }

int fz_text_embedding(fz_ctx *c, const char *prompt, float *emb) {
    if (sd_model_encode_prompt(c->m, prompt ? prompt : "", emb)) return ocd_fail_context("text encoder");
    return 0;
}

const struct p2p_tables *fz_tables(fz_ctx *c, const char *target) {
    fill_p2p_config(c);
    if (p2p_build(c->tab, c->m->tok, c->p.source, target ? target : c->p.source, &c->pc)) return NULL;
    return c->tab;
}

/* ------------------------------------------------------------ stages */

int fz_encode(fz_ctx *c, const float *frames, float *z0) {
    double t0 = ocd_now();
    const vae_config *vc = vae_get_config(c->m->vae);
    const size_t img = (size_t)3 * c->H * c->W;
    float *logvar = c->eps; /* [lat] scratch */
    for (int f = 0; f < c->F; f++) {
        float *zf = z0 + (size_t)f * c->lat;
        if (vae_encode(c->m->vae, frames + f * img, c->H, c->W, zf, logvar)) return ocd_fail_context("VAE encode, frame %d", f);
        for (size_t i = 0; i < c->lat; i++) zf[i] *= vc->scaling_factor;
        progress(c, "encode", f + 1, c->F);
    }
    vae_trim(c->m->vae); /* the encoder's workspace is not needed until decoding: peak memory is the UNet's */
    c->rep.t_encode += ocd_now() - t0;
    return 0;
}

int fz_decode(fz_ctx *c, const float *z, float *frames) {
    double t0 = ocd_now();
    const vae_config *vc = vae_get_config(c->m->vae);
    const size_t img = (size_t)3 * c->H * c->W;
    unet_trim(c->m->unet); /* the UNet's scratch goes back before the decoder takes its own */
    for (int f = 0; f < c->F; f++) {
        float *zs = c->z;
        for (size_t i = 0; i < c->lat; i++) zs[i] = z[(size_t)f * c->lat + i] / vc->scaling_factor;
        if (vae_decode(c->m->vae, zs, c->h, c->w, frames + f * img)) return ocd_fail_context("VAE decode, frame %d", f);
        progress(c, "decode", f + 1, c->F);
    }
    c->rep.t_decode += ocd_now() - t0;
    return 0;
}

/* The hook of every UNet call: fusion and cross-frame attention, and FateZero's clip-wide
 * GroupNorm (each branch's F frames are one [C, F, H, W] video for the resnet norms). */
static unet_attn_hook make_hook(fz_ctx *c) {
    unet_attn_hook hook = {.attend = fz_attend, .user = c, .kv_frames_max = xf_max_kv(c->p.xframe, c->F)};
#ifdef UNET_HAS_NORM_FRAMES
    hook.norm_frames = c->p.clip_norm ? c->F : 1;
    c->rep.clip_norm_applied = c->p.clip_norm;
#endif
    return hook;
}

static void set_batch_ctx(fz_ctx *c, int nb, const float *const *embs) {
    const size_t E = (size_t)c->n_ctx * c->hidden;
    for (int b = 0; b < nb; b++)
        for (int f = 0; f < c->F; f++) memcpy(c->emb + ((size_t)b * c->F + f) * E, embs[b], E * sizeof(float));
}

/* The foreground mask from the blend words (ocd-method.md 5.1): the source blend-word score of the
 * inversion's cross maps summed over inversion steps [0, mask_k_end), FateZero's mask recipe
 * (3x3 max pool, resize, per-frame max normalisation) thresholded at mask_threshold, dilated. */
static int blend_word_mask(fz_ctx *c) {
    const size_t Nq0 = (size_t)c->h0 * c->w0;
    memset(c->mask_acc, 0, sizeof(float) * c->F * Nq0);
    for (int k = 0; k < c->mask_k_end; k++) {
        if (blend_score(c, k, c->tab->blend_alpha[0])) return -1;
        for (size_t i = 0; i < (size_t)c->F * Nq0; i++) c->mask_acc[i] += c->bscore[i];
    }
    p2p_blend_mask(c->mask_acc, c->F, c->h0, c->w0, c->h, c->w, c->p.mask_threshold, c->mask, c->mask_scratch);
    ocs_mask_dilate(c->mask, c->F, c->h, c->w, c->p.mask_dilate, c->mask_scratch);
    c->mask_ready = 1;
    return 0;
}

/* Counted work of a UNet evaluation of `items` items: the UNet's own FLOPs (of its calls) and the
 * hook's attention beyond them (flop_adj). */
static void count_forward(fz_ctx *c, int items, double unet_flops) {
    c->rep.gflop += (unet_flops + c->flop_adj) * 1e-9;
    c->rep.unet_calls++, c->rep.unet_items += items;
}

int fz_invert(fz_ctx *c, const float *z0, float *traj, float *zT) {
    double t0 = ocd_now();
    const int F = c->F, N = c->N;
    const size_t n = (size_t)F * c->lat;
    attn_store_free(c->store);
    c->store = NULL;
    if (c->p.fusion) {
        as_config ac = {.unet = unet_get_config(c->m->unet), .F = F, .h = c->h, .w = c->w, .steps = N, .n_ctx = c->n_ctx,
                        .mode = c->p.xframe, .least_sc_channel = c->p.least_sc_channel, .dtype = c->p.store_dtype,
                        .need_cross = c->need_cross, .need_blend = c->need_blend, .need_self = c->need_self,
                        .budget = c->p.attn_budget, .spill_dir = c->p.spill_dir, .force = c->p.store_force,
                        .blend_level = c->p.blend_level, .self_qk = c->p.tome_ratio > 0.0f};
        if (!(c->store = attn_store_new(&ac)) || plan_blend(c)) return -1;
        c->rep.store_ram_bytes = c->store->ram_bytes, c->rep.store_disk_bytes = c->store->disk_bytes;
        c->rep.store_entries = c->store->n_entries, c->rep.store_recompute_entries = c->store->n_qk;
        if (c->p.latent_blend && !c->inv_traj && !(c->inv_traj = ocd_malloc(sizeof(float) * (N + 1) * n))) return -1;
    }
    /* the foreground mask: given (binarised at 0.5), or made from the blend words during this inversion */
    c->mask_ready = 0;
    if (c->mask && c->p.mask) {
        memcpy(c->mask, c->p.mask, sizeof(float) * F * c->h * c->w);
        ocs_mask_binarize(c->mask, F, c->h, c->w, 0.5f);
        c->mask_ready = 1;
    }
    if (c->mask_from_blend && !fz_tables(c, c->p.target)) return -1;
    if (c->tome_on && c->tp.lambda > 0.0f && !c->mask_ready && !c->mask_from_blend)
        note(c, "Object-Centric ToMe: no foreground mask (give a mask, or blend words with attention fusion): plain token merging");
    else if (c->tome_on && c->tp.lambda > 0.0f && c->mask_from_blend)
        note(c, "Object-Centric ToMe: blend-word mask ready after inversion step %d: plans of the first %d inversion steps are "
                "plain", c->mask_k_end, c->mask_k_end);
    if (c->plans) tome_store_clear(c->plans);
    if (fz_text_embedding(c, c->p.source, c->src_emb)) return -1;
    set_batch_ctx(c, 1, (const float *const[]){c->src_emb});
    unet_attn_hook hook = make_hook(c);
    float *z = c->xin;
    memcpy(z, z0, n * sizeof(float));
    if (traj) memcpy(traj, z0, n * sizeof(float));
    if (c->inv_traj) memcpy(c->inv_traj, z0, n * sizeof(float));
    c->crop = 0;
    for (int k = 0; k < N; k++) {
        const int t = c->ts[N - 1 - k];
        for (int b = 0; b < F; b++) c->tvec[b] = (float)t;
        c->step = k;
        c->phase = PH_INVERT, c->flop_adj = 0;
        const int rc = unet_forward(c->m->unet, z, c->tvec, c->emb, c->n_ctx, F, c->h, c->w, &hook, c->eps);
        c->phase = PH_NONE;
        if (rc) return ocd_fail_context("inversion step %d", k);
        count_forward(c, F, unet_last_flops(c->m->unet));
        /* DDIM as FateZero; other plans: the same levels walked backwards (ocd-method.md 1) */
        if (c->plan.solver == OCD_SOLVER_DDIM) ddim_invert_step(&c->sched, N, t, z, c->eps, z, NULL, n);
        else if (sampler_invert_step(&c->plan, N - 1 - k, z, c->eps, z, NULL, n)) return -1;
        if (traj) memcpy(traj + (size_t)(k + 1) * n, z, n * sizeof(float));
        if (c->inv_traj) memcpy(c->inv_traj + (size_t)(k + 1) * n, z, n * sizeof(float));
        /* from here on Object-Centric ToMe knows the foreground */
        if (c->mask_from_blend && k == c->mask_k_end - 1 && blend_word_mask(c)) return -1;
        progress(c, "invert", k + 1, N);
    }
    if (c->store) c->store->recorded_steps = N;
    if (c->plans) c->rep.plan_bytes = tome_store_bytes(c->plans);
    memcpy(zT, z, n * sizeof(float));
    c->rep.t_invert += ocd_now() - t0;
    return 0;
}

/* A.9 after editing step i: z := z_inv + M (z - z_inv), M = M_src | M_tgt at latent size. */
static int latent_blend(fz_ctx *c, int i, float *z) {
    const int F = c->F, N = c->N, hw = c->h * c->w;
    if (blend_score(c, N - 1 - i, c->tab->blend_alpha[0])) return -1;
    p2p_blend_mask(c->bscore, F, c->h0, c->w0, c->h, c->w, c->tab->blend_th, c->lb_mask, c->mask_scratch);
    p2p_blend_mask(c->lb_sum, F, c->h0, c->w0, c->h, c->w, c->tab->blend_th, c->lb_mask2, c->mask_scratch);
    /* FateZero takes latents_store[N-1-i], the inversion latent after inversion step N-1-i, which is
     * at level timesteps[i] while z (after editing step i) is at level timesteps[i+1]: one level
     * noisier. latent_blend_fix = 1 uses the same level (inversion trajectory index N-1-i). */
    const int idx = c->p.latent_blend_fix ? N - 1 - i : N - i;
    const float *zi = c->inv_traj + (size_t)idx * F * c->lat;
    for (int f = 0; f < F; f++)
        for (int ch = 0; ch < c->lc; ch++)
            for (int p = 0; p < hw; p++) {
                const float m = (c->lb_mask[(size_t)f * hw + p] > 0.0f || c->lb_mask2[(size_t)f * hw + p] > 0.0f) ? 1.0f : 0.0f;
                const size_t o = (size_t)f * c->lat + (size_t)ch * hw + p;
                z[o] = zi[o] + m * (z[o] - zi[o]);
            }
    return 0;
}

/* One editing UNet call at step i (timestep ts[i]) on z [F, lc, hh, ww] (the full frame or the
 * crop), moving z to level k_to (i + 1, or further for the background branch). */
static int edit_step(fz_ctx *c, int i, int k_to, float *z, int hh, int ww, dpmpp_state *st, const unet_attn_hook *hook) {
    const int F = c->F, t = c->ts[i];
    const size_t n = (size_t)F * c->lc * hh * ww;
    c->step = i;
    if (c->p.fusion && c->tab->has_blend && p2p_self_active(c->tab, i) && step_masks(c, i)) return -1;
    for (int b = 0; b < F; b++) c->tvec[b] = (float)t;
    /* The two CFG halves (unconditional, target) run as two calls of F frames: every norm, window
     * and plan is per half, so this equals one call of 2F, with half the activation memory. */
    c->phase = PH_EDIT, c->flop_adj = 0;
    double flops = 0;
    int rc = 0;
    for (int half = 0; half < 2 && !rc; half++) {
        c->branch0 = half;
        rc = unet_forward(c->m->unet, z, c->tvec, c->emb + (size_t)half * F * c->n_ctx * c->hidden, c->n_ctx, F, hh, ww,
                          hook, c->eps + half * n);
        flops += unet_last_flops(c->m->unet);
    }
    c->phase = PH_NONE, c->branch0 = 0;
    if (rc) return ocd_fail_context("editing step %d%s", i, c->crop ? " (foreground crop)" : "");
    count_forward(c, 2 * F, flops);
    c->rep.unet_full_frame_calls += (double)hh * ww / ((double)c->h * c->w);
    cfg_combine(c->eps, c->eps + n, c->p.cfg, c->eps_g, n);
    if (c->plan.solver == OCD_SOLVER_DDIM && k_to == i + 1) ddim_step(&c->sched, c->N, t, z, c->eps_g, z, NULL, n);
    else if (sampler_step(&c->plan, st, i, k_to, z, c->eps_g, z, NULL, n)) return -1;
    return 0;
}

static void reset_solver(fz_ctx *c, dpmpp_state *st, float *buf, size_t n) {
    if (c->plan.solver == OCD_SOLVER_DPMPP_2M) dpmpp_init(st, buf, n);
}

/* Whether OCS runs for this clip: switched on, a mask ready, then ocs_decide. Sets c->box and *b;
 * says why not in the note. */
static int ocs_go(fz_ctx *c, int *b) {
    if (!c->p.ocs) return 0;
    if (!c->mask_ready) {
        note(c, "OCS off: no foreground mask (give a mask, or blend words with attention fusion): plain sampling");
        return 0;
    }
    double area;
    const int bs = ocs_decide(c->mask, c->F, c->h, c->w, c->N, c->p.ocs_blend, c->p.ocs_pad, unet_get_config(c->m->unet)->n_levels,
                              c->p.ocs_max_area, &c->box, &area, c->rep.note, sizeof c->rep.note);
    if (!bs) return 0;
    c->rep.ocs_area = area;
    *b = bs;
    return 1;
}

int fz_edit_latents(fz_ctx *c, const char *target, const float *zT, float *traj, float *z_out) {
    double t0 = ocd_now();
    const int F = c->F, N = c->N;
    const size_t n = (size_t)F * c->lat;
    if (!target) target = c->p.target ? c->p.target : c->p.source;
    if (c->p.fusion && !c->store) return ocd_fail("fatezero: editing with fusion needs a recorded inversion (fz_invert)");
    if (c->tome_on && !tome_store_count(c->plans)) return ocd_fail("fatezero: token merging needs the inversion's plans (fz_invert)");
    if (!fz_tables(c, target)) return -1;
    if (c->p.fusion && c->tab->has_blend && (!c->store || c->store->n_blend < 1)) return ocd_fail("fatezero: no blend layers");
    if (fz_text_embedding(c, c->p.negative, c->unc_emb) || fz_text_embedding(c, target, c->tgt_emb)) return -1;
    set_batch_ctx(c, 2, (const float *const[]){c->unc_emb, c->tgt_emb});
    unet_attn_hook hook = make_hook(c);
    if (c->lb_sum) memset(c->lb_sum, 0, sizeof(float) * F * c->h0 * c->w0);
    float *z = c->z;
    int b = 0, rc = 0;
    c->crop = 0;
    if (ocs_go(c, &b)) {
        /* background branch: the full frame at steps 0, phi, 2 phi, ... of [0, b), each jumping to the next */
        float *zb = c->zbg;
        memcpy(zb, zT, n * sizeof(float));
        reset_solver(c, &c->st, c->dpm_buf, n);
        for (int k = 0; k < b && !rc; k += c->p.ocs_phi) {
            const int kt = k + c->p.ocs_phi < b ? k + c->p.ocs_phi : b;
            rc = edit_step(c, k, kt, zb, c->h, c->w, &c->st, &hook);
            if (traj && !rc)
                for (int j = k; j < kt; j++) memcpy(traj + (size_t)j * n, zb, n * sizeof(float));
        }
        /* foreground branch: the crop, steps 0..b-1 */
        const ocs_box *bx = &c->box;
        const size_t nc = (size_t)F * c->lc * bx->h * bx->w;
        ocs_crop(zT, F, c->lc, c->h, c->w, bx, c->zc);
        reset_solver(c, &c->st2, c->dpm_buf2, nc);
        c->crop = 1;
        for (int i = 0; i < b && !rc; i++) {
            rc = edit_step(c, i, i + 1, c->zc, bx->h, bx->w, &c->st2, &hook);
            progress(c, "edit", i + 1, N);
        }
        c->crop = 0;
        if (rc) return -1;
        /* blend at t_b: z = M paste(z_fg) + (1 - M) z_bg, M feathered by one pixel */
        ocs_feather(c->mask, F, c->h, c->w, bx, c->feather);
        memcpy(z, zb, n * sizeof(float));
        ocs_blend(z, c->zc, c->feather, F, c->lc, c->h, c->w, bx);
        if (traj) memcpy(traj + (size_t)(b - 1) * n, z, n * sizeof(float));
    } else memcpy(z, zT, n * sizeof(float));
    /* joint steps b..N-1 on the full frame (all steps without OCS); the history restarts here */
    reset_solver(c, &c->st, c->dpm_buf, n);
    for (int i = b; i < N; i++) {
        if (edit_step(c, i, i + 1, z, c->h, c->w, &c->st, &hook)) return -1;
        if (c->p.fusion && c->tab->has_blend && lb_active(c, i) && c->inv_traj && latent_blend(c, i, z)) return -1;
        if (traj) memcpy(traj + (size_t)i * n, z, n * sizeof(float));
        progress(c, "edit", i + 1, N);
    }
    memcpy(z_out, z, n * sizeof(float));
    c->rep.t_edit += ocd_now() - t0;
    return 0;
}

int fz_edit(sd_model *m, const float *frames, int F, int H, int W, const fz_params *p, float *out, fz_report *rep) {
    fz_ctx *c = fz_new(m, p, F, H, W);
    if (!c) return -1;
    const size_t n = (size_t)F * c->lat;
    float *z0 = ocd_malloc(sizeof(float) * n), *zT = ocd_malloc(sizeof(float) * n);
    int rc = -1;
    if (z0 && zT && !fz_encode(c, frames, z0) && !fz_invert(c, z0, NULL, zT) &&
        !fz_edit_latents(c, p->target, zT, NULL, z0) && !fz_decode(c, z0, out))
        rc = 0;
    if (rep) *rep = c->rep;
    free(z0);
    free(zT);
    fz_free(c);
    return rc;
}

/* ------------------------------------------------------------ FateZero configs */

static double jnum(const json_t *o, double def) { return json_is_number(o) ? json_number_value(o) : def; }

/* Joins the strings of a JSON list (or a single string) with spaces into buf. */
static const char *join_words(const json_t *v, char **buf, size_t *cap) {
    if (json_is_string(v)) v = json_pack("[O]", v); else json_incref((json_t *)v);
    char *start = *buf;
    size_t i;
    json_t *x;
    int ok = 1;
    start[0] = 0;
    json_array_foreach(v, i, x) {
        const char *s = json_string_value(x);
        size_t L = s ? strlen(s) : 0;
        if (!s || L + 2 > *cap) { ok = 0; break; }
        if (i) { **buf = ' '; (*buf)++; (*cap)--; }
        memcpy(*buf, s, L + 1);
        *buf += L, *cap -= L;
    }
    json_decref((json_t *)v);
    if (!ok) { ocd_fail("blend words: not a list of strings, or too long"); return NULL; }
    (*buf)++, (*cap)--; /* keep the terminator */
    return start;
}

int fz_params_from_json(fz_params *p, const json_t *params, char *buf, size_t cap) {
    if (!json_is_object(params)) return ocd_fail("fatezero params: not an object");
    const json_t *v;
    if ((v = json_object_get(params, "source_prompt")) && json_is_string(v)) p->source = json_string_value(v);
    if ((v = json_object_get(params, "target_prompt")) && json_is_string(v)) p->target = json_string_value(v);
    if ((v = json_object_get(params, "num_inference_steps"))) p->steps = (int)jnum(v, p->steps);
    if ((v = json_object_get(params, "guidance_scale"))) p->cfg = (float)jnum(v, p->cfg);
    const json_t *pc = json_object_get(params, "p2p_config");
    if (pc) {
        if ((v = json_object_get(pc, "NUM_DDIM_STEPS")) && json_is_integer(v)) p->steps = (int)json_integer_value(v);
        if ((v = json_object_get(pc, "cross_replace_steps"))) {
            if (json_is_number(v)) p->cross_replace = json_number_value(v);
            else if (json_is_object(v)) {
                const char *key;
                json_t *x;
                p->n_cross_words = 0;
                json_object_foreach((json_t *)v, key, x) {
                    if (!strcmp(key, "default_")) {
                        if (json_is_array(x) && json_number_value(json_array_get(x, 0)) != 0.0)
                            return ocd_fail("cross_replace_steps.default_: only windows starting at 0 are supported");
                        p->cross_replace = json_is_array(x) ? jnum(json_array_get(x, 1), 1.0) : jnum(x, p->cross_replace);
                        continue;
                    }
                    if (p->n_cross_words == FZ_MAX_WORDS) return ocd_fail("cross_replace_steps: more than %d words", FZ_MAX_WORDS);
                    fz_word_bounds *wb = &p->cross_words[p->n_cross_words++];
                    wb->word = key;
                    wb->lo = json_is_array(x) ? jnum(json_array_get(x, 0), 0.0) : 0.0;
                    wb->hi = json_is_array(x) ? jnum(json_array_get(x, 1), 1.0) : jnum(x, 1.0);
                }
            }
        }
        if ((v = json_object_get(pc, "self_replace_steps"))) {
            if (json_is_array(v)) {
                if (jnum(json_array_get(v, 0), 0.0) != 0.0) return ocd_fail("self_replace_steps: only windows starting at 0 are supported");
                p->self_replace = jnum(json_array_get(v, 1), p->self_replace);
            } else p->self_replace = jnum(v, p->self_replace);
        }
        if ((v = json_object_get(pc, "blend_words")) && json_is_array(v) && json_array_size(v) >= 1) {
            if (!(p->blend_words_src = join_words(json_array_get(v, 0), &buf, &cap))) return -1;
            if (json_array_size(v) >= 2 && !(p->blend_words_tgt = join_words(json_array_get(v, 1), &buf, &cap))) return -1;
        }
        if ((v = json_object_get(pc, "blend_th"))) p->blend_th = (float)(json_is_array(v) ? jnum(json_array_get(v, 0), p->blend_th) : jnum(v, p->blend_th));
        if ((v = json_object_get(pc, "eq_params")) && json_is_object(v)) {
            const json_t *w = json_object_get(v, "words"), *val = json_object_get(v, "values");
            p->n_reweight = 0;
            for (size_t i = 0; i < json_array_size(w); i++) {
                if (p->n_reweight == FZ_MAX_WORDS) return ocd_fail("eq_params: more than %d words", FZ_MAX_WORDS);
                const char *s = json_string_value(json_array_get(w, i));
                if (!s) return ocd_fail("eq_params.words: not a string");
                p->reweight[p->n_reweight].word = s;
                p->reweight[p->n_reweight++].value = (float)jnum(json_array_get(val, i), 1.0);
            }
        }
        if ((v = json_object_get(pc, "is_replace_controller")) && json_is_boolean(v))
            p->replace_mode = json_is_true(v) ? FZ_REPLACE_REPLACE : FZ_REPLACE_REFINE;
        if ((v = json_object_get(pc, "blend_latents"))) p->latent_blend = json_is_true(v);
    }
    const json_t *mc = json_object_get(params, "model_config");
    if (mc && json_is_object(mc)) {
        p->xframe = XF_FIRST_PREV, p->least_sc_channel = 0; /* FateZero's code default */
        if ((v = json_object_get(mc, "least_sc_channel"))) p->least_sc_channel = (int)jnum(v, 0);
        if ((v = json_object_get(mc, "SparseCausalAttention_index")) && json_is_array(v)) {
            const char *s0 = json_string_value(json_array_get(v, 0));
            if (json_array_size(v) == 0) p->xframe = XF_SELF;
            else if (json_array_size(v) == 1 && s0 && (!strcmp(s0, "mid") || !strcmp(s0, "middle"))) p->xframe = XF_MID;
            else if (json_array_size(v) == 2 && json_is_integer(json_array_get(v, 0)) &&
                     json_integer_value(json_array_get(v, 0)) == -1 && json_string_value(json_array_get(v, 1)) &&
                     !strcmp(json_string_value(json_array_get(v, 1)), "first"))
                p->xframe = XF_FIRST_PREV;
            else return ocd_fail("SparseCausalAttention_index: only ['mid'], [-1, 'first'] and [] are supported");
        }
    }
    return 0;
}
