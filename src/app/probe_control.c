/* Probes of the ControlNet goldens (see probe_control.h). */
#include "app/probe_control.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/probe_util.h"
#include "base/error.h"
#include "edit/canny.h"
#include "edit/controlvideo.h"
#include "io/safetensors.h"
#include "nn/controlnet.h"

int probe_control_handles(const char *kind) {
    return !strcmp(kind, "controlnet") || !strcmp(kind, "canny") || !strcmp(kind, "controlvideo");
}

static double param_num(const json_t *params, const char *key, double def) {
    json_t *v = json_object_get(params, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

/* A float input with the given rank; shape out through t. */
static float *input_f32(const st_file *f, const char *name, int ndim, const st_tensor **t) {
    *t = st_find(f, name);
    if (!*t) { ocd_fail("input tensor '%s' missing", name); return NULL; }
    if ((*t)->ndim != ndim) { ocd_fail("input '%s' has %d dims, expected %d", name, (*t)->ndim, ndim); return NULL; }
    return st_to_f32(*t);
}

static int load_controlnet(const args *a, controlnet_model *cm) {
    const char *path = args_str(a, "--controlnet", NULL);
    if (!path) return ocd_fail("no ControlNet: give --controlnet PATH (diffusers folder or control_model.* .safetensors)");
    return controlnet_load(cm, path, 0);
}

/* ---- controlnet_forward* ---------------------------------------------------------------------- */

static int run_controlnet(sd_model *m, controlnet *cn, const st_file *f, const json_t *params, st_writer *w) {
    const st_tensor *lt, *tt, *ct, *qt, *st;
    float *lat = input_f32(f, "latent", 4, &lt), *ts = lat ? input_f32(f, "timestep", 1, &tt) : NULL;
    float *ctx = ts ? input_f32(f, "context", 3, &ct) : NULL, *cond = ctx ? input_f32(f, "cond", 4, &qt) : NULL;
    float *eps = NULL;
    int rc = -1;
    controlnet_out co = {0};
    if (!cond) goto done;
    float scale = (float)param_num(params, "conditioning_scale", 1.0);
    if ((st = st_find(f, "conditioning_scale")) && st->numel == 1) {
        float s;
        if (st_read_f32(st, &s)) goto done;
        scale = s;
    }
    const int B = (int)lt->shape[0], C = (int)lt->shape[1], h = (int)lt->shape[2], wl = (int)lt->shape[3];
    if (tt->numel != B || ct->shape[0] != B || qt->shape[0] != B || C != m->unet_cfg.in_ch) {
        ocd_fail("controlnet inputs disagree: latent [%d,%d,..], %lld timesteps, %lld contexts, %lld conditions", B, C,
                 (long long)tt->numel, (long long)ct->shape[0], (long long)qt->shape[0]);
        goto done;
    }
    if (controlnet_out_alloc(&co, cn, B, h, wl) || !(eps = ocd_malloc(sizeof(float) * B * m->unet_cfg.out_ch * h * wl))) goto done;
    if (controlnet_forward(cn, lat, ts, ctx, (int)ct->shape[1], B, h, wl, cond, scale, 0, &co)) goto done;
    unet_residuals res;
    controlnet_out_residuals(&co, &res);
    if (unet_forward_res(m->unet, lat, ts, ctx, (int)ct->shape[1], B, h, wl, NULL, &res, eps)) goto done;
    char name[32];
    for (int i = 0; i < co.n; i++) {
        snprintf(name, sizeof name, "down_res_%d", i);
        if (st_writer_add_f32(w, name, 4, (int64_t[]){B, co.c[i], co.h[i], co.w[i]}, co.down[i])) goto done;
    }
    if (st_writer_add_f32(w, "mid_res", 4, (int64_t[]){B, co.mid_c, co.mid_h, co.mid_w}, co.mid) ||
        st_writer_add_f32(w, "eps", 4, (int64_t[]){B, m->unet_cfg.out_ch, h, wl}, eps))
        goto done;
    rc = 0;
done:
    controlnet_out_free(&co);
    free(lat); free(ts); free(ctx); free(cond); free(eps);
    return rc;
}

/* ---- canny ------------------------------------------------------------------------------------ */

static int run_canny(const st_file *f, st_writer *w) {
    const st_tensor *t = st_find(f, "image");
    if (!t || t->dtype != ST_U8 || t->ndim != 4 || t->shape[3] != 3) return ocd_fail("canny needs image U8 [N, H, W, 3]");
    const int N = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
    const size_t plane = (size_t)H * W;
    uint8_t *er = malloc(N * plane), *g = malloc(N * plane), *eg = malloc(N * plane);
    int rc = -1;
    if (!er || !g || !eg) { ocd_fail("out of memory"); goto done; }
    for (int i = 0; i < N; i++) {
        const uint8_t *img = (const uint8_t *)t->data + i * plane * 3;
        canny_rgb_to_gray(img, W, H, g + i * plane);
        if (canny_u8(img, W, H, 3, CANNY_LOW, CANNY_HIGH, er + i * plane) ||
            canny_u8(g + i * plane, W, H, 1, CANNY_LOW, CANNY_HIGH, eg + i * plane))
            goto done;
    }
    int64_t sh[3] = {N, H, W};
    rc = st_writer_add(w, "edges_rgb", ST_U8, 3, sh, er) || st_writer_add(w, "gray", ST_U8, 3, sh, g) ||
         st_writer_add(w, "edges_gray", ST_U8, 3, sh, eg) ? -1 : 0;
done:
    free(er); free(g); free(eg);
    return rc;
}

/* ---- controlvideo ----------------------------------------------------------------------------- */

static int read_ids(const st_file *f, const char *name, int32_t *ids, int n_pos) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->numel != n_pos) return ocd_fail("input '%s' must be [1, %d] token ids", name, n_pos);
    return st_read_i32(t, ids);
}

/* window from params.key_frames (checked against C.4), 0 when absent. */
static int param_window(const json_t *params, int F, int *window) {
    const json_t *k = json_object_get(params, "key_frames");
    *window = 0;
    if (!json_is_array(k)) return 0;
    if (json_array_size(k) < 2) return ocd_fail("params.key_frames: needs at least two key frames");
    *window = (int)(json_integer_value(json_array_get(k, 1)) - json_integer_value(json_array_get(k, 0))) + 1;
    if (json_is_integer(json_object_get(params, "window_size"))) *window = (int)json_integer_value(json_object_get(params, "window_size"));
    int *mine = malloc(sizeof(int) * (F + 1));
    if (!mine) return ocd_fail("out of memory");
    int n = cv_key_frames(F, *window, mine), ok = n == (int)json_array_size(k);
    for (int i = 0; ok && i < n; i++) ok = mine[i] == json_integer_value(json_array_get(k, i));
    free(mine);
    return ok ? 0 : ocd_fail("params.key_frames disagree with the hierarchical sampler's key frames for window %d", *window);
}

static int run_controlvideo(sd_model *m, controlnet *cn, const st_file *f, const json_t *params, st_writer *w) {
    const int n_pos = m->clip_cfg.n_pos, D = m->clip_cfg.hidden, C = m->unet_cfg.in_ch;
    const st_tensor *nt, *ct = st_find(f, "condition");
    if (!ct || ct->dtype != ST_U8 || ct->ndim != 4) return ocd_fail("controlvideo needs condition U8 [F, 3, H, W]");
    const int F = (int)ct->shape[0], H = (int)ct->shape[2], W = (int)ct->shape[3];
    cv_params prm;
    cv_default_params(&prm);
    prm.steps = (int)param_num(params, "num_inference_steps", 50);
    prm.guidance = (float)param_num(params, "guidance_scale", 12.5);
    prm.control_scale = (float)param_num(params, "controlnet_conditioning_scale", 1.0);
    prm.n_smooth = 0;
    const json_t *ss = json_object_get(params, "smooth_steps");
    for (size_t i = 0; json_is_array(ss) && i < json_array_size(ss) && i < CV_MAX_SMOOTH; i++)
        prm.smooth_steps[prm.n_smooth++] = (int)json_integer_value(json_array_get(ss, i));
    const char *resid = json_string_value(json_object_get(params, "controlnet_residuals"));
    prm.residuals_asis = resid && !strncmp(resid, "as published", 12);
    if (param_num(params, "eta", 0) != 0) return ocd_fail("eta %g: only deterministic DDIM is implemented", param_num(params, "eta", 0));
    if (prm.steps < 1 || prm.steps > OCD_MAX_STEPS) return ocd_fail("params.num_inference_steps out of range");
    if (param_window(params, F, &prm.window)) return -1;
    float *noise = input_f32(f, "init_noise", 4, &nt);
    if (!noise) return -1;
    const int h = (int)nt->shape[2], wl = (int)nt->shape[3];
    const size_t n = (size_t)F * C * h * wl;
    pipe_ctx p;
    int rc = -1, have_p = 0;
    int32_t ids[2 * 77];
    float *emb = malloc(sizeof(float) * 2 * n_pos * D), *cond = malloc(sizeof(float) * ct->numel);
    float *ltraj = malloc(sizeof(float) * (prm.steps + 1) * n), *etraj = malloc(sizeof(float) * prm.steps * n);
    float *frames = malloc(sizeof(float) * (size_t)F * 3 * H * W);
    int32_t *ts = malloc(sizeof(int32_t) * prm.steps);
    if (!emb || !cond || !ltraj || !etraj || !frames || !ts) { ocd_fail("out of memory"); goto done; }
    if (nt->shape[0] != 1 || nt->shape[1] != C) { ocd_fail("init_noise must be [1, %d, h, w]", C); goto done; }
    if (n_pos > 77 || read_ids(f, "uncond_ids", ids, n_pos) || read_ids(f, "cond_ids", ids + n_pos, n_pos)) goto done;
    for (int64_t i = 0; i < ct->numel; i++) cond[i] = ((const uint8_t *)ct->data)[i] / 255.0f;
    if (pipe_init(&p, m, NULL)) goto done;
    have_p = 1;
    p.scaling = (float)param_num(params, "scaling_factor", p.scaling);
    if (pipe_encode_ids(&p, ids, 2, emb)) goto done;
    if (H != h * controlnet_cond_factor(controlnet_get_config(cn)) || W != wl * controlnet_cond_factor(controlnet_get_config(cn))) {
        ocd_fail("condition %dx%d does not match the %dx%d latent", W, H, wl, h);
        goto done;
    }
    prm.latents_traj = ltraj, prm.eps_traj = etraj, prm.timesteps = ts;
    if (cv_generate(&p, cn, &prm, emb, cond, F, noise, h, wl, ltraj + (size_t)prm.steps * n, NULL)) goto done;
    const float *lat = ltraj + (size_t)prm.steps * n;
    if (cv_decode(&p, lat, F, h, wl, frames)) goto done;
    if (st_writer_add_f32(w, "text_embeddings", 3, (int64_t[]){2, n_pos, D}, emb) ||
        st_writer_add(w, "timesteps", ST_I32, 1, (int64_t[]){prm.steps}, ts) ||
        st_writer_add_f32(w, "latents_trajectory", 5, (int64_t[]){prm.steps + 1, F, C, h, wl}, ltraj) ||
        st_writer_add_f32(w, "noise_pred_trajectory", 5, (int64_t[]){prm.steps, F, C, h, wl}, etraj) ||
        st_writer_add_f32(w, "latents", 4, (int64_t[]){F, C, h, wl}, lat) ||
        st_writer_add_f32(w, "frames", 4, (int64_t[]){F, 3, H, W}, frames))
        goto done;
    rc = 0;
done:
    if (have_p) pipe_free(&p);
    free(noise); free(emb); free(cond); free(ltraj); free(etraj); free(frames); free(ts);
    return rc;
}

/* ---- entry ------------------------------------------------------------------------------------ */

int probe_control(const char *kind, const args *a, const char *in_path, const char *out_path) {
    if (!probe_control_handles(kind)) return ocd_fail("probe: unknown control case '%s'", kind);
    st_file *f;
    json_t *spec;
    if (probe_open(in_path, &f, &spec)) return -1;
    const json_t *params = json_object_get(spec, "params");
    st_writer *w = st_writer_new();
    int rc = w ? 0 : -1;
    if (!rc && !strcmp(kind, "canny")) {
        rc = run_canny(f, w);
    } else if (!rc) {
        sd_model m;
        controlnet_model cm;
        if (!(rc = app_load_model(a, &m))) {
            if (!(rc = load_controlnet(a, &cm))) {
                rc = !strcmp(kind, "controlnet") ? run_controlnet(&m, cm.net, f, params, w)
                                                 : run_controlvideo(&m, cm.net, f, params, w);
                controlnet_model_free(&cm);
            }
            sd_model_free(&m);
        }
    }
    if (!rc) rc = st_writer_save(w, out_path);
    if (rc) ocd_fail_context("probe %s", kind);
    st_writer_free(w);
    json_decref(spec);
    st_close(f);
    return rc;
}
