#include "diffusion/sampler.h"

#include <math.h>

#include "base/error.h"

void cfg_combine(const float *eps_u, const float *eps_c, float g, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = eps_u[i] + g * (eps_c[i] - eps_u[i]);
}

/* ---- DDIM ---------------------------------------------------------------------------- */

void ddim_move(float a_from, float a_to, const float *x, const float *eps, float *x_out, float *x0_out, size_t n) {
    /* the scalar coefficients in float32, as diffusers' 0-dim tensors */
    const float sb = sqrtf(1.0f - a_from), sa = sqrtf(a_from);
    const float sa_to = sqrtf(a_to), sdir = sqrtf(1.0f - a_to);
    for (size_t i = 0; i < n; i++) {
        float e = eps[i];
        float x0 = (x[i] - sb * e) / sa;
        if (x0_out) x0_out[i] = x0;
        x_out[i] = sa_to * x0 + sdir * e;
    }
}

void ddim_step(const ocd_schedule *s, int n_steps, int t, const float *x, const float *eps,
               float *x_out, float *x0_out, size_t n) {
    ddim_move(sched_alpha_bar(s, t), sched_alpha_bar(s, sched_ddim_prev_timestep(s, n_steps, t)),
              x, eps, x_out, x0_out, n);
}

void ddim_invert_step(const ocd_schedule *s, int n_steps, int t, const float *x, const float *eps,
                      float *x_out, float *x0_out, size_t n) {
    /* DDIMInverseScheduler: "current" level min(t - T/n, T-1), the final alpha when < 0 */
    int from = sched_ddim_prev_timestep(s, n_steps, t);
    if (from > s->T - 1) from = s->T - 1;
    ddim_move(sched_alpha_bar(s, from), sched_alpha_bar(s, t), x, eps, x_out, x0_out, n);
}

/* ---- DPM-Solver++ ------------------------------------------------------------------------ */

void dpmpp_init(dpmpp_state *st, float *prev_x0_buf, size_t n) {
    st->n = n;
    st->prev_x0 = prev_x0_buf;
    st->prev_sigma = 0;
    st->n_outputs = 0;
}

void dpmpp_reset(dpmpp_state *st) { st->n_outputs = 0; }

/* alpha_t, sigma_t and lambda of a σ̃ level (diffusers _sigma_to_alpha_sigma_t, float32). */
typedef struct { float alpha, sigma, lambda; } dpm_level;

static dpm_level level_of(float sig) {
    dpm_level l;
    l.alpha = 1.0f / sqrtf(sig * sig + 1.0f);
    l.sigma = sig * l.alpha;
    l.lambda = logf(l.alpha) - logf(l.sigma);   /* +inf at sig = 0, handled by the caller */
    return l;
}

int dpmpp_step(dpmpp_state *st, float sigma_s0, float sigma_t, int order, int heun,
               const float *x, const float *eps, float *x_out, float *x0_out) {
    if (!st || !st->prev_x0) return ocd_fail("dpmpp_step: no state / history buffer");
    if (!(sigma_s0 > 0) || !(sigma_t >= 0) || !(sigma_t < sigma_s0))
        return ocd_fail("dpmpp_step: levels must decrease (sigma %g -> %g)", (double)sigma_s0, (double)sigma_t);
    if (order == 2 && st->n_outputs == 0) order = 1;       /* no history yet */
    const size_t n = st->n;
    float *m1 = st->prev_x0;
    const dpm_level s0 = level_of(sigma_s0);

    if (sigma_t == 0) {
        /* λ_t = +inf: e^{-h} = 0, σ_t = 0, so the (first-order) update is exactly x0 */
        for (size_t i = 0; i < n; i++) {
            float m0 = (x[i] - s0.sigma * eps[i]) / s0.alpha;
            if (x0_out) x0_out[i] = m0;
            x_out[i] = m0;
            m1[i] = m0;
        }
    } else {
        const dpm_level t = level_of(sigma_t);
        const float h = t.lambda - s0.lambda;
        const float ratio = t.sigma / s0.sigma;
        const float c0 = t.alpha * (expf(-h) - 1.0f);
        if (order == 1) {
            for (size_t i = 0; i < n; i++) {
                float m0 = (x[i] - s0.sigma * eps[i]) / s0.alpha;
                if (x0_out) x0_out[i] = m0;
                x_out[i] = ratio * x[i] - c0 * m0;
                m1[i] = m0;
            }
        } else {
            const dpm_level s1 = level_of(st->prev_sigma);
            const float h0 = s0.lambda - s1.lambda;
            const float inv_r0 = 1.0f / (h0 / h);
            /* midpoint: - 0.5 c0 D1;  heun: + alpha_t ((e^{-h} - 1)/h + 1) D1 */
            const float c1 = heun ? -(t.alpha * ((expf(-h) - 1.0f) / h + 1.0f)) : 0.5f * c0;
            for (size_t i = 0; i < n; i++) {
                float m0 = (x[i] - s0.sigma * eps[i]) / s0.alpha;
                float d1 = inv_r0 * (m0 - m1[i]);
                if (x0_out) x0_out[i] = m0;
                x_out[i] = ratio * x[i] - c0 * m0 - c1 * d1;
                m1[i] = m0;
            }
        }
    }
    st->prev_sigma = sigma_s0;
    if (st->n_outputs < 1000000) st->n_outputs++;
    return 0;
}

int dpmpp_order_for(const ocd_plan *p, int k_to) {
    const ocd_sched_config *c = &p->cfg;
    int final = k_to == p->n_steps &&
                (c->euler_at_final || (c->lower_order_final && p->n_steps < 15) ||
                 c->final_sigmas == OCD_FINAL_SIGMA_ZERO);
    return (c->solver_order == 1 || final) ? 1 : 2;
}

/* ---- plan-driven ------------------------------------------------------------------------- */

int sampler_step(const ocd_plan *p, dpmpp_state *st, int k_from, int k_to,
                 const float *x, const float *eps, float *x_out, float *x0_out, size_t n) {
    if (k_from < 0 || k_to <= k_from || k_to > p->n_steps)
        return ocd_fail("sampler_step: bad levels %d -> %d of a %d-step plan", k_from, k_to, p->n_steps);
    if (p->solver == OCD_SOLVER_DDIM) {
        float a_to = k_to == k_from + 1 ? p->alpha_bar_prev[k_from] : p->alpha_bar[k_to];
        ddim_move(p->alpha_bar[k_from], a_to, x, eps, x_out, x0_out, n);
        return 0;
    }
    if (p->solver == OCD_SOLVER_DPMPP_2M) {
        if (!st || st->n != n) return ocd_fail("sampler_step: DPM-Solver++ needs a state for %zu floats", n);
        return dpmpp_step(st, p->sigma[k_from], p->sigma[k_to], dpmpp_order_for(p, k_to), p->cfg.solver_heun,
                          x, eps, x_out, x0_out);
    }
    return ocd_fail("sampler_step: unknown solver %d", (int)p->solver);
}

int sampler_invert_step(const ocd_plan *p, int k, const float *x, const float *eps,
                        float *x_out, float *x0_out, size_t n) {
    if (k < 0 || k >= p->n_steps) return ocd_fail("sampler_invert_step: step %d of %d", k, p->n_steps);
    ddim_move(p->alpha_bar_prev[k], p->alpha_bar[k], x, eps, x_out, x0_out, n);
    return 0;
}
