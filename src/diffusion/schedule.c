#include "diffusion/schedule.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

void sched_config_default(ocd_sched_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->num_train_timesteps = 1000;
    cfg->beta_start = 0.00085;
    cfg->beta_end = 0.012;
    cfg->beta_schedule = OCD_BETAS_SCALED_LINEAR;
    cfg->set_alpha_to_one = 0;
    cfg->steps_offset = 1;
    cfg->spacing = OCD_SPACING_DEFAULT;
    cfg->solver_order = 2;
    cfg->solver_heun = 0;
    cfg->lower_order_final = 1;
    cfg->euler_at_final = 0;
    cfg->final_sigmas = OCD_FINAL_SIGMA_MIN;
}

/* ---- config JSON ---------------------------------------------------------------------- */

static int get_bool(const json_t *o, const char *key, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return ocd_fail("scheduler config: '%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int get_int(const json_t *o, const char *key, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return ocd_fail("scheduler config: '%s' must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < -1000000 || x > 1000000) return ocd_fail("scheduler config: '%s' = %lld out of range", key, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_num(const json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return ocd_fail("scheduler config: '%s' must be a number", key);
    *out = json_number_value(v);
    return 0;
}

/* Returns the string value of key, NULL when absent/null; sets *bad for a non-string. */
static const char *get_str(const json_t *o, const char *key, int *bad) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v)) { *bad = 1; ocd_fail("scheduler config: '%s' must be a string", key); return NULL; }
    return json_string_value(v);
}

/* A boolean option this engine does not implement: only `false` is accepted. */
static int must_be_false(const json_t *o, const char *key) {
    int b = 0;
    if (get_bool(o, key, &b)) return -1;
    if (b) return ocd_fail("scheduler config: '%s: true' is not supported", key);
    return 0;
}

int sched_config_from_json(ocd_sched_config *cfg, const struct json_t *obj) {
    const json_t *o = obj;
    if (!json_is_object(o)) return ocd_fail("scheduler config: not a JSON object");
    int bad = 0;
    const char *str;
    if (get_int(o, "num_train_timesteps", &cfg->num_train_timesteps)) return -1;
    if (get_num(o, "beta_start", &cfg->beta_start)) return -1;
    if (get_num(o, "beta_end", &cfg->beta_end)) return -1;
    if ((str = get_str(o, "beta_schedule", &bad))) {
        if (!strcmp(str, "scaled_linear")) cfg->beta_schedule = OCD_BETAS_SCALED_LINEAR;
        else if (!strcmp(str, "linear")) cfg->beta_schedule = OCD_BETAS_LINEAR;
        else if (!strcmp(str, "squaredcos_cap_v2")) cfg->beta_schedule = OCD_BETAS_SQUAREDCOS_CAP_V2;
        else return ocd_fail("scheduler config: beta_schedule '%s' is not supported", str);
    }
    if (bad) return -1;
    json_t *tb = json_object_get(o, "trained_betas");
    if (tb && !json_is_null(tb)) return ocd_fail("scheduler config: trained_betas is not supported");
    if (get_bool(o, "set_alpha_to_one", &cfg->set_alpha_to_one)) return -1;
    if (get_int(o, "steps_offset", &cfg->steps_offset)) return -1;
    if ((str = get_str(o, "timestep_spacing", &bad))) {
        if (!strcmp(str, "leading")) cfg->spacing = OCD_SPACING_LEADING;
        else if (!strcmp(str, "trailing")) cfg->spacing = OCD_SPACING_TRAILING;
        else if (!strcmp(str, "linspace")) cfg->spacing = OCD_SPACING_LINSPACE;
        else return ocd_fail("scheduler config: timestep_spacing '%s' is not supported", str);
    }
    if (bad) return -1;
    if ((str = get_str(o, "prediction_type", &bad)) && strcmp(str, "epsilon"))
        return ocd_fail("scheduler config: prediction_type '%s' is not supported (SD 1.x predicts epsilon)", str);
    if (bad) return -1;
    if ((str = get_str(o, "algorithm_type", &bad)) && strcmp(str, "dpmsolver++"))
        return ocd_fail("scheduler config: algorithm_type '%s' is not supported (only dpmsolver++)", str);
    if (bad) return -1;
    if (must_be_false(o, "clip_sample") || must_be_false(o, "thresholding") ||
        must_be_false(o, "rescale_betas_zero_snr") || must_be_false(o, "use_karras_sigmas") ||
        must_be_false(o, "use_lu_lambdas"))
        return -1;
    /* lambda_min_clipped: diffusers writes -inf as the string "-inf"; a finite clip would
     * change the DPM timesteps, which is not implemented. */
    json_t *lmc = json_object_get(o, "lambda_min_clipped");
    if (lmc && !json_is_null(lmc) && !(json_is_string(lmc) && !strcmp(json_string_value(lmc), "-inf")))
        return ocd_fail("scheduler config: a finite lambda_min_clipped is not supported");
    if (get_int(o, "solver_order", &cfg->solver_order)) return -1;
    if (cfg->solver_order != 1 && cfg->solver_order != 2)
        return ocd_fail("scheduler config: solver_order %d is not supported (1 or 2)", cfg->solver_order);
    if ((str = get_str(o, "solver_type", &bad))) {
        if (!strcmp(str, "midpoint")) cfg->solver_heun = 0;
        else if (!strcmp(str, "heun")) cfg->solver_heun = 1;
        else return ocd_fail("scheduler config: solver_type '%s' is not supported", str);
    }
    if (bad) return -1;
    if (get_bool(o, "lower_order_final", &cfg->lower_order_final)) return -1;
    if (get_bool(o, "euler_at_final", &cfg->euler_at_final)) return -1;
    if ((str = get_str(o, "final_sigmas_type", &bad))) {
        if (!strcmp(str, "zero")) cfg->final_sigmas = OCD_FINAL_SIGMA_ZERO;
        else if (!strcmp(str, "sigma_min")) cfg->final_sigmas = OCD_FINAL_SIGMA_MIN;
        else return ocd_fail("scheduler config: final_sigmas_type '%s' is not supported", str);
    }
    if (bad) return -1;
    if (cfg->num_train_timesteps < 2 || cfg->num_train_timesteps > OCD_MAX_STEPS)
        return ocd_fail("scheduler config: num_train_timesteps %d out of range 2..%d",
                        cfg->num_train_timesteps, OCD_MAX_STEPS);
    if (!(cfg->beta_start > 0 && cfg->beta_end > 0 && cfg->beta_start < 1 && cfg->beta_end < 1))
        return ocd_fail("scheduler config: beta_start/beta_end must lie in (0, 1)");
    if (cfg->steps_offset < 0 || cfg->steps_offset >= cfg->num_train_timesteps)
        return ocd_fail("scheduler config: steps_offset %d out of range", cfg->steps_offset);
    return 0;
}

int sched_config_load(ocd_sched_config *cfg, const char *path) {
    json_error_t err;
    json_t *o = json_load_file(path, 0, &err);
    if (!o) return ocd_fail("%s:%d: %s", path, err.line, err.text);
    sched_config_default(cfg);
    int rc = sched_config_from_json(cfg, o);
    json_decref(o);
    if (rc) return ocd_fail_context("%s", path);
    return 0;
}

/* ---- training schedule ---------------------------------------------------------------- */

/* torch.linspace(start, end, n, float32) on CPU: float32 step, both ends approached from their
 * own side (halfway split), as ATen's scalar kernel does. */
static void linspace_f32(float start, float end, int n, float *out) {
    float step = (end - start) / (float)(n - 1);
    int half = n / 2;
    for (int i = 0; i < n; i++)
        out[i] = i < half ? start + step * (float)i : end - step * (float)(n - i - 1);
}

static double cos_alpha_bar(double t) {
    double c = cos((t + 0.008) / 1.008 * 3.14159265358979323846 / 2);
    return c * c;
}

int sched_init(ocd_schedule *s, const ocd_sched_config *cfg) {
    memset(s, 0, sizeof *s);
    if (cfg) s->cfg = *cfg; else sched_config_default(&s->cfg);
    const int T = s->T = s->cfg.num_train_timesteps;
    if (T < 2 || T > OCD_MAX_STEPS) return ocd_fail("schedule: num_train_timesteps %d out of range", T);
    s->betas = ocd_malloc((size_t)T * sizeof(float));
    s->alphas_cumprod = ocd_malloc((size_t)T * sizeof(float));
    if (!s->betas || !s->alphas_cumprod) { sched_free(s); return -1; }
    switch (s->cfg.beta_schedule) {
    case OCD_BETAS_SCALED_LINEAR:
        /* torch.linspace(beta_start**0.5, beta_end**0.5, T, float32) ** 2 */
        linspace_f32((float)sqrt(s->cfg.beta_start), (float)sqrt(s->cfg.beta_end), T, s->betas);
        for (int i = 0; i < T; i++) s->betas[i] = s->betas[i] * s->betas[i];
        break;
    case OCD_BETAS_LINEAR:
        linspace_f32((float)s->cfg.beta_start, (float)s->cfg.beta_end, T, s->betas);
        break;
    case OCD_BETAS_SQUAREDCOS_CAP_V2:   /* betas_for_alpha_bar, float64 then float32 */
        for (int i = 0; i < T; i++) {
            double b = 1.0 - cos_alpha_bar((double)(i + 1) / T) / cos_alpha_bar((double)i / T);
            s->betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
        break;
    }
    /* alphas = 1 - betas in float32; torch's CPU cumprod accumulates in double and stores float. */
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        acc *= (double)(1.0f - s->betas[i]);
        s->alphas_cumprod[i] = (float)acc;
    }
    s->final_alpha_cumprod = s->cfg.set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    return 0;
}

void sched_free(ocd_schedule *s) {
    free(s->betas);
    free(s->alphas_cumprod);
    s->betas = s->alphas_cumprod = NULL;
}

float sched_alpha_bar(const ocd_schedule *s, int t) {
    if (t < 0) return s->final_alpha_cumprod;
    if (t >= s->T) t = s->T - 1;
    return s->alphas_cumprod[t];
}

float sched_sigma_of_alpha_bar(float alpha_bar) {
    return sqrtf((1.0f - alpha_bar) / alpha_bar);
}

/* ---- timestep tables -------------------------------------------------------------------- */

static int check_n(const ocd_schedule *s, int n) {
    if (n < 1 || n > s->T)
        return ocd_fail("number of inference steps %d out of range 1..%d", n, s->T);
    return 0;
}

/* numpy's linspace(0, stop, num)[i] (endpoint included), then round-half-to-even. */
static int32_t np_linspace_round(double stop, int num, int i) {
    if (num == 1 || i == num - 1) return (int32_t)rint(num == 1 ? 0.0 : stop);
    double step = stop / (double)(num - 1);
    return (int32_t)rint((double)i * step);
}

int sched_ddim_timesteps(const ocd_schedule *s, int n, int32_t *out) {
    if (check_n(s, n)) return -1;
    const int T = s->T;
    switch (s->cfg.spacing) {
    case OCD_SPACING_DEFAULT:
    case OCD_SPACING_LEADING:
        for (int k = 0; k < n; k++) out[k] = (n - 1 - k) * (T / n) + s->cfg.steps_offset;
        break;
    case OCD_SPACING_TRAILING:   /* round(arange(T, 0, -T/n)) - 1 */
        for (int k = 0; k < n; k++) out[k] = (int32_t)rint((double)T - (double)k * ((double)T / n)) - 1;
        break;
    case OCD_SPACING_LINSPACE:   /* round(linspace(0, T-1, n))[::-1] */
        for (int k = 0; k < n; k++) out[k] = np_linspace_round(T - 1, n, n - 1 - k);
        break;
    }
    for (int k = 0; k < n; k++)
        if (out[k] < 0 || out[k] >= T)
            return ocd_fail("DDIM timestep %d out of range (steps_offset %d too large?)", out[k], s->cfg.steps_offset);
    return 0;
}

int sched_ddim_prev_timestep(const ocd_schedule *s, int n, int t) {
    if (n < 1) return -1;   /* no valid run: treat as past the end rather than divide by zero */
    return t - s->T / n;
}

int sched_ddim_inverse_timesteps(const ocd_schedule *s, int n, int32_t *out) {
    if (sched_ddim_timesteps(s, n, out)) return -1;
    for (int i = 0, j = n - 1; i < j; i++, j--) { int32_t x = out[i]; out[i] = out[j]; out[j] = x; }
    return 0;
}

int sched_dpmpp_timesteps(const ocd_schedule *s, int n, int32_t *ts, float *sigmas) {
    if (check_n(s, n)) return -1;
    const int T = s->T;
    switch (s->cfg.spacing) {
    case OCD_SPACING_DEFAULT:
    case OCD_SPACING_LINSPACE:   /* round(linspace(0, T-1, n+1))[::-1][:-1] */
        for (int k = 0; k < n; k++) ts[k] = np_linspace_round(T - 1, n + 1, n - k);
        break;
    case OCD_SPACING_LEADING:    /* (arange(n+1) * (T // (n+1)))[::-1][:-1] + steps_offset */
        for (int k = 0; k < n; k++) ts[k] = (n - k) * (T / (n + 1)) + s->cfg.steps_offset;
        break;
    case OCD_SPACING_TRAILING:   /* round(arange(T, 0, -T/n)) - 1 */
        for (int k = 0; k < n; k++) ts[k] = (int32_t)rint((double)T - (double)k * ((double)T / n)) - 1;
        break;
    }
    for (int k = 0; k < n; k++) {
        if (ts[k] < 0 || ts[k] >= T)
            return ocd_fail("DPM-Solver++ timestep %d out of range", ts[k]);
        /* diffusers would silently drop repeated timesteps (np.unique), changing n */
        if (k > 0 && ts[k] >= ts[k - 1])
            return ocd_fail("DPM-Solver++ with %d steps repeats timestep %d; use fewer steps", n, ts[k]);
    }
    if (sigmas) {
        for (int k = 0; k < n; k++) sigmas[k] = sched_sigma_of_alpha_bar(s->alphas_cumprod[ts[k]]);
        sigmas[n] = s->cfg.final_sigmas == OCD_FINAL_SIGMA_ZERO ? 0.0f
                                                                : sched_sigma_of_alpha_bar(s->alphas_cumprod[0]);
    }
    return 0;
}

int sched_plan(ocd_plan *p, const ocd_schedule *s, ocd_solver solver, int n) {
    memset(p, 0, sizeof *p);
    p->solver = solver;
    p->cfg = s->cfg;
    p->n_steps = n;
    if (solver == OCD_SOLVER_DDIM) {
        if (sched_ddim_timesteps(s, n, p->timesteps)) return -1;
        for (int k = 0; k < n; k++) {
            p->alpha_bar[k] = s->alphas_cumprod[p->timesteps[k]];
            p->alpha_bar_prev[k] = sched_alpha_bar(s, sched_ddim_prev_timestep(s, n, p->timesteps[k]));
        }
        p->alpha_bar[n] = p->alpha_bar_prev[n - 1];
        for (int k = 0; k <= n; k++) p->sigma[k] = sched_sigma_of_alpha_bar(p->alpha_bar[k]);
    } else if (solver == OCD_SOLVER_DPMPP_2M) {
        if (sched_dpmpp_timesteps(s, n, p->timesteps, p->sigma)) return -1;
        for (int k = 0; k < n; k++) p->alpha_bar[k] = s->alphas_cumprod[p->timesteps[k]];
        p->alpha_bar[n] = s->cfg.final_sigmas == OCD_FINAL_SIGMA_ZERO ? 1.0f : s->alphas_cumprod[0];
        for (int k = 0; k < n; k++) p->alpha_bar_prev[k] = p->alpha_bar[k + 1];
    } else {
        return ocd_fail("sched_plan: unknown solver %d", (int)solver);
    }
    return 0;
}
