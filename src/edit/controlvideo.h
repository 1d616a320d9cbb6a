/* ControlVideo: training-free ControlNet video generation (algorithms.md C, ocd-method.md 7,
 * fixtures README "ControlVideo").
 *
 *   emb = [text(negative), text(prompt)]
 *   every frame starts from the SAME noise latent
 *   per step t: per CFG half, ControlNet per frame (its own condition, ordinary attention), then
 *               the UNet on all frames with FULLY CROSS-FRAME self-attention (attn1 of frame f:
 *               own queries, keys/values of all F frames of the half, one softmax over F*h*w);
 *               e = e_u + g (e_c - e_u); DDIM (eta 0) or DPM-Solver++(2M) step of every frame;
 *               optionally the interleaved-frame smoother (C.3)
 *   frames = clamp(vae.decode(lat / scaling) / 2 + 0.5, 0, 1)
 *
 * Long clips (window > 0): the hierarchical sampler of C.4. Key frames 0, w-1, 2(w-1), ... (+ F-1)
 * run together with fully cross-frame attention; the frames between two key frames k_a < k_b run
 * as the list [k_a, interior...] whose self-attention reads the keys/values of list positions 0
 * and -1 only (k_a and the LAST interior frame, as ControlVideo's code does; the paper says the
 * two key frames). The list is [k_a, k_b, interior...] as in ControlVideo: k_b's output is dropped,
 * but it takes part in the clip's GroupNorm statistics (below). Both parts read the latents of the
 * step start.
 *
 * GroupNorm: ControlVideo's resnets (UNet and ControlNet) and the UNet's conv_norm_out apply torch's
 * GroupNorm to [b, c, f, h, w], i.e. with statistics over all frames of the pass (per CFG half);
 * the transformers' GroupNorm is per frame. The fixtures README says "per frame"; the goldens (the
 * code) say otherwise. This needs unet_attn_hook.norm_frames (cv_clip_groupnorm() = 1); without
 * it every frame is normalised on its own.
 *
 * Residuals: standard ControlNet (the mid block runs on the plain last down output). ControlVideo
 * as published adds the last down residual to the mid block's input too (an in-place aliasing
 * quirk, golden controlvideo_basic_asis); residuals_asis asks for that (needs UNet support).
 *
 * Smoother (C.3): ControlVideo interpolates frames with RIFE; RIFE's weights cannot be loaded yet,
 * so the smoother interpolates in pixel space ((a + b) / 2) and re-encodes with the posterior mean
 * (ControlVideo samples). cv_smoother_note() says so for logs. */
#ifndef OCD_EDIT_CONTROLVIDEO_H
#define OCD_EDIT_CONTROLVIDEO_H

#include <stdint.h>

#include "diffusion/pipeline.h"
#include "io/video.h"
#include "nn/controlnet.h"

#define CV_MAX_FRAMES 1024
#define CV_MAX_SMOOTH 8

/* OCD accelerations on ControlVideo (3D object-centric token merging over the concatenated K/V,
 * object-centric sampling with a user mask; ocd-method.md 7, issue 5). Not implemented yet: a
 * non-NULL cv_params.ocd is refused until they are. */
struct cv_ocd_params;

typedef struct {
    ocd_solver solver;            /* OCD_SOLVER_DDIM (ControlVideo) or OCD_SOLVER_DPMPP_2M */
    int steps;                    /* 50 */
    float guidance;               /* 12.5; 1 = cond half only */
    float control_scale;          /* controlnet_conditioning_scale, 1.0 */
    int window;                   /* hierarchical sampler window (>= 2); 0 = all frames in one pass */
    int n_smooth;                 /* interleaved-frame smoother at iterations i with N - i in */
    int smooth_steps[CV_MAX_SMOOTH]; /* smooth_steps[] (ControlVideo: 19, 20); 0 entries = off */
    int residuals_asis;           /* ControlVideo's published mid-block quirk (see above) */
    const struct cv_ocd_params *ocd; /* OCD accelerations (issue 5); NULL = off */
    /* optional records, NULL when not wanted */
    float *latents_traj;          /* [steps+1, F, C, h, w]: [0] = start, [k] = after step k */
    float *eps_traj;              /* [steps, F, C, h, w]: guided eps of step k */
    int32_t *timesteps;           /* [steps] */
} cv_params;

typedef struct {
    long unet_calls;              /* batched UNet forwards (one per CFG half and pass) */
    long unet_frames;             /* frame evaluations inside them */
    long controlnet_frames;       /* ControlNet frame evaluations */
    int smoothed;                 /* smoother applications */
    double unet_flops, controlnet_flops;
    double t_unet, t_controlnet, t_smoother;   /* seconds */
} cv_stats;

/* ControlVideo's defaults (C.1): DDIM 50, CFG 12.5, scale 1, smoother steps {19, 20}, no window. */
void cv_default_params(cv_params *p);
/* ControlVideo's prompt suffix and negative prompt (C.1). */
extern const char CV_POS_PROMPT[];
extern const char CV_NEG_PROMPT[];
/* 1 when this build normalises clip-wide like ControlVideo (see GroupNorm above). */
int cv_clip_groupnorm(void);
/* One line for logs: how the smoother interpolates. */
const char *cv_smoother_note(void);

/* Key frames of the hierarchical sampler (C.4): 0, w-1, 2(w-1), ... and F-1. Writes them to
 * keys[] (room for F) and returns their count, or -1 (F < 1, w < 2). */
int cv_key_frames(int F, int window, int *keys);
/* ControlVideo's default window for a long clip: int(sqrt(F)), at least 2. */
int cv_default_window(int F);

/* lat [F, C, h, w] = ControlVideo from init_noise [C, h, w] (copied to every frame).
 * emb [2, 77, D] = [negative, prompt]; cond [F, cond_ch, f h, f w] in [0, 1] (f = the
 * ControlNet's factor, 8). stats may be NULL. */
int cv_generate(pipe_ctx *p, controlnet *cn, const cv_params *prm, const float *emb, const float *cond, int F,
                const float *init_noise, int h, int w, float *lat, cv_stats *stats);
/* frames [F, 3, f h, f w] = clamp(decode(lat) / 2 + 0.5, 0, 1). */
int cv_decode(pipe_ctx *p, const float *lat, int F, int h, int w, float *frames);

/* Conditions from videos. The condition is [F, 3, H, W] in [0, 1].
 * canny: each frame of `src` (already W x H) through the ControlNet canny annotator. */
int cv_condition_canny(const ocd_video *src, float *cond);
/* A user-supplied condition clip (depth, pose, edges ...): needs exactly F frames of W x H;
 * anything else is a clear error naming both. Grey clips are fine (replicated by the reader). */
int cv_condition_from_video(const ocd_video *v, int F, int W, int H, float *cond);

/* The attention hook of ControlVideo (exposed for tests). The call's batch is one CFG half's
 * frame list; pair = 0: every frame reads the K/V of all frames of the list (fully cross-frame);
 * pair = 1: the K/V of list positions 0 and batch-1 (the hierarchical sampler's clips). */
typedef struct {
    int pair;
    float *kv_buf;                /* pair mode: [2, 2 * max Nk * C] (K then V), caller-owned */
    size_t kv_buf_floats;
    double extra_flops;           /* attention FLOPs beyond the UNet's own per-frame count (accumulated) */
} cv_hook_state;
int cv_attend(void *user /* cv_hook_state */, const unet_attn_call *call);

#endif
