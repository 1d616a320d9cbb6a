/* ocd bench NET: times one network on inputs of a chosen size and reports what the
 * machine gave: time per call (min / median), counted GFLOP, effective GFLOP/s, % of the
 * sgemm peak measured here and now, and peak RSS. Never a timed unit test. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "base/error.h"
#include "base/rng.h"
#include "base/util.h"
#include "kernels/kernels.h"

static const opt_spec k_opts[] = {
    {"--model", 1, "model folder or .safetensors file"},
    {"--random", 1, "sd15|tiny random weights (default sd15)"},
    {"--weight-seed", 1, "seed of --random weights"},
    {"--size", 1, "image size in pixels (default 512; latent = size/8)"},
    {"--batch", 1, "batch size (default 1; 2 = one guided step)"},
    {"--threads", 1, "threads (default: all cores)"},
    {"--repeat", 1, "timed calls (default 3)"},
    {"--precision", 1, "fp32|bf16|both: UNet/VAE convs and linears (bf16 needs AMX-BF16; both = fp32 then bf16, compared)"},
    {"--conv", 1, "fp32 3x3 convolutions: winograd (default, where it pays) | direct"},
    {"--tile", 1, "VAE tile size in pixels (default 512: larger frames go by tiles; 0 = never tile)"},
    {"--help", 0, "this text"},
    {0, 0, 0},
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Best of a few 2048^3 sgemm calls: the yardstick for "% of peak". */
double bench_sgemm_peak_gflops(void) {
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) { free(a); free(b); free(c); return 0; }
    rng_uniform(1, 1, a, (size_t)n * n);
    rng_uniform(1, 2, b, (size_t)n * n);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = ocd_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = ocd_now() - t0;
        if (r > 0 && dt < best) best = dt; /* first call warms up */
    }
    free(a); free(b); free(c);
    return 2.0 * n * n * n / best / 1e9;
}

int cmd_bench(int argc, char **argv) {
    int cmd_bench_edit(int argc, char **argv); /* cmd_bench_edit.c: `ocd bench edit` */
    if (argc > 0 && !strcmp(argv[0], "edit")) return cmd_bench_edit(argc - 1, argv + 1);
    args a;
    if (args_parse(&a, k_opts, argc, argv)) return -1;
    if (args_has(&a, "--help") || a.n_pos != 1) {
        args_usage(k_opts, "ocd bench unet|vae-decode|vae-encode|text [--random sd15] [--size 512] [--batch 2]");
        return args_has(&a, "--help") ? 0 : ocd_fail("bench needs one of unet, vae-decode, vae-encode, text");
    }
    const char *net = a.pos[0];
    int which = !strcmp(net, "unet") ? 0 : !strcmp(net, "vae-decode") ? 1 : !strcmp(net, "vae-encode") ? 2 : !strcmp(net, "text") ? 3 : -1;
    if (which < 0) return ocd_fail("unknown bench target \"%s\" (unet, vae-decode, vae-encode, text)", net);
    long size, batch, repeat;
    if (args_int(&a, "--size", 512, 8, 4096, &size) || args_int(&a, "--batch", 1, 1, 64, &batch) ||
        args_int(&a, "--repeat", 3, 1, 1000, &repeat) || app_set_threads(&a))
        return -1;
    if (size % 8) return ocd_fail("--size %ld is not a multiple of 8", size);
    args b = a;
    if (!args_has(&a, "--model") && !args_has(&a, "--random")) { /* default: SD 1.5 shapes */
        for (int i = 0; i < b.n_spec; i++) if (!strcmp(b.spec[i].name, "--random")) { b.present[i] = 1; b.value[i] = "sd15"; }
    }
    int threads = omp_get_max_threads();
    printf("measuring sgemm peak (2048^3, %d threads)...\n", threads);
    double peak = bench_sgemm_peak_gflops();
    printf("sgemm peak  %.1f GFLOP/s (OpenBLAS core %s)\n", peak, openblas_get_corename());
    sd_model m;
    double t0 = ocd_now();
    ws_source *vae_ws = NULL;
    const char *rnd = args_str(&b, "--random", NULL);
    if ((which == 1 || which == 2) && rnd && !strcmp(rnd, "sd15")) {
        /* VAE benches on random SD 1.5 weights build the VAE alone (same weights as the
         * full random model: seed + 1), so peak RSS is the VAE's, not the UNet's. */
        long seed;
        if (args_int(&b, "--weight-seed", 1234, 0, 0x7fffffff, &seed)) return -1;
        memset(&m, 0, sizeof m);
        vae_config_sd15(&m.vae_cfg);
        m.files.path = (char *)"random-sd15 (VAE only)"; /* never freed: sd_model_free is not called */
        if (!(vae_ws = ws_random((uint64_t)seed + 1, "random:vae")) || !(m.vae = vae_new(&m.vae_cfg, vae_ws))) {
            ws_free(vae_ws);
            return -1;
        }
    } else if (app_load_model(&b, &m)) return -1;
    printf("model       %s loaded in %.1f s (%.0fM params)\n", m.files.path, ocd_now() - t0,
           (vae_ws ? (double)ws_params_loaded(vae_ws) : (double)sd_model_params(&m)) / 1e6);
    const int B = (int)batch, S = (int)size;
    float *in = NULL, *in2 = NULL, *in3 = NULL, *out = NULL;
    int rc = -1;
    double flops = 0;
    int h = S / 8, w = S / 8;
    if ((which == 0 && !m.unet) || ((which == 1 || which == 2) && !m.vae) || (which == 3 && !m.text)) {
        ocd_fail("the model has no network for \"%s\"", net);
        goto done;
    }
    if (which == 0) {
        const unet_config *c = &m.unet_cfg;
        in = malloc(sizeof(float) * B * c->in_ch * h * w);
        in2 = malloc(sizeof(float) * B);
        in3 = malloc(sizeof(float) * B * 77 * c->cross_dim);
        out = malloc(sizeof(float) * B * c->out_ch * h * w);
        if (!in || !in2 || !in3 || !out) { ocd_fail("out of memory"); goto done; }
        rng_normal(7, 1, in, (size_t)B * c->in_ch * h * w);
        rng_normal(7, 2, in3, (size_t)B * 77 * c->cross_dim);
        for (int i = 0; i < B; i++) in2[i] = 500;
    } else if (which == 1 || which == 2) {
        const vae_config *c = &m.vae_cfg;
        in = malloc(sizeof(float) * B * 3 * S * S);
        out = malloc(sizeof(float) * B * 3 * S * S);
        in2 = malloc(sizeof(float) * B * 2 * c->latent_channels * h * w);
        if (!in || !out || !in2) { ocd_fail("out of memory"); goto done; }
        rng_uniform(7, 3, in, (size_t)B * 3 * S * S);
        rng_normal(7, 4, in2, (size_t)B * c->latent_channels * h * w);
    } else {
        in = malloc(sizeof(float) * B * 77);
        out = malloc(sizeof(float) * B * 77 * m.clip_cfg.hidden);
        if (!in || !out) { ocd_fail("out of memory"); goto done; }
    }
    const char *conv = args_str(&a, "--conv", "winograd");
    if (strcmp(conv, "winograd") && strcmp(conv, "direct")) { ocd_fail("--conv must be winograd or direct"); goto done; }
    k_conv_winograd_enable(!strcmp(conv, "winograd"));
    long tile;
    if (args_int(&a, "--tile", VAE_TILE_DEFAULT, 0, 1 << 16, &tile)) goto done;
    if ((which == 1 || which == 2) && vae_set_tiling(m.vae, (int)tile, tile && tile < 4 * VAE_OVERLAP_DEFAULT ? (int)tile / 8 / 4 * 8 : VAE_OVERLAP_DEFAULT))
        goto done;
    const char *prec = args_str(&a, "--precision", "fp32");
    const int both = !strcmp(prec, "both");
    if (strcmp(prec, "fp32") && strcmp(prec, "bf16") && !both) { ocd_fail("--precision must be fp32, bf16 or both"); goto done; }
    /* the output compared between passes: eps, the last decoded image, the moments, the text states */
    const size_t n_out = which == 0 ? (size_t)B * m.unet_cfg.out_ch * h * w : which == 1 ? (size_t)3 * S * S
                         : which == 2 ? (size_t)2 * m.vae_cfg.latent_channels * h * w : (size_t)B * 77 * m.clip_cfg.hidden;
    float *out_ref = both ? malloc(sizeof(float) * n_out) : NULL;
    double t_ref = 0;
    if (both && !out_ref) { ocd_fail("out of memory"); goto done; }
    for (int pass = 0; pass < 1 + both; pass++) {
    const int bf = both ? pass : !strcmp(prec, "bf16");
    if ((which == 0 && unet_set_precision(m.unet, bf)) || ((which == 1 || which == 2) && vae_set_precision(m.vae, bf))) {
        free(out_ref);
        goto done;
    }
    const int bf_on = which == 0 ? unet_precision_bf16(m.unet) : which == 1 || which == 2 ? vae_precision_bf16(m.vae) : 0;
    if (bf) printf("precision   %s\n", bf_on ? "bf16 (AMX-BF16), fp32 accumulation" : "fp32 (bf16 unavailable)");
    double *times = malloc(sizeof(double) * (repeat + 1));
    if (!times) { free(out_ref); ocd_fail("out of memory"); goto done; }
    for (int r = 0; r <= repeat; r++) { /* call 0 plans memory and warms up */
        double t1 = ocd_now();
        int err = 0;
        if (which == 0) {
            err = unet_forward(m.unet, in, in2, in3, 77, B, h, w, NULL, out);
            flops = unet_last_flops(m.unet);
        } else if (which == 1) {
            for (int i = 0; i < B && !err; i++) err = vae_decode(m.vae, in2 + (size_t)i * m.vae_cfg.latent_channels * h * w, h, w, out);
            flops = B * vae_decode_flops(&m.vae_cfg, h, w);
        } else if (which == 2) {
            for (int i = 0; i < B && !err; i++) err = vae_encode(m.vae, in + (size_t)i * 3 * S * S, S, S, in2, in2 + m.vae_cfg.latent_channels * h * w);
            flops = B * vae_encode_flops(&m.vae_cfg, S, S);
        } else {
            int32_t ids[64 * 77];
            for (int i = 0; i < B * 77; i++) ids[i] = i % 77 == 0 ? 49406 : 49407;
            err = clip_encode(m.text, ids, B, out);
            flops = clip_flops(&m.clip_cfg, B);
        }
        if (err) { free(times); free(out_ref); goto done; }
        times[r] = ocd_now() - t1;
        if (r == 0) printf("warm-up     %.3f s\n", times[0]);
    }
    qsort(times + 1, repeat, sizeof(double), cmp_double);
    double tmin = times[1], tmed = times[1 + repeat / 2];
    free(times);
    printf("\nbench %s: %s, %dx%d px (latent %dx%d), batch %d, %d threads, %ld runs, %s\n", net, m.files.path, S, S, h,
           w, B, threads, repeat, bf_on ? "bf16" : "fp32");
    printf("  time/call    min %.3f s   median %.3f s\n", tmin, tmed);
    printf("  counted      %.1f GFLOP per call\n", flops / 1e9);
    printf("  effective    %.1f GFLOP/s (best)   %.1f GFLOP/s (median)\n", flops / tmin / 1e9, flops / tmed / 1e9);
    printf("  %% of peak    %.1f %% of sgemm %.1f GFLOP/s\n", 100.0 * flops / tmin / 1e9 / peak, peak);
    printf("  peak RSS     %.1f MiB\n", ocd_peak_rss_bytes() / 1048576.0);
    const float *res = which == 2 ? in2 : out;
    if (both && pass == 0) {
        memcpy(out_ref, res, sizeof(float) * n_out);
        t_ref = tmin;
    } else if (both) {
        double d2 = 0, r2 = 0, dmax = 0, rmax = 0;
        for (size_t i = 0; i < n_out; i++) {
            double d = (double)res[i] - out_ref[i];
            d2 += d * d;
            r2 += (double)out_ref[i] * out_ref[i];
            if (fabs(d) > dmax) dmax = fabs(d);
            if (fabs(out_ref[i]) > rmax) rmax = fabs(out_ref[i]);
        }
        printf("\n  bf16 vs fp32 speed-up x%.2f (best times); output relative L2 error %.2e, max |diff| %.3g (max |fp32| %.3g)\n",
               t_ref / tmin, sqrt(d2 / (r2 > 0 ? r2 : 1)), dmax, rmax);
    }
    }
    free(out_ref);
    rc = 0;
done:
    free(in); free(in2); free(in3); free(out);
    if (vae_ws) { vae_free(m.vae); ws_free(vae_ws); }
    else sd_model_free(&m);
    return rc;
}
