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
#include "edit/tome.h"
#include "io/video.h"
#include "nn/controlnet.h"

#define CV_MAX_FRAMES 1024
#define CV_MAX_SMOOTH 8

/* The OCD accelerations on ControlVideo (ocd-method.md 7; the presets in edit/presets.h). No
 * inversion, so nothing is paired: every plan is made on the spot from the keys it merges.
 *
 * 3D token merging: in every self-attention (fully cross-frame: all frames of the pass; the
 * hierarchical sampler's clips: the two frames they read) ONE plan over the concatenated keys of
 * the frames read (tome_kv_plan; destinations drawn per (timestep, layer, frame) from tome_seed,
 * so they differ between frames and repeat run to run); keys and values are merged with it and
 * every query frame attends to the merged K/V. The plan is made per CFG half (each half's keys
 * are merged by their own similarities; the two halves share the destinations) and once per
 * call, not per query frame. Object-Centric ToMe lowers the scores of sources in the mask.
 *
 * Object-Centric Sampling (ocd-method.md 5.2) with the mask: the foreground branch runs steps
 * 0..b-1 on the crop (latents, ControlNet conditions at 8x, and the mask for OC-ToMe cropped
 * alike; its plans are the crop's own), the background branch the full frame every phi-th step of
 * the same span, ocs_blend at step b, then joint steps. Solver history restarts at each branch
 * start and at the blend. The smoother runs on full-frame steps only (skipped, and noted, inside
 * the branches). Fallbacks (no mask, empty mask, b = 0, crop > max area) sample plainly and say
 * so in cv_stats.note. All zero / off (cv_default_params): ControlVideo. */
typedef struct {
    float tome_ratio;             /* fraction of the sources merged: 0 = off; 0.5 (optimized, ocd) */
    int tome_min_tokens;          /* never fewer tokens kept per frame: 64 */
    uint64_t tome_seed;           /* destination draws */
    float oc_tome_lambda;         /* Object-Centric ToMe: foreground sources' score lowered by this; 0 = off (ocd 1.0);
                                     it only reorders what is merged, so it acts with tome_ratio > 0 */
    int ocs;                      /* Object-Centric Sampling on/off */
    int ocs_phi;                  /* background branch every phi-th step: 4 */
    double ocs_blend;             /* beta: blend step b = round(beta N): 0.5 */
    int ocs_pad;                  /* crop padding, latent pixels: 2 */
    double ocs_max_area;          /* OCS skipped when the crop covers more of the frame: 0.6 */
    const float *mask;            /* foreground [F, h, w] at latent size, > 0.5 = foreground; NULL = none */
    int mask_dilate;              /* grow the mask by this many latent pixels: 0 (a user mask is taken as drawn) */
} cv_ocd_params;

/* A merge plan of one self-attention call (n_kv frames, clip frames frames[], foreground fg of
 * their tokens or NULL), as made. */
typedef void (*cv_plan_probe)(void *user, const unet_attn_call *call, int n_kv, const int *frames, const tome_plan *plan,
                              const uint8_t *fg);

typedef struct {
    ocd_solver solver;            /* OCD_SOLVER_DDIM (ControlVideo) or OCD_SOLVER_DPMPP_2M */
    int steps;                    /* 50 */
    float guidance;               /* 12.5; 1 = cond half only */
    float control_scale;          /* controlnet_conditioning_scale, 1.0 */
    int window;                   /* hierarchical sampler window (>= 2); 0 = all frames in one pass */
    int n_smooth;                 /* interleaved-frame smoother at iterations i with N - i in */
    int smooth_steps[CV_MAX_SMOOTH]; /* smooth_steps[] (ControlVideo: 19, 20); 0 entries = off */
    int residuals_asis;           /* ControlVideo's published mid-block quirk (see above) */
    cv_ocd_params ocd;            /* the OCD accelerations (above); cv_default_params: all off */
    /* optional records, NULL when not wanted; with OCS (blend step b) entries 1..b-1 of latents_traj
     * hold the background branch where it landed, entry b the blend, and eps_traj[0..b-1] the
     * background branch's eps */
    float *latents_traj;          /* [steps+1, F, C, h, w]: [0] = start, [k+1] = after step k */
    float *eps_traj;              /* [steps, F, C, h, w]: guided eps of step k */
    int32_t *timesteps;           /* [steps] */
    /* tests: sees every merge plan with the clip frames it spans and their foreground (NULL = none) */
    cv_plan_probe plan_probe;
    void *plan_probe_user;
} cv_params;

typedef struct {
    long unet_calls;              /* batched UNet forwards (one per CFG half and pass) */
    long unet_frames;             /* frame evaluations inside them */
    long controlnet_frames;       /* ControlNet frame evaluations */
    int smoothed;                 /* smoother applications */
    double unet_flops, controlnet_flops;   /* counted; the UNet's with the keys its attention really read */
    double plan_flops;            /* token merging: the plans' key-similarity products */
    double t_unet, t_controlnet, t_smoother;   /* seconds (t_unet includes merging) */
    long tokens_in[8], tokens_merged[8];   /* K/V tokens entering merge plans / merged away, per UNet level */
    double full_frame_evals;      /* guided evaluations of the clip in full-frame units: N, or with OCS
                                     b * area + ceil(b / phi) + (N - b) (ocs_cost) */
    double ocs_area;              /* OCS crop fraction of the frame; 0 = OCS off or skipped */
    char note[256];               /* fallbacks and skips ("OCS off: empty mask: plain sampling", ...) */
} cv_stats;

/* ControlVideo's defaults (C.1): DDIM 50, CFG 12.5, scale 1, smoother steps {19, 20}, no window;
 * the OCD accelerations off, with ocd-method.md's values for when they are switched on (min tokens
 * 64, phi 4, beta 0.5, pad 2, max area 0.6). */
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
 * pair = 1: the K/V of list positions 0 and batch-1 (the hierarchical sampler's clips).
 * With merging (cv_hook_plan_buffers), one plan per call over the K/V read (see cv_ocd_params),
 * made at item 0 and used by every item of the call. */
typedef struct {
    int pair;
    float *kv_buf;                /* pair mode: [2, 2 * max Nk * C] (K then V), caller-owned */
    size_t kv_buf_floats;
    double extra_flops;           /* attention FLOPs beyond the UNet's own per-frame count (accumulated) */
    /* ---- 3D token merging; merge = 0: off ---- */
    int merge;
    tome_params tp;               /* ratio, min_tokens, lambda (cell 2 x 2) */
    uint64_t seed;                /* destination draws */
    const int *frames;            /* clip frame of every list item (draws, mask); NULL = the item index */
    const float *mask;            /* foreground [clip frames, mask_h, mask_w] of the pass's grid (OC-ToMe); NULL = none */
    int mask_h, mask_w;
    int lat_h;                    /* the pass's latent height (a layer's UNet level: halvings down to its grid) */
    cv_plan_probe probe; void *probe_user;   /* tests: sees every plan */
    /* results, accumulated */
    long tokens_in[8], tokens_merged[8];
    double plan_flops;
    /* buffers (cv_hook_plan_buffers) and the call the current plan belongs to */
    tome_plan plan;
    int32_t *dst;                 /* [tokens] destination draws of the frames read */
    uint8_t *fg;                  /* [tokens] their foreground */
    void *tscratch; size_t tscratch_bytes;
    float *km, *vm;               /* merged K and V */
    size_t kv_merged_floats;
    int plan_layer;
    const float *plan_k;
} cv_hook_state;
/* Buffers for merging in calls of up to n_frames frames of a UNet with config u on an h x w
 * latent (every level). Allocates once; cv_hook_free releases. */
int cv_hook_plan_buffers(cv_hook_state *st, const unet_config *u, int n_frames, int h, int w);
void cv_hook_free(cv_hook_state *st);
int cv_attend(void *user /* cv_hook_state */, const unet_attn_call *call);

#endif
