/* Scheduler probes: tables, single DDIM steps, DDIM and DPM-Solver++ trajectories driven by the
 * goldens' fake model eps(x, t) = 0.1 x + (t/1000) c. */
#include "app/probe_sched.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/probe_util.h"
#include "base/error.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "io/safetensors.h"

static const char *const KINDS[] = { "sched_tables", "sched_ddim_step", "sched_ddim_trajectory", "sched_dpmpp_2m" };

int probe_sched_handles(const char *kind) {
    for (size_t i = 0; i < sizeof KINDS / sizeof *KINDS; i++)
        if (!strcmp(kind, KINDS[i])) return 1;
    return 0;
}

/* ---- small helpers ------------------------------------------------------------------------ */

/* If name is PREFIX followed by only digits, returns that number, else -1. */
static int suffix_num(const char *name, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl)) return -1;
    const char *d = name + pl;
    if (!*d || strlen(d) > 6) return -1;
    for (const char *c = d; *c; c++) if (!isdigit((unsigned char)*c)) return -1;
    return atoi(d);
}

/* Scheduler config from params[key] (first key present), defaults otherwise. */
static int config_from_params(ocd_sched_config *cfg, const json_t *params, const char *const *keys, int nkeys) {
    sched_config_default(cfg);
    for (int i = 0; i < nkeys; i++) {
        const json_t *o = json_object_get(params, keys[i]);
        if (o) {
            if (sched_config_from_json(cfg, o)) return ocd_fail_context("params.%s", keys[i]);
            return 0;
        }
    }
    return 0;
}

static int param_int(const json_t *params, const char *key, int def) {
    json_t *v = json_object_get(params, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static int add_i32(st_writer *w, const char *name, const int32_t *v, int n) {
    int64_t shape[1] = { n };
    return st_writer_add(w, name, ST_I32, 1, shape, v);
}

static int add_f32_1d(st_writer *w, const char *name, const float *v, int n) {
    int64_t shape[1] = { n };
    return st_writer_add_f32(w, name, 1, shape, v);
}

/* Reads a float input tensor; *t_out gets its descriptor (for the shape). */
static float *input(const st_file *f, const char *name, const st_tensor **t_out) {
    const st_tensor *t = st_find(f, name);
    if (!t) { ocd_fail("input tensor '%s' missing", name); return NULL; }
    if (t->ndim >= ST_MAX_DIMS) { ocd_fail("input tensor '%s' has too many dims", name); return NULL; }
    *t_out = t;
    return st_to_f32(t);
}

/* ---- sched_tables ------------------------------------------------------------------------- */

static const char *const TABLE_DEFAULT_NAMES[] = {
    "betas", "alphas_cumprod", "final_alpha_cumprod", "ddim_timesteps_50", "ddim_timesteps_20",
    "ddim_timesteps_10", "ddim_alphas_cumprod_50", "ddim_alphas_cumprod_20", "ddim_alphas_cumprod_prev_50",
    "ddim_alphas_cumprod_prev_20", "ddim_inverse_timesteps_10", "dpmpp_timesteps_20", "dpmpp_sigmas_20",
};

static int table_output(st_writer *w, const char *name, const ocd_schedule *sd, const ocd_schedule *sp) {
    int32_t ts[OCD_MAX_STEPS];
    float v[OCD_MAX_STEPS + 1];
    int n;
    if (!strcmp(name, "betas")) return add_f32_1d(w, name, sd->betas, sd->T);
    if (!strcmp(name, "alphas_cumprod")) return add_f32_1d(w, name, sd->alphas_cumprod, sd->T);
    if (!strcmp(name, "final_alpha_cumprod")) return add_f32_1d(w, name, &sd->final_alpha_cumprod, 1);
    if ((n = suffix_num(name, "ddim_timesteps_")) > 0) {
        if (sched_ddim_timesteps(sd, n, ts)) return -1;
        return add_i32(w, name, ts, n);
    }
    if ((n = suffix_num(name, "ddim_inverse_timesteps_")) > 0) {
        if (sched_ddim_inverse_timesteps(sd, n, ts)) return -1;
        return add_i32(w, name, ts, n);
    }
    int prev = 0;
    if ((n = suffix_num(name, "ddim_alphas_cumprod_")) > 0 || (prev = 1, n = suffix_num(name, "ddim_alphas_cumprod_prev_")) > 0) {
        if (sched_ddim_timesteps(sd, n, ts)) return -1;
        for (int k = 0; k < n; k++)
            v[k] = sched_alpha_bar(sd, prev ? sched_ddim_prev_timestep(sd, n, ts[k]) : ts[k]);
        return add_f32_1d(w, name, v, n);
    }
    if ((n = suffix_num(name, "dpmpp_timesteps_")) > 0) {
        if (sched_dpmpp_timesteps(sp, n, ts, NULL)) return -1;
        return add_i32(w, name, ts, n);
    }
    if ((n = suffix_num(name, "dpmpp_sigmas_")) > 0) {
        if (sched_dpmpp_timesteps(sp, n, ts, v)) return -1;
        return add_f32_1d(w, name, v, n + 1);
    }
    return ocd_fail("sched_tables: unknown output '%s'", name);
}

static int run_tables(const json_t *spec, st_writer *w) {
    const json_t *params = json_object_get(spec, "params");
    static const char *const kd[] = { "ddim_config", "scheduler_config_json", "scheduler_config" };
    static const char *const kp[] = { "dpmpp_config", "scheduler_config_json", "scheduler_config" };
    ocd_sched_config cd, cp;
    if (config_from_params(&cd, params, kd, 3) || config_from_params(&cp, params, kp, 3)) return -1;
    ocd_schedule sd, sp;
    if (sched_init(&sd, &cd)) return -1;
    if (sched_init(&sp, &cp)) { sched_free(&sd); return -1; }
    int rc = 0;
    const json_t *outs = json_object_get(spec, "outputs");
    if (json_is_object(outs) && json_object_size(outs)) {
        const char *name;
        json_t *val;
        json_object_foreach((json_t *)outs, name, val) {
            (void)val;
            if ((rc = table_output(w, name, &sd, &sp))) break;
        }
    } else {
        for (size_t i = 0; i < sizeof TABLE_DEFAULT_NAMES / sizeof *TABLE_DEFAULT_NAMES && !rc; i++)
            rc = table_output(w, TABLE_DEFAULT_NAMES[i], &sd, &sp);
    }
    sched_free(&sd);
    sched_free(&sp);
    return rc;
}

/* ---- sched_ddim_step ---------------------------------------------------------------------- */

static int run_ddim_step(const st_file *f, const json_t *spec, st_writer *w) {
    const json_t *params = json_object_get(spec, "params");
    static const char *const keys[] = { "ddim_config", "scheduler_config", "scheduler_config_json" };
    ocd_sched_config cfg;
    if (config_from_params(&cfg, params, keys, 3)) return -1;
    int n_steps = param_int(params, "num_inference_steps", 50);
    /* the timesteps: from the outputs' names when the spec lists them */
    int tlist[64], nt = 0;
    const json_t *outs = json_object_get(spec, "outputs");
    if (json_is_object(outs)) {
        const char *name;
        json_t *val;
        json_object_foreach((json_t *)outs, name, val) {
            (void)val;
            int t = suffix_num(name, "x_prev_t");
            if (t >= 0 && nt < 64) tlist[nt++] = t;
        }
    }
    if (!nt) { tlist[0] = 981; tlist[1] = 501; tlist[2] = 21; tlist[3] = 1; nt = 4; }

    ocd_schedule s;
    if (sched_init(&s, &cfg)) return -1;
    const st_tensor *ts, *te;
    float *x = input(f, "sample", &ts), *eps = x ? input(f, "model_output", &te) : NULL;
    float *out = NULL, *x0 = NULL;
    int rc = -1;
    if (!x || !eps) goto done;
    if (ts->numel != te->numel) { ocd_fail("sample and model_output differ in size"); goto done; }
    size_t n = (size_t)ts->numel;
    out = ocd_malloc(n * sizeof(float));
    x0 = ocd_malloc(n * sizeof(float));
    if (!out || !x0) goto done;
    for (int i = 0; i < nt; i++) {
        int t = tlist[i];
        if (t < 0 || t >= s.T) { ocd_fail("timestep %d out of range", t); goto done; }
        char name[64];
        ddim_step(&s, n_steps, t, x, eps, out, x0, n);
        snprintf(name, sizeof name, "x_prev_t%d", t);
        if (st_writer_add_f32(w, name, ts->ndim, ts->shape, out)) goto done;
        snprintf(name, sizeof name, "x0_pred_t%d", t);
        if (st_writer_add_f32(w, name, ts->ndim, ts->shape, x0)) goto done;
        ddim_invert_step(&s, n_steps, t, x, eps, out, x0, n);
        snprintf(name, sizeof name, "x_next_t%d", t);
        if (st_writer_add_f32(w, name, ts->ndim, ts->shape, out)) goto done;
        snprintf(name, sizeof name, "inv_x0_pred_t%d", t);
        if (st_writer_add_f32(w, name, ts->ndim, ts->shape, x0)) goto done;
    }
    rc = 0;
done:
    free(x); free(eps); free(out); free(x0);
    sched_free(&s);
    return rc;
}

/* ---- trajectories ------------------------------------------------------------------------- */

static int run_trajectory(const st_file *f, const json_t *spec, st_writer *w, ocd_solver solver) {
    const json_t *params = json_object_get(spec, "params");
    static const char *const keys[] = { "scheduler_config", "ddim_config", "scheduler_config_json" };
    static const char *const keys_dpm[] = { "scheduler_config", "dpmpp_config", "scheduler_config_json" };
    ocd_sched_config cfg;
    if (config_from_params(&cfg, params, solver == OCD_SOLVER_DDIM ? keys : keys_dpm, 3)) return -1;
    int n_steps = param_int(params, "num_inference_steps", solver == OCD_SOLVER_DDIM ? 10 : 20);
    if (n_steps < 1 || n_steps > OCD_MAX_STEPS) return ocd_fail("num_inference_steps %d out of range", n_steps);

    ocd_schedule s;
    if (sched_init(&s, &cfg)) return -1;
    ocd_plan *p = ocd_malloc(sizeof *p);
    const st_tensor *tx, *tc;
    float *x = input(f, "x_T", &tx), *c = x ? input(f, "c", &tc) : NULL;
    float *traj = NULL, *x0s = NULL, *eps = NULL, *hist = NULL;
    int rc = -1;
    if (!p || !x || !c) goto done;
    if (tx->numel != tc->numel) { ocd_fail("x_T and c differ in size"); goto done; }
    if (sched_plan(p, &s, solver, n_steps)) goto done;
    size_t n = (size_t)tx->numel, N = (size_t)n_steps;
    traj = ocd_malloc((N + 1) * n * sizeof(float));
    x0s = ocd_malloc(N * n * sizeof(float));
    eps = ocd_malloc(n * sizeof(float));
    hist = ocd_malloc(n * sizeof(float));
    if (!traj || !x0s || !eps || !hist) goto done;
    dpmpp_state st;
    dpmpp_init(&st, hist, n);
    memcpy(traj, x, n * sizeof(float));
    for (int k = 0; k < n_steps; k++) {
        float *cur = traj + (size_t)k * n, *next = cur + n;
        /* the fake model, float32 like torch: 0.1 * x + (t / 1000) * c */
        const float tt = (float)(p->timesteps[k] / 1000.0);
        for (size_t i = 0; i < n; i++) eps[i] = 0.1f * cur[i] + tt * c[i];
        if (sampler_step(p, &st, k, k + 1, cur, eps, next, x0s + (size_t)k * n, n)) goto done;
    }
    int64_t shape[ST_MAX_DIMS];
    shape[0] = n_steps + 1;
    for (int d = 0; d < tx->ndim; d++) shape[d + 1] = tx->shape[d];
    if (add_i32(w, "timesteps", p->timesteps, n_steps) ||
        st_writer_add_f32(w, "trajectory", tx->ndim + 1, shape, traj) ||
        st_writer_add_f32(w, "final", tx->ndim, tx->shape, traj + N * n))
        goto done;
    if (solver == OCD_SOLVER_DPMPP_2M) {
        shape[0] = n_steps;
        if (st_writer_add_f32(w, "x0_pred", tx->ndim + 1, shape, x0s)) goto done;
    }
    rc = 0;
done:
    free(p); free(x); free(c); free(traj); free(x0s); free(eps); free(hist);
    sched_free(&s);
    return rc;
}

/* ---- entry -------------------------------------------------------------------------------- */

int probe_sched(const char *kind, const char *in_path, const char *out_path) {
    if (!probe_sched_handles(kind)) return ocd_fail("probe: unknown scheduler case '%s'", kind);
    st_file *f;
    json_t *spec;
    if (probe_open(in_path, &f, &spec)) return -1;
    st_writer *w = st_writer_new();
    int rc = w ? 0 : -1;
    if (!rc) {
        if (!strcmp(kind, "sched_tables")) rc = run_tables(spec, w);
        else if (!strcmp(kind, "sched_ddim_step")) rc = run_ddim_step(f, spec, w);
        else if (!strcmp(kind, "sched_ddim_trajectory")) rc = run_trajectory(f, spec, w, OCD_SOLVER_DDIM);
        else rc = run_trajectory(f, spec, w, OCD_SOLVER_DPMPP_2M);
    }
    if (!rc) rc = st_writer_save(w, out_path);
    if (rc) ocd_fail_context("probe %s", kind);
    st_writer_free(w);
    json_decref(spec);
    st_close(f);
    return rc;
}
