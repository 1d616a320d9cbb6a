/* The OCD accelerations on ControlVideo (ocd-method.md 7; edit/controlvideo.h), on synthetic
 * attention calls and on the tiny fixtures (tests/data/tiny-sd + tiny-controlnet), few frames and
 * steps:
 *   - presets are data (cv_preset), `controlvideo` = the defaults, unknown names fail;
 *   - 3D merging in the hook: ratio 0 == the unmerged path bitwise; one plan over all frames' keys
 *     (cross-frame merges happen), made at item 0 and used by every item; destinations differ
 *     between frames and repeat with one seed; OC-ToMe: no token of the mask is merged while
 *     unmerged background sources remain (synthetic keys and every plan of a real run);
 *   - cv_generate: ratio 0 (OC-ToMe's lambda alone merges nothing) == ControlVideo, bitwise;
 *   - OCS: counted work == ocs_cost (also with the hierarchical sampler); the foreground branch is
 *     ControlVideo on the cropped latents and conditions (bitwise inside the mask); fallbacks
 *     (empty mask, no mask, crop too large) sample plainly (bitwise) and say so; a smoother step
 *     inside the branches is skipped and noted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "edit/controlvideo.h"
#include "edit/ocs.h"
#include "edit/presets.h"
#include "edit/tome.h"
#include "kernels/kernels.h"
#include "testlib.h"

/* ------------------------------------------------------------ presets */

static void test_presets(void) {
    cv_params d, p;
    cv_default_params(&d);
    cv_default_params(&p);
    int rc = cv_preset(&p, "controlvideo");
    t_check(!rc && p.solver == d.solver && p.steps == d.steps && p.guidance == d.guidance && p.ocd.tome_ratio == 0.0f &&
                p.ocd.oc_tome_lambda == 0.0f && !p.ocd.ocs && !memcmp(&p.ocd, &d.ocd, sizeof p.ocd),
            "preset controlvideo == the defaults (DDIM 50, CFG 12.5, OCD off)", "solver %d steps %d", p.solver, p.steps);
    rc = cv_preset(&p, "optimized");
    t_check(!rc && p.solver == OCD_SOLVER_DPMPP_2M && p.steps == 20 && p.ocd.tome_ratio == 0.5f && p.ocd.tome_min_tokens == 64 &&
                p.ocd.oc_tome_lambda == 0.0f && !p.ocd.ocs,
            "preset optimized", "steps %d ratio %g", p.steps, p.ocd.tome_ratio);
    p.n_smooth = 0, p.ocd.ocs_phi = 3;
    rc = cv_preset(&p, "ocd");
    t_check(!rc && p.solver == OCD_SOLVER_DPMPP_2M && p.steps == 20 && p.ocd.tome_ratio == 0.5f && p.ocd.oc_tome_lambda == 1.0f &&
                p.ocd.ocs == 1 && p.n_smooth == 0 && p.ocd.ocs_phi == 3,
            "preset ocd (other knobs kept)", "lambda %g ocs %d", p.ocd.oc_tome_lambda, p.ocd.ocs);
    rc = cv_preset(&p, "fatezero");
    t_check(rc < 0 && strstr(ocd_last_error(), "controlvideo"), "unknown preset fails", "%s", ocd_last_error());
    int n = 0;
    for (const char *const *s = cv_preset_names(); *s; s++) n++;
    t_check(n == 3, "preset names", "%d", n);
}

/* ------------------------------------------------------------ the hook on synthetic calls */

enum { SF = 3, SH = 8, SW = 8, SN = SH * SW, SC = 16, SHEADS = 2 };

typedef struct {
    float q[SF * SN * SC], k[SF * SN * SC], v[SF * SN * SC];
    float *scratch;
    unet_config u;
} synth;

static void synth_init(synth *s) {
    rng_normal(3, 1, s->q, SF * SN * SC);
    rng_normal(3, 2, s->k, SN * SC);
    rng_normal(3, 3, s->v, SF * SN * SC);
    /* frames 1 and 2: frame 0's keys plus a little noise, so that sources find their best match in other frames */
    float noise[SN * SC];
    for (int f = 1; f < SF; f++) {
        rng_normal(3, 10 + f, noise, SN * SC);
        for (int i = 0; i < SN * SC; i++) s->k[f * SN * SC + i] = s->k[i] + 0.05f * noise[i];
    }
    s->scratch = malloc(sizeof(float) * k_attention_scratch_floats(SN, SF * SN));
    memset(&s->u, 0, sizeof s->u);
    s->u.n_levels = 1, s->u.block_out[0] = SC;
}

static unet_attn_call synth_call(synth *s, float *out, int b, int timestep) {
    return (unet_attn_call){.layer = 3, .is_cross = 0, .H = SH, .W = SW, .batch = SF, .b = b, .Nq = SN, .Nk = SN, .C = SC,
                            .heads = SHEADS, .dh = SC / SHEADS, .scale = 1.0f / sqrtf(SC / SHEADS), .q = s->q, .k = s->k,
                            .v = s->v, .out = out, .timestep = timestep, .scratch = s->scratch};
}

static int hook_with_merging(cv_hook_state *st, const synth *s, float ratio, float lambda) {
    memset(st, 0, sizeof *st);
    tome_params_default(&st->tp);
    st->tp.ratio = ratio, st->tp.lambda = lambda, st->tp.min_tokens = 1;
    st->merge = 1, st->seed = 11, st->lat_h = SH;
    return cv_hook_plan_buffers(st, &s->u, SF, SH, SW);
}

static void test_hook_ratio0(synth *s) {
    float a[SN * SC], b[SN * SC];
    cv_hook_state plain = {0}, st;
    if (hook_with_merging(&st, s, 0.0f, 1.0f)) { t_check(0, "hook buffers", "%s", ocd_last_error()); return; }
    int same = 1;
    for (int i = 0; i < SF; i++) {
        unet_attn_call c = synth_call(s, a, i, 500);
        cv_attend(&plain, &c);
        c.out = b;
        cv_attend(&st, &c);
        same &= !memcmp(a, b, sizeof a);
    }
    t_check(same && st.plan.n_tok == SF * SN && st.plan.r == 0 && st.tokens_in[0] == SF * SN && st.extra_flops == plain.extra_flops,
            "ratio 0: fully cross-frame attention == the unmerged path (bitwise)", "plan over %d tokens, r %d", st.plan.n_tok,
            st.plan.r);
    cv_hook_free(&st);
}

static void test_hook_plan(synth *s) {
    cv_hook_state st;
    float out[SN * SC], ref[SN * SC];
    if (hook_with_merging(&st, s, 0.5f, 0.0f)) { t_check(0, "hook buffers", "%s", ocd_last_error()); return; }
    unet_attn_call c = synth_call(s, out, 0, 700);
    int rc = cv_attend(&st, &c);
    const tome_plan *pl = &st.plan;
    int cross = 0;
    for (int t = 0; t < pl->n_tok; t++) cross += pl->keep[pl->into[t]] / SN != t / SN;
    t_check(!rc && pl->n_tok == SF * SN && pl->r > 0 && cross > 0, "one 3D plan over all frames' keys, sources merged across frames",
            "%d tokens, %d merged, %d into another frame's destination", pl->n_tok, pl->r, cross);
    const double want_flops = 4.0 * SN * ((double)pl->n_out - SN) * SC;
    t_check(fabs(st.extra_flops - want_flops) < 1e-6 && st.tokens_merged[0] == pl->r && st.plan_flops > 0,
            "counted attention FLOPs use the merged key count", "%.0f (want %.0f), plan %.0f", st.extra_flops, want_flops,
            st.plan_flops);
    /* item 2 attends to the merged K/V of the plan made at item 0 */
    float *km = malloc(sizeof(float) * pl->n_out * SC), *vm = malloc(sizeof(float) * pl->n_out * SC);
    tome_merge_kv(pl, s->k, s->v, SC, km, vm);
    c = synth_call(s, out, 2, 700);
    rc = cv_attend(&st, &c);
    k_attention_ref(ref, SC, s->q + 2 * SN * SC, SC, km, SC, vm, SC, SN, pl->n_out, SHEADS, SC / SHEADS, c.scale, 0);
    t_close("every query frame attends to the call's merged K/V", out, ref, SN * SC, 1e-6, 1e-5);
    t_check(st.tokens_in[0] == SF * SN, "one plan per call (not per query frame)", "%ld tokens planned", st.tokens_in[0]);
    free(km);
    free(vm);
    /* destinations: drawn per clip frame, per (timestep, layer), from the seed */
    const int cells = tome_n_cells(SH, SW, 2, 2);
    int32_t d0[SF * 16], want[16];
    memcpy(d0, st.dst, sizeof(int32_t) * SF * cells);
    int differ = memcmp(d0, d0 + cells, sizeof(int32_t) * cells) && memcmp(d0 + cells, d0 + 2 * cells, sizeof(int32_t) * cells);
    c = synth_call(s, out, 0, 700);
    cv_attend(&st, &c);
    const int repeat = !memcmp(d0, st.dst, sizeof(int32_t) * SF * cells);
    c = synth_call(s, out, 0, 699);
    cv_attend(&st, &c);
    const int other_t = memcmp(d0, st.dst, sizeof(int32_t) * cells) != 0;
    const int frames[SF] = {5, 7, 9};   /* list items are clip frames 5, 7, 9 */
    st.frames = frames;
    c = synth_call(s, out, 0, 700);
    cv_attend(&st, &c);
    tome_draw_dst(11, 700, 3, 7, SH, SW, 2, 2, want);
    const int by_frame = !memcmp(st.dst + cells, want, sizeof(int32_t) * cells);
    t_check(differ && repeat && other_t && by_frame, "destinations differ between frames, repeat with the seed, follow the clip frame",
            "differ %d repeat %d other timestep %d clip frame %d", differ, repeat, other_t, by_frame);
    cv_hook_free(&st);
}

/* R sources merged / background sources left unmerged by a plan over n_kv frames (clip frames
 * fr[]) of an H x W grid, fg [n_kv * H * W]; 1 when the plan violates OC-ToMe's ordering. */
static int oc_violation(const tome_plan *pl, const uint8_t *fg, int n_kv, const int *fr, uint64_t seed, int t, int layer, int H,
                        int W, long *fg_merged, long *bg_unmerged) {
    const int hw = H * W, cells = tome_n_cells(H, W, 2, 2);
    int32_t *dst = malloc(sizeof(int32_t) * n_kv * (cells ? cells : 1)), *di = malloc(sizeof(int32_t) * n_kv * hw);
    int32_t *si = malloc(sizeof(int32_t) * n_kv * hw);
    for (int i = 0; i < n_kv; i++) tome_draw_dst(seed, t, layer, fr[i], H, W, 2, 2, dst + i * cells);
    tome_partition(H, W, 2, 2, n_kv, dst, di, si);
    long fgm = 0, bgu = 0;
    for (int i = 0; i < n_kv * (hw - cells); i++) {
        const int tok = si[i], merged = pl->keep[pl->into[tok]] != tok;
        fgm += fg[tok] && merged;
        bgu += !fg[tok] && !merged;
    }
    free(dst); free(di); free(si);
    *fg_merged += fgm, *bg_unmerged += bgu;
    return fgm && bgu;
}

static void test_hook_oc_tome(synth *s) {
    float mask[SF * SN], out[SN * SC];
    const int fr[SF] = {0, 1, 2};
    for (int quarter = 1; quarter >= 0; quarter--) {
        /* R: a 4x4 quarter of every frame, or its 6 left columns (75%: R must be merged too) */
        for (int i = 0; i < SF * SN; i++) {
            const int y = i % SN / SW, x = i % SW;
            mask[i] = quarter ? (y < 4 && x < 4) : x < 6;
        }
        cv_hook_state st;
        if (hook_with_merging(&st, s, 0.5f, 1.0f)) { t_check(0, "hook buffers", "%s", ocd_last_error()); return; }
        st.mask = mask, st.mask_h = SH, st.mask_w = SW;
        unet_attn_call c = synth_call(s, out, 0, 600);
        long fgm = 0, bgu = 0;
        const int rc = cv_attend(&st, &c);
        const int bad = oc_violation(&st.plan, st.fg, SF, fr, 11, 600, 3, SH, SW, &fgm, &bgu);
        if (quarter)
            t_check(!rc && fgm == 0 && st.plan.r > 0, "OC-ToMe 3D plan: a quarter-frame R is never merged at ratio 0.5",
                    "%ld R sources merged, %d merges", fgm, st.plan.r);
        else
            t_check(!rc && !bad && fgm > 0, "OC-ToMe 3D plan: R merged only once no background source is left",
                    "%ld R sources merged, %ld background sources unmerged", fgm, bgu);
        cv_hook_free(&st);
    }
}

/* ------------------------------------------------------------ cv_generate on the tiny fixtures */

static sd_model g_sd;
static controlnet_model g_cn;
static pipe_ctx g_p;

typedef struct {
    int F, h, w;
    float *emb, *cond, *noise;
} gen_in;

static void in_init(gen_in *ci, int F, int h, int w) {
    const int H = 8 * h, W = 8 * w;
    ci->F = F, ci->h = h, ci->w = w;
    ci->emb = malloc(sizeof(float) * 2 * 77 * 32);
    ci->cond = malloc(sizeof(float) * F * 3 * H * W);
    ci->noise = malloc(sizeof(float) * 4 * h * w);
    rng_normal(5, 1, ci->emb, 2 * 77 * 32);
    rng_uniform(5, 2, ci->cond, (size_t)F * 3 * H * W);
    rng_normal(5, 3, ci->noise, (size_t)4 * h * w);
}

static void in_free(gen_in *ci) { free(ci->emb); free(ci->cond); free(ci->noise); }

static int gen(const gen_in *ci, const cv_params *p, float *lat, cv_stats *st) {
    return cv_generate(&g_p, g_cn.net, p, ci->emb, ci->cond, ci->F, ci->noise, ci->h, ci->w, lat, st);
}

static void small_params(cv_params *p, const char *preset, int steps) {
    cv_default_params(p);
    cv_preset(p, preset);
    p->steps = steps, p->n_smooth = 0;
    p->ocd.tome_min_tokens = 8;   /* the tiny latents are small: let every level merge */
}

typedef struct {
    uint64_t seed;
    long plans, violations, fg_merged, bg_unmerged;
} oc_probe;

static void probe_plan(void *user, const unet_attn_call *c, int n_kv, const int *frames, const tome_plan *pl, const uint8_t *fg) {
    oc_probe *ps = user;
    if (!fg) return;
    long fgm = 0, bgu = 0;
    ps->plans++;
    ps->violations += oc_violation(pl, fg, n_kv, frames, ps->seed, c->timestep, c->layer, c->H, c->W, &fgm, &bgu);
    ps->fg_merged += fgm, ps->bg_unmerged += bgu;
}

static void test_generate_ratio0(void) {
    gen_in ci;
    in_init(&ci, 3, 8, 8);
    const size_t n = 3 * 4 * 64;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n), *c = malloc(sizeof(float) * n);
    cv_params p;
    small_params(&p, "optimized", 3);
    p.ocd.tome_ratio = 0.0f;            /* the solver alone */
    cv_stats st;
    int rc = gen(&ci, &p, a, NULL);
    p.ocd.oc_tome_lambda = 1.0f;        /* lambda only reorders what is merged: at ratio 0 nothing runs */
    rc |= gen(&ci, &p, b, &st);
    long tin = 0;
    for (int l = 0; l < 8; l++) tin += st.tokens_in[l];
    t_check(!rc && tin == 0 && !memcmp(a, b, sizeof(float) * n), "cv_generate: ratio 0 (with OC-ToMe lambda) == no merging (bitwise)",
            "%s %ld tokens planned", rc ? ocd_last_error() : "", tin);
    p.ocd.tome_ratio = 0.5f;
    rc = gen(&ci, &p, b, &st);
    for (int l = 0; l < 8; l++) tin += st.tokens_in[l];
    t_check(!rc && tin > 0 && strstr(st.note, "no foreground mask") != NULL, "OC-ToMe without a mask: plain merging, noted",
            "%s %ld tokens planned, \"%s\"", rc ? ocd_last_error() : "", tin, st.note);
    /* the controlvideo preset is the default run */
    cv_params d, q;
    cv_default_params(&d);
    cv_default_params(&q);
    cv_preset(&q, "controlvideo");
    d.steps = q.steps = 2;
    rc = gen(&ci, &d, a, NULL) | gen(&ci, &q, c, NULL);
    t_check(!rc && !memcmp(a, c, sizeof(float) * n), "preset controlvideo == the default run (bitwise)", "%s", rc ? ocd_last_error() : "");
    /* OC-ToMe on the real keys of every self-attention: R = the left 6 columns (75%) */
    float mask[3 * 64];
    for (int i = 0; i < 3 * 64; i++) mask[i] = i % 8 < 6;
    small_params(&p, "ocd", 3);
    p.ocd.ocs = 0, p.ocd.mask = mask, p.ocd.tome_min_tokens = 1;
    oc_probe ps = {.seed = p.ocd.tome_seed};
    p.plan_probe = probe_plan, p.plan_probe_user = &ps;
    rc = gen(&ci, &p, a, &st);
    t_check(!rc && ps.plans > 0 && ps.violations == 0 && ps.fg_merged > 0,
            "OC-ToMe on real keys: no R source merged while background sources remain (every plan)",
            "%s %ld plans, %ld violating; R merged %ld, background unmerged %ld", rc ? ocd_last_error() : "", ps.plans, ps.violations,
            ps.fg_merged, ps.bg_unmerged);
    free(a); free(b); free(c);
    in_free(&ci);
}

/* A mask [F, h, w] of the box rows [y0, y1) x cols [x0, x1) in every frame. */
static void box_mask(float *m, int F, int h, int w, int y0, int y1, int x0, int x1) {
    for (int i = 0; i < F * h * w; i++) {
        const int y = i % (h * w) / w, x = i % w;
        m[i] = y >= y0 && y < y1 && x >= x0 && x < x1;
    }
}

static void test_ocs(void) {
    enum { F = 2, h = 24, w = 24, N = 4 };
    const size_t n = (size_t)F * 4 * h * w;
    gen_in ci;
    in_init(&ci, F, h, w);
    float *mask = malloc(sizeof(float) * F * h * w), *z = malloc(sizeof(float) * n), *z2 = malloc(sizeof(float) * n);
    box_mask(mask, F, h, w, 10, 14, 11, 14);   /* + pad 2 -> rows 8..16, cols 9..16 -> the 8x8 block at (8, 8): area 1/9 */
    cv_params p;
    cv_stats st;
    small_params(&p, "ocd", N);
    p.ocd.mask = mask;
    for (int phi = 4; phi >= (t_quick() ? 4 : 1); phi -= 3) {
        p.ocd.ocs_phi = phi;
        const int rc = gen(&ci, &p, z, &st), b = ocs_blend_step(N, p.ocd.ocs_blend);
        const double want = ocs_cost(N, b, phi, 1.0 / 9);
        const long calls = 2L * ((b + phi - 1) / phi + b + (N - b));
        char name[112];
        snprintf(name, sizeof name, "OCS (phi %d): counted work == b area + ceil(b/phi) + (N-b); UNet calls", phi);
        t_check(!rc && fabs(st.ocs_area - 1.0 / 9) < 1e-12 && fabs(st.full_frame_evals - want) < 1e-9 && st.unet_calls == calls, name,
                "%s area %.4f, %.4f full-frame evaluations (formula %.4f), %ld UNet calls (want %ld), %.3f GFLOP; note \"%s\"",
                rc ? ocd_last_error() : "", st.ocs_area, st.full_frame_evals, want, st.unet_calls, calls,
                (st.unet_flops + st.controlnet_flops + st.plan_flops) * 1e-9, st.note);
    }
    int finite = 1;
    for (size_t i = 0; i < n; i++) finite &= isfinite(z[i]);
    t_check(finite, "OCS output finite", " ");
    /* the foreground branch is ControlVideo on the crop: b = N and one background call, so inside
     * the mask (feather 1) the result is the crop's own run on the cropped noise and conditions */
    const ocs_box box = {8, 8, 8, 8}, box8 = {64, 64, 64, 64};
    gen_in cc = {.F = F, .h = 8, .w = 8, .emb = ci.emb};
    cc.cond = malloc(sizeof(float) * F * 3 * 64 * 64);
    cc.noise = malloc(sizeof(float) * 4 * 64);
    ocs_crop(ci.cond, F, 3, 8 * h, 8 * w, &box8, cc.cond);
    ocs_crop(ci.noise, 1, 4, h, w, &box, cc.noise);
    float *zc = malloc(sizeof(float) * F * 4 * 64);
    cv_params pf = p;
    pf.ocd.ocs_blend = 1.0, pf.ocd.ocs_phi = N;
    cv_params pc = pf;
    pc.ocd.ocs = 0, pc.ocd.mask = NULL, pc.ocd.oc_tome_lambda = 0.0f;   /* OC-ToMe off in both: the crop run has no mask */
    pf.ocd.oc_tome_lambda = 0.0f;
    int rc = gen(&ci, &pf, z, &st) | gen(&cc, &pc, zc, NULL);
    int inside = 0, same = 1;
    for (int f = 0; f < F; f++)
        for (int ch = 0; ch < 4; ch++)
            for (int y = 10; y < 14; y++)
                for (int x = 11; x < 14; x++, inside++)
                    same &= z[((size_t)(f * 4 + ch) * h + y) * w + x] == zc[((size_t)(f * 4 + ch) * 8 + y - 8) * 8 + x - 8];
    t_check(!rc && same && st.ocs_area > 0, "foreground branch == ControlVideo on the cropped latents and conditions (bitwise, inside the mask)",
            "%s %d values compared", rc ? ocd_last_error() : "", inside);
    free(cc.cond); free(cc.noise); free(zc);
    /* fallbacks: plain sampling, said so, and exactly the run without OCS */
    small_params(&p, "ocd", N);
    p.ocd.oc_tome_lambda = 0.0f;   /* OC-ToMe would see the (empty) mask: compare OCS alone */
    memset(mask, 0, sizeof(float) * F * h * w);
    p.ocd.mask = mask;
    rc = gen(&ci, &p, z, &st);
    cv_params off = p;
    off.ocd.ocs = 0;
    rc |= gen(&ci, &off, z2, NULL);
    t_check(!rc && strstr(st.note, "empty mask") && st.ocs_area == 0 && st.full_frame_evals == N && !memcmp(z, z2, sizeof(float) * n),
            "empty mask: plain sampling (bitwise), noted", "note \"%s\", %g full-frame evaluations", st.note, st.full_frame_evals);
    p.ocd.mask = NULL;
    rc = gen(&ci, &p, z, &st);
    t_check(!rc && strstr(st.note, "no foreground mask") && st.ocs_area == 0, "no mask: OCS off, noted", "\"%s\"", st.note);
    box_mask(mask, F, h, w, 2, 20, 2, 20);
    p.ocd.mask = mask;
    rc = gen(&ci, &p, z, &st);
    t_check(!rc && strstr(st.note, "covers") && st.ocs_area == 0, "crop over max area: OCS off, noted", "\"%s\"", st.note);
    /* a smoother step inside the branches: skipped and noted; one in the joint steps runs */
    box_mask(mask, F, h, w, 10, 14, 11, 14);
    p.n_smooth = 2, p.smooth_steps[0] = N, p.smooth_steps[1] = 1;   /* fire at steps 0 (branch) and N-1 (joint) */
    rc = gen(&ci, &p, z, &st);
    t_check(!rc && st.ocs_area > 0 && strstr(st.note, "smoother at step 0 skipped") && st.smoothed == 1,
            "smoother: skipped inside the OCS branches (noted), runs on joint steps", "%s smoothed %d, note \"%s\"",
            rc ? ocd_last_error() : "", st.smoothed, st.note);
    free(mask); free(z); free(z2);
    in_free(&ci);
}

/* OCS with the hierarchical sampler in both branches. */
static void test_ocs_hierarchical(void) {
    enum { F = 3, h = 24, w = 24, N = 4 };
    gen_in ci;
    in_init(&ci, F, h, w);
    float *mask = malloc(sizeof(float) * F * h * w), *z = malloc(sizeof(float) * F * 4 * h * w);
    box_mask(mask, F, h, w, 10, 14, 11, 14);
    cv_params p;
    cv_stats st;
    small_params(&p, "ocd", N);
    p.ocd.mask = mask, p.window = 2;
    const int rc = gen(&ci, &p, z, &st);
    t_check(!rc && st.ocs_area > 0 && fabs(st.full_frame_evals - ocs_cost(N, 2, 4, 1.0 / 9)) < 1e-9,
            "OCS with the hierarchical sampler: counted work == ocs_cost", "%s %.4f", rc ? ocd_last_error() : "", st.full_frame_evals);
    free(mask); free(z);
    in_free(&ci);
}

int main(void) {
    test_presets();
    synth s;
    synth_init(&s);
    test_hook_ratio0(&s);
    test_hook_plan(&s);
    test_hook_oc_tome(&s);
    free(s.scratch);
    if (sd_model_load(&g_sd, TINY_SD, 0) || controlnet_load(&g_cn, TEST_DATA "/tiny-controlnet", 0) || pipe_init(&g_p, &g_sd, NULL)) {
        fprintf(stderr, "%s\n", ocd_last_error());
        return 2;
    }
    test_generate_ratio0();
    test_ocs();
    if (!t_quick()) test_ocs_hierarchical();   /* sanitizer runs: the slowest case goes */
    pipe_free(&g_p);
    controlnet_model_free(&g_cn);
    sd_model_free(&g_sd);
    return t_summary("test_control_accel");
}
