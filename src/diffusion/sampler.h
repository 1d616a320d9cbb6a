/* Samplers over plain float arrays: DDIM (eta 0), DDIM inversion, DPM-Solver++(2M), and
 * classifier-free guidance (algorithms.md D.1-D.4). Each function moves one latent of n floats
 * (any layout: the solvers are elementwise) and may write its result over its input.
 *
 * Arithmetic mirrors diffusers v0.22.3 in float32 (scalar coefficients and elementwise order of
 * operations), so trajectories match the goldens to float32 rounding.
 *
 * A multistep solver's history lives in a dpmpp_state the caller owns, so several branches can
 * run side by side (each with its own state) and a branch can restart (dpmpp_reset). */
#ifndef OCD_DIFFUSION_SAMPLER_H
#define OCD_DIFFUSION_SAMPLER_H

#include <stddef.h>

#include "diffusion/schedule.h"

/* eps = u + g (c - u). out may alias either input. */
void cfg_combine(const float *eps_u, const float *eps_c, float g, float *out, size_t n);

/* The DDIM move (eta 0) from noise level a_from to a_to (ᾱ values):
 *   x0 = (x - sqrt(1-a_from) eps) / sqrt(a_from);  x_out = sqrt(a_to) x0 + sqrt(1-a_to) eps.
 * Forward sampling has a_to > a_from, inversion a_to < a_from. x0_out may be NULL. */
void ddim_move(float a_from, float a_to, const float *x, const float *eps,
               float *x_out /* [n] */, float *x0_out /* [n] or NULL */, size_t n);
/* diffusers DDIMScheduler.step at timestep t of an n_steps run: ᾱ(t) -> ᾱ(t - T/n_steps). */
void ddim_step(const ocd_schedule *s, int n_steps, int t, const float *x, const float *eps,
               float *x_out, float *x0_out, size_t n);
/* DDIMInverseScheduler.step to timestep t (eps evaluated at t on the current latent):
 * ᾱ(t - T/n_steps) (final_alpha_cumprod when < 0) -> ᾱ(t). */
void ddim_invert_step(const ocd_schedule *s, int n_steps, int t, const float *x, const float *eps,
                      float *x_out, float *x0_out, size_t n);

/* DPM-Solver++ history: the previous data prediction and where it was made. */
typedef struct {
    size_t n;            /* floats per latent */
    float *prev_x0;      /* [n] caller-owned buffer: m1, the data prediction of the previous step */
    float prev_sigma;    /* σ̃ of the level prev_x0 was predicted at */
    int n_outputs;       /* model outputs seen since the last reset (0: the next step is first order) */
} dpmpp_state;

void dpmpp_init(dpmpp_state *st, float *prev_x0_buf /* [n] */, size_t n);
/* Forgets the history: the next step is first order (branch start, blend). */
void dpmpp_reset(dpmpp_state *st);
/* One DPM-Solver++ step from σ̃ sigma_s0 to sigma_t (sigma_t = 0: returns the data prediction).
 * order 2 uses the history (midpoint, or heun when `heun`), falling back to 1 without one.
 * Records this step's data prediction in st. x_out may alias x; x0_out may be NULL. */
int dpmpp_step(dpmpp_state *st, float sigma_s0, float sigma_t, int order, int heun,
               const float *x, const float *eps, float *x_out, float *x0_out);
/* The order diffusers uses for a step of plan p that lands on level k_to (2, or 1 for the
 * lower_order_final / euler_at_final / final_sigmas zero cases and for solver_order 1). */
int dpmpp_order_for(const ocd_plan *p, int k_to);

/* Plan-driven step from level k_from to k_to (> k_from; k_to = k_from + 1 for a normal step,
 * larger for a branch that skips steps). The model was evaluated at p->timesteps[k_from].
 * st: DPM-Solver++ history (required for DPM plans, ignored for DDIM; n must equal st->n). */
int sampler_step(const ocd_plan *p, dpmpp_state *st, int k_from, int k_to,
                 const float *x, const float *eps, float *x_out, float *x0_out, size_t n);
/* Inversion step k of a plan, run for k = N-1 down to 0 (timesteps ascending): the model was
 * evaluated at p->timesteps[k] on x, which is at level alpha_bar_prev[k]; moves to alpha_bar[k]. */
int sampler_invert_step(const ocd_plan *p, int k, const float *x, const float *eps,
                        float *x_out, float *x0_out, size_t n);

#endif
