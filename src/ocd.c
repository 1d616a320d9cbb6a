/* The public API (include/ocd.h) over the internal modules. */
#include "ocd.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "diffusion/pipeline.h"
#include "io/image.h"
#include "nn/sd_model.h"

struct ocd_model {
    sd_model sd;
    int n_threads;
};

ocd_model_params ocd_model_default_params(void) {
    return (ocd_model_params){.path = NULL, .random = NULL, .weight_seed = 1234, .n_threads = 0, .precision = "auto"};
}

ocd_model *ocd_model_load(const ocd_model_params *p) {
    if (!p || (!p->path == !p->random)) { ocd_fail("ocd_model_load: give exactly one of path and random"); return NULL; }
    ocd_model *m = calloc(1, sizeof *m);
    if (!m) { ocd_fail("out of memory"); return NULL; }
    char spec[64];
    if (p->random) snprintf(spec, sizeof spec, "random:%s", p->random);
    if (sd_model_load(&m->sd, p->random ? spec : p->path, p->weight_seed)) { free(m); return NULL; }
    if (sd_model_set_precision(&m->sd, p->precision) < 0) { sd_model_free(&m->sd); free(m); return NULL; }
    m->n_threads = p->n_threads;
    return m;
}

void ocd_model_free(ocd_model *m) {
    if (!m) return;
    sd_model_free(&m->sd);
    free(m);
}

int64_t ocd_model_n_params(const ocd_model *m) { return sd_model_params(&m->sd); }

ocd_generate_params ocd_generate_default_params(void) {
    return (ocd_generate_params){.prompt = "", .negative = "", .sampler = "ddim", .steps = 50, .cfg = 7.5f, .seed = 0};
}

int ocd_generate(ocd_model *m, const ocd_generate_params *p, uint8_t *rgb_out) {
    if (m->n_threads > 0) omp_set_num_threads(m->n_threads);
    ocd_solver solver;
    if (!p->sampler || !strcmp(p->sampler, "ddim")) solver = OCD_SOLVER_DDIM;
    else if (!strcmp(p->sampler, "dpmpp-2m")) solver = OCD_SOLVER_DPMPP_2M;
    else return ocd_fail("unknown sampler \"%s\" (ddim, dpmpp-2m)", p->sampler);
    if (p->steps < 1 || p->steps > OCD_MAX_STEPS) return ocd_fail("steps %d outside 1..%d", p->steps, OCD_MAX_STEPS);
    pipe_ctx pc;
    if (pipe_init(&pc, &m->sd, NULL)) return -1;
    const int f = pipe_vae_factor(&pc), C = pipe_latent_channels(&pc);
    int W = p->width ? p->width : m->sd.unet_cfg.sample_size * f, H = p->height ? p->height : m->sd.unet_cfg.sample_size * f;
    int rc = -1;
    float *lat = NULL, *img = NULL, *emb = NULL;
    if (W % f || H % f || W <= 0 || H <= 0) { ocd_fail("size %dx%d is not a positive multiple of %d", W, H, f); goto done; }
    const int h = H / f, w = W / f;
    const size_t ne = (size_t)m->sd.clip_cfg.n_pos * m->sd.clip_cfg.hidden, n = (size_t)C * h * w;
    lat = malloc(sizeof(float) * n);
    img = malloc(sizeof(float) * 3 * W * H);
    emb = malloc(sizeof(float) * 2 * ne);
    if (!lat || !img || !emb) { ocd_fail("out of memory"); goto done; }
    if (pipe_encode_prompt(&pc, p->negative ? p->negative : "", emb) || pipe_encode_prompt(&pc, p->prompt ? p->prompt : "", emb + ne))
        goto done;
    pipe_init_noise(p->seed, lat, n);
    pipe_loop L = {.solver = solver, .steps = p->steps, .guidance = p->cfg};
    if (pipe_sample(&pc, &L, p->cfg != 1 ? emb : NULL, emb + ne, lat, h, w) || pipe_vae_decode(&pc, lat, h, w, img)) goto done;
    image_from_f32(img, W, H, rgb_out);
    rc = 0;
done:
    free(lat); free(img); free(emb);
    pipe_free(&pc);
    return rc;
}
