/* Noise schedule of SD 1.x (algorithms.md D.1) and the timestep / noise-level tables of the
 * samplers (D.2 DDIM "leading", D.3 DDIM inversion, D.4 DPM-Solver++ "linspace").
 *
 * Values follow diffusers v0.22.3 (the goldens' reference): betas and alphas_cumprod are float32
 * as torch computes them; a float64 computation (LDM) differs by < 2e-6 relative.
 *
 * Noise levels are written three ways: ᾱ ("alpha_bar", alphas_cumprod), and DPM-Solver's
 * σ̃ = sqrt((1-ᾱ)/ᾱ) with α = 1/sqrt(σ̃²+1), σ = σ̃·α, λ = ln α - ln σ. */
#ifndef OCD_DIFFUSION_SCHEDULE_H
#define OCD_DIFFUSION_SCHEDULE_H

#include <stdint.h>

struct json_t;   /* jansson */

#define OCD_MAX_STEPS 1000   /* inference steps of one plan (= num_train_timesteps of SD) */

typedef enum { OCD_BETAS_SCALED_LINEAR, OCD_BETAS_LINEAR, OCD_BETAS_SQUAREDCOS_CAP_V2 } ocd_beta_schedule;
/* OCD_SPACING_DEFAULT: the key is absent; each sampler uses its diffusers class default
 * (DDIM: leading, DPM-Solver++: linspace), which is what SD 1.x configs get. */
typedef enum { OCD_SPACING_DEFAULT, OCD_SPACING_LEADING, OCD_SPACING_TRAILING, OCD_SPACING_LINSPACE } ocd_spacing;
/* DPM-Solver++ final level: SIGMA_MIN = σ̃(ᾱ_0) (diffusers <= 0.25, and "sigma_min"; the goldens),
 * ZERO = 0, i.e. the last step returns the data prediction (diffusers >= 0.26 default). */
typedef enum { OCD_FINAL_SIGMA_MIN, OCD_FINAL_SIGMA_ZERO } ocd_final_sigma;
typedef enum { OCD_SOLVER_DDIM, OCD_SOLVER_DPMPP_2M } ocd_solver;

/* scheduler_config.json, the keys that matter; defaults = SD 1.x (D.1). */
typedef struct {
    int num_train_timesteps;       /* 1000 */
    double beta_start, beta_end;   /* 0.00085, 0.012 */
    ocd_beta_schedule beta_schedule;
    int set_alpha_to_one;          /* 0: final_alpha_cumprod = ᾱ_0 */
    int steps_offset;              /* 1 */
    ocd_spacing spacing;           /* timestep_spacing */
    /* DPM-Solver++ keys (ignored by DDIM) */
    int solver_order;              /* 1 or 2 (default 2) */
    int solver_heun;               /* solver_type "heun" instead of "midpoint" */
    int lower_order_final;         /* 1 */
    int euler_at_final;            /* 0 */
    ocd_final_sigma final_sigmas;
} ocd_sched_config;

/* The training schedule (owns its tables). */
typedef struct {
    ocd_sched_config cfg;
    int T;                         /* num_train_timesteps */
    float *betas;                  /* [T] */
    float *alphas_cumprod;         /* [T] ᾱ_t */
    float final_alpha_cumprod;     /* ᾱ of a "previous" timestep < 0: 1 or ᾱ_0 */
} ocd_schedule;

/* The tables of one N-step sampling run. Level k (k = 0..N-1) is ᾱ(timesteps[k]), where step k
 * starts and evaluates the model; level N is where the run ends.
 * DDIM step k goes from alpha_bar[k] to alpha_bar_prev[k] = ᾱ(t_k - T/N) (final_alpha_cumprod when
 * < 0), exactly as diffusers; with "leading" spacing that is alpha_bar[k+1]. DDIM inversion runs the
 * same pairs backwards. DPM-Solver++ moves sigma[k] -> sigma[k+1] (alpha_bar_prev[k] = alpha_bar[k+1]). */
typedef struct {
    ocd_solver solver;
    ocd_sched_config cfg;                      /* the solver options (order, final step, ...) */
    int n_steps;                               /* N */
    int32_t timesteps[OCD_MAX_STEPS];          /* [N] descending */
    float alpha_bar[OCD_MAX_STEPS + 1];        /* [N+1] ᾱ of each level (level N: DDIM: ᾱ(t_{N-1} - T/N),
                                                  DPM: ᾱ_0, or 1 for final_sigmas zero) */
    float alpha_bar_prev[OCD_MAX_STEPS];       /* [N] target ᾱ of step k */
    float sigma[OCD_MAX_STEPS + 1];            /* [N+1] σ̃ of each level, float32 as diffusers */
} ocd_plan;

void sched_config_default(ocd_sched_config *cfg);
/* Reads the keys above from a parsed scheduler config object (unknown keys are ignored;
 * settings this engine does not implement, e.g. v-prediction or thresholding, are errors). */
int sched_config_from_json(ocd_sched_config *cfg, const struct json_t *obj);
/* Same from a file, e.g. <model>/scheduler/scheduler_config.json. */
int sched_config_load(ocd_sched_config *cfg, const char *path);

/* Builds betas / alphas_cumprod. cfg NULL = SD 1.x defaults. Free with sched_free. */
int sched_init(ocd_schedule *s, const ocd_sched_config *cfg);
void sched_free(ocd_schedule *s);

/* ᾱ_t, with final_alpha_cumprod for t < 0 (DDIM's "previous" timestep past the end). */
float sched_alpha_bar(const ocd_schedule *s, int t);
/* σ̃ = sqrt((1-ᾱ)/ᾱ) in float32 as diffusers computes it. */
float sched_sigma_of_alpha_bar(float alpha_bar);

/* DDIM timesteps, descending (D.2); spacing DEFAULT = cfg's, else leading. n in 1..T. */
int sched_ddim_timesteps(const ocd_schedule *s, int n, int32_t *out /* [n] */);
/* DDIM's previous timestep of t in an n-step run: t - T/n (may be < 0). */
int sched_ddim_prev_timestep(const ocd_schedule *s, int n, int t);
/* DDIM inversion timesteps: the same set, ascending (D.3). */
int sched_ddim_inverse_timesteps(const ocd_schedule *s, int n, int32_t *out /* [n] */);
/* DPM-Solver++ timesteps (descending) and σ̃ table [n+1] incl. the final level (D.4);
 * spacing DEFAULT = cfg's, else linspace. */
int sched_dpmpp_timesteps(const ocd_schedule *s, int n, int32_t *timesteps /* [n] */, float *sigmas /* [n+1] */);

/* Fills a plan for an n-step run of the given solver. */
int sched_plan(ocd_plan *p, const ocd_schedule *s, ocd_solver solver, int n);

#endif
