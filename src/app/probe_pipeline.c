/* Pipeline probes: text-to-image and DDIM inversion + regeneration on a golden's inputs. */
#include "app/probe_pipeline.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/probe_util.h"
#include "base/error.h"
#include "diffusion/pipeline.h"
#include "io/safetensors.h"

static const char *const KINDS[] = {"pipeline_txt2img", "pipeline_ddim_inversion"};

int probe_pipeline_handles(const char *kind) {
    for (size_t i = 0; i < sizeof KINDS / sizeof *KINDS; i++)
        if (!strcmp(kind, KINDS[i])) return 1;
    return 0;
}

/* ---- inputs and params ----------------------------------------------------------------------- */

/* ids [1, 77] (or [77]) into out[77]. */
static int input_ids(const st_file *f, const char *name, int32_t *out, int n_pos) {
    const st_tensor *t = st_find(f, name);
    if (!t) return ocd_fail("input tensor '%s' missing", name);
    if (t->numel != n_pos || t->ndim > 2 || (t->ndim == 2 && t->shape[0] != 1))
        return ocd_fail("input '%s' must be [1, %d] token ids", name, n_pos);
    return st_read_i32(t, out);
}

/* A batch-1 float tensor [1, C, H, W]. */
static float *input_nchw(const st_file *f, const char *name, int C, int *H, int *W) {
    const st_tensor *t = st_find(f, name);
    if (!t) { ocd_fail("input tensor '%s' missing", name); return NULL; }
    if (t->ndim != 4 || t->shape[0] != 1 || t->shape[1] != C || t->shape[2] < 1 || t->shape[3] < 1) {
        ocd_fail("input '%s' must be [1, %d, H, W]", name, C);
        return NULL;
    }
    *H = (int)t->shape[2];
    *W = (int)t->shape[3];
    return st_to_f32(t);
}

static double param_num(const json_t *params, const char *key, double def) {
    json_t *v = json_object_get(params, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

/* Scheduler config from params[key] when present (else the model's, *have = 0); the solver
 * follows the config's class (DPMSolverMultistep* -> DPM-Solver++, anything else DDIM). */
static int param_sched(const json_t *params, const char *key, ocd_sched_config *cfg, int *have, ocd_solver *solver) {
    const json_t *o = json_object_get(params, key);
    *have = 0;
    if (solver) *solver = OCD_SOLVER_DDIM;
    if (!o) return 0;
    sched_config_default(cfg);
    if (sched_config_from_json(cfg, o)) return ocd_fail_context("params.%s", key);
    const char *cls = json_string_value(json_object_get(o, "class"));
    if (!cls) cls = json_string_value(json_object_get(o, "_class_name"));
    if (solver && cls && strstr(cls, "DPMSolverMultistep")) *solver = OCD_SOLVER_DPMPP_2M;
    *have = 1;
    return 0;
}

static int param_steps(const json_t *params, int *steps) {
    double s = param_num(params, "num_inference_steps", 50);
    if (!(s >= 1 && s <= OCD_MAX_STEPS) || s != (int)s) return ocd_fail("num_inference_steps must be an integer in 1..%d", OCD_MAX_STEPS);
    *steps = (int)s;
    return 0;
}

static int add_i32(st_writer *w, const char *name, const int32_t *v, int n) {
    return st_writer_add(w, name, ST_I32, 1, (int64_t[]){n}, v);
}

/* [lead..., 1, C, h, w]: the goldens keep the batch dim inside trajectories */
static int add_lat(st_writer *w, const char *name, const float *v, int lead, int C, int h, int w_) {
    if (lead < 0) return st_writer_add_f32(w, name, 4, (int64_t[]){1, C, h, w_}, v);
    return st_writer_add_f32(w, name, 5, (int64_t[]){lead, 1, C, h, w_}, v);
}

/* ---- pipeline_txt2img ------------------------------------------------------------------------ */

static int run_txt2img(sd_model *m, const st_file *f, const json_t *params, st_writer *w) {
    ocd_sched_config cfg;
    ocd_solver solver;
    int have_cfg, steps = 0, h = 0, wl = 0, C = m->unet_cfg.in_ch, n_pos = m->clip_cfg.n_pos, D = m->clip_cfg.hidden;
    if (param_sched(params, "scheduler_config", &cfg, &have_cfg, &solver) || param_steps(params, &steps)) return -1;
    if (param_num(params, "eta", 0) != 0) return ocd_fail("eta %g: only deterministic DDIM (eta 0) is implemented",
                                                         param_num(params, "eta", 0));
    pipe_ctx p;
    if (pipe_init(&p, m, have_cfg ? &cfg : NULL)) return -1;
    p.scaling = (float)param_num(params, "scaling_factor", p.scaling);
    float g = (float)param_num(params, "guidance_scale", 7.5);

    int32_t *ids = malloc(sizeof(int32_t) * 2 * n_pos);        /* [2, 77] uncond, cond */
    float *emb = malloc(sizeof(float) * 2 * n_pos * D);         /* [2, 77, D] */
    float *lat = input_nchw(f, "init_noise", C, &h, &wl);       /* [C, h, w] */
    int f8 = pipe_vae_factor(&p), rc = -1;
    size_t n = (size_t)C * h * wl;
    float *ltraj = malloc(sizeof(float) * (steps + 1) * n);     /* [N+1, C, h, w] */
    float *etraj = malloc(sizeof(float) * steps * n);           /* [N, C, h, w] */
    float *img = malloc(sizeof(float) * 3 * (size_t)h * f8 * wl * f8);  /* [3, H, W] */
    int32_t *ts = malloc(sizeof(int32_t) * steps);
    if (!lat) goto done;
    if (!ids || !emb || !ltraj || !etraj || !img || !ts) { ocd_fail("out of memory"); goto done; }
    if (input_ids(f, "uncond_ids", ids, n_pos) || input_ids(f, "cond_ids", ids + n_pos, n_pos) ||
        pipe_encode_ids(&p, ids, 2, emb))
        goto done;
    pipe_loop L = {.solver = solver, .steps = steps, .guidance = g, .latents_traj = ltraj, .eps_traj = etraj, .timesteps = ts};
    if (pipe_sample(&p, &L, emb, emb + (size_t)n_pos * D, lat, h, wl) || pipe_vae_decode(&p, lat, h, wl, img)) goto done;
    int H = h * f8, W = wl * f8;
    if (st_writer_add_f32(w, "text_embeddings", 3, (int64_t[]){2, n_pos, D}, emb) || add_i32(w, "timesteps", ts, steps) ||
        add_lat(w, "latents_trajectory", ltraj, steps + 1, C, h, wl) ||
        add_lat(w, "noise_pred_trajectory", etraj, steps, C, h, wl) || add_lat(w, "latents", lat, -1, C, h, wl) ||
        st_writer_add_f32(w, "image", 4, (int64_t[]){1, 3, H, W}, img))
        goto done;
    /* the pipeline's postprocessing before 8-bit conversion */
    for (size_t i = 0; i < (size_t)3 * H * W; i++) {
        float v = img[i] / 2 + 0.5f;
        img[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
    rc = st_writer_add_f32(w, "image_01", 4, (int64_t[]){1, 3, H, W}, img);
done:
    free(ids); free(emb); free(lat); free(ltraj); free(etraj); free(img); free(ts);
    pipe_free(&p);
    return rc;
}

/* ---- pipeline_ddim_inversion ----------------------------------------------------------------- */

static int run_inversion(sd_model *m, const st_file *f, const json_t *params, st_writer *w) {
    ocd_sched_config cfg, icfg;
    int have_cfg, have_icfg, steps = 0, H = 0, W = 0, C = m->unet_cfg.in_ch, n_pos = m->clip_cfg.n_pos, D = m->clip_cfg.hidden;
    if (param_sched(params, "ddim_config", &cfg, &have_cfg, NULL) ||
        param_sched(params, "ddim_inverse_config", &icfg, &have_icfg, NULL) || param_steps(params, &steps))
        return -1;
    pipe_ctx p;
    if (pipe_init(&p, m, have_cfg ? &cfg : NULL)) return -1;
    p.scaling = (float)param_num(params, "scaling_factor", p.scaling);
    ocd_schedule isched;
    int have_isched = have_icfg && !sched_init(&isched, &icfg);
    if (have_icfg && !have_isched) { pipe_free(&p); return -1; }

    int32_t *ids = malloc(sizeof(int32_t) * 2 * n_pos);        /* [2, 77] uncond, cond */
    float *emb = malloc(sizeof(float) * 2 * n_pos * D);         /* [2, 77, D] */
    float *image = input_nchw(f, "image", 3, &H, &W);           /* [3, H, W] */
    int f8 = pipe_vae_factor(&p), h = H / f8, wl = W / f8, rc = -1;
    size_t n = (size_t)C * h * wl;
    float *itraj = malloc(sizeof(float) * (steps + 1) * n);     /* [N+1, C, h, w] */
    float *lat = malloc(sizeof(float) * n);                     /* [C, h, w] */
    float *out = malloc(sizeof(float) * 3 * (size_t)H * W);     /* [3, H, W] */
    int32_t *ts = malloc(sizeof(int32_t) * steps);
    if (!image) goto done;
    if (!ids || !emb || !itraj || !lat || !out || !ts) { ocd_fail("out of memory"); goto done; }
    if (H % f8 || W % f8) { ocd_fail("image %dx%d: sides must be multiples of %d", W, H, f8); goto done; }
    if (input_ids(f, "uncond_ids", ids, n_pos) || input_ids(f, "cond_ids", ids + n_pos, n_pos) ||
        pipe_encode_ids(&p, ids, 2, emb))
        goto done;
    const float *eu = emb, *ec = emb + (size_t)n_pos * D;
    if (pipe_vae_encode(&p, image, H, W, itraj)) goto done;
    memcpy(lat, itraj, sizeof(float) * n);
    pipe_loop inv = {.solver = OCD_SOLVER_DDIM, .steps = steps, .guidance = (float)param_num(params, "guidance_inversion", 1),
                     .sched = have_isched ? &isched : NULL, .latents_traj = itraj, .timesteps = ts};
    if (pipe_invert(&p, &inv, eu, ec, lat, h, wl)) goto done;
    if (add_lat(w, "z0", itraj, -1, C, h, wl) || add_i32(w, "inverse_timesteps", ts, steps) ||
        add_lat(w, "inversion_trajectory", itraj, steps + 1, C, h, wl) || add_lat(w, "inverted_latent", lat, -1, C, h, wl))
        goto done;
    /* two regenerations from the inverted latent: guidance 1 (reconstruction) and with CFG */
    static const char *const gkey[2] = {"guidance_reconstruction", "guidance_regen_cfg"};
    static const char *const lname[2] = {"recon_latents", "regen_cfg_latents"}, *const iname[2] = {"recon_image", "regen_cfg_image"};
    const double gdef[2] = {1.0, 7.5};
    for (int r = 0; r < 2; r++) {
        memcpy(lat, itraj + (size_t)steps * n, sizeof(float) * n);
        pipe_loop L = {.solver = OCD_SOLVER_DDIM, .steps = steps, .guidance = (float)param_num(params, gkey[r], gdef[r])};
        if (pipe_sample(&p, &L, eu, ec, lat, h, wl) || pipe_vae_decode(&p, lat, h, wl, out) ||
            add_lat(w, lname[r], lat, -1, C, h, wl) || st_writer_add_f32(w, iname[r], 4, (int64_t[]){1, 3, H, W}, out))
            goto done;
    }
    rc = 0;
done:
    free(ids); free(emb); free(image); free(itraj); free(lat); free(out); free(ts);
    if (have_isched) sched_free(&isched);
    pipe_free(&p);
    return rc;
}

/* ---- entry ----------------------------------------------------------------------------------- */

int probe_pipeline(const char *kind, const args *a, const char *in_path, const char *out_path) {
    if (!probe_pipeline_handles(kind)) return ocd_fail("probe: unknown pipeline case '%s'", kind);
    st_file *f;
    json_t *spec;
    if (probe_open(in_path, &f, &spec)) return -1;
    const json_t *params = json_object_get(spec, "params");
    sd_model m;
    st_writer *w = NULL;
    int rc = app_load_model(a, &m);
    if (!rc) {
        rc = (w = st_writer_new()) ? 0 : -1;
        if (!rc) rc = !strcmp(kind, "pipeline_txt2img") ? run_txt2img(&m, f, params, w) : run_inversion(&m, f, params, w);
        if (!rc) rc = st_writer_save(w, out_path);
        st_writer_free(w);
        sd_model_free(&m);
    }
    if (rc) ocd_fail_context("probe %s", kind);
    json_decref(spec);
    st_close(f);
    return rc;
}
