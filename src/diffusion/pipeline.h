/* The single-image Stable Diffusion 1.x pipeline over plain arrays and a loaded sd_model:
 * text -> embeddings, seeded initial noise, the sampling loop with classifier-free guidance,
 * DDIM inversion, and the VAE at both ends (algorithms.md D, E; FIXTURES.md "Text-to-image" and
 * "DDIM inversion run"). diffusers v0.22.3 StableDiffusionPipeline is the reference.
 *
 * Layouts: one latent is [C, h, w] (C = the UNet's in_ch, 4), one image [3, H, W] in [-1, 1]
 * with H = f h, W = f w (f = the VAE's factor, 8); text embeddings [77, D] per prompt.
 *
 * Guidance: with g != 1 each step makes ONE batched UNet call of B = 2, latents [x, x] with
 * contexts [uncond, cond], then eps = u + g (c - u). With g == 1 the unconditional half is
 * skipped (B = 1, cond only), which is what guidance 1 means.
 *
 * Memory: every buffer of a loop is allocated before its first step; the UNet plans its own
 * scratch on its first call at a size and reuses it afterwards, so steps allocate nothing. */
#ifndef OCD_DIFFUSION_PIPELINE_H
#define OCD_DIFFUSION_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "base/progress.h"
#include "diffusion/schedule.h"
#include "nn/sd_model.h"

/* rng stream of the initial noise: latent element i = rng_normal(seed, PIPE_NOISE_STREAM, i),
 * i in C-major [C, h, w] order. A function of (seed, i) only, hence identical for any
 * thread count and reproducible across versions. */
#define PIPE_NOISE_STREAM 0x6e6f697365ull   /* "noise" */

typedef struct {
    sd_model *m;           /* borrowed */
    ocd_schedule sched;    /* the model's scheduler_config.json, else SD 1.x defaults */
    float scaling;         /* latent scaling factor (the VAE config's, 0.18215 for SD 1.x) */
    long unet_calls;       /* batched UNet forwards so far (a B = 2 CFG call counts once) */
    ocd_progress *progress;/* NULL = silent */
} pipe_ctx;

/* One loop (sampling or inversion). */
typedef struct {
    ocd_solver solver;     /* OCD_SOLVER_DDIM or OCD_SOLVER_DPMPP_2M (inversion: DDIM only) */
    int steps;             /* 1..OCD_MAX_STEPS */
    float guidance;        /* CFG scale; 1 = conditional only */
    const ocd_schedule *sched; /* NULL = the context's */
    const char *phase;     /* progress phase name (NULL: "sample" / "invert") */
    /* optional records, NULL when not wanted */
    float *latents_traj;   /* [steps+1, C, h, w]: [0] = the start latent, [k] = after step k */
    float *eps_traj;       /* [steps, C, h, w]: the (guided) eps used at step k */
    int32_t *timesteps;    /* [steps]: the timesteps in the order they were run */
} pipe_loop;

/* The model needs a UNet, a VAE and a text encoder. cfg NULL = the model's scheduler config
 * (m->files.scheduler_config) when it has one, else SD 1.x defaults. */
int pipe_init(pipe_ctx *p, sd_model *m, const ocd_sched_config *cfg);
void pipe_free(pipe_ctx *p);
/* Parses a scheduler config JSON text (NULL = defaults). */
int pipe_sched_config(ocd_sched_config *cfg, const char *json_text);

/* Latent channels and VAE factor of the model. */
int pipe_latent_channels(const pipe_ctx *p);
int pipe_vae_factor(const pipe_ctx *p);

/* ids [B, 77] -> emb [B, 77, D]. */
int pipe_encode_ids(pipe_ctx *p, const int32_t *ids, int B, float *emb);
/* prompt -> emb [77, D] (tokenize + encode; "" gives [49406, 49407, ...]). */
int pipe_encode_prompt(pipe_ctx *p, const char *prompt, float *emb);
/* Initial latent: lat [n] = N(0,1) from (seed, PIPE_NOISE_STREAM); DDIM's and DPM-Solver++'s
 * init_noise_sigma are 1, so no scaling. */
void pipe_init_noise(uint64_t seed, float *lat, size_t n);

/* Denoises lat [C, h, w] in place along the loop's plan. ctx_u [77, D] may be NULL when
 * guidance is 1; ctx_c [77, D] is required. */
int pipe_sample(pipe_ctx *p, const pipe_loop *L, const float *ctx_u, const float *ctx_c, float *lat, int h, int w);
/* DDIM inversion of lat [C, h, w] in place: timesteps ascending, the UNet evaluated at t on
 * the current latent, moving from ᾱ(t - T/N) to ᾱ(t) (diffusers >= 0.22 DDIMInverseScheduler).
 * Guidance as in pipe_sample (1 = the usual no-CFG inversion). */
int pipe_invert(pipe_ctx *p, const pipe_loop *L, const float *ctx_u, const float *ctx_c, float *lat, int h, int w);

/* image [3, H, W] in [-1, 1] -> z0 [C, H/f, W/f] = posterior mean x scaling (no sampling). */
int pipe_vae_encode(pipe_ctx *p, const float *image, int H, int W, float *z0);
/* z [C, h, w] (scaled latent) -> image [3, f h, f w] = decode(z / scaling). */
int pipe_vae_decode(pipe_ctx *p, const float *z, int h, int w, float *image);

#endif
