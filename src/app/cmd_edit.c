/* ocd edit: a video in, a prompt edit (FateZero: inversion + attention fusion), a video out.
 * Options come from the command line or a JSON job file (`--job`, same names without the
 * dashes; the command line wins). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/app.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/util.h"
#include "edit/fatezero.h"
#include "edit/ocs.h"
#include "edit/presets.h"
#include "io/image.h"
#include "io/video.h"

static const opt_spec k_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights (timing only)"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--video", 1, "input: video file (mp4, webm, mov, gif, ...) or folder of frames"},
    {"--frames", 1, "frames to edit (default 8; 0 = all)"},
    {"--start", 1, "first frame (default 0)"},
    {"--stride", 1, "take every K-th frame (default 1)"},
    {"--size", 1, "short side resize + centre crop (default: the model's native size, 512 for SD 1.x)"},
    {"--source", 1, "source prompt (describes the input)"},
    {"--target", 1, "target prompt (the edit)"},
    {"--negative", 1, "negative prompt (default \"\")"},
    {"--preset", 1, "fatezero|optimized|ocd: the paper's settings (default fatezero); the flags below override them"},
    {"--sampler", 1, "ddim|dpmpp-2m: solver of editing; inversion runs on the same timesteps (preset's)"},
    {"--steps", 1, "steps for inversion and editing (fatezero 50, optimized/ocd 20)"},
    {"--cfg", 1, "guidance scale (default 7.5)"},
    {"--cross-replace", 1, "cross-attention replacement fraction (default 0.8)"},
    {"--cross-words", 1, "per-word cross-replace bounds: word=hi[,word=lo:hi...]"},
    {"--self-replace", 1, "self-attention replacement fraction (default 0.6)"},
    {"--replace", 1, "auto|refine|replace: cross-attention replacement kind (default auto)"},
    {"--reweight", 1, "word=value[,word=value...]: scale the target words' attention"},
    {"--blend-words", 1, "source words whose attention masks the edited region (e.g. \"car\")"},
    {"--blend-words-target", 1, "target words for latent blending (default: --blend-words)"},
    {"--blend-threshold", 1, "mask threshold (default 0.3)"},
    {"--latent-blend", 0, "also blend latents outside the mask (A.9)"},
    {"--xframe", 1, "cross-frame attention: mid|first-prev|all|self (default mid)"},
    {"--least-sc-channel", 1, "blocks with fewer channels keep per-frame attention (default 640)"},
    {"--attn-budget", 1, "RAM for the attention store, e.g. 512M, 2G (default unlimited); beyond it spills to disk"},
    {"--spill-dir", 1, "folder of the spill file (default $TMPDIR or /tmp)"},
    {"--no-fusion", 0, "plain inversion + regeneration (no attention fusion)"},
    {"--tome-ratio", 1, "K/V token merging in self-attention: fraction of sources merged (0 = off; optimized/ocd 0.5)"},
    {"--tome-min-tokens", 1, "tokens kept per frame at least (default 64)"},
    {"--tome-seed", 1, "seed of the per-frame destination draws (default 0)"},
    {"--oc-tome-lambda", 1, "Object-Centric ToMe: foreground sources' score lowered by this (ocd 1.0; 0 = off)"},
    {"--ocs", 0, "Object-Centric Sampling on (ocd preset)"},
    {"--no-ocs", 0, "Object-Centric Sampling off"},
    {"--ocs-phi", 1, "background branch every phi-th step (default 4)"},
    {"--ocs-blend", 1, "blend step as a fraction beta of the steps (default 0.5)"},
    {"--ocs-pad", 1, "crop padding in latent pixels (default 2)"},
    {"--ocs-max-area", 1, "skip OCS when the crop covers more of the frame (default 0.6)"},
    {"--mask", 1, "foreground mask: video or folder of frames, white = foreground (default: from --blend-words)"},
    {"--mask-threshold", 1, "blend-word mask threshold (default 0.3)"},
    {"--mask-dilate", 1, "blend-word mask dilation in latent pixels (default 1)"},
    {"--per-frame-norm", 0, "GroupNorm statistics per frame (default: over the clip, as FateZero's 3-D UNet)"},
    {"--out", 1, "output: .mp4, .gif or a folder/ of PNGs"},
    {"--side-by-side", 1, "also write source | edit next to each other to this file"},
    {"--fps", 1, "output frame rate (default: the input's, else 10)"},
    {"--threads", 1, "threads (default: all cores)"},
    APP_OPT_PRECISION,
    {"--quiet", 0, "no progress line"},
    {"--job", 1, "JSON file with these options (names without --)"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

/* Job file -> argv ("--key", "value" pairs); strings owned by the returned json_t. */
static int job_to_argv(const char *path, json_t **root_out, char ***argv_out, int *argc_out) {
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) return ocd_fail("%s: invalid job file (%s, line %d)", path, err.text, err.line);
    if (!json_is_object(root)) { json_decref(root); return ocd_fail("%s: a job file is a JSON object", path); }
    size_t n = json_object_size(root);
    char **av = calloc(2 * n + 1, sizeof *av);
    json_t *store = json_array(); /* keeps the strings alive */
    if (!av || !store) { free(av); json_decref(root); json_decref(store); return ocd_fail("out of memory"); }
    int ac = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        char buf[4096];
        snprintf(buf, sizeof buf, "--%s", key);
        if (!strcmp(key, "job")) continue;
        if (json_is_true(v)) { json_array_append_new(store, json_string(buf)); }
        else if (json_is_false(v) || json_is_null(v)) continue;
        else {
            char val[4096];
            if (json_is_string(v)) snprintf(val, sizeof val, "%s", json_string_value(v));
            else if (json_is_integer(v)) snprintf(val, sizeof val, "%lld", (long long)json_integer_value(v));
            else if (json_is_real(v)) snprintf(val, sizeof val, "%.17g", json_real_value(v));
            else {
                free(av);
                json_decref(store);
                json_decref(root);
                return ocd_fail("%s: option \"%s\" must be a string, number or boolean", path, key);
            }
            json_array_append_new(store, json_string(buf));
            json_array_append_new(store, json_string(val));
        }
    }
    for (size_t i = 0; i < json_array_size(store); i++) av[ac++] = (char *)json_string_value(json_array_get(store, i));
    json_decref(root);
    *root_out = store;
    *argv_out = av;
    *argc_out = ac;
    return 0;
}

/* "512M" / "2G" / "1000000" -> bytes. */
static int parse_bytes(const char *s, size_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0)) return ocd_fail("--attn-budget: \"%s\" is not a size", s);
    double mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1024.0, end++;
    else if (*end == 'm' || *end == 'M') mul = 1048576.0, end++;
    else if (*end == 'g' || *end == 'G') mul = 1073741824.0, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return ocd_fail("--attn-budget: \"%s\" is not a size (e.g. 512M)", s);
    *out = (size_t)(v * mul);
    return 0;
}

/* "word=value,word=value" into the params' tables. */
static int parse_word_list(const char *opt, const char *s, char *storage, size_t cap, fz_params *p, int reweight) {
    if (strlen(s) >= cap) return ocd_fail("%s: too long", opt);
    strcpy(storage, s);
    for (char *tok = strtok(storage, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) return ocd_fail("%s: \"%s\" is not word=value", opt, tok);
        *eq = 0;
        char *end;
        if (reweight) {
            if (p->n_reweight >= FZ_MAX_WORDS) return ocd_fail("%s: at most %d words", opt, FZ_MAX_WORDS);
            double v = strtod(eq + 1, &end);
            if (end == eq + 1 || *end || !isfinite(v)) return ocd_fail("%s: \"%s\" is not a number", opt, eq + 1);
            p->reweight[p->n_reweight++] = (fz_reweight){tok, (float)v};
        } else {
            if (p->n_cross_words >= FZ_MAX_WORDS) return ocd_fail("%s: at most %d words", opt, FZ_MAX_WORDS);
            double lo = 0, hi = strtod(eq + 1, &end);
            if (*end == ':') { lo = hi; hi = strtod(end + 1, &end); }
            if (end == eq + 1 || *end || !(lo >= 0 && hi <= 1 && lo <= hi))
                return ocd_fail("%s: \"%s\" is not a fraction or lo:hi in [0, 1]", opt, eq + 1);
            p->cross_words[p->n_cross_words++] = (fz_word_bounds){tok, lo, hi};
        }
    }
    return 0;
}

static void on_progress(void *user, const char *phase, int step, int total) {
    ocd_progress *pr = user;
    if (strcmp(pr->phase, phase) != 0 || step == 0) progress_phase(pr, phase, total);
    if (step > 0) progress_step(pr);
}

typedef struct {
    char cross_words[1024], reweight[1024];
} edit_strings;

static int read_accel_options(const args *a, fz_params *p) {
    const char *sm = args_str(a, "--sampler", NULL);
    if (sm) {
        if (!strcmp(sm, "ddim")) p->solver = OCD_SOLVER_DDIM;
        else if (!strcmp(sm, "dpmpp-2m") || !strcmp(sm, "dpm++2m") || !strcmp(sm, "dpmpp")) p->solver = OCD_SOLVER_DPMPP_2M;
        else return ocd_fail("--sampler: \"%s\" is not ddim or dpmpp-2m", sm);
    }
    long mt, seed, phi, pad, dil;
    double ratio, lambda, beta, area, mth;
    if (args_double(a, "--tome-ratio", p->tome_ratio, 0, 1, &ratio) ||
        args_int(a, "--tome-min-tokens", p->tome_min_tokens, 0, 1 << 20, &mt) ||
        args_int(a, "--tome-seed", (long)p->tome_seed, 0, 0x7fffffffL, &seed) ||
        args_double(a, "--oc-tome-lambda", p->oc_tome_lambda, 0, 100, &lambda) ||
        args_int(a, "--ocs-phi", p->ocs_phi, 1, 1000, &phi) || args_double(a, "--ocs-blend", p->ocs_blend, 0, 1, &beta) ||
        args_int(a, "--ocs-pad", p->ocs_pad, 0, 1000, &pad) || args_double(a, "--ocs-max-area", p->ocs_max_area, 0, 1, &area) ||
        args_double(a, "--mask-threshold", p->mask_threshold, 0, 1, &mth) ||
        args_int(a, "--mask-dilate", p->mask_dilate, 0, 100, &dil))
        return -1;
    p->tome_ratio = (float)ratio, p->tome_min_tokens = (int)mt, p->tome_seed = (uint64_t)seed;
    p->oc_tome_lambda = (float)lambda;
    p->ocs_phi = (int)phi, p->ocs_blend = beta, p->ocs_pad = (int)pad, p->ocs_max_area = area;
    p->mask_threshold = (float)mth, p->mask_dilate = (int)dil;
    if (args_has(a, "--ocs") && args_has(a, "--no-ocs")) return ocd_fail("--ocs and --no-ocs contradict each other");
    if (args_has(a, "--ocs")) p->ocs = 1;
    if (args_has(a, "--no-ocs")) p->ocs = 0;
    return 0;
}

static int read_options(const args *a, fz_params *p, edit_strings *st) {
    fz_default_params(p);
    /* a preset only sets defaults: every flag read below overrides it */
    const char *preset = args_str(a, "--preset", NULL);
    if (preset && fz_preset(p, preset)) return -1;
    if (read_accel_options(a, p)) return -1;
    long steps, lsc;
    double cfg, cr, sr, th;
    if (args_int(a, "--steps", p->steps, 1, 1000, &steps) || args_double(a, "--cfg", p->cfg, 0, 100, &cfg) ||
        args_double(a, "--cross-replace", p->cross_replace, 0, 1, &cr) ||
        args_double(a, "--self-replace", p->self_replace, 0, 1, &sr) ||
        args_double(a, "--blend-threshold", p->blend_th, 0, 100, &th) ||
        args_int(a, "--least-sc-channel", p->least_sc_channel, 0, 100000, &lsc))
        return -1;
    p->steps = (int)steps;
    p->cfg = (float)cfg;
    p->cross_replace = cr;
    p->self_replace = sr;
    p->blend_th = (float)th;
    p->least_sc_channel = (int)lsc;
    p->source = args_str(a, "--source", NULL);
    p->target = args_str(a, "--target", NULL);
    p->negative = args_str(a, "--negative", "");
    if (!p->source) return ocd_fail("--source is required (a prompt that describes the input video)");
    if (!p->target) return ocd_fail("--target is required (the edited prompt)");
    p->blend_words_src = args_str(a, "--blend-words", NULL);
    p->blend_words_tgt = args_str(a, "--blend-words-target", NULL);
    p->latent_blend = args_has(a, "--latent-blend");
    p->fusion = !args_has(a, "--no-fusion");
    p->clip_norm = !args_has(a, "--per-frame-norm");
    const char *rep = args_str(a, "--replace", "auto");
    if (!strcmp(rep, "auto")) p->replace_mode = FZ_REPLACE_AUTO;
    else if (!strcmp(rep, "refine")) p->replace_mode = FZ_REPLACE_REFINE;
    else if (!strcmp(rep, "replace")) p->replace_mode = FZ_REPLACE_REPLACE;
    else return ocd_fail("--replace: \"%s\" is not auto, refine or replace", rep);
    const char *xf = args_str(a, "--xframe", "mid");
    if (!strcmp(xf, "mid")) p->xframe = XF_MID;
    else if (!strcmp(xf, "first-prev")) p->xframe = XF_FIRST_PREV;
    else if (!strcmp(xf, "all")) p->xframe = XF_ALL;
    else if (!strcmp(xf, "self")) p->xframe = XF_SELF;
    else return ocd_fail("--xframe: \"%s\" is not mid, first-prev, all or self", xf);
    const char *b = args_str(a, "--attn-budget", NULL);
    if (b && parse_bytes(b, &p->attn_budget)) return -1;
    p->spill_dir = args_str(a, "--spill-dir", NULL);
    const char *cw = args_str(a, "--cross-words", NULL), *rw = args_str(a, "--reweight", NULL);
    if (cw && parse_word_list("--cross-words", cw, st->cross_words, sizeof st->cross_words, p, 0)) return -1;
    if (rw && parse_word_list("--reweight", rw, st->reweight, sizeof st->reweight, p, 1)) return -1;
    return 0;
}

/* --mask: a video or folder of frames (white = foreground) -> [F, S/8, S/8] of 0/1, taken with the
 * clip's start / stride / frame count and the same resize + centre crop. */
static float *read_mask(const char *path, int start, int stride, int F, int S, int down) {
    ocd_video mv = {0};
    if (video_read(path, start, stride, F, &mv)) { ocd_fail_context("--mask %s", path); return NULL; }
    if (mv.n != F) { ocd_fail("--mask %s: %d frames, the clip has %d", path, mv.n, F); video_free(&mv); return NULL; }
    float *px = video_preprocess(&mv, S);
    video_free(&mv);
    const int h = S / down;
    float *lum = px ? malloc(sizeof(float) * F * S * S) : NULL, *out = lum ? malloc(sizeof(float) * F * h * h) : NULL;
    if (!out) { free(px); free(lum); ocd_fail("out of memory"); return NULL; }
    for (int f = 0; f < F; f++)
        for (int i = 0; i < S * S; i++) {
            const float *q = px + (size_t)f * 3 * S * S;
            lum[(size_t)f * S * S + i] = ((q[i] + q[S * S + i] + q[2 * S * S + i]) / 3.0f + 1.0f) * 0.5f; /* [-1,1] -> [0,1] */
        }
    ocs_mask_resize(lum, F, S, S, h, h, out);
    free(px);
    free(lum);
    return out;
}

/* What ran and what it saved (ocd-method.md 1-5). */
static void print_accel(const fz_params *p, const fz_report *r) {
    printf("components: solver %s (%d steps, inversion on the same timesteps)", p->solver == OCD_SOLVER_DPMPP_2M ? "DPM-Solver++ 2M" : "DDIM",
           p->steps);
    const int tome = p->tome_ratio > 0.0f || p->oc_tome_lambda > 0.0f;
    if (tome) printf(", K/V token merging ratio %.2g (min %d tokens/frame)", p->tome_ratio, p->tome_min_tokens);
    if (p->oc_tome_lambda > 0.0f) printf(", Object-Centric ToMe lambda %.2g", p->oc_tome_lambda);
    if (p->ocs) printf(", Object-Centric Sampling %s", r->ocs_area > 0 ? "ran" : "skipped");
    printf("\n");
    printf("         %d UNet calls (the fatezero preset: %d), %.1f counted GFLOP\n", r->unet_calls, 2 * 50, r->gflop);
    if (tome) {
        app_print_merged_levels(r->tokens_in, r->tokens_merged);
        printf("; plans %.2f MiB\n", r->plan_bytes / 1048576.0);
    }
    if (p->ocs && r->ocs_area > 0) {
        printf("         OCS: crop %.0f%% of the frame, editing work %.2f full-frame UNet calls instead of %d (%.0f%% saved)\n",
               100.0 * r->ocs_area, r->unet_full_frame_calls, p->steps, 100.0 * (1.0 - r->unet_full_frame_calls / p->steps));
    }
    if (r->note[0]) {
        printf("         note: %s\n", r->note);
        fprintf(stderr, "ocd edit: %s\n", r->note);
    }
}

/* frames [F, 3, S, S] in [-1, 1] -> RGB8 video. */
static int to_video(const float *x, int F, int S, double fps, ocd_video *v) {
    if (video_alloc(v, F, S, S)) return -1;
    v->fps = fps;
    for (int f = 0; f < F; f++) image_from_f32(x + (size_t)f * 3 * S * S, S, S, v->frames[f]);
    return 0;
}

int cmd_edit(int argc, char **argv) {
    args a;
    json_t *job_store = NULL;
    char **job_argv = NULL, **all = NULL;
    int job_argc = 0, rc = -1;
    /* a job file's options come first, so the command line overrides them */
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--job") && job_to_argv(argv[i + 1], &job_store, &job_argv, &job_argc)) return -1;
    if (!(all = calloc(job_argc + argc + 1, sizeof *all))) { ocd_fail("out of memory"); goto out; }
    for (int i = 0; i < job_argc; i++) all[i] = job_argv[i];
    for (int i = 0; i < argc; i++) all[job_argc + i] = argv[i];
    if (args_parse(&a, k_opts, job_argc + argc, all)) goto out;
    if (args_has(&a, "--help")) {
        args_usage(k_opts, "ocd edit --model M --video IN --source \"...\" --target \"...\" [options] --out OUT.mp4");
        rc = 0;
        goto out;
    }
    if (a.n_pos) { ocd_fail("unexpected argument \"%s\"", a.pos[0]); goto out; }
    fz_params p;
    edit_strings strs;
    long n_frames, start, stride, size_opt;
    double fps_opt;
    const char *vin = args_str(&a, "--video", NULL), *out = args_str(&a, "--out", NULL);
    const char *sbs = args_str(&a, "--side-by-side", NULL);
    if (read_options(&a, &p, &strs) || args_int(&a, "--frames", 8, 0, 100000, &n_frames) ||
        args_int(&a, "--start", 0, 0, 100000000, &start) || args_int(&a, "--stride", 1, 1, 100000, &stride) ||
        args_int(&a, "--size", 0, 0, 4096, &size_opt) || args_double(&a, "--fps", 0, 0, 1000, &fps_opt) ||
        app_set_threads(&a))
        goto out;
    if (!vin) { ocd_fail("--video is required (a video file or a folder of frames)"); goto out; }
    if (!out) { ocd_fail("--out is required (.mp4, .gif or a folder/)"); goto out; }
    if (video_check_output(out) || (sbs && video_check_output(sbs))) goto out;

    /* read and check everything cheap before loading the model */
    ocd_video src = {0};
    if (video_read(vin, (int)start, (int)stride, (int)n_frames, &src)) goto out;
    sd_model m;
    double t0 = ocd_now();
    if (app_load_model(&a, &m)) { video_free(&src); goto out; }
    if (app_set_precision(&a, &m, NULL)) { sd_model_free(&m); video_free(&src); goto out; }
    double t_load = ocd_now() - t0;
    int S = (int)size_opt;
    if (!S) S = m.unet ? m.unet_cfg.sample_size * vae_downscale(&m.vae_cfg) : 512;
    float *frames = NULL, *edited = NULL, *mask = NULL;
    ocd_video ov = {0}, sv = {0}, side = {0};
    if (!m.unet || !m.vae || !m.text) { ocd_fail("the model lacks a UNet, VAE or text encoder"); goto done; }
    if (S % 8) { ocd_fail("--size %d is not a multiple of 8", S); goto done; }
    const int F = src.n;
    if (!(frames = video_preprocess(&src, S))) goto done;
    if (!(edited = malloc(sizeof(float) * F * 3 * S * S))) { ocd_fail("out of memory"); goto done; }
    const char *mask_path = args_str(&a, "--mask", NULL);
    if (mask_path) {
        if (!(mask = read_mask(mask_path, (int)start, (int)stride, F, S, vae_downscale(&m.vae_cfg)))) goto done;
        p.mask = mask;
    }
    ocd_progress pr;
    progress_init(&pr, 0, args_has(&a, "--quiet"));
    p.progress = on_progress;
    p.progress_user = &pr;
    fz_report rep;
    memset(&rep, 0, sizeof rep);
    printf("edit: %d frames of %dx%d from %s, %s -> \"%s\" (%s %d steps, cfg %.2g, %s)\n", F, S, S, vin, p.source, p.target,
           p.solver == OCD_SOLVER_DPMPP_2M ? "DPM-Solver++ 2M" : "DDIM", p.steps, p.cfg, p.fusion ? "attention fusion" : "no fusion");
    fflush(stdout);
    if (fz_edit(&m, frames, F, S, S, &p, edited, &rep)) { progress_end(&pr); goto done; }
    progress_end(&pr);
    double fps = fps_opt > 0 ? fps_opt : src.fps > 0 ? src.fps : 10;
    if (to_video(edited, F, S, fps, &ov) || video_write(out, &ov, fps)) goto done;
    if (sbs) {
        if (to_video(frames, F, S, fps, &sv) || video_side_by_side(&sv, &ov, &side) || video_write(sbs, &side, fps)) goto done;
    }
    printf("wrote %s%s%s (%d frames, %dx%d, %.3g fps, %s)\n", out, sbs ? " and " : "", sbs ? sbs : "", F, S, S, fps,
           video_mp4_encoder());
    printf("summary: load %.2f s, encode %.2f s, invert %.2f s, edit %.2f s, decode %.2f s, total %.2f s\n", t_load,
           rep.t_encode, rep.t_invert, rep.t_edit, rep.t_decode, ocd_now() - t0);
    printf("         %d UNet calls (%d frame evaluations), peak RSS %.1f MiB, attention store %.2f MiB RAM + %.2f MiB disk "
           "(%zu entries, %zu as Q/K)\n",
           rep.unet_calls, rep.unet_items, ocd_peak_rss_bytes() / 1048576.0, rep.store_ram_bytes / 1048576.0,
           rep.store_disk_bytes / 1048576.0, rep.store_entries, rep.store_recompute_entries);
    print_accel(&p, &rep);
    rc = 0;
done:
    video_free(&ov);
    video_free(&sv);
    video_free(&side);
    free(frames);
    free(edited);
    free(mask);
    sd_model_free(&m);
    video_free(&src);
out:
    free(all);
    free(job_argv);
    json_decref(job_store);
    return rc;
}
