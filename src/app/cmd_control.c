/* ocd control: ControlVideo (algorithms.md C) — a video's per-frame conditions (canny computed
 * in-tree, or a clip of depth / pose / edge maps) drive ControlNet + a fully cross-frame UNet
 * from one shared noise latent; the frames are written as a video. --preset optimized|ocd and
 * their flags add the OCD accelerations (ocd-method.md 7; edit/controlvideo.h).
 * ocd bench control --pass: times the ControlNet and the fully cross-frame UNet on F frames (the
 * preset table, `ocd bench control`, is cmd_bench_control.c).
 * Every argument is checked before the model is loaded; the output is written atomically. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/util.h"
#include "edit/controlvideo.h"
#include "edit/ocs.h"
#include "edit/presets.h"
#include "io/image.h"
#include "io/video.h"

static const opt_spec k_opts[] = {
    {"--model", 1, "SD 1.x model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights (SD and, without --controlnet, the ControlNet)"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--controlnet", 1, "ControlNet folder or control_model.* .safetensors (or random:sd15|tiny)"},
    {"--video", 1, "input video (file or folder of frames): the source of canny conditions and of the frame count"},
    {"--condition", 1, "canny, or a condition clip (file or folder) with the video's frame count"},
    {"--prompt", 1, "text prompt"},
    {"--negative", 1, "negative prompt (default: ControlVideo's)"},
    {"--no-prompt-suffix", 0, "do not append ControlVideo's quality suffix to the prompt"},
    {"--control-scale", 1, "ControlNet conditioning scale (default 1)"},
    {"--preset", 1, "controlvideo|optimized|ocd: the paper's settings (default controlvideo); the flags below override them"},
    {"--sampler", 1, "ddim | dpmpp-2m (controlvideo ddim, optimized/ocd dpmpp-2m)"},
    {"--steps", 1, "sampling steps (controlvideo 50, optimized/ocd 20)"},
    {"--cfg", 1, "guidance scale (default 12.5)"},
    {"--tome-ratio", 1, "3D K/V token merging in self-attention: fraction of sources merged (0 = off; optimized/ocd 0.5)"},
    {"--tome-min-tokens", 1, "tokens kept per frame at least (default 64)"},
    {"--tome-seed", 1, "seed of the per-frame destination draws (default 0)"},
    {"--oc-tome-lambda", 1, "Object-Centric ToMe: foreground sources' score lowered by this (ocd 1.0; 0 = off)"},
    {"--mask", 1, "foreground mask: video or folder of frames (white = foreground), frame for frame with the video"},
    {"--mask-dilate", 1, "grow the mask by this many latent pixels (default 0: a drawn mask is taken as drawn)"},
    {"--ocs", 0, "Object-Centric Sampling on (ocd preset; needs --mask)"},
    {"--no-ocs", 0, "Object-Centric Sampling off"},
    {"--ocs-phi", 1, "background branch every phi-th step (default 4)"},
    {"--ocs-blend", 1, "blend step as a fraction beta of the steps (default 0.5)"},
    {"--ocs-pad", 1, "crop padding in latent pixels (default 2)"},
    {"--ocs-max-area", 1, "skip OCS when the crop covers more of the frame (default 0.6)"},
    {"--seed", 1, "noise seed (default 42)"},
    {"--frames", 1, "frames to generate (default 15, or the whole clip when shorter)"},
    {"--start", 1, "first frame of the video (default 0)"},
    {"--stride", 1, "frame stride (default max(1, clip length / frames), as ControlVideo)"},
    {"--size", 1, "WxH of the output, multiples of 8 (default 512x512)"},
    {"--long", 0, "hierarchical sampler for long clips (key frames + clips)"},
    {"--window", 1, "hierarchical sampler window (default int(sqrt(frames)))"},
    {"--smoother-steps", 1, "interleaved-frame smoother at these N-i values, e.g. 19,20 (default), or none"},
    {"--fps", 1, "output frame rate (default 8)"},
    {"--save-condition", 1, "also write the condition clip here"},
    {"--out", 1, "output video (.mp4, .gif or a folder)"},
    {"--threads", 1, "threads (default: all cores)"},
    APP_OPT_PRECISION,
    {"--quiet", 0, "no progress line"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

/* "WxH", multiples of 8. */
static int parse_size(const char *s, int *w, int *h) {
    char *e;
    long a = strtol(s, &e, 10);
    if (e == s || (*e != 'x' && *e != 'X')) return ocd_fail("--size \"%s\": expected WxH, e.g. 512x512", s);
    const char *s2 = e + 1;
    long b = strtol(s2, &e, 10);
    if (e == s2 || *e || a < 8 || b < 8 || a > 4096 || b > 4096 || a % 8 || b % 8)
        return ocd_fail("--size \"%s\": width and height must be multiples of 8 in 8..4096", s);
    *w = (int)a, *h = (int)b;
    return 0;
}

int control_parse_smoother(const char *s, cv_params *p) {
    p->n_smooth = 0;
    if (!strcmp(s, "none") || !*s) return 0;
    while (*s) {
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s || v < 1 || v > OCD_MAX_STEPS || p->n_smooth == CV_MAX_SMOOTH)
            return ocd_fail("--smoother-steps \"%s\": expected up to %d comma-separated step counts, or none", s, CV_MAX_SMOOTH);
        p->smooth_steps[p->n_smooth++] = (int)v;
        s = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') return ocd_fail("--smoother-steps: unexpected \"%s\"", e);
    }
    return 0;
}

int control_pick_frames(ocd_video *v, const char *name, int start, int stride, int F) {
    if (start + (long)(F - 1) * stride >= v->n)
        return ocd_fail("%s has %d frames; %d frames from frame %d with stride %d need %ld", name, v->n, F, start, stride,
                        start + (long)(F - 1) * stride + 1);
    uint8_t **keep = malloc(sizeof *keep * F);
    if (!keep) return ocd_fail("out of memory");
    for (int i = 0; i < F; i++) { keep[i] = v->frames[start + i * stride]; v->frames[start + i * stride] = NULL; }
    for (int i = 0; i < v->n; i++) free(v->frames[i]);
    free(v->frames);
    v->frames = keep;
    v->n = F;
    return 0;
}

int control_resize_clip(ocd_video *v, int W, int H) {
    if (v->w == W && v->h == H) return 0;
    float *a = malloc(sizeof(float) * 3 * v->w * v->h), *b = malloc(sizeof(float) * 3 * W * H);
    int rc = -1;
    if (!a || !b) { ocd_fail("out of memory"); goto done; }
    for (int i = 0; i < v->n; i++) {
        uint8_t *nf = malloc((size_t)3 * W * H);
        if (!nf) { ocd_fail("out of memory"); goto done; }
        image_to_f32(v->frames[i], v->w, v->h, a);
        if (resize_bilinear_aa(a, 3, v->h, v->w, b, H, W)) { free(nf); goto done; }
        image_from_f32(b, W, H, nf);
        free(v->frames[i]);
        v->frames[i] = nf;
    }
    v->w = W, v->h = H;
    rc = 0;
done:
    free(a); free(b);
    return rc;
}

int control_load_cn(const args *a, controlnet_model *cm) {
    const char *path = args_str(a, "--controlnet", NULL), *rnd = args_str(a, "--random", NULL);
    char spec[64];
    if (!path && rnd) { snprintf(spec, sizeof spec, "random:%s", rnd); path = spec; }
    if (!path) return ocd_fail("no ControlNet: give --controlnet PATH (diffusers folder or control_model.* .safetensors)");
    long seed;
    if (args_int(a, "--weight-seed", 1234, 0, 0x7fffffff, &seed)) return -1;
    return controlnet_load(cm, path, (uint64_t)seed + 17);
}

int control_mask_latent(const ocd_video *v, int h, int w, float *out) {
    const size_t px = (size_t)v->w * v->h;
    float *lum = malloc(sizeof(float) * px * v->n);
    if (!lum) return ocd_fail("out of memory");
    for (int f = 0; f < v->n; f++)
        for (size_t i = 0; i < px; i++) {
            const uint8_t *q = v->frames[f] + 3 * i;
            lum[(size_t)f * px + i] = (q[0] + q[1] + q[2]) / (3.0f * 255.0f);
        }
    ocs_mask_resize(lum, v->n, v->h, v->w, h, w, out);
    free(lum);
    return 0;
}

/* The OCD flags (ocd-method.md 7) over the preset's values. */
static int read_accel_options(const args *a, cv_params *p) {
    cv_ocd_params *o = &p->ocd;
    const char *sm = args_str(a, "--sampler", NULL);
    if (sm) {
        if (!strcmp(sm, "ddim")) p->solver = OCD_SOLVER_DDIM;
        else if (!strcmp(sm, "dpmpp-2m") || !strcmp(sm, "dpm++2m")) p->solver = OCD_SOLVER_DPMPP_2M;
        else return ocd_fail("unknown sampler \"%s\" (ddim or dpmpp-2m)", sm);
    }
    long steps, mt, seed, phi, pad, dil;
    double cfg, ratio, lambda, beta, area;
    if (args_int(a, "--steps", p->steps, 1, OCD_MAX_STEPS, &steps) || args_double(a, "--cfg", p->guidance, 0, 100, &cfg) ||
        args_double(a, "--tome-ratio", o->tome_ratio, 0, 1, &ratio) ||
        args_int(a, "--tome-min-tokens", o->tome_min_tokens, 0, 1 << 20, &mt) ||
        args_int(a, "--tome-seed", (long)o->tome_seed, 0, 0x7fffffffL, &seed) ||
        args_double(a, "--oc-tome-lambda", o->oc_tome_lambda, 0, 100, &lambda) ||
        args_int(a, "--ocs-phi", o->ocs_phi, 1, 1000, &phi) || args_double(a, "--ocs-blend", o->ocs_blend, 0, 1, &beta) ||
        args_int(a, "--ocs-pad", o->ocs_pad, 0, 1000, &pad) || args_double(a, "--ocs-max-area", o->ocs_max_area, 0, 1, &area) ||
        args_int(a, "--mask-dilate", o->mask_dilate, 0, 100, &dil))
        return -1;
    p->steps = (int)steps, p->guidance = (float)cfg;
    o->tome_ratio = (float)ratio, o->tome_min_tokens = (int)mt, o->tome_seed = (uint64_t)seed, o->oc_tome_lambda = (float)lambda;
    o->ocs_phi = (int)phi, o->ocs_blend = beta, o->ocs_pad = (int)pad, o->ocs_max_area = area, o->mask_dilate = (int)dil;
    if (args_has(a, "--ocs") && args_has(a, "--no-ocs")) return ocd_fail("--ocs and --no-ocs contradict each other");
    if (args_has(a, "--ocs")) o->ocs = 1;
    if (args_has(a, "--no-ocs")) o->ocs = 0;
    return 0;
}

/* What ran and what it saved (ocd-method.md 7), like ocd edit's summary. */
static void print_accel(const cv_params *p, const cv_stats *st) {
    const cv_ocd_params *o = &p->ocd;
    printf("components: solver %s (%d steps)", p->solver == OCD_SOLVER_DPMPP_2M ? "DPM-Solver++ 2M" : "DDIM", p->steps);
    const int tome = o->tome_ratio > 0.0f;
    if (tome) printf(", 3D K/V token merging ratio %.2g (min %d tokens/frame)", o->tome_ratio, o->tome_min_tokens);
    if (tome && o->oc_tome_lambda > 0.0f) printf(", Object-Centric ToMe lambda %.2g", o->oc_tome_lambda);
    if (o->ocs) printf(", Object-Centric Sampling %s", st->ocs_area > 0 ? "ran" : "skipped");
    printf("\n");
    printf("         %ld UNet calls (%ld frame evaluations), %.1f counted GFLOP (UNet %.1f, ControlNet %.1f, merge plans %.1f)\n",
           st->unet_calls, st->unet_frames, (st->unet_flops + st->controlnet_flops + st->plan_flops) * 1e-9, st->unet_flops * 1e-9,
           st->controlnet_flops * 1e-9, st->plan_flops * 1e-9);
    if (tome) {
        app_print_merged_levels(st->tokens_in, st->tokens_merged);
        printf("\n");
    }
    if (o->ocs && st->ocs_area > 0)
        printf("         OCS: crop %.0f%% of the frame, UNet + ControlNet work %.2f full-frame evaluations instead of %d (%.0f%% saved)\n",
               100.0 * st->ocs_area, st->full_frame_evals, p->steps, 100.0 * (1.0 - st->full_frame_evals / p->steps));
    if (st->note[0]) {
        printf("         note: %s\n", st->note);
        fflush(stdout);
        fprintf(stderr, "ocd control: %s\n", st->note);
    }
}

int cmd_control(int argc, char **argv) {
    const double t_cmd = ocd_now();
    args a;
    if (args_parse(&a, k_opts, argc, argv)) return -1;
    if (args_has(&a, "--help")) {
        args_usage(k_opts, "ocd control --model M --controlnet CN --video IN --condition canny|FILE_OR_DIR --prompt P\n"
                           "       [--preset controlvideo|optimized|ocd] [--mask MASK] [--control-scale S] [--steps N] [--cfg G]\n"
                           "       [--seed X] [--frames F] [--long] --out OUT.mp4");
        return 0;
    }
    if (a.n_pos) return ocd_fail("unexpected argument \"%s\" (see --help)", a.pos[0]);
    /* ---- arguments, all checked before anything is loaded */
    const char *video = args_str(&a, "--video", NULL), *cond_arg = args_str(&a, "--condition", NULL);
    const char *prompt = args_str(&a, "--prompt", NULL), *out = args_str(&a, "--out", NULL);
    const char *save_cond = args_str(&a, "--save-condition", NULL);
    if (!cond_arg) return ocd_fail("no condition: give --condition canny (from --video) or a condition clip");
    const int canny = !strcmp(cond_arg, "canny");
    if (canny && !video) return ocd_fail("--condition canny needs --video");
    if (!prompt) return ocd_fail("no prompt: give --prompt TEXT");
    if (!out) return ocd_fail("no output: give --out OUT.mp4");
    if (!args_has(&a, "--controlnet") && !args_has(&a, "--random"))
        return ocd_fail("no ControlNet: give --controlnet PATH (diffusers folder or control_model.* .safetensors)");
    cv_params prm;
    cv_default_params(&prm);
    /* a preset only sets defaults: every flag read below overrides it */
    const char *preset = args_str(&a, "--preset", NULL), *mask_arg = args_str(&a, "--mask", NULL);
    if (preset && cv_preset(&prm, preset)) return -1;
    long seed, frames, start, stride = 0, window = 0;
    double scale, fps;
    int W = 512, H = 512;
    if (read_accel_options(&a, &prm) || args_int(&a, "--seed", 42, 0, 0x7fffffffffffffffL, &seed) ||
        args_int(&a, "--frames", 15, 1, CV_MAX_FRAMES, &frames) || args_int(&a, "--start", 0, 0, 1000000, &start) ||
        (args_has(&a, "--stride") && args_int(&a, "--stride", 1, 1, 100000, &stride)) ||
        args_int(&a, "--window", 0, 2, CV_MAX_FRAMES, &window) ||
        args_double(&a, "--control-scale", 1.0, 0, 10, &scale) || args_double(&a, "--fps", 8, 0.1, 240, &fps) ||
        (args_has(&a, "--size") && parse_size(args_str(&a, "--size", ""), &W, &H)) ||
        (args_has(&a, "--smoother-steps") && control_parse_smoother(args_str(&a, "--smoother-steps", ""), &prm)) ||
        app_set_threads(&a))
        return -1;
    prm.control_scale = (float)scale;
    if (args_has(&a, "--window") && !args_has(&a, "--long")) return ocd_fail("--window needs --long");
    int F = (int)frames;

    /* ---- inputs: frames (resized), conditions */
    ocd_video src = {0}, cv = {0}, mv = {0}, outv = {0};
    sd_model m;
    controlnet_model cm;
    pipe_ctx p;
    int have_m = 0, have_cm = 0, have_p = 0, rc = -1;
    float *cond = NULL, *emb = NULL, *noise = NULL, *lat = NULL, *img = NULL, *mask = NULL;
    char *full_prompt = NULL;
    if (video && video_read(video, 0, 1, 0, &src)) goto done;
    if (!canny && video_read(cond_arg, 0, 1, 0, &cv)) { ocd_fail_context("condition clip %s", cond_arg); goto done; }
    if (video && !canny && cv.n != src.n) {
        ocd_fail("the condition clip %s has %d frames, the video %s has %d: they must match frame for frame", cond_arg, cv.n,
                 video, src.n);
        goto done;
    }
    const ocd_video *ref = video ? &src : &cv;
    /* the mask goes frame for frame with the clip: the same frames are picked from both */
    if (mask_arg && video_read(mask_arg, 0, 1, 0, &mv)) { ocd_fail_context("--mask %s", mask_arg); goto done; }
    if (mask_arg && mv.n != ref->n) {
        ocd_fail("the mask %s has %d frames, the %s %s has %d: they must match frame for frame", mask_arg, mv.n,
                 video ? "video" : "condition clip", video ? video : cond_arg, ref->n);
        goto done;
    }
    if (!args_has(&a, "--frames") && ref->n - start < F) F = (int)OCD_MAX(1, ref->n - start);   /* a short clip: all of it */
    if (!stride) stride = OCD_MAX(1, (ref->n - start) / F);
    if (args_has(&a, "--long")) prm.window = window ? (int)window : cv_default_window(F);   /* ControlVideo: max(1, len // video_length) */
    if ((video && control_pick_frames(&src, video, (int)start, (int)stride, F)) ||
        (!canny && control_pick_frames(&cv, cond_arg, (int)start, (int)stride, F)) ||
        (mask_arg && control_pick_frames(&mv, mask_arg, (int)start, (int)stride, F)))
        goto done;
    /* a condition clip is either of the output size or of the video's own size (then resized with it) */
    if (!canny && video && cv.w == src.w && cv.h == src.h && control_resize_clip(&cv, W, H)) goto done;
    if (video && control_resize_clip(&src, W, H)) goto done;
    if (!(cond = malloc(sizeof(float) * (size_t)F * 3 * W * H))) { ocd_fail("out of memory"); goto done; }
    if (canny ? cv_condition_canny(&src, cond) : cv_condition_from_video(&cv, F, W, H, cond)) goto done;
    if (save_cond) {
        ocd_video sc = {0};
        if (video_alloc(&sc, F, W, H)) goto done;
        const size_t pl = (size_t)W * H;
        for (int f = 0; f < F; f++)
            for (size_t i = 0; i < pl; i++)
                for (int c = 0; c < 3; c++) sc.frames[f][3 * i + c] = (uint8_t)lrintf(cond[((size_t)f * 3 + c) * pl + i] * 255);
        int e = video_write(save_cond, &sc, fps);
        video_free(&sc);
        if (e) goto done;
    }

    /* ---- models */
    if (app_load_model(&a, &m)) goto done;
    have_m = 1;
    if (control_load_cn(&a, &cm)) goto done;
    have_cm = 1;
    if (app_set_precision(&a, &m, &cm)) goto done;
    if (pipe_init(&p, &m, NULL)) goto done;
    have_p = 1;
    const int f8 = pipe_vae_factor(&p), C = pipe_latent_channels(&p), h = H / f8, w = W / f8;
    if (controlnet_cond_factor(&cm.cfg) != f8) {
        ocd_fail("the ControlNet's condition is %dx the latent, the VAE's factor is %d", controlnet_cond_factor(&cm.cfg), f8);
        goto done;
    }
    const size_t n1 = (size_t)C * h * w, ne = (size_t)m.clip_cfg.n_pos * m.clip_cfg.hidden;
    const int suffix = !args_has(&a, "--no-prompt-suffix");
    full_prompt = malloc(strlen(prompt) + strlen(CV_POS_PROMPT) + 1);
    emb = malloc(sizeof(float) * 2 * ne);
    noise = malloc(sizeof(float) * n1);
    lat = malloc(sizeof(float) * n1 * F);
    img = malloc(sizeof(float) * (size_t)F * 3 * W * H);
    if (!full_prompt || !emb || !noise || !lat || !img) { ocd_fail("out of memory"); goto done; }
    sprintf(full_prompt, "%s%s", prompt, suffix ? CV_POS_PROMPT : "");
    if (pipe_encode_prompt(&p, args_str(&a, "--negative", CV_NEG_PROMPT), emb) || pipe_encode_prompt(&p, full_prompt, emb + ne))
        goto done;
    pipe_init_noise((uint64_t)seed, noise, n1);   /* one latent, shared by every frame */
    if (mask_arg) {
        if (!(mask = malloc(sizeof(float) * F * h * w))) { ocd_fail("out of memory"); goto done; }
        if (control_mask_latent(&mv, h, w, mask)) goto done;
        prm.ocd.mask = mask;
        if (!prm.ocd.ocs && !(prm.ocd.tome_ratio > 0.0f && prm.ocd.oc_tome_lambda > 0.0f))
            printf("control: note: --mask is used by OCS and Object-Centric ToMe, neither of which is on (--preset ocd)\n");
    }

    printf("control: %d frames %dx%d (stride %ld), condition %s, %s %d steps, cfg %g, control scale %g, seed %ld%s%s%s\n", F, W,
           H, stride, canny ? "canny (in-tree, RGB, 100/200)" : cond_arg, prm.solver == OCD_SOLVER_DPMPP_2M ? "dpmpp-2m" : "ddim",
           prm.steps, prm.guidance, prm.control_scale, seed, prm.window ? "" : ", fully cross-frame attention",
           preset ? ", preset " : "", preset ? preset : "");
    if (prm.window) {
        int *keys = malloc(sizeof(int) * (F + 1));
        int nk = keys ? cv_key_frames(F, prm.window, keys) : -1;
        printf("control: hierarchical sampler, window %d, %d key frames:", prm.window, nk);
        for (int i = 0; i < nk; i++) printf(" %d", keys[i]);
        printf("\n");
        free(keys);
    }
    int smooth_on = 0;
    for (int s = 0; s < prm.n_smooth; s++) smooth_on |= prm.smooth_steps[s] >= 1 && prm.smooth_steps[s] <= prm.steps;
    if (smooth_on) printf("control: %s\n", cv_smoother_note());
    if (!cv_clip_groupnorm())
        printf("control: note: this build normalises each frame on its own (ControlVideo's GroupNorm spans the clip)\n");
    fflush(stdout);

    ocd_progress pr;
    progress_init(&pr, prm.steps, args_has(&a, "--quiet"));
    p.progress = &pr;
    cv_stats st;
    int e = cv_generate(&p, cm.net, &prm, emb, cond, F, noise, h, w, lat, &st);
    progress_end(&pr);
    if (e || cv_decode(&p, lat, F, h, w, img)) goto done;
    if (video_alloc(&outv, F, W, H)) goto done;
    for (int f = 0; f < F; f++) {
        float *x = img + (size_t)f * 3 * W * H;
        for (size_t i = 0; i < (size_t)3 * W * H; i++) x[i] = 2 * x[i] - 1;   /* image_from_f32 wants [-1, 1] */
        image_from_f32(x, W, H, outv.frames[f]);
    }
    if (video_write(out, &outv, fps)) goto done;
    printf("wrote %s (%d frames %dx%d at %g fps)\n", out, F, W, H, fps);
    printf("control: %.2f s total (%.2f s sampling: UNet %.2f s, ControlNet %.2f s, smoother %.2f s), %ld UNet calls "
           "(%ld frame evaluations), %ld ControlNet frame evaluations, peak RSS %.1f MB\n",
           ocd_now() - t_cmd, progress_elapsed(&pr), st.t_unet, st.t_controlnet, st.t_smoother, st.unet_calls, st.unet_frames,
           st.controlnet_frames, ocd_peak_rss_bytes() / 1048576.0);
    print_accel(&prm, &st);
    rc = 0;
done:
    free(cond); free(emb); free(noise); free(lat); free(img); free(mask); free(full_prompt);
    video_free(&src); video_free(&cv); video_free(&mv); video_free(&outv);
    if (have_p) pipe_free(&p);
    if (have_cm) controlnet_model_free(&cm);
    if (have_m) sd_model_free(&m);
    return rc;
}

/* ---------------------------------------------------------------- ocd bench control --pass */

static const opt_spec k_bench_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights (default sd15, with a random ControlNet)"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--controlnet", 1, "ControlNet folder or .safetensors (default: random of the --random preset)"},
    {"--size", 1, "frame size in pixels (default 512; latent = size/8)"},
    {"--frames", 1, "frames per pass (default 4)"},
    {"--threads", 1, "threads (default: all cores)"},
    APP_OPT_PRECISION,
    {"--repeat", 1, "timed passes (default 1)"},
    {"--pass", 0, "time one ControlNet + UNet pass (this mode)"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

int cmd_bench_control_pass(int argc, char **argv) {
    args a;
    if (args_parse(&a, k_bench_opts, argc, argv)) return -1;
    if (args_has(&a, "--help")) {
        args_usage(k_bench_opts, "ocd bench control --pass [--random sd15] [--size 512] [--frames 4] [--repeat 1]");
        return 0;
    }
    if (a.n_pos > 1 || (a.n_pos == 1 && strcmp(a.pos[0], "control")))
        return ocd_fail("unexpected argument \"%s\"", a.pos[a.n_pos - 1]);
    long size, frames, repeat;
    if (args_int(&a, "--size", 512, 8, 4096, &size) || args_int(&a, "--frames", 4, 1, CV_MAX_FRAMES, &frames) ||
        args_int(&a, "--repeat", 1, 1, 100, &repeat) || app_set_threads(&a))
        return -1;
    if (size % 8) return ocd_fail("--size %ld is not a multiple of 8", size);
    args b = a;
    if (!args_has(&a, "--model") && !args_has(&a, "--random"))
        for (int i = 0; i < b.n_spec; i++) if (!strcmp(b.spec[i].name, "--random")) { b.present[i] = 1; b.value[i] = "sd15"; }
    printf("measuring sgemm peak (2048^3, %d threads)...\n", omp_get_max_threads());
    const double peak = bench_sgemm_peak_gflops();
    printf("sgemm peak  %.1f GFLOP/s\n", peak);
    sd_model m;
    controlnet_model cm;
    double t0 = ocd_now();
    if (app_load_model(&b, &m)) return -1;
    if (control_load_cn(&b, &cm)) { sd_model_free(&m); return -1; }
    if (app_set_precision(&b, &m, &cm)) { controlnet_model_free(&cm); sd_model_free(&m); return -1; }
    printf("models      %s + ControlNet %s loaded in %.1f s (%.0fM + %.0fM params)\n", m.files.path, cm.files.path,
           ocd_now() - t0, sd_model_params(&m) / 1e6, controlnet_params(&cm) / 1e6);
    const int F = (int)frames, S = (int)size, h = S / 8, w = S / 8, C = m.unet_cfg.in_ch, D = m.unet_cfg.cross_dim;
    float *x = malloc(sizeof(float) * F * C * h * w), *t = malloc(sizeof(float) * F), *ctx = malloc(sizeof(float) * F * 77 * D);
    float *cond = malloc(sizeof(float) * F * 3 * S * S), *eps = malloc(sizeof(float) * F * C * h * w);
    controlnet_out co = {0};
    int rc = -1;
    if (!x || !t || !ctx || !cond || !eps || controlnet_out_alloc(&co, cm.net, F, h, w)) { ocd_fail_context("bench control"); goto done; }
    rng_normal(7, 1, x, (size_t)F * C * h * w);
    rng_normal(7, 2, ctx, (size_t)F * 77 * D);
    rng_uniform(7, 3, cond, (size_t)F * 3 * S * S);
    for (int i = 0; i < F; i++) t[i] = 500;
    cv_hook_state hs = {0};
    unet_attn_hook hook = {.attend = cv_attend, .user = &hs, .kv_frames_max = F};
#ifdef UNET_HAS_NORM_FRAMES
    hook.norm_frames = F;
#endif
    double best_cn = 1e30, best_u = 1e30, fl_cn = 0, fl_u = 0;
    for (int r = 0; r <= repeat; r++) { /* pass 0 warms up and plans memory */
        double t1 = ocd_now();
        if (controlnet_forward(cm.net, x, t, ctx, 77, F, h, w, cond, 1.0f, cv_clip_groupnorm() ? F : 0, &co)) goto done;
        double t2 = ocd_now();
        unet_residuals res;
        controlnet_out_residuals(&co, &res);
        hs.extra_flops = 0;
        if (unet_forward_res(m.unet, x, t, ctx, 77, F, h, w, &hook, &res, eps)) goto done;
        double t3 = ocd_now();
        fl_cn = controlnet_last_flops(cm.net), fl_u = unet_last_flops(m.unet) + hs.extra_flops;
        if (r == 0) { printf("warm-up     ControlNet %.3f s, UNet %.3f s\n", t2 - t1, t3 - t2); continue; }
        if (t2 - t1 < best_cn) best_cn = t2 - t1;
        if (t3 - t2 < best_u) best_u = t3 - t2;
    }
    printf("\nbench control: %dx%d px (latent %dx%d), %d frames, %d threads, best of %ld\n", S, S, h, w, F,
           omp_get_max_threads(), repeat);
    printf("  ControlNet (per-frame attention)      %8.3f s  %7.1f GFLOP  %6.1f GFLOP/s  %5.1f %% of peak\n", best_cn,
           fl_cn / 1e9, fl_cn / best_cn / 1e9, 100 * fl_cn / best_cn / 1e9 / peak);
    printf("  UNet (fully cross-frame attention)    %8.3f s  %7.1f GFLOP  %6.1f GFLOP/s  %5.1f %% of peak\n", best_u,
           fl_u / 1e9, fl_u / best_u / 1e9, 100 * fl_u / best_u / 1e9 / peak);
    printf("  one guided step (2 x both)            %8.3f s  -> 50 steps ~ %.1f min for %d frames\n", 2 * (best_cn + best_u),
           100 * (best_cn + best_u) / 60, F);
    printf("  peak RSS                              %8.1f MiB\n", ocd_peak_rss_bytes() / 1048576.0);
    rc = 0;
done:
    controlnet_out_free(&co);
    free(x); free(t); free(ctx); free(cond); free(eps);
    controlnet_model_free(&cm);
    sd_model_free(&m);
    return rc;
}
