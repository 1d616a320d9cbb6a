/* The paper's accelerations inside the FateZero editor (ocd-method.md 1, 3-5), on the toy model
 * (models/toy-sd) at 64x64 (128x128 for Object-Centric Sampling, whose crop is aligned to the
 * UNet's 8-pixel latent grid), few frames and steps:
 *   - presets are data (fz_preset), unknown names fail;
 *   - OCS helpers: crop box, cost formula, feather, blend, crop-restricted merge plans;
 *   - attention-store views (rows, keys, merged keys) agree between Q/K and map entries;
 *   - paired plans: every plan used in editing equals the inversion's (both CFG halves);
 *   - destinations differ between frames and repeat with the seed;
 *   - Object-Centric ToMe through the hook: no foreground token merged while background sources
 *     remain unmerged, per level;
 *   - ratio 0 with the merging machinery on == no merging, bitwise;
 *   - OCS's counted UNet work equals b * area + ceil(b / phi) + (N - b); an empty mask falls back
 *     to plain sampling (bitwise) and says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "edit/attn_store.h"
#include "edit/fatezero.h"
#include "edit/ocs.h"
#include "edit/presets.h"
#include "edit/tome.h"
#include "io/video.h"
#include "nn/sd_model.h"
#include "testlib.h"

#define TOY_MODEL "models/toy-sd"
#define TOY_CLIP "examples/toy-clip"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

/* ------------------------------------------------------------ presets */

static void test_presets(void) {
    fz_params p;
    fz_default_params(&p);
    int ok = p.solver == OCD_SOLVER_DDIM && p.tome_ratio == 0.0f && !p.ocs && p.ocs_phi == 4 && p.ocs_blend == 0.5 &&
             p.ocs_pad == 2 && p.ocs_max_area == 0.6 && p.mask_threshold == 0.3f && p.mask_dilate == 1 && p.tome_min_tokens == 64;
    t_check(ok, "defaults = fatezero preset, OCS values fixed", "solver %d ratio %g ocs %d", p.solver, p.tome_ratio, p.ocs);
    p.self_replace = 0.9;
    ok = !fz_preset(&p, "ocd") && p.solver == OCD_SOLVER_DPMPP_2M && p.steps == 20 && p.tome_ratio == 0.5f &&
         p.oc_tome_lambda == 1.0f && p.ocs && p.self_replace == 0.9;
    t_check(ok, "preset ocd", "solver %d steps %d ratio %g lambda %g ocs %d (other knobs kept)", p.solver, p.steps, p.tome_ratio,
            p.oc_tome_lambda, p.ocs);
    ok = !fz_preset(&p, "optimized") && p.solver == OCD_SOLVER_DPMPP_2M && p.steps == 20 && p.tome_ratio == 0.5f &&
         p.oc_tome_lambda == 0.0f && !p.ocs;
    t_check(ok, "preset optimized", "steps %d", p.steps);
    ok = !fz_preset(&p, "fatezero") && p.solver == OCD_SOLVER_DDIM && p.steps == 50 && p.cfg == 7.5f && p.tome_ratio == 0.0f && !p.ocs;
    t_check(ok, "preset fatezero", "steps %d", p.steps);
    int bad = fz_preset(&p, "fast");
    t_check(bad == -1 && strstr(ocd_last_error(), "fast"), "unknown preset fails", "%s", ocd_last_error());
    int n = 0;
    for (const char *const *s = fz_preset_names(); *s; s++) n++;
    t_check(n == 3, "preset names", "%d", n);
}

/* ------------------------------------------------------------ OCS helpers */

static void test_ocs_helpers(void) {
    const int F = 2, h = 16, w = 16;
    float mask[2 * 16 * 16] = {0};
    ocs_box b;
    t_check(ocs_crop_box(mask, F, h, w, 2, 8, &b) == 0 && b.h == 0, "empty mask: no box", " ");
    mask[3 * w + 4] = 1.0f;                    /* frame 0, (y 3, x 4) */
    mask[h * w + 5 * w + 6] = 1.0f;            /* frame 1, (y 5, x 6) */
    int found = ocs_crop_box(mask, F, h, w, 2, 8, &b);
    /* union y 3..5, x 4..6, grown by 2: y [1, 8), x [2, 9), snapped to 8: y [0, 8), x [0, 16) */
    t_check(found && b.y0 == 0 && b.h == 8 && b.x0 == 0 && b.w == 16, "crop box: union, pad, align",
            "y0 %d h %d x0 %d w %d", b.y0, b.h, b.x0, b.w);
    t_check(fabs(ocs_box_area(&b, h, w) - 0.5) < 1e-12, "crop area", "%g", ocs_box_area(&b, h, w));
    ocs_box l1 = ocs_box_level(&b, 1);
    t_check(l1.h == 4 && l1.w == 8 && l1.y0 == 0, "crop box at level 1", "%dx%d", l1.h, l1.w);
    t_check(ocs_blend_step(20, 0.5) == 10 && ocs_blend_step(5, 0.5) == 3 && ocs_blend_step(4, 0.0) == 0, "blend step round(beta N)", " ");
    t_check(fabs(ocs_cost(20, 10, 4, 0.25) - (2.5 + 3 + 10)) < 1e-12, "cost formula", "%g", ocs_cost(20, 10, 4, 0.25));
    /* feather: 1 on the mask, 0.5 around it, 0 elsewhere */
    float fe[2 * 16 * 16];
    ocs_feather(mask, F, h, w, &b, fe);
    t_check(fe[3 * w + 4] == 1.0f && fe[2 * w + 5] == 0.5f && fe[3 * w + 6] == 0.0f && fe[h * w + 6 * w + 7] == 0.5f,
            "feather: 1-pixel ramp", "%g %g %g", fe[3 * w + 4], fe[2 * w + 5], fe[3 * w + 6]);
    /* blend: inside M = 1 the foreground, outside the background */
    const int C = 2;
    float z[2 * 2 * 16 * 16], zf[2 * 2 * 8 * 16];
    for (int i = 0; i < F * C * h * w; i++) z[i] = -1.0f;
    for (int i = 0; i < F * C * b.h * b.w; i++) zf[i] = 1.0f;
    ocs_blend(z, zf, fe, F, C, h, w, &b);
    t_check(z[3 * w + 4] == 1.0f && z[2 * w + 5] == 0.0f && z[10 * w + 10] == -1.0f, "blend", "%g %g %g", z[3 * w + 4], z[2 * w + 5],
            z[10 * w + 10]);
    /* crop + dilate */
    float cr[2 * 2 * 8 * 16];
    for (int i = 0; i < F * C * h * w; i++) z[i] = (float)i;
    ocs_crop(z, F, C, h, w, &b, cr);
    t_check(cr[0] == 0.0f && cr[8 * 16] == (float)(h * w), "crop copies the box", "%g", cr[8 * 16]);
    float dm[16 * 16] = {0}, scr[16 * 16];
    dm[5 * 16 + 5] = 1.0f;
    ocs_mask_dilate(dm, 1, 16, 16, 1, scr);
    int cnt = 0;
    for (int i = 0; i < 256; i++) cnt += dm[i] > 0.5f;
    t_check(cnt == 9 && dm[4 * 16 + 4] == 1.0f, "dilate by 1: 3x3", "%d pixels", cnt);

    /* crop plans from a real K/V plan: identity stays identity; merged pairs inside the box stay merged */
    const int Hf = 8, Wf = 8, nf = 2, Ck = 8, N = nf * Hf * Wf;
    float *k = malloc(sizeof(float) * N * Ck);
    uint64_t s = 7;
    for (int i = 0; i < N * Ck; i++) k[i] = frand(&s);
    tome_params tp;
    tome_params_default(&tp);
    tp.min_tokens = 4;
    int32_t dst[2 * 16];
    tome_draw_dst(1, 10, 0, 0, Hf, Wf, 2, 2, dst);
    tome_draw_dst(1, 10, 0, 1, Hf, Wf, 2, 2, dst + 16);
    size_t sb = tome_kv_scratch_bytes(&tp, Hf, Wf, nf, Ck);
    void *scratch = malloc(sb);
    tome_plan full, crop;
    tome_plan_init(&full, N);
    tome_plan_init(&crop, N);
    int32_t row_map[128];
    ocs_box lb = {2, 2, 4, 4};
    int ok = !tome_kv_plan(&tp, k, Ck, Hf, Wf, nf, dst, NULL, scratch, sb, &full) && full.r > 0 &&
             !ocs_crop_plan(&full, &lb, nf, Hf, Wf, row_map, &crop);
    int bad = 0, merged = 0;
    for (int t = 0; ok && t < crop.n_tok; t++)
        for (int u = t + 1; u < crop.n_tok; u++) {
            const int g1 = t / 16, g2 = u / 16, ft = (g1 * Hf + 2 + (t % 16) / 4) * Wf + 2 + t % 4,
                      fu = (g2 * Hf + 2 + (u % 16) / 4) * Wf + 2 + u % 4;
            const int same_full = full.into[ft] == full.into[fu], same_crop = crop.into[t] == crop.into[u];
            bad += same_full != same_crop;
            merged += same_crop;
        }
    t_check(ok && !bad && crop.n_tok == 32 && crop.n_out + crop.r == 32, "crop plan = the full plan restricted to the box",
            "%d pairs disagree, %d merged pairs, %d -> %d tokens", bad, merged, crop.n_tok, crop.n_out);
    tome_plan_identity(&full, N);
    ocs_crop_plan(&full, &lb, nf, Hf, Wf, row_map, &crop);
    int ident = crop.r == 0 && crop.n_out == 32;
    for (int m = 0; ident && m < 32; m++) ident = crop.keep[m] == m && crop.into[m] == m;
    t_check(ident, "crop plan of the identity is the identity", "r %d", crop.r);
    tome_plan_free(&full);
    tome_plan_free(&crop);
    free(scratch);
    free(k);
}

/* ------------------------------------------------------------ attention-store views */

static void test_store_view(sd_model *m) {
    const int F = 2, h = 8, w = 8, steps = 1;
    const unet_config *uc = unet_get_config(m->unet);
    uint8_t need[1] = {1};
    as_config ac = {.unet = uc, .F = F, .h = h, .w = w, .steps = steps, .n_ctx = 77, .mode = XF_FIRST_PREV, .least_sc_channel = 0,
                    .dtype = AS_F32, .need_self = need, .blend_level = -1};
    ac.force = AS_QK;
    attn_store *sq = attn_store_new(&ac);
    ac.force = AS_MAP;
    attn_store *sm = attn_store_new(&ac);
    if (!t_check(sq && sm, "stores for views", "%s", ocd_last_error())) { attn_store_free(sq); attn_store_free(sm); return; }
    const as_layer *L = &sq->layers[sq->hooked_layer[0]];
    const int Nq = L->H * L->W, C = L->C, heads = L->heads, dh = C / heads, nk = 2 * Nq;
    float *q = malloc(sizeof(float) * F * Nq * C), *k = malloc(sizeof(float) * F * Nq * C), *kw = malloc(sizeof(float) * nk * C);
    float *P = malloc(sizeof(float) * heads * Nq * nk), *A = malloc(sizeof(float) * heads * Nq * nk);
    float *B = malloc(sizeof(float) * heads * Nq * nk);
    float *scratch = malloc(sizeof(float) * attn_store_scratch_floats(sq));
    uint64_t s = 3;
    for (int i = 0; i < F * Nq * C; i++) q[i] = frand(&s), k[i] = frand(&s);
    const float scale = 1.0f / sqrtf((float)dh);
    unet_attn_call call = {.layer = L->layer, .is_cross = 0, .H = L->H, .W = L->W, .batch = F, .Nq = Nq, .Nk = Nq, .C = C,
                           .heads = heads, .dh = dh, .scale = scale, .q = q, .k = k, .v = k};
    for (int f = 0; f < F; f++) {
        int kv[XF_MAX_KV], n = xf_kv_frames(XF_FIRST_PREV, 0, F, f, C, kv);
        for (int i = 0; i < n; i++) memcpy(kw + (size_t)i * Nq * C, k + (size_t)kv[i] * Nq * C, sizeof(float) * Nq * C);
        as_softmax_map(q + (size_t)f * Nq * C, C, kw, C, Nq, nk, heads, dh, scale, P);
        call.b = f;
        attn_store_record(sq, 0, &call, NULL);
        attn_store_record(sm, 0, &call, P);
    }
    /* a crop of the grid: rows, and keys of both window frames */
    ocs_box lb = {1, 1, L->H > 2 ? L->H - 2 : L->H, L->W > 2 ? L->W - 2 : L->W};
    if (L->H <= 2) lb.y0 = lb.x0 = 0;
    int32_t rows[1024], keys[2048];
    ocs_box_tokens(&lb, 1, L->H, L->W, rows);
    ocs_box_tokens(&lb, 2, L->H, L->W, keys);
    const int nr = lb.h * lb.w, nkc = 2 * nr;
    as_view vw = {rows, nr, keys, nkc, NULL};
    int rc = attn_store_map_view(sq, 0, 0, 0, 1, &vw, A, scratch) || attn_store_map_view(sm, 0, 0, 0, 1, &vw, B, scratch);
    t_check(!rc, "store views", "%s", rc ? ocd_last_error() : "");
    if (!rc) t_close("view rows+keys: Q/K recompute == renormalised map", A, B, (size_t)heads * nr * nkc, 1e-6, 1e-5);
    /* merged keys: the view equals softmax over the plan's merged keys */
    tome_params tp;
    tome_params_default(&tp);
    tp.min_tokens = 1;
    int32_t dst[2 * 256];
    const int cells = tome_n_cells(lb.h, lb.w, 2, 2);
    tome_draw_dst(5, 1, 0, 0, lb.h, lb.w, 2, 2, dst);
    tome_draw_dst(5, 1, 0, 1, lb.h, lb.w, 2, 2, dst + cells);
    float *kc = malloc(sizeof(float) * nkc * C), *km = malloc(sizeof(float) * nkc * C);
    int kv[XF_MAX_KV];
    xf_kv_frames(XF_FIRST_PREV, 0, F, 1, C, kv);
    for (int j = 0; j < nkc; j++) {
        const int g = keys[j] / Nq, t = keys[j] % Nq;
        memcpy(kc + (size_t)j * C, k + ((size_t)kv[g] * Nq + t) * C, sizeof(float) * C);
    }
    size_t sb = tome_kv_scratch_bytes(&tp, lb.h, lb.w, 2, C);
    void *ts = malloc(sb);
    tome_plan pl;
    tome_plan_init(&pl, nkc);
    rc = tome_kv_plan(&tp, kc, C, lb.h, lb.w, 2, dst, NULL, ts, sb, &pl);
    if (!rc && pl.r > 0) {
        tome_merge(&pl, kc, C, km);
        float *qr = malloc(sizeof(float) * nr * C);
        for (int i = 0; i < nr; i++) memcpy(qr + (size_t)i * C, q + ((size_t)Nq + rows[i]) * C, sizeof(float) * C);
        as_softmax_map(qr, C, km, C, nr, pl.n_out, heads, dh, scale, B);
        vw.plan = &pl;
        rc = attn_store_map_view(sq, 0, 0, 0, 1, &vw, A, scratch);
        if (!rc) t_close("view with merged keys == softmax(q merge(k)^T)", A, B, (size_t)heads * nr * pl.n_out, 1e-6, 1e-5);
        rc = attn_store_map_view(sm, 0, 0, 0, 1, &vw, A, scratch);
        t_check(rc == -1, "map entries refuse merged views", "%s", ocd_last_error());
        free(qr);
    } else t_check(0, "view plan", "%s r %d", rc ? ocd_last_error() : "", pl.r);
    tome_plan_free(&pl);
    free(ts); free(kc); free(km);
    free(q); free(k); free(kw); free(P); free(A); free(B); free(scratch);
    attn_store_free(sq);
    attn_store_free(sm);
}

/* ------------------------------------------------------------ pipeline runs */

typedef struct {
    tome_plan_store *inv;      /* copies of the inversion's plans */
    tome_plan tmp;
    int n_inv, n_edit, n_edit_bad, n_halves[2];
    /* OC-ToMe property */
    const float *mask; int F, h, w;
    uint64_t seed;
    long fg_merged[8], bg_unmerged[8], violations[8], plans[8];
    int oc_check;
} probe_state;

static int level_of(int H, int h) { int l = 0; while (H < h) h = (h - 1) / 2 + 1, l++; return l; }

static void probe(void *user, int phase, const unet_attn_call *call, int frame, int n_kv, const tome_plan *p) {
    probe_state *ps = user;
    if (phase == 0) {
        if (tome_store_put(ps->inv, call->timestep, call->layer, frame, p)) fprintf(stderr, "probe put: %s\n", ocd_last_error());
        ps->n_inv++;
        if (ps->oc_check && n_kv == 1) {
            /* sources of the frame's grid and which of them are foreground */
            const int H = call->H, W = call->W, N = H * W, lv = level_of(H, ps->h) & 7;
            int32_t *dst_choice = malloc(sizeof(int32_t) * N), *dsti = malloc(sizeof(int32_t) * N), *srci = malloc(sizeof(int32_t) * N);
            uint8_t *fg = malloc(N);
            tome_draw_dst(ps->seed, call->timestep, call->layer, frame, H, W, 2, 2, dst_choice);
            tome_partition(H, W, 2, 2, 1, dst_choice, dsti, srci);
            tome_pool_mask(ps->mask + (size_t)frame * ps->h * ps->w, ps->h, ps->w, H, W, fg);
            const int n_src = N - tome_n_cells(H, W, 2, 2);
            long fgm = 0, bgu = 0;
            for (int i = 0; i < n_src; i++) {
                const int t = srci[i], merged = p->keep[p->into[t]] != t;
                if (fg[t] && merged) fgm++;
                if (!fg[t] && !merged) bgu++;
            }
            ps->fg_merged[lv] += fgm, ps->bg_unmerged[lv] += bgu, ps->plans[lv]++;
            if (fgm && bgu) ps->violations[lv]++;
            free(dst_choice); free(dsti); free(srci); free(fg);
        }
        return;
    }
    ps->n_edit++;
    ps->n_halves[phase == 2]++;
    const int rc = tome_store_get(ps->inv, call->timestep, call->layer, frame, &ps->tmp);
    int same = rc == 1 && ps->tmp.n_tok == p->n_tok && ps->tmp.n_out == p->n_out &&
               !memcmp(ps->tmp.keep, p->keep, sizeof(int32_t) * p->n_out) && !memcmp(ps->tmp.into, p->into, sizeof(int32_t) * p->n_tok);
    ps->n_edit_bad += !same;
}

static void base_params(fz_params *p, const char *preset, int steps) {
    fz_default_params(p);
    fz_preset(p, preset);
    p->source = "a red circle on green grass";
    p->target = "a blue circle on green grass";
    p->steps = steps;
    p->cfg = 5.0f;
    p->self_replace = 0.9;
    p->least_sc_channel = 64;
    p->tome_min_tokens = 4;   /* the toy's grids are 8x8 and smaller */
}

/* encode + invert + edit; z_out [F, 4, h, w]; the report copied out. */
static int run(sd_model *m, const fz_params *p, const float *frames, int F, int S, float *z_out, fz_report *rep,
               probe_state *ps) {
    fz_ctx *c = fz_new(m, p, F, S, S);
    if (!c) return -1;
    const size_t n = (size_t)F * 4 * (S / 8) * (S / 8);
    float *z0 = malloc(sizeof(float) * n), *zT = malloc(sizeof(float) * n);
    if (ps) fz_set_plan_probe(c, probe, ps);
    int rc = fz_encode(c, frames, z0) || fz_invert(c, z0, NULL, zT) || fz_edit_latents(c, NULL, zT, NULL, z_out) ? -1 : 0;
    if (rep) *rep = *fz_get_report(c);
    free(z0);
    free(zT);
    fz_free(c);
    return rc;
}

static void test_pairing(sd_model *m, const float *frames, int F) {
    const int S = 64, steps = 4;
    const size_t n = (size_t)F * 4 * 8 * 8;
    float *z = malloc(sizeof(float) * n);
    fz_params p;
    base_params(&p, "optimized", steps);
    p.xframe = XF_FIRST_PREV;
    probe_state ps = {0};
    ps.inv = tome_store_new();
    tome_plan_init(&ps.tmp, 4096);
    fz_report rep;
    int rc = run(m, &p, frames, F, S, z, &rep, &ps);
    t_check(!rc, "optimized run (DPM-Solver++ 20 -> 4 steps, ratio 0.5)", "%s", rc ? ocd_last_error() : "");
    t_check(ps.n_inv > 0 && ps.n_edit == 2 * ps.n_inv && ps.n_edit_bad == 0 && ps.n_halves[0] == ps.n_halves[1],
            "paired plans: editing uses the inversion's plan (both CFG halves)", "%d inversion plans, %d editing uses, %d differ",
            ps.n_inv, ps.n_edit, ps.n_edit_bad);
    long tin = 0, tm = 0;
    char lv[256] = "";
    for (int l = 0; l < 8; l++) {
        tin += rep.tokens_in[l], tm += rep.tokens_merged[l];
        if (rep.tokens_in[l]) snprintf(lv + strlen(lv), sizeof lv - strlen(lv), " L%d %ld/%ld", l, rep.tokens_merged[l], rep.tokens_in[l]);
    }
    t_check(tm > 0 && rep.plan_bytes > 0, "tokens merged and plan memory reported", "merged/in:%s, plans %zu B, %.3f GFLOP", lv,
            rep.plan_bytes, rep.gflop);
    /* the same seed gives the same plans; frames get different destinations */
    probe_state ps2 = {0};
    ps2.inv = tome_store_new();
    tome_plan_init(&ps2.tmp, 4096);
    run(m, &p, frames, F, S, z, NULL, &ps2);
    int same = tome_store_count(ps2.inv) == tome_store_count(ps.inv), diff = 0, cmp = 0;
    t_check(same, "second run: same number of plans", "%d vs %d", tome_store_count(ps2.inv), tome_store_count(ps.inv));
    int32_t d0[64], d1[64], d2[64];
    tome_draw_dst(p.tome_seed, 999, 0, 0, 8, 8, 2, 2, d0);
    tome_draw_dst(p.tome_seed, 999, 0, 1, 8, 8, 2, 2, d1);
    tome_draw_dst(p.tome_seed, 999, 0, 0, 8, 8, 2, 2, d2);
    t_check(memcmp(d0, d1, sizeof(int32_t) * 16) && !memcmp(d0, d2, sizeof(int32_t) * 16), "destinations: per frame, seeded",
            "frame 0 vs 1 differ, repeat equal");
    /* through the pipeline: the two runs' plans agree */
    tome_plan a, b;
    tome_plan_init(&a, 4096);
    tome_plan_init(&b, 4096);
    /* walk the plans of the first run through the probe's key space */
    fz_ctx *c = fz_new(m, &p, F, S, S);
    const int *ts = c ? fz_timesteps(c) : NULL;
    for (int i = 0; ts && i < steps; i++)
        for (int l = 0; l < 16; l++)
            for (int f = 0; f < F; f++) {
                if (tome_store_get(ps.inv, ts[i], l, f, &a) != 1) continue;
                cmp++;
                if (tome_store_get(ps2.inv, ts[i], l, f, &b) != 1 || a.n_out != b.n_out ||
                    memcmp(a.into, b.into, sizeof(int32_t) * a.n_tok))
                    diff++;
            }
    t_check(cmp > 0 && diff == 0, "plans repeat run to run with one seed", "%d plans compared, %d differ", cmp, diff);
    /* per-frame windows: in self mode, frames 0 and 1 have different plans somewhere */
    int frames_differ = 0;
    for (int i = 0; ts && i < steps && !frames_differ; i++)
        for (int l = 0; l < 16 && !frames_differ; l++)
            if (tome_store_get(ps.inv, ts[i], l, 0, &a) == 1 && tome_store_get(ps.inv, ts[i], l, 2, &b) == 1 && a.n_tok == b.n_tok &&
                a.r > 0)
                frames_differ = memcmp(a.into, b.into, sizeof(int32_t) * a.n_tok) != 0;
    t_check(frames_differ, "frames 0 and 2 merge differently", " ");
    fz_free(c);
    tome_plan_free(&a);
    tome_plan_free(&b);
    tome_store_free(ps.inv);
    tome_store_free(ps2.inv);
    tome_plan_free(&ps.tmp);
    tome_plan_free(&ps2.tmp);
    free(z);
}

static void test_oc_tome(sd_model *m, const float *frames, int F) {
    const int S = 64, steps = 3, h = 8, w = 8;
    float *mask = calloc((size_t)F * h * w, sizeof(float));
    /* region R: columns 0..5 of every frame (75%: the foreground must also be merged at ratio 0.5) */
    for (int f = 0; f < F; f++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < 6; x++) mask[(f * h + y) * w + x] = 1.0f;
    float *z = malloc(sizeof(float) * F * 4 * h * w);
    fz_params p;
    base_params(&p, "optimized", steps);
    p.oc_tome_lambda = 1.0f;
    p.xframe = XF_SELF;
    p.mask = mask;
    p.tome_min_tokens = 1;
    probe_state ps = {0};
    ps.inv = tome_store_new();
    tome_plan_init(&ps.tmp, 4096);
    ps.mask = mask, ps.F = F, ps.h = h, ps.w = w, ps.seed = p.tome_seed, ps.oc_check = 1;
    int rc = run(m, &p, frames, F, S, z, NULL, &ps);
    t_check(!rc, "OC-ToMe run", "%s", rc ? ocd_last_error() : "");
    for (int l = 0; l < 8; l++) {
        if (!ps.plans[l]) continue;
        char name[96];
        snprintf(name, sizeof name, "OC-ToMe level %d: no R token merged while background sources remain", l);
        t_check(ps.violations[l] == 0, name, "%ld plans, %ld violating; R merged %ld, background unmerged %ld", ps.plans[l],
                ps.violations[l], ps.fg_merged[l], ps.bg_unmerged[l]);
    }
    /* a smaller R (a quarter): nothing of R is merged at the 8x8 level */
    memset(mask, 0, sizeof(float) * F * h * w);
    for (int f = 0; f < F; f++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) mask[(f * h + y) * w + x] = 1.0f;
    memset(ps.fg_merged, 0, sizeof ps.fg_merged);
    memset(ps.plans, 0, sizeof ps.plans);
    tome_store_clear(ps.inv);
    rc = run(m, &p, frames, F, S, z, NULL, &ps);
    t_check(!rc && ps.plans[0] > 0 && ps.fg_merged[0] == 0, "OC-ToMe: a quarter-frame R is never merged at ratio 0.5 (8x8 level)",
            "%ld R tokens merged in %ld plans", ps.fg_merged[0], ps.plans[0]);
    tome_store_free(ps.inv);
    tome_plan_free(&ps.tmp);
    free(z);
    free(mask);
}

static void test_ratio0_bitwise(sd_model *m, const float *frames, int F) {
    const int S = 64, steps = 3;
    const size_t n = (size_t)F * 4 * 8 * 8;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    fz_params p;
    base_params(&p, "optimized", steps);
    p.tome_ratio = 0.0f;                   /* optimized without merging: the machinery is off */
    int rc = run(m, &p, frames, F, S, a, NULL, NULL);
    base_params(&p, "ocd", steps);
    p.tome_ratio = 0.0f, p.ocs = 0;        /* OC-ToMe lambda 1 keeps the machinery on, with identity plans */
    fz_report rep;
    rc |= run(m, &p, frames, F, S, b, &rep, NULL);
    long tin = 0;
    for (int l = 0; l < 8; l++) tin += rep.tokens_in[l];
    t_check(!rc && tin > 0 && !memcmp(a, b, sizeof(float) * n), "ratio 0, no OCS == optimized without merging (bitwise)",
            "%s plans over %ld tokens", rc ? ocd_last_error() : "", tin);
    free(a);
    free(b);
}

static void test_ocs(sd_model *m, const float *frames128, int F) {
    const int S = 128, h = 16, w = 16, steps = 6;
    const size_t n = (size_t)F * 4 * h * w;
    float *mask = calloc((size_t)F * h * w, sizeof(float));
    for (int f = 0; f < F; f++)
        for (int y = 2; y < 5; y++)
            for (int x = 2 + f; x < 5 + f; x++) mask[(f * h + y) * w + x] = 1.0f; /* moves right: union x 2..5 */
    float *z = malloc(sizeof(float) * n), *z2 = malloc(sizeof(float) * n);
    fz_params p;
    base_params(&p, "ocd", steps);
    p.mask = mask;
    p.xframe = XF_FIRST_PREV;
    fz_report rep;
    for (int phi = t_quick() ? 2 : 4; phi >= 2; phi -= 2) { /* phi 2: ceil(3 / 2) = 2 background calls */
        p.ocs_phi = phi;
        int rc = run(m, &p, frames128, F, S, z, &rep, NULL);
        const int b = ocs_blend_step(steps, p.ocs_blend);
        const double want = ocs_cost(steps, b, phi, 0.25);
        char name[96];
        snprintf(name, sizeof name, "OCS (phi %d): counted UNet work == b area + ceil(b/phi) + (N-b)", phi);
        t_check(!rc && rep.ocs_area == 0.25 && fabs(rep.unet_full_frame_calls - want) < 1e-9, name,
                "%s area %.3f, %.4g full-frame calls, formula %.4g (N %d, b %d); %d UNet calls, %.3f GFLOP; %.2f+%.2f+%.2f s; note: %s",
                rc ? ocd_last_error() : "", rep.ocs_area, rep.unet_full_frame_calls, want, steps, b, rep.unet_calls, rep.gflop,
                rep.t_encode, rep.t_invert, rep.t_edit, rep.note);
    }
    int finite = 1;
    for (size_t i = 0; i < n; i++) finite &= isfinite(z[i]);
    t_check(finite, "OCS output finite", " ");
    /* empty mask: plain sampling, said so, and exactly the run without OCS */
    memset(mask, 0, sizeof(float) * F * h * w);
    int rc = run(m, &p, frames128, F, S, z, &rep, NULL);
    t_check(!rc && strstr(rep.note, "empty mask") && rep.ocs_area == 0 && rep.unet_full_frame_calls == steps,
            "empty mask: plain sampling, noted", "note \"%s\", %g full-frame calls", rep.note, rep.unet_full_frame_calls);
    p.ocs = 0;
    rc = run(m, &p, frames128, F, S, z2, NULL, NULL);
    t_check(!rc && !memcmp(z, z2, sizeof(float) * n), "empty-mask fallback == OCS off (bitwise)", " ");
    /* no mask source at all */
    p.ocs = 1, p.mask = NULL;
    rc = run(m, &p, frames128, F, S, z, &rep, NULL);
    t_check(!rc && strstr(rep.note, "no foreground mask"), "no mask: OCS off, noted", "\"%s\"", rep.note);
    /* a crop larger than ocs_max_area */
    for (size_t i = 0; i < (size_t)F * h * w; i++) mask[i] = (i % w) == 12 || (i % w) == 1 ? 1.0f : 0.0f;
    p.mask = mask;
    rc = run(m, &p, frames128, F, S, z, &rep, NULL);
    t_check(!rc && strstr(rep.note, "covers"), "crop over max area: OCS off, noted", "\"%s\"", rep.note);
    /* blend-word mask from the inversion's cross maps */
    p.mask = NULL;
    p.blend_words_src = "circle";
    fz_ctx *c = fz_new(m, &p, F, S, S);
    float *z0 = malloc(sizeof(float) * n);
    rc = !c || fz_encode(c, frames128, z0) || fz_invert(c, z0, NULL, z2);
    const float *bm = c ? fz_mask(c) : NULL;
    long on = 0;
    for (size_t i = 0; bm && i < (size_t)F * h * w; i++) on += bm[i] > 0.5f;
    t_check(!rc && bm && on > 0, "blend-word mask from the inversion's cross maps", "%ld of %d latent pixels foreground", on, F * h * w);
    if (c && !rc) {
        rc = fz_edit_latents(c, NULL, z2, NULL, z);
        t_check(!rc, "OCS with the blend-word mask runs", "%s; note: %s", rc ? ocd_last_error() : "", fz_get_report(c)->note);
    }
    fz_free(c);
    free(z0);
    free(z);
    free(z2);
    free(mask);
}

/* OCS with fusion, merging and the crop on the full ocd preset, fusion on (views of the store). */
static void test_ocs_fusion_flops(sd_model *m, const float *frames128, int F) {
    const int S = 128, h = 16, w = 16, steps = 4;
    const size_t n = (size_t)F * 4 * h * w;
    float *mask = calloc((size_t)F * h * w, sizeof(float));
    for (int f = 0; f < F; f++)
        for (int y = 10; y < 13; y++)
            for (int x = 10; x < 13; x++) mask[(f * h + y) * w + x] = 1.0f;
    float *z = malloc(sizeof(float) * n);
    fz_params p;
    fz_report r0, r1, r2;
    base_params(&p, "optimized", steps);
    p.tome_ratio = 0.0f;
    int rc = run(m, &p, frames128, F, S, z, &r0, NULL);
    base_params(&p, "optimized", steps);
    rc |= run(m, &p, frames128, F, S, z, &r1, NULL);
    base_params(&p, "ocd", steps);
    p.mask = mask;
    rc |= run(m, &p, frames128, F, S, z, &r2, NULL);
    t_check(!rc && r1.gflop < r0.gflop && r2.gflop < r1.gflop && r2.ocs_area > 0,
            "counted GFLOP: merging and OCS save work", "%s no merging %.4f, ratio 0.5 %.4f, ocd %.4f GFLOP (area %.2f)",
            rc ? ocd_last_error() : "", r0.gflop, r1.gflop, r2.gflop, r2.ocs_area);
    free(z);
    free(mask);
}

int main(int argc, char **argv) {
    (void)argc;
    test_presets();
    test_ocs_helpers();
    sd_model m;
    if (!t_check(sd_model_load(&m, TOY_MODEL, 0) == 0, "load toy model", "%s", ocd_last_error())) return t_summary(argv[0]);
    test_store_view(&m);
    ocd_video v;
    if (!t_check(video_read(TOY_CLIP, 0, 1, 3, &v) == 0, "read toy clip", "%s", ocd_last_error())) {
        sd_model_free(&m);
        return t_summary(argv[0]);
    }
    const int F = v.n;
    float *frames = video_preprocess(&v, 64), *frames128 = video_preprocess(&v, 128);
    test_pairing(&m, frames, F);
    test_oc_tome(&m, frames, F);
    test_ratio0_bitwise(&m, frames, F);
    test_ocs(&m, frames128, 2);
    if (!t_quick()) test_ocs_fusion_flops(&m, frames128, 2); /* the sanitizer run covers these paths in test_ocs */
    free(frames);
    free(frames128);
    video_free(&v);
    sd_model_free(&m);
    return t_summary(argv[0]);
}
