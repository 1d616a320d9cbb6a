/* VAE (AutoencoderKL) against the diffusers goldens on tiny-sd/vae, plus config parsing,
 * legacy attention names, workspace reuse, thread-count independence and FLOP counts. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/util.h"
#include "nn/vae.h"
#include "testlib.h"

#define VAE_DIR TINY_SD "/vae"
#define VAE_FILE VAE_DIR "/diffusion_pytorch_model.safetensors"

static void test_config(void) {
    vae_config c, sd;
    char *json = ocd_read_file(VAE_DIR "/config.json", NULL);
    int rc = json ? vae_config_from_json(&c, json) : -1;
    t_check(rc == 0 && c.n_levels == 4 && c.block_out[0] == 8 && c.block_out[3] == 32 && c.groups == 4 &&
                c.layers_per_block == 2 && c.latent_channels == 4 && fabsf(c.scaling_factor - 0.18215f) < 1e-7f &&
                c.eps == 1e-6f,
            "vae config tiny-sd", "%s", rc ? ocd_last_error() : "levels 4, groups 4");
    free(json);
    vae_config_sd15(&sd);
    rc = vae_config_from_json(&c, "{\"block_out_channels\": [128, 256, 512, 512], \"layers_per_block\": 2}");
    t_check(rc == 0 && !memcmp(&c, &sd, sizeof c), "vae config defaults = sd15", "%s", rc ? ocd_last_error() : "");
    rc = vae_config_from_json(&c, "{\"act_fn\": \"gelu\"}");
    t_check(rc == -1, "vae config refuses act_fn gelu", "%s", ocd_last_error());
    rc = vae_config_from_json(&c, "{\"block_out_channels\": [30], \"norm_num_groups\": 32}");
    t_check(rc == -1, "vae config refuses channels % groups", "%s", ocd_last_error());
    rc = vae_config_from_json(&c, "{\"block_out_channels\": [");
    t_check(rc == -1, "vae config invalid JSON", "%s", ocd_last_error());
    double fd = vae_decode_flops(&sd, 64, 64), fe = vae_encode_flops(&sd, 512, 512);
    t_check(fd > 2.4e12 && fd < 2.7e12 && fe > 1.0e12 && fe < 1.2e12, "vae flops sd15 512x512",
            "decode %.3f TFLOP, encode %.3f TFLOP", fd * 1e-12, fe * 1e-12);
}

static vae *open_tiny(ws_source **ws_out, const char *path) {
    vae_config c;
    char *json = ocd_read_file(VAE_DIR "/config.json", NULL);
    if (!json || vae_config_from_json(&c, json)) { free(json); return NULL; }
    free(json);
    ws_source *ws = ws_open_file(path, "tiny-sd/vae");
    vae *v = ws ? vae_new(&c, ws) : NULL;
    if (!v) { fprintf(stderr, "vae: %s\n", ocd_last_error()); ws_free(ws); ws = NULL; }
    *ws_out = ws;
    return v;
}

/* Rewrites the file with the pre-0.14 attention names (query/key/value/proj_attn). */
static int write_legacy(const char *dst) {
    st_file *f = st_open(VAE_FILE);
    if (!f) return -1;
    st_writer *w = st_writer_new();
    int rc = 0;
    const char *from[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."}, *to[] = {".query.", ".key.", ".value.", ".proj_attn."};
    for (int i = 0; i < st_count(f) && !rc; i++) {
        const st_tensor *t = st_at(f, i);
        char name[512];
        snprintf(name, sizeof name, "%s", t->name);
        for (int k = 0; k < 4; k++) {
            char *p = strstr(name, from[k]);
            if (p) {
                char tail[512];
                snprintf(tail, sizeof tail, "%s", p + strlen(from[k]));
                snprintf(p, sizeof name - (size_t)(p - name), "%s%s", to[k], tail);
            }
        }
        rc = st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (!rc) rc = st_writer_save(w, dst);
    st_writer_free(w);
    st_close(f);
    return rc;
}

int main(int argc, char **argv) {
    (void)argc;
    test_config();
    ws_source *ws;
    vae *v = open_tiny(&ws, VAE_FILE);
    if (!t_check(v != NULL, "vae_new tiny-sd/vae", "%s", v ? "" : ocd_last_error())) return t_summary(argv[0]);

    st_file *ge = golden_open("vae_encode");
    float *img = golden_f32(ge, "image");
    float mean[4 * 8 * 12], logvar[4 * 8 * 12];
    int rc = vae_encode(v, img, 64, 96, mean, logvar);
    t_check(rc == 0, "vae_encode 64x96", "%s", rc ? ocd_last_error() : "");
    golden_check(ge, "mean", mean, 4 * 8 * 12);
    golden_check(ge, "logvar", logvar, 4 * 8 * 12);

    st_file *gd = golden_open("vae_decode");
    float *z = golden_f32(gd, "z");
    size_t nimg = 3 * 64 * 96;
    float *out = malloc(sizeof(float) * nimg), *out1 = malloc(sizeof(float) * nimg);
    rc = vae_decode(v, z, 8, 12, out);
    t_check(rc == 0, "vae_decode 8x12", "%s", rc ? ocd_last_error() : "");
    golden_check(gd, "image", out, nimg);

    /* the workspace planned for the larger of the two calls serves both again */
    size_t held = vae_workspace_bytes(v);
    vae_encode(v, img, 64, 96, mean, logvar);
    vae_decode(v, z, 8, 12, out1);
    t_check(vae_workspace_bytes(v) == held && held <= vae_scratch_bytes(v, 64, 96) && !memcmp(out, out1, sizeof(float) * nimg),
            "vae workspace reused, results repeat", "%zu bytes (planned %zu)", held, vae_scratch_bytes(v, 64, 96));

    omp_set_num_threads(1);
    vae_decode(v, z, 8, 12, out1);
    omp_set_num_threads(2);
    t_check(!memcmp(out, out1, sizeof(float) * nimg), "vae_decode 1 vs 2 threads bitwise", "n=%zu", nimg);

    t_check(vae_encode(v, img, 60, 96, mean, logvar) == -1, "vae_encode refuses 60x96", "%s", ocd_last_error());
    t_check(vae_decode(v, z, 0, 12, out1) == -1, "vae_decode refuses 0x12", "%s", ocd_last_error());

    /* legacy attention names load and give the same image */
    char tmp[] = "/tmp/ocd_vae_legacyXXXXXX";
    int fd = mkstemp(tmp);
    if (fd >= 0) close(fd);
    ws_source *ws2 = NULL;
    vae *v2 = fd >= 0 && !write_legacy(tmp) ? open_tiny(&ws2, tmp) : NULL;
    rc = v2 ? vae_decode(v2, z, 8, 12, out1) : -1;
    t_check(rc == 0 && !memcmp(out, out1, sizeof(float) * nimg), "vae legacy attention names", "%s",
            rc ? ocd_last_error() : "bitwise equal");
    vae_free(v2);
    ws_free(ws2);
    if (fd >= 0) unlink(tmp);

    /* another geometry with random weights: exercises the planner (sanitizer runs catch
     * any buffer it sized too small) */
    {
        vae_config rc3 = {3, 3, 4, 3, {8, 16, 16}, 1, 4, 1e-6f, 0.18215f};
        ws_source *wr = ws_random(7, "random-vae");
        vae *vr = wr ? vae_new(&rc3, wr) : NULL;
        float *im = malloc(sizeof(float) * 3 * 24 * 40), m3[4 * 6 * 10], l3[4 * 6 * 10];
        for (int i = 0; i < 3 * 24 * 40; i++) im[i] = sinf(0.37f * i);
        int ok = vr && vae_encode(vr, im, 24, 40, m3, l3) == 0 && vae_decode(vr, m3, 6, 10, im) == 0;
        for (int i = 0; ok && i < 3 * 24 * 40; i++) ok = isfinite(im[i]);
        t_check(ok, "vae random 3-level encode 24x40 + decode", "%s", ok ? "finite" : ocd_last_error());
        free(im);
        vae_free(vr);
        ws_free(wr);
    }

    /* tiles: a 32x48 latent (256x384 px) as 2x2 tiles of 20x28 (256 px tiles, overlap 64 px),
     * blended, against the whole frame. Each tile has its own GroupNorm statistics and mid
     * attention, so the two differ by more than rounding (on this random tiny VAE: 0.07
     * relative L2 decoding, 0.10 encoding; 0.28 decoding with 128 px tiles): the tolerance is a
     * relative L2 of 0.1 (decode) / 0.15 (encode). */
    {
        const int th = 32, tw = 48;
        const size_t nz = (size_t)4 * th * tw, ni = (size_t)3 * th * 8 * tw * 8;
        float *zz = malloc(sizeof(float) * nz), *w0 = malloc(sizeof(float) * ni), *w1 = malloc(sizeof(float) * ni);
        float *m0 = malloc(sizeof(float) * nz), *m1 = malloc(sizeof(float) * nz), *l0 = malloc(sizeof(float) * nz);
        for (size_t i = 0; i < nz; i++) zz[i] = sinf(0.1f * i) + cosf(0.037f * i);
        int rc2 = vae_set_tiling(v, 0, 0) || vae_decode(v, zz, th, tw, w0) || vae_encode(v, w0, th * 8, tw * 8, m0, l0) ||
                  vae_set_tiling(v, 256, 64) || vae_decode(v, zz, th, tw, w1) || vae_encode(v, w0, th * 8, tw * 8, m1, l0);
        double d2 = 0, r2 = 0, e2 = 0, q2 = 0;
        for (size_t i = 0; !rc2 && i < ni; i++) { d2 += (w1[i] - w0[i]) * (double)(w1[i] - w0[i]); r2 += (double)w0[i] * w0[i]; }
        for (size_t i = 0; !rc2 && i < nz; i++) { e2 += (m1[i] - m0[i]) * (double)(m1[i] - m0[i]); q2 += (double)m0[i] * m0[i]; }
        t_check(!rc2 && sqrt(d2 / r2) < 0.1, "vae_decode tiled 2x2 (256 px, overlap 64) vs whole", "%s relative L2 %.3g (< 0.1)",
                rc2 ? ocd_last_error() : "", sqrt(d2 / (r2 > 0 ? r2 : 1)));
        t_check(!rc2 && sqrt(e2 / q2) < 0.15, "vae_encode tiled 2x2 (256 px, overlap 64) vs whole", "%s mean relative L2 %.3g (< 0.15)",
                rc2 ? ocd_last_error() : "", sqrt(e2 / (q2 > 0 ? q2 : 1)));
        free(zz); free(w0); free(w1); free(m0); free(m1); free(l0);
    }
    {
        float *t1 = malloc(sizeof(float) * nimg);
        double d2 = 0, r2 = 0;
        int rc2;
        for (size_t i = 0; i < nimg; i++) r2 += (double)out[i] * out[i];
        /* a tile as large as the frame is the whole-frame path: bitwise */
        rc2 = vae_set_tiling(v, 96, 16) || vae_decode(v, z, 8, 12, t1);
        t_check(!rc2 && !memcmp(t1, out, sizeof(float) * nimg), "vae tiling off when the frame fits", "bitwise");
        t_check(vae_set_tiling(v, 48, 24) == -1, "vae tiling refuses overlap >= tile/2", "%s", ocd_last_error());
        vae_set_tiling(v, VAE_TILE_DEFAULT, VAE_OVERLAP_DEFAULT);
        /* bf16 (AMX) against fp32 */
        rc2 = vae_set_precision(v, 1) || vae_decode(v, z, 8, 12, t1);
        d2 = 0;
        for (size_t i = 0; !rc2 && i < nimg; i++) d2 += (t1[i] - out[i]) * (double)(t1[i] - out[i]);
        t_check(!rc2 && sqrt(d2 / r2) < 1e-2, "vae_decode bf16 vs fp32", "%s%s relative L2 %.3g (< 1e-2)", rc2 ? ocd_last_error() : "",
                vae_precision_bf16(v) ? "" : "no AMX-BF16: fp32,", sqrt(d2 / (r2 > 0 ? r2 : 1)));
        vae_set_precision(v, 0);
        free(t1);
    }

    /* a missing tensor is a clean error naming it */
    vae_config c = *vae_get_config(v);
    c.layers_per_block = 3;
    vae *bad = vae_new(&c, ws);
    t_check(bad == NULL && strstr(ocd_last_error(), "resnets.2"), "vae_new wrong config fails cleanly", "%s", ocd_last_error());

    free(img); free(z); free(out); free(out1);
    st_close(ge); st_close(gd);
    vae_free(v);
    ws_free(ws);
    return t_summary(argv[0]);
}
