/* ocd bench control (ocd-method.md 6-7): the three ControlVideo presets and the ablations on one
 * clip, one table, as `ocd bench edit` prints for FateZero.
 *
 * The conditions are the canny edges of a clip (default examples/toy-clip), resized to --size;
 * every run starts from the same noise. Each run is a child process (app/bench_table.h): it loads
 * the model and the ControlNet, runs cv_generate and cv_decode and hands its stats, its peak RSS
 * and its frames (RGB8) back.
 *
 * The foreground mask (OC-ToMe, OCS, and the inside/outside split of fidelity): --mask PATH, or
 * box:AREA, a centred box of that fraction of the frame. The default box:0.14 (side 3/8 of the
 * frame) is the centred box whose OCS crop (pad 2, snapped to 8 latent pixels) is a quarter of the
 * frame at 256 and 512 px: a centred quarter-frame box would grow past the 8-pixel grid into a
 * crop of the whole frame there, and OCS would be skipped.
 *
 * Fidelity (edit/metrics.h) is measured against the `controlvideo` run's frames, inside and
 * outside the mask, plus frame-to-frame consistency. (No background-vs-source column: generation
 * does not keep the source's pixels.)
 *
 * --estimate runs one UNet call, one ControlNet call and a small VAE decode and predicts each
 * run's time from counted GFLOP (the cost model is in estimate_run).
 * --pass is the older single-pass timing (cmd_bench_control_pass in cmd_control.c). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/bench_table.h"
#include "base/error.h"
#include "base/rng.h"
#include "base/util.h"
#include "edit/controlvideo.h"
#include "edit/ocs.h"
#include "edit/presets.h"
#include "io/image.h"
#include "io/video.h"

static const opt_spec k_opts[] = {
    {"--model", 1, "model folder or .safetensors file (default: --random sd15)"},
    {"--random", 1, "sd15|tiny random weights, also for the ControlNet without --controlnet (real timings, meaningless fidelity)"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--controlnet", 1, "ControlNet folder or .safetensors (default: random of the --random preset)"},
    {"--video", 1, "clip whose canny edges are the conditions (default examples/toy-clip)"},
    {"--frames", 1, "frames (default 8)"},
    {"--size", 1, "frame size in pixels, square (default 512)"},
    {"--prompt", 1, "prompt (default \"a blue circle on green grass\")"},
    {"--mask", 1, "box:AREA (a centred box of that fraction of the frame) | PATH (video / folder, white = foreground, frame "
                  "for frame with the clip) | none (default box:0.14)"},
    {"--steps-controlvideo", 1, "steps of the controlvideo run (default 50)"},
    {"--steps", 1, "steps of the optimized / ocd runs (default: the presets' own, 20)"},
    {"--smoother-steps", 1, "interleaved-frame smoother at these N-i values (default 19,20), or none"},
    {"--seed", 1, "noise seed (default 42)"},
    {"--runs", 1, "comma-separated run names (default: all; --list-runs shows them)"},
    {"--list-runs", 0, "print the runs and exit"},
    {"--json", 1, "also write the table as JSON"},
    {"--csv", 1, "also write the table as CSV"},
    {"--threads", 1, "threads (default: all cores)"},
    APP_OPT_PRECISION,
    {"--no-fork", 0, "run in this process (peak RSS = process high-water mark)"},
    {"--estimate", 0, "predict the runs' times from one measured UNet and ControlNet call instead of running them"},
    {"--gflops", 1, "--estimate: GFLOP/s to assume for the UNet and the ControlNet instead of measuring"},
    {"--pass", 0, "time one ControlNet + fully cross-frame UNet pass instead (ocd bench control --pass --help)"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

/* ---- the runs: the three presets, then the ablations shared with the other bench (bench_table.c) ---- */
static const bench_run k_presets[3] = {
    {"controlvideo", "controlvideo", "baseline: DDIM 50, CFG 12.5, no merging, no OCS", -1, -1, -1, -1, -1},
    {"optimized", "optimized", "DPM-Solver++ 2M 20 + 3D K/V ToMe 0.5", -1, -1, -1, -1, -1},
    {"ocd", "ocd", "optimized + OC-ToMe (lambda 1) + OCS (phi 4, beta 0.5)", -1, -1, -1, -1, -1},
};
static bench_run k_runs[3 + BENCH_N_ABLATIONS];
#define N_RUNS (3 + BENCH_N_ABLATIONS)

#define DEFAULT_CLIP "examples/toy-clip"
#define DEFAULT_PROMPT "a blue circle on green grass"
#define DEFAULT_MASK "box:0.14"

typedef struct {
    args a;
    int F, S, no_fork;
    const char *video, *prompt;
    long steps_cv, steps, seed;
    cv_params smoother;     /* n_smooth / smooth_steps from --smoother-steps */
    int selected[N_RUNS];
    float *cond;            /* [F, 3, S, S] canny conditions in [0, 1] */
    float *lat_mask;        /* [F, S/8, S/8] given to the runs as cv_ocd_params.mask, NULL = none */
    uint8_t *pix_mask;      /* [F, S, S] the latent mask x8 (fidelity inside / outside), NULL = none */
    char mask_what[256];    /* a line for the header */
} bench_ctx;

typedef struct {
    cv_stats st;
    double t_text, t_sample, t_decode;
} run_out; /* a run's payload; followed by the frames, RGB8 [F, S, S, 3] */

typedef struct {
    const bench_run *def;
    cv_params prm;
    bench_child r;
    run_out out;
    uint8_t *payload;
    uint8_t *rgb;           /* [F, S, S, 3] in payload, NULL when the run failed */
    bench_fidelity q;
    /* --estimate */
    double est_gflop, est_net_s, est_vae_s, est_ff, est_area;
} run_result;

/* cv_params of one run: defaults, the bench's smoother, the preset, the bench's steps and mask,
 * then the run's ablation. */
static int run_params(const bench_ctx *bc, const bench_run *def, cv_params *p) {
    cv_default_params(p);
    p->n_smooth = bc->smoother.n_smooth;
    memcpy(p->smooth_steps, bc->smoother.smooth_steps, sizeof p->smooth_steps);
    if (cv_preset(p, def->preset)) return -1;
    if (!strcmp(def->preset, "controlvideo")) p->steps = (int)bc->steps_cv;
    else if (bc->steps > 0) p->steps = (int)bc->steps;
    p->ocd.mask = bc->lat_mask;
    if (def->tome_ratio >= 0) p->ocd.tome_ratio = def->tome_ratio;
    if (def->lambda >= 0) p->ocd.oc_tome_lambda = def->lambda;
    if (def->ocs >= 0) p->ocd.ocs = def->ocs;
    if (def->phi > 0) p->ocd.ocs_phi = def->phi;
    if (def->beta >= 0) p->ocd.ocs_blend = def->beta;
    return 0;
}

/* ---- one run ---- */
typedef struct {
    const bench_ctx *bc;
    const cv_params *prm;
} run_job;

static void run_one(void *user, bench_child *sh, void *payload) {
    const run_job *job = user;
    const bench_ctx *bc = job->bc;
    const int F = bc->F, S = bc->S;
    run_out *ro = payload;
    uint8_t *rgb = (uint8_t *)(ro + 1);
    sd_model m;
    controlnet_model cm;
    pipe_ctx p;
    int have_m = 0, have_cm = 0, have_p = 0;
    float *emb = NULL, *noise = NULL, *lat = NULL, *img = NULL;
    char *full = NULL;
    double t0 = ocd_now();
    ocd_clear_error();
    if (app_set_threads(&bc->a) || app_load_model(&bc->a, &m)) goto fail;
    have_m = 1;
    if (control_load_cn(&bc->a, &cm)) goto fail;
    have_cm = 1;
    if (app_set_precision(&bc->a, &m, &cm)) goto fail;
    if (pipe_init(&p, &m, NULL)) goto fail;
    have_p = 1;
    sh->t_load = ocd_now() - t0;
    const int h = S / pipe_vae_factor(&p), w = h, C = pipe_latent_channels(&p);
    const size_t n1 = (size_t)C * h * w, ne = (size_t)m.clip_cfg.n_pos * m.clip_cfg.hidden;
    emb = malloc(sizeof(float) * 2 * ne);
    noise = malloc(sizeof(float) * n1);
    lat = malloc(sizeof(float) * n1 * F);
    img = malloc(sizeof(float) * (size_t)F * 3 * S * S);
    full = malloc(strlen(bc->prompt) + strlen(CV_POS_PROMPT) + 1);
    if (!emb || !noise || !lat || !img || !full) { ocd_fail("out of memory"); goto fail; }
    sprintf(full, "%s%s", bc->prompt, CV_POS_PROMPT);
    t0 = ocd_now();
    if (pipe_encode_prompt(&p, CV_NEG_PROMPT, emb) || pipe_encode_prompt(&p, full, emb + ne)) goto fail;
    pipe_init_noise((uint64_t)bc->seed, noise, n1);
    const double t1 = ocd_now();
    const int e = cv_generate(&p, cm.net, job->prm, emb, bc->cond, F, noise, h, w, lat, &ro->st);
    const double t2 = ocd_now();
    ro->t_text = t1 - t0, ro->t_sample = t2 - t1;
    if (e || cv_decode(&p, lat, F, h, w, img)) goto fail;
    ro->t_decode = ocd_now() - t2;
    sh->t_run = ocd_now() - t0;
    for (int f = 0; f < F; f++) {
        float *x = img + (size_t)f * 3 * S * S;
        for (size_t i = 0; i < (size_t)3 * S * S; i++) x[i] = 2 * x[i] - 1;   /* image_from_f32 wants [-1, 1] */
        image_from_f32(x, S, S, rgb + (size_t)f * S * S * 3);
    }
    sh->ok = 1;
    goto out;
fail:
    snprintf(sh->err, sizeof sh->err, "%s", ocd_last_error());
out:
    free(emb); free(noise); free(lat); free(img); free(full);
    if (have_p) pipe_free(&p);
    if (have_cm) controlnet_model_free(&cm);
    if (have_m) sd_model_free(&m);
    sh->peak_rss = ocd_peak_rss_bytes();
}

static int run_forked(const bench_ctx *bc, run_result *res) {
    const size_t fb = (size_t)bc->F * bc->S * bc->S * 3, bytes = sizeof(run_out) + fb;
    if (!(res->payload = calloc(1, bytes))) return ocd_fail("out of memory");
    run_job job = {bc, &res->prm};
    if (bench_run_child(bc->no_fork, run_one, &job, bytes, &res->r, res->payload, res->def->name)) return -1;
    memcpy(&res->out, res->payload, sizeof res->out);
    res->rgb = res->r.ok ? res->payload + sizeof(run_out) : NULL;
    return 0;
}

/* ---- inputs: the clip's canny conditions, the mask ---- */

static int read_inputs(bench_ctx *bc) {
    const int F = bc->F, S = bc->S, h = S / 8;
    ocd_video v = {0}, mv = {0};
    int rc = -1;
    if (video_read(bc->video, 0, 1, 0, &v)) goto done;
    const int n = v.n, stride = OCD_MAX(1, n / F);   /* ControlVideo's stride */
    if (control_pick_frames(&v, bc->video, 0, stride, F) || control_resize_clip(&v, S, S)) goto done;
    if (!(bc->cond = malloc(sizeof(float) * (size_t)F * 3 * S * S))) { ocd_fail("out of memory"); goto done; }
    if (cv_condition_canny(&v, bc->cond)) goto done;
    const char *ms = args_str(&bc->a, "--mask", DEFAULT_MASK);
    if (!strcmp(ms, "none")) {
        snprintf(bc->mask_what, sizeof bc->mask_what, "none (OCS and OC-ToMe fall back; inside/outside fidelity n/a)");
        rc = 0;
        goto done;
    }
    if (!(bc->lat_mask = calloc((size_t)F * h * h, sizeof(float)))) { ocd_fail("out of memory"); goto done; }
    if (!strncmp(ms, "box:", 4)) {
        char *end;
        const double area = strtod(ms + 4, &end);
        if (end == ms + 4 || *end || !(area > 0 && area <= 1)) { ocd_fail("--mask %s: expected box:AREA with AREA in (0, 1]", ms); goto done; }
        const int side = OCD_MAX(1, (int)lround(sqrt(area) * h)), y0 = (h - side) / 2;
        for (int f = 0; f < F; f++)
            for (int y = y0; y < y0 + side; y++)
                for (int x = y0; x < y0 + side; x++) bc->lat_mask[((size_t)f * h + y) * h + x] = 1.0f;
        snprintf(bc->mask_what, sizeof bc->mask_what, "%s: a centred box of %dx%d of the %dx%d latent (%.1f%% of the frame), every run's --mask",
                 ms, side, side, h, h, 100.0 * side * side / (h * h));
    } else {
        if (video_read(ms, 0, 1, 0, &mv)) { ocd_fail_context("--mask %s", ms); goto done; }
        if (mv.n != n) { ocd_fail("the mask %s has %d frames, the clip %s has %d: they must match frame for frame", ms, mv.n, bc->video, n); goto done; }
        if (control_pick_frames(&mv, ms, 0, stride, F) || control_mask_latent(&mv, h, h, bc->lat_mask)) goto done;
        snprintf(bc->mask_what, sizeof bc->mask_what, "%s (every run's --mask)", ms);
    }
    if (!(bc->pix_mask = malloc((size_t)F * S * S))) { ocd_fail("out of memory"); goto done; }
    for (int f = 0; f < F; f++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                bc->pix_mask[((size_t)f * S + y) * S + x] = bc->lat_mask[((size_t)f * h + y / 8) * h + x / 8] > 0.5f;
    rc = 0;
done:
    video_free(&v);
    video_free(&mv);
    return rc;
}

/* ---- --estimate: cost model ----
 * One guided evaluation of the clip = 2 CFG halves x [F ControlNet items + F UNet items + the
 * merge plans of every self-attention layer]. Per UNet item: the measured plain item, its own
 * per-frame self-attention (4 N^2 C per layer) replaced by fully cross-frame attention over the
 * kept keys (4 N C kept, kept = F N minus the merged sources, at least min_tokens per frame); a
 * plan costs 2 src dst C per layer and half. On the OCS crop (area a of the frame) the per-token
 * work scales by a and self-attention by a^2; a ControlNet item likewise (its per-frame
 * self-attention: the UNet's down and mid layers). Evaluations: N, or with OCS ceil(b/phi) full +
 * b crop + (N - b) full. VAE: F decodes at the end plus F decodes + encodes per smoother step that
 * fires (none inside the OCS span). Not counted: the sampler's arithmetic and the merges' copies. */
typedef struct {
    double unet_item, cn_item;            /* GFLOP of one plain item at S */
    double unet_rate, cn_rate, vae_rate;  /* GFLOP/s */
    double vae_dec, vae_enc;              /* GFLOP of one frame */
    int n_sa, n_cn_sa;                    /* self-attention layers (UNet; ControlNet: the first n_cn_sa) */
    int align;                            /* OCS crop alignment: the UNet's downsamplings */
    int sa_tokens[64], sa_ch[64];
} est_model;

/* GFLOP of one guided evaluation of the clip on `area` of the frame: *unet_out (UNet and merge
 * plans) and *cn_out (ControlNet). */
static void est_eval(const est_model *e, const cv_params *p, int F, double area, double *unet_out, double *cn_out) {
    const cv_ocd_params *o = &p->ocd;
    double unet = 0, cn = 0, plans = 0, own = 0, cn_own = 0;
    for (int l = 0; l < e->n_sa; l++) {
        const double N = e->sa_tokens[l] * area, C = e->sa_ch[l], T = F * N;
        double kept = T;
        if (o->tome_ratio > 0) {
            const double dst = F * floor(N / 4), src = T - dst, r = floor(o->tome_ratio * src);
            kept = OCD_MAX(T - r, OCD_MIN(T, (double)o->tome_min_tokens * F));
            if (r > 0) plans += 2.0 * src * dst * C / 1e9;
        }
        const double plain = 4.0 * e->sa_tokens[l] * e->sa_tokens[l] * C / 1e9;
        own += plain;
        unet += 4.0 * N * C * kept / 1e9;
        if (l < e->n_cn_sa) cn_own += plain, cn += plain * area * area;
    }
    unet += (e->unet_item - own) * area;
    cn += (e->cn_item - cn_own) * area;
    const int halves = p->guidance != 1.0f ? 2 : 1;
    *unet_out = halves * (F * unet + plans);
    *cn_out = halves * F * cn;
}

static void estimate_run(const bench_ctx *bc, const est_model *e, run_result *r) {
    const cv_params *p = &r->prm;
    const cv_ocd_params *o = &p->ocd;
    const int F = bc->F, N = p->steps, h = bc->S / 8;
    double evals = N, area = 0, crop_evals = 0;
    int b = 0;
    if (o->ocs && bc->lat_mask && (b = ocs_blend_step(N, o->ocs_blend)) > 0) {
        ocs_box box;
        if (ocs_crop_box(bc->lat_mask, F, h, h, o->ocs_pad, e->align, &box) && (area = ocs_box_area(&box, h, h)) <= o->ocs_max_area) {
            evals = ceil((double)b / o->ocs_phi) + (N - b);
            crop_evals = b;
        } else area = 0, b = 0;
    }
    r->est_area = area;
    r->est_ff = evals + crop_evals * area;
    double u_full, c_full, u_crop = 0, c_crop = 0;
    est_eval(e, p, F, 1.0, &u_full, &c_full);
    if (area > 0) est_eval(e, p, F, area, &u_crop, &c_crop);
    const double unet = evals * u_full + crop_evals * u_crop, cn = evals * c_full + crop_evals * c_crop;
    int smooth = 0;
    for (int s = 0; s < p->n_smooth; s++)
        if (p->smooth_steps[s] >= 1 && p->smooth_steps[s] <= N && N - p->smooth_steps[s] >= b) smooth++;
    const double vae = F * (e->vae_dec + smooth * (e->vae_dec + e->vae_enc));
    r->est_gflop = unet + cn;   /* as the runs count: networks and plans, not the VAE */
    r->est_net_s = unet / e->unet_rate + cn / e->cn_rate;
    r->est_vae_s = vae / e->vae_rate;
}

static int measure_model(bench_ctx *bc, est_model *e, double rate_opt) {
    sd_model m;
    controlnet_model cm;
    const int S = bc->S, h = S / 8;
    double t0 = ocd_now();
    if (app_load_model(&bc->a, &m)) return -1;
    if (control_load_cn(&bc->a, &cm)) { sd_model_free(&m); return -1; }
    if (app_set_precision(&bc->a, &m, &cm)) { controlnet_model_free(&cm); sd_model_free(&m); return -1; }
    printf("models      %s + ControlNet %s loaded in %.1f s\n", m.files.path, cm.files.path, ocd_now() - t0);
    const unet_config *c = &m.unet_cfg;
    e->n_sa = bench_sa_layers(c, S, e->sa_tokens, e->sa_ch, 64);
    const int depth = c->transformer_depth > 0 ? c->transformer_depth : 1;
    e->n_cn_sa = depth;   /* the mid block, after the down levels with attention */
    e->align = 1 << (c->n_levels > 1 ? c->n_levels - 1 : 0);
    for (int i = 0; i < c->n_levels; i++) if (c->down_attn[i]) e->n_cn_sa += c->layers_per_block * depth;
    const int vh = OCD_MIN(h, 16); /* VAE rate from a 128 px decode: 512 px takes minutes here */
    const int reps = S <= 256 ? 2 : 1; /* small sizes: a warm-up call first */
    float *x = malloc(sizeof(float) * c->in_ch * h * h), *ctx = malloc(sizeof(float) * 77 * c->cross_dim);
    float *eps = malloc(sizeof(float) * c->out_ch * h * h), *cond = malloc(sizeof(float) * 3 * S * S);
    float *img = malloc(sizeof(float) * 3 * vh * 8 * vh * 8), t = 500;
    controlnet_out co = {0};
    int rc = -1;
    double dt_u = 0, dt_c = 0, dt_v = 0;
    if (!x || !ctx || !eps || !cond || !img || controlnet_out_alloc(&co, cm.net, 1, h, h)) { ocd_fail("out of memory"); goto done; }
    rng_normal(7, 1, x, (size_t)c->in_ch * h * h);
    rng_normal(7, 2, ctx, (size_t)77 * c->cross_dim);
    memcpy(cond, bc->cond, sizeof(float) * 3 * S * S);
    for (int i = 0; i < reps; i++) {
        t0 = ocd_now();
        if (controlnet_forward(cm.net, x, &t, ctx, 77, 1, h, h, cond, 1.0f, 0, &co)) goto done;
        dt_c = ocd_now() - t0;
        t0 = ocd_now();
        if (unet_forward(m.unet, x, &t, ctx, 77, 1, h, h, NULL, eps)) goto done;
        dt_u = ocd_now() - t0;
        t0 = ocd_now();
        if (vae_decode(m.vae, x, vh, vh, img)) goto done; /* the first 4 latent channels of x: any input will do */
        dt_v = ocd_now() - t0;
    }
    e->unet_item = unet_last_flops(m.unet) / 1e9;
    e->cn_item = controlnet_last_flops(cm.net) / 1e9;
    e->unet_rate = rate_opt > 0 ? rate_opt : e->unet_item / dt_u;
    e->cn_rate = rate_opt > 0 ? rate_opt : e->cn_item / dt_c;
    e->vae_rate = vae_decode_flops(&m.vae_cfg, vh, vh) / 1e9 / dt_v;
    e->vae_dec = vae_decode_flops(&m.vae_cfg, h, h) / 1e9;
    e->vae_enc = vae_encode_flops(&m.vae_cfg, S, S) / 1e9;
    printf("UNet        %.1f GFLOP per item at %dx%d, %.2f s = %.1f GFLOP/s%s%s\n", e->unet_item, S, S, dt_u, e->unet_item / dt_u,
           reps > 1 ? " (after a warm-up)" : " (includes planning)", rate_opt > 0 ? " (using --gflops instead)" : "");
    printf("ControlNet  %.1f GFLOP per item, %.2f s = %.1f GFLOP/s%s\n", e->cn_item, dt_c, e->cn_item / dt_c,
           rate_opt > 0 ? " (using --gflops instead)" : "");
    printf("VAE         %.1f GFLOP/s (decode at %dx%d)\n", e->vae_rate, vh * 8, vh * 8);
    rc = 0;
done:
    controlnet_out_free(&co);
    free(x); free(ctx); free(eps); free(cond); free(img);
    controlnet_model_free(&cm);
    sd_model_free(&m);
    return rc;
}

/* ---- output ---- */

static double run_total(const run_result *r) { return r->out.t_text + r->out.t_sample + r->out.t_decode; }
static double run_gflop(const cv_stats *st) { return (st->unet_flops + st->controlnet_flops + st->plan_flops) * 1e-9; }
static double merged_pct(const cv_stats *st) {
    long tin = 0, tm = 0;
    for (int l = 0; l < 8; l++) tin += st->tokens_in[l], tm += st->tokens_merged[l];
    return tin ? 100.0 * tm / tin : 0.0;
}

static void print_table(run_result *rs, int n) {
    const run_result *ref = NULL;
    for (int i = 0; i < n; i++) if (!strcmp(rs[i].def->name, "controlvideo") && rs[i].rgb) ref = &rs[i];
    printf("\n%-13s %5s %7s %8s %7s %7s %8s %8s %5s %6s %9s %7s %7s | %6s %6s %6s %6s %6s %6s %6s\n", "run", "steps", "ctrl s",
           "unet s", "smth s", "dec s", "total", "speedup", "calls", "ffeval", "GFLOP", "RSS MiB", "merged", "Pin", "Pout", "Pall",
           "Sin", "Sout", "Sall", "cons");
    for (int i = 0; i < n; i++) {
        const run_result *r = &rs[i];
        if (!r->r.ok) { printf("%-13s FAILED: %s\n", r->def->name, r->r.err); continue; }
        const cv_stats *st = &r->out.st;
        char v[8][16];
        bench_fmt_num(v[0], 16, r->q.psnr_in, "%.2f");
        bench_fmt_num(v[1], 16, r->q.psnr_out, "%.2f");
        bench_fmt_num(v[2], 16, r->q.psnr_all, "%.2f");
        bench_fmt_num(v[3], 16, r->q.ssim_in, "%.4f");
        bench_fmt_num(v[4], 16, r->q.ssim_out, "%.4f");
        bench_fmt_num(v[5], 16, r->q.ssim_all, "%.4f");
        bench_fmt_num(v[6], 16, r->q.cons, "%.2f");
        bench_fmt_num(v[7], 16, ref ? run_total(ref) / run_total(r) : NAN, "%.2fx");
        printf("%-13s %5d %7.2f %8.2f %7.2f %7.2f %8.2f %8s %5ld %6.2f %9.1f %7.0f %6.1f%% | %6s %6s %6s %6s %6s %6s %6s\n",
               r->def->name, r->prm.steps, st->t_controlnet, st->t_unet, st->t_smoother, r->out.t_decode, run_total(r), v[7],
               st->unet_calls, st->full_frame_evals, run_gflop(st), bench_mib(r->r.peak_rss), merged_pct(st), v[0], v[1], v[2], v[3],
               v[4], v[5], v[6]);
    }
    for (int i = 0; i < n; i++)
        if (rs[i].r.ok && rs[i].out.st.note[0]) printf("note %-13s %s\n", rs[i].def->name, rs[i].out.st.note);
}

static int write_outputs(const bench_ctx *bc, run_result *rs, int n, int estimate, double load0, double load1, const est_model *e) {
    const char *jpath = args_str(&bc->a, "--json", NULL), *cpath = args_str(&bc->a, "--csv", NULL);
    if (jpath) {
        json_t *root = bench_json_header(&bc->a, bc->video, bc->F, bc->S, bc->mask_what, estimate, load0, load1),
               *runs = json_array();
        json_object_set_new(root, "prompt", json_string(bc->prompt));
        if (estimate) {
            json_object_set_new(root, "unet_gflop_per_item", bench_jnum(e->unet_item));
            json_object_set_new(root, "controlnet_gflop_per_item", bench_jnum(e->cn_item));
            json_object_set_new(root, "unet_gflops", bench_jnum(e->unet_rate));
            json_object_set_new(root, "controlnet_gflops", bench_jnum(e->cn_rate));
            json_object_set_new(root, "vae_gflops", bench_jnum(e->vae_rate));
        }
        for (int i = 0; i < n; i++) {
            const run_result *r = &rs[i];
            const cv_params *p = &r->prm;
            const cv_stats *st = &r->out.st;
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(r->def->name));
            json_object_set_new(o, "preset", json_string(r->def->preset));
            json_object_set_new(o, "what", json_string(r->def->what));
            json_object_set_new(o, "steps", json_integer(p->steps));
            json_object_set_new(o, "solver", json_string(bench_solver_name(p->solver)));
            json_object_set_new(o, "tome_ratio", json_real(p->ocd.tome_ratio));
            json_object_set_new(o, "oc_tome_lambda", json_real(p->ocd.oc_tome_lambda));
            json_object_set_new(o, "ocs", json_boolean(p->ocd.ocs));
            json_object_set_new(o, "ocs_phi", json_integer(p->ocd.ocs_phi));
            json_object_set_new(o, "ocs_blend", json_real(p->ocd.ocs_blend));
            if (estimate) {
                json_object_set_new(o, "predicted_gflop", bench_jnum(r->est_gflop));
                json_object_set_new(o, "predicted_full_frame_evals", bench_jnum(r->est_ff));
                json_object_set_new(o, "predicted_ocs_area", bench_jnum(r->est_area));
                json_object_set_new(o, "predicted_networks_s", bench_jnum(r->est_net_s));
                json_object_set_new(o, "predicted_vae_s", bench_jnum(r->est_vae_s));
                json_object_set_new(o, "predicted_total_s", bench_jnum(r->est_net_s + r->est_vae_s));
                json_array_append_new(runs, o);
                continue;
            }
            json_object_set_new(o, "ok", json_boolean(r->r.ok));
            if (!r->r.ok) { json_object_set_new(o, "error", json_string(r->r.err)); json_array_append_new(runs, o); continue; }
            json_object_set_new(o, "t_load", bench_jnum(r->r.t_load));
            json_object_set_new(o, "t_text", bench_jnum(r->out.t_text));
            json_object_set_new(o, "t_controlnet", bench_jnum(st->t_controlnet));
            json_object_set_new(o, "t_unet", bench_jnum(st->t_unet));
            json_object_set_new(o, "t_smoother", bench_jnum(st->t_smoother));
            json_object_set_new(o, "t_sample", bench_jnum(r->out.t_sample));
            json_object_set_new(o, "t_decode", bench_jnum(r->out.t_decode));
            json_object_set_new(o, "t_total", bench_jnum(run_total(r)));
            json_object_set_new(o, "unet_calls", json_integer(st->unet_calls));
            json_object_set_new(o, "unet_frames", json_integer(st->unet_frames));
            json_object_set_new(o, "controlnet_frames", json_integer(st->controlnet_frames));
            json_object_set_new(o, "full_frame_evals", bench_jnum(st->full_frame_evals));
            json_object_set_new(o, "gflop", bench_jnum(run_gflop(st)));
            json_object_set_new(o, "unet_gflop", bench_jnum(st->unet_flops * 1e-9));
            json_object_set_new(o, "controlnet_gflop", bench_jnum(st->controlnet_flops * 1e-9));
            json_object_set_new(o, "plan_gflop", bench_jnum(st->plan_flops * 1e-9));
            json_object_set_new(o, "peak_rss_bytes", json_integer((json_int_t)r->r.peak_rss));
            json_object_set_new(o, "peak_rss_is_process_hwm", json_boolean(bc->no_fork));
            json_t *ti = json_array(), *tm = json_array();
            for (int l = 0; l < 8; l++) {
                json_array_append_new(ti, json_integer(st->tokens_in[l]));
                json_array_append_new(tm, json_integer(st->tokens_merged[l]));
            }
            json_object_set_new(o, "tokens_in", ti);
            json_object_set_new(o, "tokens_merged", tm);
            json_object_set_new(o, "ocs_area", bench_jnum(st->ocs_area));
            json_object_set_new(o, "smoothed", json_integer(st->smoothed));
            json_object_set_new(o, "note", json_string(st->note));
            bench_json_fidelity(o, &r->q);
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
            fprintf(f, "run,preset,steps,predicted_gflop,predicted_full_frame_evals,predicted_ocs_area,predicted_networks_s,"
                       "predicted_vae_s,predicted_total_s\n");
            for (int i = 0; i < n; i++)
                fprintf(f, "%s,%s,%d,%.3f,%.3f,%.4f,%.3f,%.3f,%.3f\n", rs[i].def->name, rs[i].def->preset, rs[i].prm.steps,
                        rs[i].est_gflop, rs[i].est_ff, rs[i].est_area, rs[i].est_net_s, rs[i].est_vae_s, rs[i].est_net_s + rs[i].est_vae_s);
        } else {
            fprintf(f, "run,preset,ok,steps,t_text,t_controlnet,t_unet,t_smoother,t_sample,t_decode,t_total,unet_calls,unet_frames,"
                       "full_frame_evals,gflop,plan_gflop,peak_rss_bytes,merged_pct,ocs_area,psnr_inside,psnr_outside,psnr_all,"
                       "ssim_inside,ssim_outside,ssim_all,consistency_psnr\n");
            for (int i = 0; i < n; i++) {
                const run_result *r = &rs[i];
                const cv_stats *st = &r->out.st;
                fprintf(f, "%s,%s,%d,%d", r->def->name, r->def->preset, r->r.ok, r->prm.steps);
                if (!r->r.ok) { fprintf(f, "%s\n", ",,,,,,,,,,,,,,,,,,,,,,"); continue; }
                fprintf(f, ",%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%ld,%ld,%.4f,%.3f,%.3f,%zu,%.3f,%.4f", r->out.t_text, st->t_controlnet,
                        st->t_unet, st->t_smoother, r->out.t_sample, r->out.t_decode, run_total(r), st->unet_calls, st->unet_frames,
                        st->full_frame_evals, run_gflop(st), st->plan_flops * 1e-9, r->r.peak_rss, merged_pct(st), st->ocs_area);
                const double q[7] = {r->q.psnr_in, r->q.psnr_out, r->q.psnr_all, r->q.ssim_in, r->q.ssim_out, r->q.ssim_all, r->q.cons};
                for (int k = 0; k < 7; k++) isnan(q[k]) ? fprintf(f, ",") : fprintf(f, ",%.6f", q[k]);
                fprintf(f, "\n");
            }
        }
        if (fclose(f)) return ocd_fail("cannot write %s", cpath);
        printf("wrote %s\n", cpath);
    }
    return 0;
}

/* ---- the command ---- */
int cmd_bench_control(int argc, char **argv) {
    bench_make_runs(k_presets, k_runs);
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--pass")) return cmd_bench_control_pass(argc, argv);
    bench_ctx bc;
    memset(&bc, 0, sizeof bc);
    if (args_parse(&bc.a, k_opts, argc, argv)) return -1;
    args *a = &bc.a;
    if (args_has(a, "--help")) {
        args_usage(k_opts, "ocd bench control [--random sd15 | --model M --controlnet CN] [--size 512] [--frames 8] "
                           "[--mask box:0.14|PATH] [--runs a,b] [--json F] [--csv F] [--estimate]");
        return 0;
    }
    if (args_has(a, "--list-runs")) {
        bench_list_runs(k_runs, N_RUNS);
        return 0;
    }
    if (a->n_pos) return ocd_fail("unexpected argument \"%s\"", a->pos[0]);
    const int estimate = args_has(a, "--estimate");
    bc.no_fork = args_has(a, "--no-fork");
    long F, S;
    double rate_opt;
    bc.smoother.n_smooth = 2, bc.smoother.smooth_steps[0] = 19, bc.smoother.smooth_steps[1] = 20;   /* ControlVideo's */
    if (args_int(a, "--frames", 8, 1, CV_MAX_FRAMES, &F) || args_int(a, "--size", 512, 8, 4096, &S) ||
        args_int(a, "--steps-controlvideo", 50, 1, OCD_MAX_STEPS, &bc.steps_cv) || args_int(a, "--steps", -1, 1, OCD_MAX_STEPS, &bc.steps) ||
        args_int(a, "--seed", 42, 0, 0x7fffffffffffffffL, &bc.seed) || args_double(a, "--gflops", 0, 0, 1e7, &rate_opt) ||
        (args_has(a, "--smoother-steps") && control_parse_smoother(args_str(a, "--smoother-steps", ""), &bc.smoother)) ||
        bench_select_runs(args_str(a, "--runs", NULL), k_runs, N_RUNS, bc.selected))
        return -1;
    if (S % 8) return ocd_fail("--size %ld is not a multiple of 8", S);
    if (!args_has(a, "--model") && !args_has(a, "--random")) /* a random SD 1.5 and a random ControlNet */
        for (int i = 0; i < a->n_spec; i++) if (!strcmp(a->spec[i].name, "--random")) a->present[i] = 1, a->value[i] = "sd15";
    if (args_has(a, "--model") && !args_has(a, "--controlnet") && !args_has(a, "--random"))
        return ocd_fail("no ControlNet: give --controlnet PATH with --model");
    bc.F = (int)F, bc.S = (int)S;
    bc.video = args_str(a, "--video", DEFAULT_CLIP);
    bc.prompt = args_str(a, "--prompt", DEFAULT_PROMPT);

    int rc = -1, n = 0;
    run_result *rs = calloc(N_RUNS, sizeof *rs);
    if (!rs) return ocd_fail("out of memory");
    if (read_inputs(&bc)) goto done;
    for (int i = 0; i < N_RUNS; i++) {
        if (!bc.selected[i]) continue;
        run_result *r = &rs[n++];
        r->def = &k_runs[i];
        if (run_params(&bc, r->def, &r->prm)) goto done;
    }
    const double load0 = bench_load_avg();
    printf("bench control: %s, %d frames of %dx%d from %s (canny), \"%s\"\n",
           args_str(a, "--model", NULL) ? args_str(a, "--model", "") : args_str(a, "--random", ""), bc.F, bc.S, bc.S, bc.video,
           bc.prompt);
    printf("mask        %s\n", bc.mask_what);
    printf("load avg    %.2f at start (the machine is shared: wall times vary with it)\n", load0);
    printf("precision   %s (--precision %s)\n", app_precision_name(a), args_str(a, "--precision", "auto"));
    est_model em;
    memset(&em, 0, sizeof em);
    if (estimate) {
        if (measure_model(&bc, &em, rate_opt)) goto done;
        printf("\npredicted at %dx%d, %d frames:\n", bc.S, bc.S, bc.F);
        printf("%-13s %5s %10s %8s %6s %10s %8s %10s %9s %8s\n", "run", "steps", "GFLOP", "ffevals", "area", "nets s", "VAE s",
               "total s", "total h", "speedup");
        double base = NAN;
        for (int i = 0; i < n; i++) {
            estimate_run(&bc, &em, &rs[i]);
            if (!strcmp(rs[i].def->name, "controlvideo")) base = rs[i].est_net_s + rs[i].est_vae_s;
        }
        for (int i = 0; i < n; i++) {
            const double tot = rs[i].est_net_s + rs[i].est_vae_s;
            char sp[16];
            bench_fmt_num(sp, sizeof sp, base / tot, "%.2fx");
            printf("%-13s %5d %10.0f %8.2f %6.3f %10.1f %8.1f %10.1f %9.2f %8s\n", rs[i].def->name, rs[i].prm.steps, rs[i].est_gflop,
                   rs[i].est_ff, rs[i].est_area, rs[i].est_net_s, rs[i].est_vae_s, tot, tot / 3600, sp);
        }
        printf("(nets = UNet + ControlNet; ffevals = guided evaluations of the clip in full-frame units; area: OCS crop fraction, "
               "0 = OCS off or skipped)\n");
        rc = write_outputs(&bc, rs, n, 1, load0, bench_load_avg(), &em);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        run_result *r = &rs[i];
        printf("[%d/%d] %-13s %s, %d steps ...", i + 1, n, r->def->name, bench_solver_name(r->prm.solver), r->prm.steps);
        fflush(stdout);
        if (run_forked(&bc, r)) goto done;
        if (r->r.ok)
            printf(" %.1f s (load %.1f s), %ld UNet calls, peak RSS %.0f MiB\n", run_total(r), r->r.t_load, r->out.st.unet_calls,
                   bench_mib(r->r.peak_rss));
        else printf(" FAILED: %s\n", r->r.err);
    }
    const run_result *ref = NULL;
    for (int i = 0; i < n; i++) if (!strcmp(rs[i].def->name, "controlvideo") && rs[i].rgb) ref = &rs[i];
    for (int i = 0; i < n; i++) bench_judge(rs[i].rgb, ref ? ref->rgb : NULL, NULL, bc.pix_mask, bc.F, bc.S, bc.S, &rs[i].q);
    const double load1 = bench_load_avg();
    print_table(rs, n);
    printf("\ncolumns: times in s (speedup = controlvideo total / total; total = text + sampling + decode, load excluded);\n"
           "  ctrl / unet / smth = ControlNet, UNet (with merging), smoother; calls = UNet calls (one per CFG half and pass);\n"
           "  ffeval = guided evaluations of the clip in full-frame units (OCS: b area + ceil(b/phi) + N - b); GFLOP counted\n"
           "  (UNet with the keys really read + ControlNet + merge plans); RSS = %s;\n"
           "  merged = K/V tokens merged away in self-attention; vs the controlvideo run%s: P = PSNR dB, S = SSIM (luma),\n"
           "  in/out/all = inside / outside the mask / whole frame; cons = mean PSNR of consecutive frames.\n",
           bc.no_fork ? "process high-water mark so far (--no-fork)" : "peak RSS of the run's process (models included)",
           ref ? "" : " (not run: n/a)");
    printf("load avg    %.2f at the end\n", load1);
    if (args_has(a, "--random")) printf("random weights: timings are real, fidelity numbers are not meaningful\n");
    rc = write_outputs(&bc, rs, n, 0, load0, load1, &em);
    int n_failed = 0, first = -1;
    for (int i = 0; i < n; i++)
        if (!rs[i].r.ok && n_failed++ == 0) first = i;
    if (!rc && n_failed) rc = ocd_fail("%d of %d runs failed (first: %s: %s)", n_failed, n, rs[first].def->name, rs[first].r.err);
done:
    for (int i = 0; i < N_RUNS; i++) free(rs[i].payload);
    free(rs);
    free(bc.cond);
    free(bc.lat_mask);
    free(bc.pix_mask);
    return rc;
}
