/* The single-image pipeline (diffusion/pipeline.h) against the goldens pipeline_txt2img and
 * pipeline_ddim_inversion on tiny-sd (every output), plus: the empty prompt, seeded noise,
 * no UNet scratch growth across runs, thread-count independence, DPM-Solver++ and bad input. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "diffusion/pipeline.h"
#include "testlib.h"

static sd_model g_model;

static void check_i32(st_file *g, const char *name, const int32_t *got, int n) {
    const st_tensor *t = st_find(g, name);
    if (!t || t->numel != n) { t_check(0, name, "golden tensor missing or of another size"); return; }
    int32_t *ref = malloc(sizeof(int32_t) * n);
    st_read_i32(t, ref);
    char label[96];
    snprintf(label, sizeof label, "%s:%s", st_path(g), name);
    t_equal_i32(label, got, ref, (size_t)n);
    free(ref);
}

static void read_ids(st_file *g, const char *name, int32_t *ids) {
    const st_tensor *t = st_find(g, name);
    if (!t || t->numel != 77 || st_read_i32(t, ids)) { fprintf(stderr, "golden: %s unreadable\n", name); exit(2); }
}

/* The scheduler config of params[key] (the golden's own). */
static ocd_sched_config spec_sched(st_file *g, const char *key) {
    json_t *params = json_object_get(golden_spec(g), "params");
    ocd_sched_config c;
    sched_config_default(&c);
    if (sched_config_from_json(&c, json_object_get(params, key))) t_check(0, key, "%s", ocd_last_error());
    return c;
}

static double spec_num(st_file *g, const char *key) {
    return json_number_value(json_object_get(json_object_get(golden_spec(g), "params"), key));
}

/* ---- pipeline_txt2img ------------------------------------------------------------------------ */

static void test_txt2img(void) {
    st_file *g = golden_open("pipeline_txt2img");
    ocd_sched_config cfg = spec_sched(g, "scheduler_config");
    pipe_ctx p;
    if (pipe_init(&p, &g_model, &cfg)) { t_check(0, "pipe_init", "%s", ocd_last_error()); st_close(g); return; }
    const int N = (int)spec_num(g, "num_inference_steps"), n = 4 * 8 * 8, ne = 77 * 32;
    int32_t ids[2 * 77], ts[OCD_MAX_STEPS];
    float emb[2 * 77 * 32], lat[4 * 8 * 8], img[3 * 64 * 64];
    float *ltraj = malloc(sizeof(float) * (N + 1) * n), *etraj = malloc(sizeof(float) * N * n);
    read_ids(g, "uncond_ids", ids);
    read_ids(g, "cond_ids", ids + 77);
    float *noise = golden_f32(g, "init_noise");
    memcpy(lat, noise, sizeof lat);
    p.scaling = (float)spec_num(g, "scaling_factor");
    pipe_loop L = {.solver = OCD_SOLVER_DDIM, .steps = N, .guidance = (float)spec_num(g, "guidance_scale"),
                   .latents_traj = ltraj, .eps_traj = etraj, .timesteps = ts};
    int rc = pipe_encode_ids(&p, ids, 2, emb) || pipe_sample(&p, &L, emb, emb + ne, lat, 8, 8) ||
             pipe_vae_decode(&p, lat, 8, 8, img);
    if (!t_check(rc == 0, "txt2img run", "%s", rc ? ocd_last_error() : "10 steps, cfg 7.5")) goto out;
    t_check(p.unet_calls == N, "txt2img: one batched UNet call per step", "%ld calls", p.unet_calls);
    golden_check(g, "text_embeddings", emb, 2 * ne);
    check_i32(g, "timesteps", ts, N);
    golden_check(g, "latents_trajectory", ltraj, (size_t)(N + 1) * n);
    golden_check(g, "noise_pred_trajectory", etraj, (size_t)N * n);
    golden_check(g, "latents", lat, n);
    golden_check(g, "image", img, 3 * 64 * 64);
    for (int i = 0; i < 3 * 64 * 64; i++) img[i] = fminf(fmaxf(img[i] / 2 + 0.5f, 0), 1);
    golden_check(g, "image_01", img, 3 * 64 * 64);

    /* the empty negative prompt: tokens [49406, 49407, ...] and the same embedding */
    int32_t e_ids[77];
    float e_emb[77 * 32];
    rc = tokenizer_encode(g_model.tok, "", e_ids, NULL);
    t_check(rc == 0 && !memcmp(e_ids, ids, sizeof e_ids) && e_ids[0] == 49406 && e_ids[1] == 49407 && e_ids[76] == 49407,
            "empty prompt -> [49406, 49407, ...] = golden uncond_ids", "%s", rc ? ocd_last_error() : "");
    rc = pipe_encode_prompt(&p, "", e_emb);
    t_check(rc == 0 && !memcmp(e_emb, emb, sizeof e_emb), "pipe_encode_prompt(\"\") = uncond embedding", "%s",
            rc ? ocd_last_error() : "identical");

    /* a second run at the same size: the UNet plans nothing new (no allocation in the loop) */
    int grows = unet_arena_grows(g_model.unet);
    memcpy(lat, noise, sizeof lat);
    pipe_loop L2 = {.solver = OCD_SOLVER_DDIM, .steps = N, .guidance = L.guidance};
    rc = pipe_sample(&p, &L2, emb, emb + ne, lat, 8, 8);
    t_check(rc == 0 && unet_arena_grows(g_model.unet) == grows && !memcmp(lat, ltraj + (size_t)N * n, sizeof lat),
            "second run: no arena growth, identical latents", "grows %d -> %d", grows, unet_arena_grows(g_model.unet));

    /* thread count does not change a bit of the result */
    int nt = omp_get_max_threads();
    omp_set_num_threads(nt > 1 ? 1 : 2);
    memcpy(lat, noise, sizeof lat);
    rc = pipe_sample(&p, &L2, emb, emb + ne, lat, 8, 8);
    omp_set_num_threads(nt);
    t_check(rc == 0 && !memcmp(lat, ltraj + (size_t)N * n, sizeof lat), "txt2img identical with another thread count",
            "%d vs %d threads", nt, nt > 1 ? 1 : 2);

    /* DPM-Solver++(2M) from the same noise: runs, finite, different from DDIM */
    memcpy(lat, noise, sizeof lat);
    pipe_loop D = {.solver = OCD_SOLVER_DPMPP_2M, .steps = 8, .guidance = 7.5f};
    rc = pipe_sample(&p, &D, emb, emb + ne, lat, 8, 8);
    int finite = 1;
    for (int i = 0; i < n; i++) finite &= isfinite(lat[i]);
    t_check(rc == 0 && finite && memcmp(lat, ltraj + (size_t)N * n, sizeof lat), "dpmpp-2m 8 steps runs", "%s",
            rc ? ocd_last_error() : "finite");

    /* guidance 1 skips the unconditional half and needs no uncond embedding */
    long calls = p.unet_calls;
    memcpy(lat, noise, sizeof lat);
    pipe_loop G1 = {.solver = OCD_SOLVER_DDIM, .steps = 3, .guidance = 1.0f};
    rc = pipe_sample(&p, &G1, NULL, emb + ne, lat, 8, 8);
    t_check(rc == 0 && p.unet_calls == calls + 3, "guidance 1: cond only", "%s", rc ? ocd_last_error() : "3 calls");

    /* bad input is an error, not a crash */
    pipe_loop bad = {.solver = OCD_SOLVER_DDIM, .steps = 0, .guidance = 7.5f};
    /* (rc first: argument evaluation order is unspecified, ocd_last_error() must come after) */
    rc = pipe_sample(&p, &bad, emb, emb + ne, lat, 8, 8);
    t_check(rc == -1, "steps 0 refused", "%s", ocd_last_error());
    bad.steps = 1001;
    rc = pipe_sample(&p, &bad, emb, emb + ne, lat, 8, 8);
    t_check(rc == -1, "steps 1001 refused", "%s", ocd_last_error());
    bad.steps = 2;
    rc = pipe_sample(&p, &bad, NULL, emb + ne, lat, 8, 8);
    t_check(rc == -1, "cfg without uncond refused", "%s", ocd_last_error());
    bad.solver = OCD_SOLVER_DPMPP_2M;
    bad.guidance = 1;
    rc = pipe_invert(&p, &bad, NULL, emb + ne, lat, 8, 8);
    t_check(rc == -1, "dpm inversion refused", "%s", ocd_last_error());
    rc = pipe_vae_encode(&p, img, 60, 64, lat);
    t_check(rc == -1, "encode 64x60 refused", "%s", ocd_last_error());
out:
    free(noise); free(ltraj); free(etraj);
    pipe_free(&p);
    st_close(g);
}

/* ---- pipeline_ddim_inversion ----------------------------------------------------------------- */

static void test_inversion(void) {
    st_file *g = golden_open("pipeline_ddim_inversion");
    ocd_sched_config cfg = spec_sched(g, "ddim_config"), icfg = spec_sched(g, "ddim_inverse_config");
    pipe_ctx p;
    ocd_schedule is;
    if (pipe_init(&p, &g_model, &cfg) || sched_init(&is, &icfg)) {
        t_check(0, "pipe_init", "%s", ocd_last_error());
        st_close(g);
        return;
    }
    const int N = (int)spec_num(g, "num_inference_steps"), n = 4 * 8 * 8, ne = 77 * 32;
    int32_t ids[2 * 77], ts[OCD_MAX_STEPS];
    float emb[2 * 77 * 32], lat[4 * 8 * 8], out[3 * 64 * 64];
    float *itraj = malloc(sizeof(float) * (N + 1) * n), *image = golden_f32(g, "image");
    read_ids(g, "uncond_ids", ids);
    read_ids(g, "cond_ids", ids + 77);
    p.scaling = (float)spec_num(g, "scaling_factor");
    pipe_loop inv = {.solver = OCD_SOLVER_DDIM, .steps = N, .guidance = 1, .sched = &is, .latents_traj = itraj, .timesteps = ts};
    int rc = pipe_encode_ids(&p, ids, 2, emb) || pipe_vae_encode(&p, image, 64, 64, lat);
    if (!rc) golden_check(g, "z0", lat, n);
    rc = rc || pipe_invert(&p, &inv, NULL, emb + ne, lat, 8, 8);
    if (!t_check(rc == 0, "inversion run", "%s", rc ? ocd_last_error() : "10 steps")) goto out;
    check_i32(g, "inverse_timesteps", ts, N);
    golden_check(g, "inversion_trajectory", itraj, (size_t)(N + 1) * n);
    golden_check(g, "inverted_latent", lat, n);
    static const char *const lname[2] = {"recon_latents", "regen_cfg_latents"}, *const iname[2] = {"recon_image", "regen_cfg_image"};
    const float gs[2] = {(float)spec_num(g, "guidance_reconstruction"), (float)spec_num(g, "guidance_regen_cfg")};
    for (int r = 0; r < 2; r++) {
        memcpy(lat, itraj + (size_t)N * n, sizeof lat);
        pipe_loop L = {.solver = OCD_SOLVER_DDIM, .steps = N, .guidance = gs[r]};
        rc = pipe_sample(&p, &L, emb, emb + ne, lat, 8, 8) || pipe_vae_decode(&p, lat, 8, 8, out);
        if (!t_check(rc == 0, lname[r], "%s", rc ? ocd_last_error() : "ran")) break;
        golden_check(g, lname[r], lat, n);
        golden_check(g, iname[r], out, 3 * 64 * 64);
    }
out:
    free(itraj); free(image);
    sched_free(&is);
    pipe_free(&p);
    st_close(g);
}

/* ---- small parts ----------------------------------------------------------------------------- */

static void test_parts(void) {
    float a[1000], b[1000];
    pipe_init_noise(42, a, 1000);
    rng_normal(42, PIPE_NOISE_STREAM, b, 1000);
    double m = 0, v = 0;
    for (int i = 0; i < 1000; i++) m += a[i] / 1000.0;
    for (int i = 0; i < 1000; i++) v += (a[i] - m) * (a[i] - m) / 1000.0;
    t_check(!memcmp(a, b, sizeof a) && fabs(m) < 0.15 && fabs(v - 1) < 0.15, "init noise = rng_normal(seed, PIPE_NOISE_STREAM)",
            "mean %.3f var %.3f", m, v);
    pipe_init_noise(43, b, 1000);
    t_check(memcmp(a, b, sizeof a) != 0, "another seed, other noise", " ");

    ocd_sched_config c, d;
    sched_config_default(&d);
    int rc = pipe_sched_config(&c, NULL);
    t_check(rc == 0 && !memcmp(&c, &d, sizeof c), "no scheduler config = SD 1.x defaults", " ");
    rc = pipe_sched_config(&c, "{\"beta_start\": ");
    t_check(rc == -1, "broken scheduler config refused", "%s", ocd_last_error());
    rc = pipe_sched_config(&c, "{\"prediction_type\": \"v_prediction\"}");
    t_check(rc == -1, "v-prediction refused", "%s", ocd_last_error());

    pipe_ctx p;
    rc = pipe_init(&p, &g_model, NULL);
    t_check(rc == 0 && p.sched.T == 1000 && fabsf(p.scaling - 0.18215f) < 1e-7f,
            "pipe_init from the model's scheduler_config.json", "%s", rc ? ocd_last_error() : "PNDM config, T 1000");
    if (!rc) pipe_free(&p);
    sd_model empty;
    memset(&empty, 0, sizeof empty);
    rc = pipe_init(&p, &empty, NULL);
    t_check(rc == -1, "a model without networks refused", "%s", ocd_last_error());
}

int main(void) {
    if (sd_model_load(&g_model, TINY_SD, 0)) {
        fprintf(stderr, "tiny-sd: %s\n", ocd_last_error());
        t_check(0, "load tiny-sd", "%s", ocd_last_error());
        return t_summary("test_pipeline");
    }
    test_parts();
    test_txt2img();
    test_inversion();
    sd_model_free(&g_model);
    return t_summary("test_pipeline");
}
