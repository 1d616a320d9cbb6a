/* ocd bench edit (ocd-method.md 6): the three presets and the ablations on one clip, one table.
 *
 * Every run is a child process (app/bench_table.h): it loads the model, runs fz_edit and hands
 * its report, its peak RSS and its frames (RGB8) back through shared memory. So the peak RSS of
 * each row is that run's own (model included), not the high-water mark of the whole bench;
 * --no-fork runs in-process and then reports the process high-water mark so far (monotone over
 * the rows, and said so).
 *
 * Fidelity (edit/metrics.h) is measured against the `fatezero` run's frames, inside and outside
 * a mask, plus the background against the source clip and frame-to-frame consistency. On the toy
 * model the pixel judge (edit/toyjudge.h) also says in how many frames the object took the
 * target prompt's colour.
 *
 * --estimate runs nothing but one UNet call (and a small VAE decode) and predicts each run's time
 * at --size / --frames from counted GFLOP (the cost model is in estimate_run). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/app.h"
#include "app/bench_table.h"
#include "base/error.h"
#include "base/rng.h"
#include "base/util.h"
#include "edit/fatezero.h"
#include "edit/metrics.h"
#include "edit/presets.h"
#include "edit/toyjudge.h"
#include "io/image.h"
#include "io/video.h"

int cmd_bench_edit(int argc, char **argv);

static const opt_spec k_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights (real timings, meaningless fidelity)"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--video", 1, "input clip (default examples/toy-clip)"},
    {"--frames", 1, "frames (default 8)"},
    {"--size", 1, "frame size in pixels (default 64 on the toy model, else 512)"},
    {"--source", 1, "source prompt (default: the toy clip's)"},
    {"--target", 1, "target prompt (default: the toy edit's, red -> blue)"},
    {"--blend-words", 1, "source words whose attention masks the edited region"},
    {"--mask", 1, "PATH (video / folder, white = foreground) | toy (the pixel judge's object region) | none; "
                  "default: toy on the toy clip, else none"},
    {"--steps-fatezero", 1, "steps of the fatezero run (default 50)"},
    {"--steps", 1, "steps of the optimized / ocd runs (default: the presets' own, 20)"},
    {"--cfg", 1, "guidance scale (default 7.5; 5 on the toy model)"},
    {"--self-replace", 1, "self-attention replacement fraction (default 0.6; 0.9 on the toy model)"},
    {"--least-sc-channel", 1, "cross-frame attention from this many channels (default 640; 64 on the toy model)"},
    {"--runs", 1, "comma-separated run names (default: all; --list-runs shows them)"},
    {"--list-runs", 0, "print the runs and exit"},
    {"--json", 1, "also write the table as JSON"},
    {"--csv", 1, "also write the table as CSV"},
    {"--threads", 1, "threads (default: all cores)"},
    APP_OPT_PRECISION,
    {"--no-fork", 0, "run in this process (peak RSS = process high-water mark)"},
    {"--estimate", 0, "predict the runs' times from one measured UNet call instead of running them"},
    {"--gflops", 1, "--estimate: UNet GFLOP/s to assume instead of measuring"},
    {"--area", 1, "--estimate: OCS crop area fraction when no mask is known (default 0.25)"},
    {"--toy", 0, "treat the model as the toy model (judge colours); automatic for models/toy-sd"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

/* ---- the runs: the three presets, then the ablations shared with the other bench (bench_table.c) ---- */
static const bench_run k_presets[3] = {
    {"fatezero", "fatezero", "baseline: DDIM, no merging, no OCS", -1, -1, -1, -1, -1},
    {"optimized", "optimized", "DPM-Solver++ 2M + paired K/V ToMe 0.5", -1, -1, -1, -1, -1},
    {"ocd", "ocd", "optimized + OC-ToMe (lambda 1) + OCS (phi 4, beta 0.5)", -1, -1, -1, -1, -1},
};
static bench_run k_runs[3 + BENCH_N_ABLATIONS];
#define N_RUNS (3 + BENCH_N_ABLATIONS)

#define TOY_SOURCE "a red circle on green grass"
#define TOY_TARGET "a blue circle on green grass"
#define TOY_CLIP "examples/toy-clip"

typedef struct {
    args a;
    int F, S, toy, no_fork;
    const char *video, *source, *target, *mask_src; /* mask_src: "none", "toy", or a path */
    long steps_fz, steps;                            /* steps < 0: the preset's */
    double cfg, self_replace;
    long lsc;
    int selected[N_RUNS];
    float *frames;          /* [F, 3, S, S] in [-1, 1] */
    uint8_t *src_rgb;       /* [F, S, S, 3] */
    uint8_t *pix_mask;      /* [F, S, S] fidelity mask (nonzero = inside), NULL = none */
    float *lat_mask;        /* [F, S/8, S/8] given to the runs as fz_params.mask, NULL = none */
    const char *mask_what;  /* a line for the header */
    int target_colour;      /* TOY_* named by the target prompt, -1 = none */
} bench_ctx;

typedef struct {
    int has_mask;
    fz_report rep;
} run_out; /* a run's payload; followed by the frames, RGB8 [F, S, S, 3], and the run's mask [F, S/8, S/8] */

typedef struct {
    const bench_run *def;
    int steps, solver, ocs, phi;
    float tome_ratio, lambda;
    double beta;
    bench_child r;
    fz_report rep;
    uint8_t *out; /* the payload */
    uint8_t *rgb; /* [F, S, S, 3] in out, NULL when the run failed */
    float *mask;  /* [F, S/8, S/8] in out: the run's foreground mask (fz_mask), NULL = none */
    bench_fidelity q;
    int hits; /* frames of the target colour; -1 = not judged */
    /* --estimate */
    double est_gflop, est_unet_s, est_vae_s, est_ff_calls, est_area;
} run_result;

/* fz_params of one run: defaults, the preset, the bench's flags, then the run's ablation. */
static int run_params(const bench_ctx *bc, const bench_run *def, fz_params *p) {
    fz_default_params(p);
    if (fz_preset(p, def->preset)) return -1;
    p->source = bc->source;
    p->target = bc->target;
    p->blend_words_src = args_str(&bc->a, "--blend-words", NULL);
    p->cfg = (float)bc->cfg;
    p->self_replace = bc->self_replace;
    p->least_sc_channel = (int)bc->lsc;
    if (!strcmp(def->preset, "fatezero")) p->steps = (int)bc->steps_fz;
    else if (bc->steps > 0) p->steps = (int)bc->steps;
    p->mask = bc->lat_mask;
    /* ocd-method.md's defaults for the knobs the presets leave at 0 (fz_default_params may not
     * set them yet): phi 4, beta 0.5, pad 2, max area 0.6, min tokens 64, threshold 0.3, dilate 1 */
    if (p->ocs_phi <= 0) p->ocs_phi = 4;
    if (p->ocs_blend <= 0) p->ocs_blend = 0.5;
    if (p->ocs_pad <= 0) p->ocs_pad = 2;
    if (p->ocs_max_area <= 0) p->ocs_max_area = 0.6;
    if (p->tome_min_tokens <= 0) p->tome_min_tokens = 64;
    if (p->mask_threshold <= 0) p->mask_threshold = 0.3f;
    if (p->mask_dilate <= 0) p->mask_dilate = 1;
    if (def->tome_ratio >= 0) p->tome_ratio = def->tome_ratio;
    if (def->lambda >= 0) p->oc_tome_lambda = def->lambda;
    if (def->ocs >= 0) p->ocs = def->ocs;
    if (def->phi > 0) p->ocs_phi = def->phi;
    if (def->beta >= 0) p->ocs_blend = def->beta;
    return 0;
}

/* One run, in whatever process calls it; fills hdr and the payload: the report, the frames and
 * (when the run had one) its foreground mask [F, S/8, S/8]. fz_edit's stages, called one by one to
 * read the mask after inversion. */
typedef struct {
    const bench_ctx *bc;
    const fz_params *p;
} run_job;

static void run_one(void *user, bench_child *sh, void *payload) {
    const run_job *job = user;
    const bench_ctx *bc = job->bc;
    const fz_params *p = job->p;
    const int F = bc->F, S = bc->S;
    run_out *ro = payload;
    uint8_t *rgb = (uint8_t *)(ro + 1);
    float *mask = (float *)(rgb + (size_t)F * S * S * 3);
    sd_model m;
    fz_ctx *c = NULL;
    float *out = NULL, *z0 = NULL, *zT = NULL;
    double t0 = ocd_now();
    ocd_clear_error();
    if (app_set_threads(&bc->a) || app_load_model(&bc->a, &m)) goto fail;
    if (app_set_precision(&bc->a, &m, NULL)) { sd_model_free(&m); goto fail; }
    sh->t_load = ocd_now() - t0;
    const size_t nz = (size_t)F * m.vae_cfg.latent_channels * (S / 8) * (S / 8);
    out = malloc(sizeof(float) * F * 3 * S * S);
    z0 = malloc(sizeof(float) * nz);
    zT = malloc(sizeof(float) * nz);
    t0 = ocd_now();
    int err = !out || !z0 || !zT ? ocd_fail("out of memory") : !(c = fz_new(&m, p, F, S, S)) ? -1 : 0;
    if (!err) err = fz_encode(c, bc->frames, z0) || fz_invert(c, z0, NULL, zT);
    if (!err && fz_mask(c)) {
        memcpy(mask, fz_mask(c), sizeof(float) * F * (S / 8) * (S / 8));
        ro->has_mask = 1;
    }
    if (!err) err = fz_edit_latents(c, p->target, zT, NULL, z0) || fz_decode(c, z0, out);
    if (c) ro->rep = *fz_get_report(c);
    sh->t_run = ocd_now() - t0;
    fz_free(c);
    sd_model_free(&m);
    free(z0);
    free(zT);
    if (err) goto fail;
    for (int f = 0; f < F; f++) image_from_f32(out + (size_t)f * 3 * S * S, S, S, rgb + (size_t)f * S * S * 3);
    free(out);
    sh->peak_rss = ocd_peak_rss_bytes();
    sh->ok = 1;
    return;
fail:
    free(out);
    snprintf(sh->err, sizeof sh->err, "%s", ocd_last_error());
    sh->peak_rss = ocd_peak_rss_bytes();
}

static int run_forked(const bench_ctx *bc, const fz_params *p, run_result *res) {
    const size_t fb = (size_t)bc->F * bc->S * bc->S * 3, mb = sizeof(float) * bc->F * (bc->S / 8) * (bc->S / 8);
    const size_t bytes = sizeof(run_out) + fb + mb;
    if (!(res->out = calloc(1, bytes))) return ocd_fail("out of memory");
    run_job job = {bc, p};
    if (bench_run_child(bc->no_fork, run_one, &job, bytes, &res->r, res->out, res->def->name)) return -1;
    const run_out *ro = (const run_out *)res->out;
    res->rep = ro->rep;
    res->rgb = res->r.ok ? (uint8_t *)(ro + 1) : NULL;
    res->mask = res->r.ok && ro->has_mask ? (float *)(res->out + sizeof(run_out) + fb) : NULL;
    return 0;
}

/* ---- masks ---- */

/* Latent mask [F, S/8, S/8]: 1 where any pixel of the 8x8 cell is inside. */
static float *latent_of(const uint8_t *pix, int F, int S) {
    const int h = S / 8;
    float *m = calloc((size_t)F * h * h, sizeof(float));
    if (!m) { ocd_fail("out of memory"); return NULL; }
    for (int f = 0; f < F; f++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                if (pix[((size_t)f * S + y) * S + x]) m[((size_t)f * h + y / 8) * h + x / 8] = 1;
    return m;
}

/* pix_mask = the judge's object region of each source frame, grown by 3 px (the toy edit test's
 * background margin). */
static int toy_region(bench_ctx *bc) {
    const int F = bc->F, S = bc->S;
    uint8_t *obj = malloc((size_t)S * S), *keep = malloc((size_t)S * S);
    if (!bc->pix_mask) bc->pix_mask = calloc((size_t)F * S * S, 1);
    if (!obj || !keep || !bc->pix_mask) { free(obj); free(keep); return ocd_fail("out of memory"); }
    for (int f = 0; f < F; f++) {
        toy_object_colour(bc->src_rgb + (size_t)f * S * S * 3, S, S, obj);
        toy_background_of(obj, S, S, 3, keep);
        for (int i = 0; i < S * S; i++) bc->pix_mask[(size_t)f * S * S + i] = !keep[i];
    }
    free(obj);
    free(keep);
    return 0;
}

static int make_masks(bench_ctx *bc) {
    const int F = bc->F, S = bc->S;
    const char *ms = bc->mask_src;
    if (!strcmp(ms, "none")) { bc->mask_what = "none (inside/outside fidelity n/a; the runs derive OCS masks from --blend-words, if any)"; return 0; }
    if (!(bc->pix_mask = calloc((size_t)F * S * S, 1))) return ocd_fail("out of memory");
    if (!strcmp(ms, "toy")) {
        if (toy_region(bc)) return -1;
        bc->mask_what = "toy: the pixel judge's object region of each source frame + 3 px (given to every run as --mask)";
    } else {
        ocd_video mv = {0};
        if (video_read(ms, 0, 1, F, &mv)) return -1;
        float *mf = video_preprocess(&mv, S); /* same resize + crop as the clip */
        video_free(&mv);
        if (!mf) return -1;
        for (int f = 0; f < F; f++)
            for (int i = 0; i < S * S; i++) {
                const float *p = mf + (size_t)f * 3 * S * S + i;
                bc->pix_mask[(size_t)f * S * S + i] = (p[0] + p[S * S] + p[2 * S * S]) / 3 > 0; /* brighter than mid-grey */
            }
        free(mf);
        bc->mask_what = ms;
    }
    if (!(bc->lat_mask = latent_of(bc->pix_mask, F, S))) return -1;
    return 0;
}

/* OCS crop area (ocd-method.md 5.2) of a latent mask [F, h, w]: union bounding box over frames,
 * grown by pad, rounded up to a multiple of 8 latent pixels. 0 = empty mask. */
static double crop_area(const float *m, int F, int h, int w, int pad) {
    int y0 = h, y1 = -1, x0 = w, x1 = -1;
    for (int f = 0; f < F; f++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (m[((size_t)f * h + y) * w + x] > 0) {
                    y0 = OCD_MIN(y0, y); y1 = OCD_MAX(y1, y); x0 = OCD_MIN(x0, x); x1 = OCD_MAX(x1, x);
                }
    if (y1 < 0) return 0;
    int ch = y1 - y0 + 1 + 2 * pad, cw = x1 - x0 + 1 + 2 * pad;
    ch = OCD_MIN((ch + 7) / 8 * 8, h);
    cw = OCD_MIN((cw + 7) / 8 * 8, w);
    return (double)ch * cw / ((double)h * w);
}

/* ---- fidelity ---- */
static void judge_run(const bench_ctx *bc, run_result *r, const run_result *ref) {
    const int F = bc->F, S = bc->S;
    bench_judge(r->rgb, ref ? ref->rgb : NULL, bc->src_rgb, bc->pix_mask, F, S, S, &r->q);
    r->hits = -1;
    if (r->rgb && bc->toy && bc->target_colour >= 0) {
        r->hits = 0;
        for (int f = 0; f < F; f++) r->hits += toy_object_colour(r->rgb + (size_t)f * S * S * 3, S, S, NULL) == bc->target_colour;
    }
}

/* ---- --estimate: cost model ----
 * UNet GFLOP of one batch item at S (counted by one real call, plain per-frame attention), then
 * corrected per self-attention layer for what the edit changes: cross-frame windows read n_kv
 * frames' keys (xf_kv_frames, averaged over frames), token merging keeps a fraction of them
 * (ratio of the non-destination tokens, at least min_tokens per frame), and inversion builds the
 * merge plans (one cosine-similarity product per layer and item). Calls: inversion N x F items,
 * editing N x 2F items, or with OCS (b * area + ceil(b / phi) + N - b) x 2F (ocd-method.md 5.2).
 * VAE: encode + decode of F frames, GFLOP from vae_*_flops. Not counted: the attention store's
 * recomputed source maps and the controller's arithmetic. */
typedef struct {
    double item_gflop;                /* one plain UNet item at S */
    double unet_rate, vae_rate;       /* GFLOP/s */
    double vae_gflop;                 /* encode + decode of all frames */
    int n_sa;                         /* self-attention layers */
    int sa_tokens[64], sa_ch[64];     /* their token count and channels */
} est_model;

/* GFLOP of one item beyond the plain UNet's per-frame self-attention, for one run's settings;
 * *plan_gflop gets the merge-plan similarity cost (inversion items only). */
static double est_attn_delta(const est_model *e, const fz_params *p, int F, double *plan_gflop) {
    double d = 0, plan = 0;
    for (int l = 0; l < e->n_sa; l++) {
        const double N = e->sa_tokens[l], C = e->sa_ch[l];
        double nkv = 0;
        for (int f = 0; f < F; f++) {
            int kv[XF_MAX_KV];
            nkv += xf_kv_frames(p->xframe, p->least_sc_channel, F, f, (int)C, kv);
        }
        nkv /= F;
        double T = nkv * N, kept = T;
        if (p->tome_ratio > 0) {
            double dst = nkv * floor(N / 4), src = T - dst, r = floor(p->tome_ratio * src);
            kept = OCD_MAX(T - r, OCD_MIN(T, (double)p->tome_min_tokens * nkv));
            plan += 2.0 * src * dst * C / 1e9;
        }
        d += 4.0 * N * C * (kept - N) / 1e9; /* QK^T + PV: 2 products x 2 FLOP per MAC */
    }
    *plan_gflop = plan;
    return d;
}

static void estimate_run(const bench_ctx *bc, const est_model *e, const fz_params *p, run_result *r) {
    const int F = bc->F, N = p->steps;
    double plan;
    const double item = e->item_gflop + est_attn_delta(e, p, F, &plan);
    double ff = N, area = 0;
    if (p->ocs) {
        area = bc->lat_mask ? crop_area(bc->lat_mask, F, bc->S / 8, bc->S / 8, p->ocs_pad) : r->est_area;
        if (area > 0 && area <= p->ocs_max_area) {
            int b = (int)lround(p->ocs_blend * N);
            ff = b * area + ceil((double)b / p->ocs_phi) + (N - b);
        } else area = 0;
    }
    r->est_area = area;
    r->est_ff_calls = ff;
    r->est_gflop = (double)N * F * (item + plan) + ff * 2 * F * item;
    r->est_unet_s = r->est_gflop / e->unet_rate;
    r->est_vae_s = e->vae_gflop / e->vae_rate;
}

static int measure_model(bench_ctx *bc, est_model *e, double rate_opt) {
    sd_model m;
    const int S = bc->S, h = S / 8;
    double t0 = ocd_now();
    if (app_load_model(&bc->a, &m)) return -1;
    if (app_set_precision(&bc->a, &m, NULL)) { sd_model_free(&m); return -1; }
    printf("model       %s loaded in %.1f s\n", m.files.path, ocd_now() - t0);
    if (!m.unet || !m.vae) { sd_model_free(&m); return ocd_fail("the model lacks a UNet or a VAE"); }
    const unet_config *c = &m.unet_cfg;
    e->n_sa = bench_sa_layers(c, S, e->sa_tokens, e->sa_ch, 64);
    const int vh = OCD_MIN(h, 16); /* VAE rate from a 128 px decode: 512 px takes minutes here */
    /* enough items per call that the call's overhead does not dominate (toy-sized models), but
     * one item where an item is already much work (SD at 256 px and up) */
    int B = 1;
    float *x = malloc(sizeof(float) * c->in_ch * h * h), *img = malloc(sizeof(float) * 3 * vh * 8 * vh * 8);
    float *t = NULL, *ctx = NULL, *eps = NULL;
    int rc = -1, reps = S <= 256 ? 2 : 1; /* small sizes: a warm-up call first */
    double dt = 0;
    if (!x || !img) { ocd_fail("out of memory"); goto done; }
    rng_normal(7, 1, x, (size_t)c->in_ch * h * h);
    for (int pass = 0; pass < 2; pass++) { /* pass 0: one item, to size the batch of pass 1 */
        free(t); free(ctx); free(eps);
        t = malloc(sizeof(float) * B);
        ctx = malloc(sizeof(float) * B * 77 * c->cross_dim);
        eps = malloc(sizeof(float) * B * c->out_ch * h * h);
        float *xb = malloc(sizeof(float) * B * c->in_ch * h * h);
        if (!t || !ctx || !eps || !xb) { free(xb); ocd_fail("out of memory"); goto done; }
        for (int b = 0; b < B; b++) { t[b] = 500; memcpy(xb + (size_t)b * c->in_ch * h * h, x, sizeof(float) * c->in_ch * h * h); }
        rng_normal(7, 2, ctx, (size_t)B * 77 * c->cross_dim);
        for (int i = 0; i < reps; i++) {
            t0 = ocd_now();
            if (unet_forward(m.unet, xb, t, ctx, 77, B, h, h, NULL, eps)) { free(xb); goto done; }
            dt = ocd_now() - t0;
        }
        free(xb);
        if (pass == 0) {
            double g = unet_last_flops(m.unet) / 1e9;
            int want = g > 0 ? (int)ceil(20.0 / g) : 1;
            if (want <= 1) break;
            B = OCD_MIN(want, 2 * bc->F);
        }
    }
    e->item_gflop = unet_last_flops(m.unet) / 1e9 / B;
    e->unet_rate = rate_opt > 0 ? rate_opt : e->item_gflop * B / dt;
    printf("UNet        %.1f GFLOP per item at %dx%d, one call of %d item%s %.2f s%s = %.1f GFLOP/s%s\n", e->item_gflop, S, S, B,
           B > 1 ? "s" : "", dt, reps > 1 ? " (after a warm-up)" : " (includes planning)", e->item_gflop * B / dt,
           rate_opt > 0 ? " (using --gflops instead)" : "");
    for (int i = 0; i < reps; i++) {
        t0 = ocd_now();
        if (vae_decode(m.vae, x, vh, vh, img)) goto done; /* first 4 latent channels of x: any input will do */
        dt = ocd_now() - t0;
    }
    e->vae_rate = vae_decode_flops(&m.vae_cfg, vh, vh) / 1e9 / dt;
    e->vae_gflop = bc->F * (vae_encode_flops(&m.vae_cfg, S, S) + vae_decode_flops(&m.vae_cfg, h, h)) / 1e9;
    printf("VAE         %.1f GFLOP/s (decode at %dx%d); encode + decode of %d frames at %d: %.0f GFLOP\n", e->vae_rate, vh * 8,
           vh * 8, bc->F, S, e->vae_gflop);
    rc = 0;
done:
    free(x); free(t); free(ctx); free(eps); free(img);
    sd_model_free(&m);
    return rc;
}

/* ---- output ---- */
static void print_table(const bench_ctx *bc, run_result *rs, int n) {
    const run_result *fz = NULL;
    for (int i = 0; i < n; i++) if (!strcmp(rs[i].def->name, "fatezero") && rs[i].rgb) fz = &rs[i];
    printf("\n%-13s %5s %7s %7s %8s %8s %7s %8s %5s %6s %9s %7s %7s %8s | %6s %6s %6s %6s %6s %6s %6s %6s %5s\n", "run", "steps",
           "enc s", "inv s", "edit s", "dec s", "total", "speedup", "calls", "ffcall", "GFLOP", "RSS MiB", "storeMB", "plan KiB",
           "Pin", "Pout", "Pall", "Sin", "Sout", "Sall", "bgP", "cons", "tgt");
    for (int i = 0; i < n; i++) {
        const run_result *r = &rs[i];
        if (!r->r.ok) { printf("%-13s FAILED: %s\n", r->def->name, r->r.err); continue; }
        const fz_report *p = &r->rep;
        double tot = p->t_encode + p->t_invert + p->t_edit + p->t_decode;
        double fzt = fz ? fz->rep.t_encode + fz->rep.t_invert + fz->rep.t_edit + fz->rep.t_decode : NAN;
        char v[9][16], tgt[16] = "-";
        bench_fmt_num(v[0], 16, r->q.psnr_in, "%.2f");
        bench_fmt_num(v[1], 16, r->q.psnr_out, "%.2f");
        bench_fmt_num(v[2], 16, r->q.psnr_all, "%.2f");
        bench_fmt_num(v[3], 16, r->q.ssim_in, "%.4f");
        bench_fmt_num(v[4], 16, r->q.ssim_out, "%.4f");
        bench_fmt_num(v[5], 16, r->q.ssim_all, "%.4f");
        bench_fmt_num(v[6], 16, r->q.bg_psnr, "%.2f");
        bench_fmt_num(v[7], 16, r->q.cons, "%.2f");
        bench_fmt_num(v[8], 16, fzt / tot, "%.2fx");
        if (r->hits >= 0) snprintf(tgt, sizeof tgt, "%d/%d", r->hits, bc->F);
        printf("%-13s %5d %7.2f %7.2f %8.2f %8.2f %7.2f %8s %5d %6.1f %9.1f %7.0f %7.2f %8.1f | %6s %6s %6s %6s %6s %6s %6s %6s %5s\n",
               r->def->name, r->steps, p->t_encode, p->t_invert, p->t_edit, p->t_decode, tot, v[8], p->unet_calls,
               p->unet_full_frame_calls, p->gflop, bench_mib(r->r.peak_rss), bench_mib(p->store_ram_bytes + p->store_disk_bytes),
               p->plan_bytes / 1024.0, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], tgt);
    }
    for (int i = 0; i < n; i++)
        if (rs[i].r.ok && rs[i].rep.note[0]) printf("note %-13s %s\n", rs[i].def->name, rs[i].rep.note);
}

static int write_outputs(const bench_ctx *bc, run_result *rs, int n, int estimate, double src_cons, double load0, double load1,
                         const est_model *e) {
    const char *jpath = args_str(&bc->a, "--json", NULL), *cpath = args_str(&bc->a, "--csv", NULL);
    if (jpath) {
        json_t *root = bench_json_header(&bc->a, bc->video, bc->F, bc->S, bc->mask_what, estimate, load0, load1),
               *runs = json_array();
        json_object_set_new(root, "source", json_string(bc->source));
        json_object_set_new(root, "target", json_string(bc->target));
        json_object_set_new(root, "source_consistency_psnr", bench_jnum(src_cons));
        if (estimate) {
            json_object_set_new(root, "unet_gflop_per_item", bench_jnum(e->item_gflop));
            json_object_set_new(root, "unet_gflops", bench_jnum(e->unet_rate));
            json_object_set_new(root, "vae_gflops", bench_jnum(e->vae_rate));
        }
        for (int i = 0; i < n; i++) {
            const run_result *r = &rs[i];
            const fz_report *p = &r->rep;
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(r->def->name));
            json_object_set_new(o, "preset", json_string(r->def->preset));
            json_object_set_new(o, "what", json_string(r->def->what));
            json_object_set_new(o, "steps", json_integer(r->steps));
            json_object_set_new(o, "solver", json_string(bench_solver_name(r->solver)));
            json_object_set_new(o, "tome_ratio", json_real(r->tome_ratio));
            json_object_set_new(o, "oc_tome_lambda", json_real(r->lambda));
            json_object_set_new(o, "ocs", json_boolean(r->ocs));
            json_object_set_new(o, "ocs_phi", json_integer(r->phi));
            json_object_set_new(o, "ocs_blend", json_real(r->beta));
            if (estimate) {
                json_object_set_new(o, "predicted_gflop", bench_jnum(r->est_gflop));
                json_object_set_new(o, "predicted_full_frame_calls", bench_jnum(r->est_ff_calls));
                json_object_set_new(o, "predicted_ocs_area", bench_jnum(r->est_area));
                json_object_set_new(o, "predicted_unet_s", bench_jnum(r->est_unet_s));
                json_object_set_new(o, "predicted_vae_s", bench_jnum(r->est_vae_s));
                json_object_set_new(o, "predicted_total_s", bench_jnum(r->est_unet_s + r->est_vae_s));
                json_array_append_new(runs, o);
                continue;
            }
            json_object_set_new(o, "ok", json_boolean(r->r.ok));
            if (!r->r.ok) { json_object_set_new(o, "error", json_string(r->r.err)); json_array_append_new(runs, o); continue; }
            json_object_set_new(o, "t_load", bench_jnum(r->r.t_load));
            json_object_set_new(o, "t_encode", bench_jnum(p->t_encode));
            json_object_set_new(o, "t_invert", bench_jnum(p->t_invert));
            json_object_set_new(o, "t_edit", bench_jnum(p->t_edit));
            json_object_set_new(o, "t_decode", bench_jnum(p->t_decode));
            json_object_set_new(o, "t_total", bench_jnum(p->t_encode + p->t_invert + p->t_edit + p->t_decode));
            json_object_set_new(o, "unet_calls", json_integer(p->unet_calls));
            json_object_set_new(o, "unet_items", json_integer(p->unet_items));
            json_object_set_new(o, "unet_full_frame_calls", bench_jnum(p->unet_full_frame_calls));
            json_object_set_new(o, "gflop", bench_jnum(p->gflop));
            json_object_set_new(o, "peak_rss_bytes", json_integer((json_int_t)r->r.peak_rss));
            json_object_set_new(o, "peak_rss_is_process_hwm", json_boolean(bc->no_fork));
            json_object_set_new(o, "store_ram_bytes", json_integer((json_int_t)p->store_ram_bytes));
            json_object_set_new(o, "store_disk_bytes", json_integer((json_int_t)p->store_disk_bytes));
            json_object_set_new(o, "plan_bytes", json_integer((json_int_t)p->plan_bytes));
            json_t *ti = json_array(), *tm = json_array();
            for (int l = 0; l < 8; l++) { json_array_append_new(ti, json_integer(p->tokens_in[l])); json_array_append_new(tm, json_integer(p->tokens_merged[l])); }
            json_object_set_new(o, "tokens_in", ti);
            json_object_set_new(o, "tokens_merged", tm);
            json_object_set_new(o, "ocs_area", bench_jnum(p->ocs_area));
            json_object_set_new(o, "note", json_string(p->note));
            bench_json_fidelity(o, &r->q);
            json_object_set_new(o, "target_colour_frames", r->hits >= 0 ? json_integer(r->hits) : json_null());
            json_array_append_new(runs, o);
        }
        json_object_set_new(root, "runs", runs);
        int err = json_dump_file(root, jpath, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        json_decref(root);
        if (err) return ocd_fail("cannot write %s", jpath);
        printf("wrote %s\n", jpath);
    }
    if (cpath) {
        FILE *f = fopen(cpath, "w");
        if (!f) return ocd_fail("cannot write %s", cpath);
        if (estimate) {
            fprintf(f, "run,preset,steps,predicted_gflop,predicted_full_frame_calls,predicted_ocs_area,predicted_unet_s,predicted_vae_s,predicted_total_s\n");
            for (int i = 0; i < n; i++)
                fprintf(f, "%s,%s,%d,%.3f,%.3f,%.4f,%.3f,%.3f,%.3f\n", rs[i].def->name, rs[i].def->preset, rs[i].steps, rs[i].est_gflop,
                        rs[i].est_ff_calls, rs[i].est_area, rs[i].est_unet_s, rs[i].est_vae_s, rs[i].est_unet_s + rs[i].est_vae_s);
        } else {
            fprintf(f, "run,preset,ok,steps,t_encode,t_invert,t_edit,t_decode,t_total,unet_calls,unet_items,unet_full_frame_calls,gflop,"
                       "peak_rss_bytes,store_ram_bytes,store_disk_bytes,plan_bytes,ocs_area,psnr_inside,psnr_outside,psnr_all,"
                       "ssim_inside,ssim_outside,ssim_all,background_psnr_vs_source,consistency_psnr,target_colour_frames\n");
            for (int i = 0; i < n; i++) {
                const run_result *r = &rs[i];
                const fz_report *p = &r->rep;
                fprintf(f, "%s,%s,%d,%d", r->def->name, r->def->preset, r->r.ok, r->steps);
                if (!r->r.ok) { fprintf(f, "%s\n", ",,,,,,,,,,,,,,,,,,,,,,,"); continue; }
                fprintf(f, ",%.4f,%.4f,%.4f,%.4f,%.4f,%d,%d,%.3f,%.3f,%zu,%zu,%zu,%zu,%.4f", p->t_encode, p->t_invert, p->t_edit,
                        p->t_decode, p->t_encode + p->t_invert + p->t_edit + p->t_decode, p->unet_calls, p->unet_items,
                        p->unet_full_frame_calls, p->gflop, r->r.peak_rss, p->store_ram_bytes, p->store_disk_bytes, p->plan_bytes,
                        p->ocs_area);
                const double q[8] = {r->q.psnr_in, r->q.psnr_out, r->q.psnr_all, r->q.ssim_in, r->q.ssim_out, r->q.ssim_all, r->q.bg_psnr, r->q.cons};
                for (int k = 0; k < 8; k++) isnan(q[k]) ? fprintf(f, ",") : fprintf(f, ",%.6f", q[k]);
                r->hits >= 0 ? fprintf(f, ",%d\n", r->hits) : fprintf(f, ",\n");
            }
        }
        if (fclose(f)) return ocd_fail("cannot write %s", cpath);
        printf("wrote %s\n", cpath);
    }
    return 0;
}

/* ---- the command ---- */
static int is_toy_path(const char *m) {
    if (!m) return 0;
    size_t n = strlen(m);
    while (n && m[n - 1] == '/') n--;
    return n >= 6 && !strncmp(m + n - 6, "toy-sd", 6);
}

static int target_colour_of(const char *prompt) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", prompt);
    for (char *tok = strtok(buf, " ,.;"); tok; tok = strtok(NULL, " ,.;"))
        for (int c = 0; c < TOY_N_COLOURS; c++) if (!strcasecmp(tok, toy_colour_names[c])) return c;
    return -1;
}

int cmd_bench_edit(int argc, char **argv) {
    bench_make_runs(k_presets, k_runs);
    bench_ctx bc;
    memset(&bc, 0, sizeof bc);
    if (args_parse(&bc.a, k_opts, argc, argv)) return -1;
    args *a = &bc.a;
    if (args_has(a, "--help")) {
        args_usage(k_opts, "ocd bench edit (--model M | --random sd15) [--video V --source S --target T] [--runs a,b] "
                           "[--json F] [--csv F] [--estimate]");
        return 0;
    }
    if (args_has(a, "--list-runs")) {
        bench_list_runs(k_runs, N_RUNS);
        return 0;
    }
    if (a->n_pos) return ocd_fail("unexpected argument \"%s\"", a->pos[0]);
    const int estimate = args_has(a, "--estimate");
    bc.toy = args_has(a, "--toy") || is_toy_path(args_str(a, "--model", NULL));
    bc.no_fork = args_has(a, "--no-fork");
    long F, S;
    double rate_opt, area_opt;
    if (args_int(a, "--frames", 8, 1, 1000, &F) || args_int(a, "--size", bc.toy ? 64 : 512, 8, 4096, &S) ||
        args_int(a, "--steps-fatezero", 50, 1, 1000, &bc.steps_fz) || args_int(a, "--steps", -1, 1, 1000, &bc.steps) ||
        args_double(a, "--cfg", bc.toy ? 5.0 : 7.5, 0, 100, &bc.cfg) ||
        args_double(a, "--self-replace", bc.toy ? 0.9 : 0.6, 0, 1, &bc.self_replace) ||
        args_int(a, "--least-sc-channel", bc.toy ? 64 : 640, 0, 100000, &bc.lsc) || args_double(a, "--gflops", 0, 0, 1e7, &rate_opt) ||
        args_double(a, "--area", 0.25, 0, 1, &area_opt) || bench_select_runs(args_str(a, "--runs", NULL), k_runs, N_RUNS, bc.selected))
        return -1;
    if (S % 8) return ocd_fail("--size %ld is not a multiple of 8", S);
    if (!args_has(a, "--model") && !args_has(a, "--random")) return ocd_fail("no model: give --model PATH or --random sd15");
    bc.F = (int)F;
    bc.S = (int)S;
    bc.video = args_str(a, "--video", TOY_CLIP);
    const int toy_clip = !strncmp(bc.video, TOY_CLIP, strlen(TOY_CLIP));
    bc.source = args_str(a, "--source", toy_clip ? TOY_SOURCE : NULL);
    bc.target = args_str(a, "--target", toy_clip ? TOY_TARGET : NULL);
    if (!bc.source || !bc.target) return ocd_fail("--source and --target are required for a clip other than %s", TOY_CLIP);
    bc.mask_src = args_str(a, "--mask", (toy_clip || bc.toy) && !args_has(a, "--blend-words") ? "toy" : "none");
    bc.target_colour = target_colour_of(bc.target);

    int rc = -1, n = 0;
    run_result *rs = calloc(N_RUNS, sizeof *rs);
    ocd_video src = {0};
    if (!rs) return ocd_fail("out of memory");
    if (video_read(bc.video, 0, 1, bc.F, &src)) goto done;
    if (!(bc.frames = video_preprocess(&src, bc.S))) goto done;
    if (!(bc.src_rgb = malloc((size_t)bc.F * bc.S * bc.S * 3))) { ocd_fail("out of memory"); goto done; }
    for (int f = 0; f < bc.F; f++)
        image_from_f32(bc.frames + (size_t)f * 3 * bc.S * bc.S, bc.S, bc.S, bc.src_rgb + (size_t)f * bc.S * bc.S * 3);
    if (make_masks(&bc)) goto done;

    const double load0 = bench_load_avg();
    const double src_cons = mt_clip_consistency(bc.src_rgb, bc.F, bc.S, bc.S);
    printf("bench edit: %s, %d frames of %dx%d from %s, \"%s\" -> \"%s\"\n",
           args_str(a, "--model", NULL) ? args_str(a, "--model", "") : args_str(a, "--random", ""), bc.F, bc.S, bc.S, bc.video,
           bc.source, bc.target);
    printf("mask        %s\n", bc.mask_what);
    printf("load avg    %.2f at start (the machine is shared: wall times vary with it)\n", load0);
    printf("precision   %s (--precision %s)\n", app_precision_name(a), args_str(a, "--precision", "auto"));
    if (!estimate) printf("source clip frame-to-frame consistency %.2f dB\n", src_cons);
    for (int i = 0; i < N_RUNS; i++) {
        if (!bc.selected[i]) continue;
        run_result *r = &rs[n++];
        fz_params p;
        r->def = &k_runs[i];
        if (run_params(&bc, r->def, &p)) goto done;
        r->steps = p.steps; r->solver = p.solver; r->tome_ratio = p.tome_ratio; r->lambda = p.oc_tome_lambda;
        r->ocs = p.ocs; r->phi = p.ocs_phi; r->beta = p.ocs_blend;
        r->est_area = area_opt;
    }
    est_model em;
    memset(&em, 0, sizeof em);
    if (estimate) {
        if (measure_model(&bc, &em, rate_opt)) goto done;
        printf("\npredicted at %dx%d, %d frames (UNet %.1f GFLOP/s, VAE %.1f GFLOP/s):\n", bc.S, bc.S, bc.F, em.unet_rate, em.vae_rate);
        printf("%-13s %5s %10s %8s %6s %10s %8s %10s %9s %8s\n", "run", "steps", "GFLOP", "ffcalls", "area", "UNet s", "VAE s",
               "total s", "total h", "speedup");
        double fz_total = NAN;
        for (int i = 0; i < n; i++) {
            fz_params p;
            run_params(&bc, rs[i].def, &p);
            estimate_run(&bc, &em, &p, &rs[i]);
            if (!strcmp(rs[i].def->name, "fatezero")) fz_total = rs[i].est_unet_s + rs[i].est_vae_s;
        }
        for (int i = 0; i < n; i++) {
            double tot = rs[i].est_unet_s + rs[i].est_vae_s;
            char sp[16];
            bench_fmt_num(sp, sizeof sp, fz_total / tot, "%.2fx");
            printf("%-13s %5d %10.0f %8.1f %6.3f %10.1f %8.1f %10.1f %9.2f %8s\n", rs[i].def->name, rs[i].steps, rs[i].est_gflop,
                   rs[i].est_ff_calls, rs[i].est_area, rs[i].est_unet_s, rs[i].est_vae_s, tot, tot / 3600, sp);
        }
        printf("(area: OCS crop fraction, %s; 0 = OCS off or skipped)\n",
               bc.lat_mask ? "from the mask" : "assumed (--area): no mask given");
        rc = write_outputs(&bc, rs, n, 1, src_cons, load0, bench_load_avg(), &em);
        goto done;
    }
    /* the reference first: fatezero is first in k_runs, so it runs first when selected */
    const run_result *ref = NULL;
    for (int i = 0; i < n; i++) {
        run_result *r = &rs[i];
        fz_params p;
        run_params(&bc, r->def, &p);
        printf("[%d/%d] %-13s %s, %d steps ...", i + 1, n, r->def->name, bench_solver_name(p.solver), p.steps);
        fflush(stdout);
        if (run_forked(&bc, &p, r)) goto done;
        if (r->r.ok) {
            const fz_report *q = &r->rep;
            printf(" %.1f s (load %.1f s), %d UNet calls, peak RSS %.0f MiB\n", q->t_encode + q->t_invert + q->t_edit + q->t_decode,
                   r->r.t_load, q->unet_calls, bench_mib(r->r.peak_rss));
        } else printf(" FAILED: %s\n", r->r.err);
        if (!strcmp(r->def->name, "fatezero") && r->r.ok) ref = r;
    }
    if (!bc.pix_mask) /* no --mask: the ocd run's own foreground mask (blend words), upsampled x8 */
        for (int i = 0; i < n && !bc.pix_mask; i++) {
            if (strcmp(rs[i].def->name, "ocd") || !rs[i].mask) continue;
            const int S8 = bc.S / 8;
            if (!(bc.pix_mask = malloc((size_t)bc.F * bc.S * bc.S))) { ocd_fail("out of memory"); goto done; }
            for (int f = 0; f < bc.F; f++)
                for (int y = 0; y < bc.S; y++)
                    for (int x = 0; x < bc.S; x++)
                        bc.pix_mask[((size_t)f * bc.S + y) * bc.S + x] = rs[i].mask[((size_t)f * S8 + y / 8) * S8 + x / 8] > 0.5f;
            bc.mask_what = "the ocd run's foreground mask (blend words, ocd-method.md 5.1), x8 nearest";
            printf("mask        %s\n", bc.mask_what);
        }
    if (!bc.pix_mask && bc.toy) { /* last resort on the toy model: the judge's object region, fidelity only */
        if (toy_region(&bc)) goto done;
        bc.mask_what = "toy: the pixel judge's object region of each source frame + 3 px (fidelity only)";
        printf("mask        %s\n", bc.mask_what);
    }
    for (int i = 0; i < n; i++) judge_run(&bc, &rs[i], ref);
    const double load1 = bench_load_avg();
    print_table(&bc, rs, n);
    printf("\ncolumns: times in s (speedup = fatezero total / total); calls = UNet calls, ffcall = full-frame call units; "
           "GFLOP counted;\n  RSS = %s; storeMB = attention store RAM + disk; plan KiB = merge plans;\n"
           "  vs the fatezero run%s: P = PSNR dB, S = SSIM (luma), in/out/all = inside / outside the mask / whole frame;\n"
           "  bgP = PSNR outside the mask vs the source clip; cons = mean PSNR of consecutive frames (source clip: %.2f dB);\n"
           "  tgt = frames whose object has the target colour (toy judge)%s.\n",
           bc.no_fork ? "process high-water mark so far (--no-fork)" : "peak RSS of the run's process (model included)",
           ref ? "" : " (not run: n/a)", src_cons, bc.toy && bc.target_colour >= 0 ? "" : ": not judged (toy model only)");
    printf("load avg    %.2f at the end\n", load1);
    if (args_has(a, "--random")) printf("random weights: timings are real, fidelity numbers are not meaningful\n");
    rc = write_outputs(&bc, rs, n, 0, src_cons, load0, load1, &em);
    int n_failed = 0, first = -1;
    for (int i = 0; i < n; i++)
        if (!rs[i].r.ok && n_failed++ == 0) first = i;
    if (!rc && n_failed) rc = ocd_fail("%d of %d runs failed (first: %s: %s)", n_failed, n, rs[first].def->name, rs[first].r.err);
done:
    for (int i = 0; i < N_RUNS; i++) free(rs[i].out);
    free(rs);
    free(bc.frames);
    free(bc.src_rgb);
    free(bc.pix_mask);
    free(bc.lat_mask);
    video_free(&src);
    return rc;
}
