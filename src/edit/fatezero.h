/* FateZero zero-shot video editing (algorithms.md A; ocd-method.md 2 for the memory design).
 *
 * frames [F, 3, H, W] in [-1, 1] -> z0 = 0.18215 * VAE posterior mean (per frame) -> DDIM inversion
 * with the source prompt (no CFG), recording what attention fusion needs (attn_store.h) -> DDIM
 * editing with CFG (batch [uncond F frames, cond F frames], one UNet call per step) where the
 * controller (p2p.h) edits the cond half's attention of the hooked layers (Nq <= 1024) ->
 * VAE decode -> frames [F, 3, H, W] in [-1, 1].
 *
 * The paper's accelerations (ocd-method.md 1, 3-5; presets in edit/presets.h) plug into the same
 * pipeline: the solver (DPM-Solver++ 2M, inversion on its timesteps), K/V token merging in every
 * self-attention with plans made in inversion and reused in editing, Object-Centric ToMe, and
 * Object-Centric Sampling (edit/ocs.h). All off in fz_default_params (= FateZero).
 *
 * Two ways in: fz_edit() runs everything; the staged API (fz_new, fz_encode, fz_invert,
 * fz_edit_latents, fz_decode) lets a caller start any stage from its own values (golden probes,
 * several edits from one inversion). */
#ifndef OCD_EDIT_FATEZERO_H
#define OCD_EDIT_FATEZERO_H

#include <stddef.h>
#include <stdint.h>

#include "edit/attn_store.h"
#include "edit/xframe.h"
#include "diffusion/schedule.h"
#include "nn/sd_model.h"

#define FZ_MAX_WORDS 8    /* per-word cross bounds / reweight entries */

enum { FZ_REPLACE_AUTO, FZ_REPLACE_REFINE, FZ_REPLACE_REPLACE };

typedef struct {
    const char *word;     /* a word of the target prompt */
    double lo, hi;        /* cross-replace window as fractions of N+1 (A.7) */
} fz_word_bounds;

typedef struct {
    const char *word;     /* a word of the target prompt */
    float value;          /* attention factor (no renormalisation) */
} fz_reweight;

typedef void (*fz_progress_fn)(void *user, const char *phase /* "invert", "edit", ... */, int step, int total);

typedef struct {
    const char *source;            /* source prompt (inversion, reconstruction) */
    const char *target;            /* editing prompt; NULL or == source: reconstruction */
    const char *negative;          /* uncond prompt, "" (FateZero never sets one) */
    int steps;                     /* DDIM steps for inversion and editing: 50 */
    float cfg;                     /* guidance scale: 7.5 */
    double cross_replace;          /* default cross-replace fraction: 0.8 (window [0, int(v*(N+1)))) */
    fz_word_bounds cross_words[FZ_MAX_WORDS]; int n_cross_words;
    double self_replace;           /* self-replace fraction: 0.6 (window [0, int(v*N))) */
    const char *blend_words_src;   /* space-separated words of the source prompt, NULL = no mask */
    const char *blend_words_tgt;   /* same for the target (latent blending only), NULL = src's */
    float blend_th;                /* mask threshold (strict >): 0.3 */
    int blend_level;               /* UNet level whose cross maps make the mask; -1 = auto (16x16 at 512 px) */
    fz_reweight reweight[FZ_MAX_WORDS]; int n_reweight;
    int replace_mode;              /* FZ_REPLACE_AUTO (= refine, see fz_default_params) */
    int latent_blend;              /* A.9, 0 */
    int latent_blend_fix;          /* 0: FateZero's off-by-one inversion latent, 1: the same level */
    xf_mode xframe;                /* cross-frame self-attention: XF_MID */
    int least_sc_channel;          /* blocks with fewer channels stay per-frame: 640 */
    size_t attn_budget;            /* RAM bytes for the attention store; beyond: spill; 0 = unlimited */
    const char *spill_dir;         /* folder of the spill file: NULL = $TMPDIR or /tmp */
    as_dtype store_dtype;          /* AS_F16 (default), AS_BF16 or AS_F32 */
    int store_force;               /* AS_NONE: per entry the smaller of Q/K and maps; AS_QK / AS_MAP: always */
    int fusion;                    /* 1: attention fusion; 0: plain inversion + regeneration */
    int clip_norm;                 /* 1: resnet / conv_norm_out GroupNorm statistics over the clip's frames, as
                                      FateZero's pseudo-3D UNet normalises [B, C, F, H, W] (needs the UNet's
                                      norm_frames, UNET_HAS_NORM_FRAMES); 0: per frame (plain SD per frame) */
    /* ---- the paper's accelerations (ocd-method.md; presets in edit/presets.h) ---- */
    int solver;                    /* OCD_SOLVER_DDIM (fatezero) or OCD_SOLVER_DPMPP_2M (optimized, ocd); inversion
                                      runs on the same timesteps */
    float tome_ratio;              /* K/V token merging in self-attention: 0 = off; 0.5 (optimized, ocd) */
    int tome_min_tokens;           /* never fewer kept per frame: 64 */
    uint64_t tome_seed;            /* destination draws, per frame */
    float oc_tome_lambda;          /* Object-Centric ToMe: foreground sources' score lowered by this; 0 = off */
    int ocs;                       /* Object-Centric Sampling on/off */
    int ocs_phi;                   /* background branch every phi-th step: 4 */
    double ocs_blend;              /* beta: blend step b = round(beta N): 0.5 */
    int ocs_pad;                   /* crop padding, latent pixels: 2 */
    double ocs_max_area;           /* skip OCS when the crop covers more of the frame: 0.6 */
    const float *mask;             /* foreground [F, H/8, W/8] in [0, 1] (--mask), NULL = from the blend words */
    float mask_threshold;          /* blend-word mask threshold: 0.3 */
    int mask_dilate;               /* latent pixels: 1 */
    fz_progress_fn progress; void *progress_user;
} fz_params;

/* FateZero defaults (A.10). FZ_REPLACE_AUTO follows the configs: refine (the configs' usual
 * is_replace_controller: False); FZ_REPLACE_REPLACE needs equal word counts, else refine. */
void fz_default_params(fz_params *p);

typedef struct {
    double t_encode, t_invert, t_edit, t_decode;   /* seconds */
    int unet_calls;                                /* UNet forwards (a batched call counts once) */
    int unet_items;                                /* UNet batch items evaluated in all */
    size_t store_ram_bytes, store_disk_bytes;      /* attention store, after inversion */
    size_t store_entries, store_recompute_entries; /* entries; of which kept as Q/K (recomputed) */
    int clip_norm_applied;                         /* clip_norm asked for and supported by the UNet */
    double gflop;                                  /* counted UNet GFLOP (all phases) */
    size_t plan_bytes;                             /* token-merging plans kept from inversion */
    long tokens_in[8], tokens_merged[8];           /* K/V tokens seen / merged away, per UNet level */
    double ocs_area;                               /* foreground crop area fraction; 0 = OCS off */
    double unet_full_frame_calls;                  /* editing UNet work in full-frame call units (OCS cost, 5.2) */
    char note[256];                                /* fallbacks taken ("empty mask: plain sampling", ...) */
} fz_report;

/* The whole edit. out [F, 3, H, W] in [-1, 1] (unclamped decoder output). H, W multiples of 8.
 * rep may be NULL. */
int fz_edit(sd_model *m, const float *frames /* [F,3,H,W] */, int F, int H, int W,
            const fz_params *p, float *out /* [F,3,H,W] */, fz_report *rep);

/* Fills p from a FateZero-style parameter object (a golden's spec params or a config converted
 * to JSON): source_prompt, target_prompt, num_inference_steps, guidance_scale, p2p_config
 * {cross_replace_steps, self_replace_steps, blend_words, blend_th, eq_params,
 * is_replace_controller, blend_latents}, model_config {SparseCausalAttention_index,
 * least_sc_channel}. Keys absent keep p's values. Strings point into `params` or into buf
 * (joined word lists), which must outlive p. */
struct json_t;
int fz_params_from_json(fz_params *p, const struct json_t *params, char *buf, size_t cap);

/* ---- staged API ---- */
typedef struct fz_ctx fz_ctx;

/* Plans every buffer for F frames of H x W pixels (latent H/8 x W/8); p is copied (the strings
 * must outlive the context). */
fz_ctx *fz_new(sd_model *m, const fz_params *p, int F, int H, int W);
void fz_free(fz_ctx *c);
/* z0 [F, 4, h, w] = 0.18215 * posterior mean of each frame. The VAE's workspace is freed after
 * it (vae_trim), and the UNet's before fz_decode (unet_trim): only one network's scratch is
 * resident at a time. */
int fz_encode(fz_ctx *c, const float *frames /* [F,3,H,W] */, float *z0 /* [F,4,h,w] */);
/* DDIM inversion with the source prompt from z0, recording the attention store (when fusion is
 * on). traj (may be NULL) [N+1, F, 4, h, w]: [0] = z0, [k+1] after inversion step k.
 * zT [F, 4, h, w]. */
int fz_invert(fz_ctx *c, const float *z0, float *traj, float *zT);
/* Editing run from zT with `target` (NULL = p->target; the source prompt = reconstruction),
 * using the store (and merge plans) of the last fz_invert. traj (may be NULL) [N, F, 4, h, w] after
 * each step (with Object-Centric Sampling: entries before the blend step b hold the background
 * branch where it landed, entry b-1 the blended latent); z_out [F, 4, h, w]. */
int fz_edit_latents(fz_ctx *c, const char *target, const float *zT, float *traj, float *z_out);
/* frames [F, 3, H, W] = VAE.decode(z / 0.18215), unclamped. */
int fz_decode(fz_ctx *c, const float *z /* [F,4,h,w] */, float *frames /* [F,3,H,W] */);

/* Introspection for probes and tests. */
/* Blend mask (A.8) of editing step i at an h x w layer, from the stored source cross maps:
 * mask [F, h, w] of 0/1. Needs blend_words_src and a recorded store. */
int fz_blend_mask(fz_ctx *c, int step, int h, int w, float *mask /* [F,h,w] */);
/* Text embedding [77, hidden] of a prompt, as the pipeline computes it. */
int fz_text_embedding(fz_ctx *c, const char *prompt, float *emb);
/* The controller tables of an edit to `target` (struct p2p_tables, see p2p.h). */
struct p2p_tables;
const struct p2p_tables *fz_tables(fz_ctx *c, const char *target);
const fz_report *fz_get_report(const fz_ctx *c);
/* The attention store of the last fz_invert (NULL without fusion). */
const attn_store *fz_store(const fz_ctx *c);
/* The timesteps of the run (the solver plan's), descending [N]. */
const int *fz_timesteps(const fz_ctx *c);
/* The foreground mask [F, h, w] (0/1) of the last inversion: p->mask binarised, or the blend-word
 * mask (ocd-method.md 5.1); NULL when there is none (yet). */
const float *fz_mask(const fz_ctx *c);
/* Token-merging probe: called for every self-attention item that merges K/V, with the plan it
 * uses (phase 0: inversion, the plan just made; 1 and 2: editing's unconditional and target
 * halves, which run as separate calls, the inversion's plan or its restriction to the OCS
 * crop). n_kv: the window's frames. */
typedef void (*fz_plan_probe)(void *user, int phase, const unet_attn_call *call, int frame, int n_kv, const tome_plan *plan);
void fz_set_plan_probe(fz_ctx *c, fz_plan_probe fn, void *user);

#endif
