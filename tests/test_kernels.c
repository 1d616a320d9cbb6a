/* Fast kernels against their plain `_ref` twins on random shapes (odd sizes, strides,
 * causal masks, stride-2 and asymmetric padding, 1x1, multi-band convs, multi-block
 * attention), plus bitwise thread-count independence. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testlib.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}
static int irand(int lo, int hi) { /* [lo, hi] */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (int)((g_rng >> 33) % (uint64_t)(hi - lo + 1));
}
static float *rnd(size_t n, float scale) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static void test_gemm(void) {
    char name[128];
    for (int t = 0; t < 8; t++) {
        int ta = t & 1, tb = (t >> 1) & 1, M = irand(1, 70), N = irand(1, 70), K = irand(1, 90);
        int lda = (ta ? M : K) + irand(0, 3), ldb = (tb ? K : N) + irand(0, 3), ldc = N + irand(0, 3);
        float alpha = t < 4 ? 1.0f : 0.7f, beta = (t & 2) ? 0.5f : 0.0f;
        float *A = rnd((size_t)(ta ? K : M) * lda, 1), *B = rnd((size_t)(tb ? N : K) * ldb, 1);
        float *C = rnd((size_t)M * ldc, 1), *R = malloc(sizeof(float) * M * ldc);
        memcpy(R, C, sizeof(float) * M * ldc);
        k_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        k_gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
        snprintf(name, sizeof name, "gemm ta%d tb%d %dx%dx%d beta %.1f", ta, tb, M, N, K, beta);
        t_close(name, C, R, (size_t)M * ldc, 1e-5, 1e-5);
        free(A); free(B); free(C); free(R);
    }
    for (int t = 0; t < 2; t++) {
        int M = irand(1, 50), K = irand(1, 80), N = irand(1, 60);
        float *x = rnd((size_t)M * K, 1), *w = rnd((size_t)N * K, 1), *b = t ? rnd(N, 1) : NULL;
        float *y = malloc(sizeof(float) * M * N), *r = malloc(sizeof(float) * M * N);
        k_linear(y, x, w, b, M, K, N);
        k_linear_ref(r, x, w, b, M, K, N);
        snprintf(name, sizeof name, "linear %dx%d->%d bias %d", M, K, N, t);
        t_close(name, y, r, (size_t)M * N, 1e-5, 1e-5);
        free(x); free(w); free(b); free(y); free(r);
    }
}

static int conv_case(const char *label, k_conv_shape s, int check_threads) {
    int ho = k_conv_out_h(&s), wo = k_conv_out_w(&s);
    size_t ny = (size_t)s.co * ho * wo;
    float *x = rnd((size_t)s.ci * s.h * s.w, 1), *w = rnd((size_t)s.co * s.ci * s.kh * s.kw, 0.3f), *b = rnd(s.co, 1);
    float *y = malloc(sizeof(float) * ny), *r = malloc(sizeof(float) * ny);
    size_t ns = k_conv2d_scratch_floats(&s);
    float *scr = malloc(sizeof(float) * (ns ? ns : 1));
    k_conv2d(y, x, w, b, &s, scr);
    k_conv2d_ref(r, x, w, b, &s);
    char name[160];
    snprintf(name, sizeof name, "conv %s ci%d %dx%d co%d k%dx%d s%d p%d%d%d%d -> %dx%d", label, s.ci, s.h, s.w,
             s.co, s.kh, s.kw, s.stride, s.pad_t, s.pad_b, s.pad_l, s.pad_r, ho, wo);
    int ok = t_close(name, y, r, ny, 1e-5, 1e-5);
    if (check_threads) {
        float *y1 = malloc(sizeof(float) * ny);
        omp_set_num_threads(1);
        k_conv2d(y1, x, w, b, &s, scr);
        omp_set_num_threads(2);
        k_conv2d(y, x, w, b, &s, scr);
        snprintf(name, sizeof name, "conv %s 1 vs 2 threads bitwise", label);
        t_check(memcmp(y1, y, sizeof(float) * ny) == 0, name, "scratch %zu floats", ns);
        free(y1);
    }
    free(x); free(w); free(b); free(y); free(r); free(scr);
    return ok;
}

static void test_conv(void) {
    conv_case("3x3", (k_conv_shape){5, 13, 11, 7, 3, 3, 1, 1, 1, 1, 1}, 0);
    conv_case("down", (k_conv_shape){6, 14, 18, 5, 3, 3, 2, 0, 1, 0, 1}, 0);     /* VAE downsample */
    conv_case("down-odd", (k_conv_shape){3, 15, 9, 4, 3, 3, 2, 0, 1, 0, 1}, 0);
    conv_case("s2p1", (k_conv_shape){4, 9, 12, 6, 3, 3, 2, 1, 1, 1, 1}, 0);
    conv_case("asym", (k_conv_shape){3, 10, 7, 5, 4, 2, 1, 2, 0, 0, 3}, 0);
    conv_case("1x1", (k_conv_shape){9, 7, 13, 11, 1, 1, 1, 0, 0, 0, 0}, 0);
    conv_case("1x1s2", (k_conv_shape){4, 7, 9, 3, 1, 1, 2, 0, 0, 0, 0}, 0);
    conv_case("k5s3", (k_conv_shape){2, 17, 16, 3, 5, 5, 3, 2, 1, 2, 1}, 0);
    conv_case("tiny", (k_conv_shape){1, 1, 1, 2, 3, 3, 1, 1, 1, 1, 1}, 0);
    for (int t = 0; t < 4; t++) {
        int k = irand(1, 4);
        k_conv_shape s = {irand(1, 6), irand(k, 20), irand(k, 20), irand(1, 6), k, irand(1, 4), irand(1, 3),
                          irand(0, 2), irand(0, 2), irand(0, 2), irand(0, 2)};
        conv_case("rand", s, 0);
    }
    /* K * Ho * Wo = 576 * 96 * 100 > the 4M-float cap: several row bands */
    conv_case("bands", (k_conv_shape){64, 96, 100, 8, 3, 3, 1, 1, 1, 1, 1}, 1);
    conv_case("1x1-threads", (k_conv_shape){32, 64, 64, 16, 1, 1, 1, 0, 0, 0, 0}, 1);
    /* the direct (stride-1) path at SD-like channel counts: several channel micro-tiles and
     * tasks, co not a multiple of 8, width not a multiple of the 48-position tile */
    conv_case("direct", (k_conv_shape){40, 12, 13, 21, 3, 3, 1, 1, 1, 1, 1}, 1);
    conv_case("direct-wide", (k_conv_shape){16, 5, 70, 70, 3, 3, 1, 1, 1, 1, 1}, 1);
    /* Winograd's bands (64 MiB) included: never a full im2col (2.25 GiB here) */
    k_conv_shape big = {512, 512, 512, 512, 3, 3, 1, 1, 1, 1, 1};
    size_t ns = k_conv2d_scratch_floats(&big);
    t_check(ns <= ((size_t)1 << 24), "conv scratch bounded (512ch 512x512 3x3)", "%zu floats", ns);
}

static void conv_up2_case(const char *label, k_conv_shape s, int check_threads) {
    int ho = k_conv_up2_out_h(&s), wo = k_conv_up2_out_w(&s);
    size_t ny = (size_t)s.co * ho * wo, ns = k_conv2d_up2_scratch_floats(&s);
    float *x = rnd((size_t)s.ci * s.h * s.w, 1), *w = rnd((size_t)s.co * s.ci * s.kh * s.kw, 0.3f), *b = rnd(s.co, 1);
    float *y = malloc(sizeof(float) * ny), *r = malloc(sizeof(float) * ny), *scr = malloc(sizeof(float) * ns);
    k_conv2d_up2(y, x, w, b, &s, scr);
    k_conv2d_up2_ref(r, x, w, b, &s);
    char name[160];
    snprintf(name, sizeof name, "conv_up2 %s ci%d %dx%d co%d k%d -> %dx%d", label, s.ci, s.h, s.w, s.co, s.kh, ho, wo);
    t_close(name, y, r, ny, 1e-5, 1e-5);
    if (check_threads) {
        float *y1 = malloc(sizeof(float) * ny);
        omp_set_num_threads(1);
        k_conv2d_up2(y1, x, w, b, &s, scr);
        omp_set_num_threads(2);
        k_conv2d_up2(y, x, w, b, &s, scr);
        snprintf(name, sizeof name, "conv_up2 %s 1 vs 2 threads bitwise", label);
        t_check(memcmp(y1, y, sizeof(float) * ny) == 0, name, "scratch %zu floats", ns);
        free(y1);
    }
    free(x); free(w); free(b); free(y); free(r); free(scr);
}

static void test_conv_up2(void) {
    conv_up2_case("3x3", (k_conv_shape){5, 7, 9, 6, 3, 3, 1, 1, 1, 1, 1}, 0);
    conv_up2_case("1x1", (k_conv_shape){4, 5, 3, 3, 1, 1, 1, 0, 0, 0, 0}, 0);
    conv_up2_case("asym-s2", (k_conv_shape){3, 6, 5, 2, 3, 2, 2, 0, 1, 2, 1}, 0);
    /* 64 x 9 x 96 columns x 100 rows > cap: several bands */
    conv_up2_case("bands", (k_conv_shape){64, 50, 48, 8, 3, 3, 1, 1, 1, 1, 1}, 1);
}

/* Winograd F(2x2, 3x3) through k_conv2d_batch against the plain sum (per image), or, for shapes
 * too large for k_conv2d_ref, against the direct kernel; and 1 vs 2 threads bitwise. */
static void wino_case(const char *label, k_conv_shape s, int B, int against_ref) {
    const size_t nx = (size_t)s.ci * s.h * s.w, ny = (size_t)s.co * s.h * s.w;
    float *x = rnd(nx * B, 1), *w = rnd((size_t)s.co * s.ci * 9, 0.3f), *b = rnd(s.co, 1);
    float *y = malloc(sizeof(float) * ny * B), *r = malloc(sizeof(float) * ny * B), *y1 = malloc(sizeof(float) * ny * B);
    size_t ns = k_conv2d_batch_scratch_floats(&s, B);
    float *scr = malloc(sizeof(float) * ns);
    char name[160];
    snprintf(name, sizeof name, "winograd %s: ci%d co%d %dx%d B%d takes the Winograd path", label, s.ci, s.co, s.h, s.w, B);
    t_check(k_conv3x3_wino_usable(&s, B), name, "%zu floats of scratch", ns);
    k_conv2d_batch(y, x, B, w, b, &s, scr);
    if (against_ref) {
        for (int i = 0; i < B; i++) k_conv2d_ref(r + i * ny, x + i * nx, w, b, &s);
    } else {
        k_conv_winograd_enable(0);
        float *sd = malloc(sizeof(float) * k_conv2d_scratch_floats(&s));
        for (int i = 0; i < B; i++) k_conv2d(r + i * ny, x + i * nx, w, b, &s, sd);
        free(sd);
        k_conv_winograd_enable(1);
    }
    /* both sums round at the scale of their largest terms: tolerance relative to the output range */
    double range = 0;
    for (size_t i = 0; i < ny * B; i++) range = fabs(r[i]) > range ? fabs(r[i]) : range;
    snprintf(name, sizeof name, "winograd %s vs %s", label, against_ref ? "reference" : "direct kernel");
    t_close(name, y, r, ny * B, 1e-5 * (range > 1 ? range : 1), 1e-5);
    omp_set_num_threads(1);
    k_conv2d_batch(y1, x, B, w, b, &s, scr);
    omp_set_num_threads(2);
    snprintf(name, sizeof name, "winograd %s 1 vs 2 threads bitwise", label);
    t_check(memcmp(y1, y, sizeof(float) * ny * B) == 0, name, "%s", "fixed tiles");
    free(x); free(w); free(b); free(y); free(r); free(y1); free(scr);
}

static void test_winograd(void) {
#if !defined(__AVX512F__)
    /* the transforms are AVX-512 only (the sanitizer build has no -march=native): the direct
     * kernels, tested above, take every shape */
    k_conv_shape s = {17, 23, 37, 33, 3, 3, 1, 1, 1, 1, 1};
    t_check(!k_conv3x3_wino_usable(&s, 1), "winograd off without AVX-512", "%s", "direct kernels instead");
    return;
#endif
    /* odd sizes: a partial last tile row and column, 19 tile columns (a 16-tile chunk + 3) */
    wino_case("odd", (k_conv_shape){17, 23, 37, 33, 3, 3, 1, 1, 1, 1, 1}, 1, 1);
    /* tiles of three images in one band */
    wino_case("batch", (k_conv_shape){32, 16, 16, 16, 3, 3, 1, 1, 1, 1, 1}, 3, 1);
    /* the nearest x2 upsampling read on the fly (k_conv2d_up2): stored 12 x 11 -> 24 x 22 */
    {
        k_conv_shape s = {20, 12, 11, 24, 3, 3, 1, 1, 1, 1, 1};
        const int ho = k_conv_up2_out_h(&s), wo = k_conv_up2_out_w(&s);
        const size_t ny = (size_t)s.co * ho * wo;
        float *x = rnd((size_t)s.ci * s.h * s.w, 1), *w = rnd((size_t)s.co * s.ci * 9, 0.3f), *b = rnd(s.co, 1);
        float *y = malloc(sizeof(float) * ny), *r = malloc(sizeof(float) * ny);
        float *scr = malloc(sizeof(float) * k_conv2d_up2_scratch_floats(&s));
        k_conv_shape u = s;
        u.h *= 2, u.w *= 2;
        t_check(k_conv3x3_wino_usable(&u, 1), "winograd up2 takes the Winograd path", "%s", "stored 12x11");
        k_conv2d_up2(y, x, w, b, &s, scr);
        k_conv2d_up2_ref(r, x, w, b, &s);
        t_close("winograd up2 ci20 12x11 -> 24x22 vs reference", y, r, ny, 1e-5, 1e-5);
        free(x); free(w); free(b); free(y); free(r); free(scr);
    }
    if (t_quick()) return;
    /* several bands of tile rows (2048 tiles of 9216 floats > the 16M-float cap) */
    wino_case("bands", (k_conv_shape){512, 64, 64, 64, 3, 3, 1, 1, 1, 1, 1}, 2, 0);
    /* several output-channel blocks (128 channels per block at ci 2048) */
    wino_case("co-blocks", (k_conv_shape){2048, 12, 12, 160, 3, 3, 1, 1, 1, 1, 1}, 4, 0);
}

static void test_norm(void) {
    const int shapes[][3] = {{8, 35, 4}, {12, 17, 3}, {32, 1, 32}, {64, 1000, 32}, {6, 7, 1}};
    char name[128];
    for (int t = 0; t < 5; t++) {
        int C = shapes[t][0], HW = shapes[t][1], G = shapes[t][2];
        size_t n = (size_t)C * HW;
        float *x = rnd(n, 2), *g = rnd(C, 1), *b = rnd(C, 1);
        for (size_t i = 0; i < n; i++) x[i] += 3.0f;   /* non-zero mean */
        float *y = malloc(sizeof(float) * n), *r = malloc(sizeof(float) * n);
        for (int silu = 0; silu < 2; silu++) {
            k_group_norm(y, x, g, b, C, HW, G, 1e-6f, silu);
            k_group_norm_ref(r, x, g, b, C, HW, G, 1e-6f, silu);
            snprintf(name, sizeof name, "group_norm C%d HW%d G%d silu%d", C, HW, G, silu);
            t_close(name, y, r, n, 1e-6, 1e-5);
        }
        memcpy(y, x, sizeof(float) * n);
        k_group_norm(y, y, g, b, C, HW, G, 1e-5f, 1);
        k_group_norm_ref(r, x, g, b, C, HW, G, 1e-5f, 1);
        snprintf(name, sizeof name, "group_norm in place C%d HW%d", C, HW);
        t_close(name, y, r, n, 1e-6, 1e-5);
        if (t == 3) {
            float *y1 = malloc(sizeof(float) * n);
            omp_set_num_threads(1);
            k_group_norm(y1, x, g, b, C, HW, G, 1e-6f, 1);
            omp_set_num_threads(2);
            k_group_norm(y, x, g, b, C, HW, G, 1e-6f, 1);
            t_check(memcmp(y, y1, sizeof(float) * n) == 0, "group_norm 1 vs 2 threads bitwise", "n=%zu", n);
            free(y1);
        }
        free(x); free(g); free(b); free(y); free(r);
    }
    /* large mean, small spread: the normalised values must not be lost to cancellation */
    {
        int C = 4, HW = 300;
        float *x = rnd((size_t)C * HW, 0.01f), *g = rnd(C, 1), *b = rnd(C, 1);
        for (int i = 0; i < C * HW; i++) x[i] += 1000.0f;
        float y[1200], r[1200];
        k_group_norm(y, x, g, b, C, HW, 2, 1e-6f, 0);
        k_group_norm_ref(r, x, g, b, C, HW, 2, 1e-6f, 0);
        t_close("group_norm mean 1000 std 0.006", y, r, (size_t)C * HW, 1e-5, 1e-5);
        free(x); free(g); free(b);
    }
    /* layer norm against an inline double reference */
    {
        int N = 13, C = 37;
        float *x = rnd((size_t)N * C, 3), *g = rnd(C, 1), *b = rnd(C, 1), *y = malloc(sizeof(float) * N * C);
        float *r = malloc(sizeof(float) * N * C);
        for (int i = 0; i < N; i++) {
            double s = 0, v = 0;
            for (int j = 0; j < C; j++) s += x[i * C + j];
            s /= C;
            for (int j = 0; j < C; j++) v += (x[i * C + j] - s) * (x[i * C + j] - s);
            v = 1 / sqrt(v / C + 1e-5);
            for (int j = 0; j < C; j++) r[i * C + j] = (float)((x[i * C + j] - s) * v * g[j] + b[j]);
        }
        k_layer_norm(y, x, g, b, N, C, 1e-5f);
        t_close("layer_norm 13x37", y, r, (size_t)N * C, 1e-6, 1e-5);
        k_layer_norm(x, x, g, b, N, C, 1e-5f);
        t_close("layer_norm in place", x, r, (size_t)N * C, 1e-6, 1e-5);
        free(x); free(g); free(b); free(y); free(r);
    }
}

/* Packed qkv buffer [N, 3*heads*dh] (strided q/k/v) when `packed`, else separate. */
static void attn_case(const char *label, int Nq, int Nk, int heads, int dh, int causal, int packed, int threads) {
    int C = heads * dh, ld = packed ? 3 * C : C + 3, ldo = C + 5;
    int N = Nq > Nk ? Nq : Nk;
    float *buf = rnd((size_t)N * ld * (packed ? 1 : 3), 1.5f);
    const float *q = buf, *k = packed ? buf + C : buf + (size_t)N * ld, *v = packed ? buf + 2 * C : buf + (size_t)2 * N * ld;
    size_t no = (size_t)Nq * ldo;
    float *o = calloc(no, sizeof(float)), *r = calloc(no, sizeof(float));
    size_t ns = k_attention_scratch_floats(Nq, Nk);
    float *scr = malloc(sizeof(float) * ns);
    float scale = 1.0f / sqrtf((float)dh);
    k_attention(o, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale, causal, scr);
    k_attention_ref(r, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale, causal);
    char name[160];
    snprintf(name, sizeof name, "attention %s Nq%d Nk%d h%d dh%d causal%d packed%d", label, Nq, Nk, heads, dh, causal, packed);
    t_close(name, o, r, no, 1e-5, 1e-4);
    if (threads) {
        float *o1 = calloc(no, sizeof(float));
        omp_set_num_threads(1);
        k_attention(o1, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale, causal, scr);
        omp_set_num_threads(2);
        k_attention(o, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale, causal, scr);
        snprintf(name, sizeof name, "attention %s 1 vs 2 threads bitwise", label);
        t_check(memcmp(o, o1, sizeof(float) * no) == 0, name, "scratch %zu floats", ns);
        free(o1);
    }
    free(buf); free(o); free(r); free(scr);
}

static void test_attention(void) {
    attn_case("clip", 77, 77, 4, 8, 1, 1, 1);
    attn_case("self", 96, 96, 2, 16, 0, 0, 0);
    attn_case("cross", 45, 77, 3, 5, 0, 0, 0);
    attn_case("odd", 1, 3, 1, 7, 0, 1, 0);
    attn_case("causal-rect", 13, 20, 2, 3, 1, 0, 0);
    attn_case("vae-mid", 96, 96, 1, 32, 0, 0, 0);
    /* Nk = 8192 leaves 512 query rows per block: 700 queries take two blocks */
    attn_case("blocks", 700, 8192, 2, 4, 0, 0, 1);
    attn_case("blocks-causal", 700, 8192, 1, 4, 1, 1, 0);
    /* SD head sizes on the flash path (several 192-key blocks, partial last block, odd query
     * groups), a causal multi-block case, and a head too large for it (sgemm blocks) */
    attn_case("sd-dh40", 203, 401, 2, 40, 0, 0, 1);
    attn_case("sd-dh160", 37, 250, 1, 160, 0, 1, 0);
    attn_case("sd-cross", 50, 77, 2, 80, 0, 0, 0);
    attn_case("causal-blocks", 300, 300, 1, 24, 1, 0, 1);
    attn_case("big-head", 70, 90, 1, 300, 0, 0, 1);
    size_t ns = k_attention_scratch_floats(4096, 4096);
    t_check(ns <= ((size_t)1 << 22), "attention scratch bounded (4096x4096)", "%zu floats", ns);
}

static void test_elementwise(void) {
    size_t n = 1001;
    float *x = rnd(n, 6), *y = malloc(sizeof(float) * n), *r = malloc(sizeof(float) * n);
    memcpy(y, x, sizeof(float) * n); k_silu(y, n);
    for (size_t i = 0; i < n; i++) r[i] = (float)(x[i] / (1 + exp(-(double)x[i])));
    t_close("silu", y, r, n, 1e-6, 1e-6);
    memcpy(y, x, sizeof(float) * n); k_gelu_erf(y, n);
    for (size_t i = 0; i < n; i++) r[i] = (float)(0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0))));
    t_close("gelu_erf", y, r, n, 1e-6, 1e-6);
    memcpy(y, x, sizeof(float) * n); k_quick_gelu(y, n);
    for (size_t i = 0; i < n; i++) r[i] = (float)(x[i] / (1 + exp(-1.702 * x[i])));
    t_close("quick_gelu", y, r, n, 1e-6, 1e-6);
    memcpy(y, x, sizeof(float) * n); k_add(y, x, n);
    for (size_t i = 0; i < n; i++) r[i] = 2 * x[i];
    t_close("add", y, r, n, 0, 0);
    {
        int N = 7, D = 37; /* two vectors and a scalar tail per row */
        float *in = rnd((size_t)N * 2 * D, 8), out[7 * 37], ref[7 * 37];
        k_geglu(out, in, N, D);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < D; j++) {
                double a = in[i * 2 * D + j], g = in[i * 2 * D + D + j];
                ref[i * D + j] = (float)(a * 0.5 * g * (1 + erf(g / sqrt(2.0))));
            }
        t_close("geglu 7x37", out, ref, (size_t)N * D, 1e-6, 1e-6);
        free(in);
    }
    /* nearest: x2, identity, 2->3, 3->5, 5->8 (non-multiples), and shrink */
    const int ups[][4] = {{4, 6, 8, 12}, {3, 5, 3, 5}, {2, 3, 3, 5}, {5, 7, 8, 13}, {6, 6, 4, 9}};
    for (int t = 0; t < 5; t++) {
        int C = 3, H = ups[t][0], W = ups[t][1], Ho = ups[t][2], Wo = ups[t][3];
        float *a = rnd((size_t)C * H * W, 1), *b = malloc(sizeof(float) * C * Ho * Wo), *c = malloc(sizeof(float) * C * Ho * Wo);
        k_upsample_nearest(b, a, C, H, W, Ho, Wo);
        for (int ch = 0; ch < C; ch++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++)
                    c[(ch * Ho + i) * Wo + j] = a[(ch * H + (int)((int64_t)i * H / Ho)) * W + (int)((int64_t)j * W / Wo)];
        char name[96];
        snprintf(name, sizeof name, "upsample_nearest %dx%d -> %dx%d", H, W, Ho, Wo);
        t_close(name, b, c, (size_t)C * Ho * Wo, 0, 0);
        free(a); free(b); free(c);
    }
    {
        int R = 37, Cc = 70;
        float *a = rnd((size_t)R * Cc, 1), *b = malloc(sizeof(float) * R * Cc), *c = malloc(sizeof(float) * R * Cc);
        k_transpose(b, a, R, Cc);
        k_transpose(c, b, Cc, R);
        int ok = 1;
        for (int i = 0; i < R; i++)
            for (int j = 0; j < Cc; j++) ok &= b[j * R + i] == a[i * Cc + j];
        t_check(ok && memcmp(a, c, sizeof(float) * R * Cc) == 0, "transpose 37x70 and back", "exact");
        free(a); free(b); free(c);
    }
    free(x); free(y); free(r);
}

/* ---- BF16 (AMX) kernels: against their bf16 references (same rounding of x and W, double
 * sums: only the fp32 accumulation order differs) and, loosely, against fp32. ---- */
static k_bf16_weight pack_new(k_bf16_weight d, const float *w) {
    d.p = malloc(sizeof(uint16_t) * k_bf16_packed_elems(&d));
    k_bf16_pack(&d, d.p, w);
    return d;
}

static void bf16_linear_case(int M, int K, int N, int bias) {
    char name[128];
    float *x = rnd((size_t)M * K, 1), *w = rnd((size_t)N * K, 1.0f / sqrtf((float)K)), *b = bias ? rnd(N, 1) : NULL;
    float *y = malloc(sizeof(float) * M * N), *r = malloc(sizeof(float) * M * N), *f = malloc(sizeof(float) * M * N);
    k_bf16_weight pw = pack_new(k_bf16_linear_desc(K, N), w);
    k_linear_bf16(y, x, &pw, b, M, K, N);
    k_linear_bf16_ref(r, x, &pw, b, M, K, N);
    k_linear_ref(f, x, w, b, M, K, N);
    snprintf(name, sizeof name, "linear bf16 %dx%d->%d bias %d vs bf16 ref", M, K, N, bias);
    t_close(name, y, r, (size_t)M * N, 1e-5, 1e-4);
    snprintf(name, sizeof name, "linear bf16 %dx%d->%d vs fp32", M, K, N);
    t_close(name, y, f, (size_t)M * N, 2e-2, 2e-2);
    omp_set_num_threads(1);
    k_linear_bf16(r, x, &pw, b, M, K, N);
    omp_set_num_threads(2);
    snprintf(name, sizeof name, "linear bf16 %dx%d->%d 1 vs 2 threads bitwise", M, K, N);
    t_check(memcmp(y, r, sizeof(float) * M * N) == 0, name, "n=%d", M * N);
    /* unpack gives the bf16 values back exactly */
    float *wu = malloc(sizeof(float) * N * K);
    k_bf16_unpack(&pw, wu, pw.p);
    int ok = 1;
    for (size_t i = 0; i < (size_t)N * K; i++) ok &= wu[i] == k_bf16_to_f32(k_f32_to_bf16(w[i]));
    free(wu);
    snprintf(name, sizeof name, "linear bf16 %dx%d pack/unpack", K, N);
    t_check(ok, name, "exact");
    free(x); free(w); free(b); free(y); free(r); free(f); free(pw.p);
}

static void bf16_conv_case(const char *label, k_conv_shape s, int up) {
    char name[160];
    k_conv_shape v = s;
    if (up) { v.h *= 2; v.w *= 2; }
    const int ho = k_conv_out_h(&v), wo = k_conv_out_w(&v);
    const size_t ny = (size_t)s.co * ho * wo;
    float *x = rnd((size_t)s.ci * s.h * s.w, 1), *w = rnd((size_t)s.co * s.ci * s.kh * s.kw, 1.0f / sqrtf((float)(s.ci * s.kh * s.kw)));
    float *b = rnd(s.co, 1), *y = malloc(sizeof(float) * ny), *r = malloc(sizeof(float) * ny), *f = malloc(sizeof(float) * ny);
    k_bf16_weight pw = pack_new(k_bf16_conv_desc(s.co, s.ci, s.kh, s.kw, s.stride), w);
    size_t ns = up ? k_conv2d_up2_bf16_scratch_floats(&s) : k_conv2d_bf16_scratch_floats(&s);
    float *scr = malloc(sizeof(float) * (ns ? ns : 1));
    if (up) {
        k_conv2d_up2_bf16(y, x, &pw, b, &s, scr);
        k_conv2d_up2_bf16_ref(r, x, &pw, b, &s);
        k_conv2d_up2_ref(f, x, w, b, &s);
    } else {
        k_conv2d_bf16(y, x, &pw, b, &s, scr);
        k_conv2d_bf16_ref(r, x, &pw, b, &s);
        k_conv2d_ref(f, x, w, b, &s);
    }
    snprintf(name, sizeof name, "conv bf16 %s vs bf16 ref", label);
    t_close(name, y, r, ny, 1e-5, 1e-4);
    snprintf(name, sizeof name, "conv bf16 %s vs fp32", label);
    t_close(name, y, f, ny, 2e-2, 2e-2);
    omp_set_num_threads(1);
    if (up) k_conv2d_up2_bf16(r, x, &pw, b, &s, scr);
    else k_conv2d_bf16(r, x, &pw, b, &s, scr);
    omp_set_num_threads(2);
    snprintf(name, sizeof name, "conv bf16 %s 1 vs 2 threads bitwise", label);
    t_check(memcmp(y, r, sizeof(float) * ny) == 0, name, "scratch %zu floats", ns);
    free(x); free(w); free(b); free(y); free(r); free(f); free(scr); free(pw.p);
}

/* bf16 attention against its reference (k, v rounded the same way, double sums: the
 * softmax weights' rounding to bf16 is the remaining difference) and, loosely, fp32. */
static void bf16_attn_case(const char *label, int Nq, int Nk, int heads, int dh, int packed, int threads) {
    const int C = heads * dh, ld = packed ? 3 * C : C + 3, ldo = C + 5, N = Nq > Nk ? Nq : Nk;
    float *buf = rnd((size_t)N * ld * (packed ? 1 : 3), 1.5f);
    const float *q = buf, *k = packed ? buf + C : buf + (size_t)N * ld, *v = packed ? buf + 2 * C : buf + (size_t)2 * N * ld;
    const size_t no = (size_t)Nq * ldo, ns = k_attention_scratch_floats(Nq, Nk);
    float *o = calloc(no, sizeof(float)), *r = calloc(no, sizeof(float)), *f = calloc(no, sizeof(float));
    float *scr = malloc(sizeof(float) * ns);
    const float scale = 1.0f / sqrtf((float)dh);
    char name[160];
    k_attention_bf16(o, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale, scr);
    k_attention_bf16_ref(r, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale);
    k_attention_ref(f, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale, 0);
    snprintf(name, sizeof name, "attention bf16 %s Nq%d Nk%d h%d dh%d vs bf16 ref", label, Nq, Nk, heads, dh);
    t_close(name, o, r, no, 5e-3, 1e-2);
    snprintf(name, sizeof name, "attention bf16 %s vs fp32", label);
    t_close(name, o, f, no, 1e-2, 1e-2);
    if (threads) {
        omp_set_num_threads(1);
        k_attention_bf16(r, ldo, q, ld, k, ld, v, ld, Nq, Nk, heads, dh, scale, scr);
        omp_set_num_threads(2);
        snprintf(name, sizeof name, "attention bf16 %s 1 vs 2 threads bitwise", label);
        t_check(memcmp(o, r, sizeof(float) * no) == 0, name, "scratch %zu floats", ns);
    }
    free(buf); free(o); free(r); free(f); free(scr);
}

static void test_bf16(void) {
    t_check(1, "bf16 kernels", "%s", k_bf16_available() ? "AMX-BF16 in use" : "no AMX-BF16: references only");
    bf16_linear_case(37, 70, 50, 1);
    bf16_linear_case(130, 320, 96, 0);
    bf16_linear_case(1100, 64, 48, 1);   /* two row chunks */
    bf16_conv_case("3x3 ci5 co7 9x11", (k_conv_shape){5, 9, 11, 7, 3, 3, 1, 1, 1, 1, 1}, 0);
    bf16_conv_case("3x3 ci64 co48 20x17", (k_conv_shape){64, 20, 17, 48, 3, 3, 1, 1, 1, 1, 1}, 0);
    bf16_conv_case("1x1 ci40 co24 13x7", (k_conv_shape){40, 13, 7, 24, 1, 1, 1, 0, 0, 0, 0}, 0);
    bf16_conv_case("3x3 s2 ci9 co20 15x12", (k_conv_shape){9, 15, 12, 20, 3, 3, 2, 1, 1, 1, 1}, 0);
    bf16_conv_case("3x3 s2 pad0101 ci8 co16 16x16", (k_conv_shape){8, 16, 16, 16, 3, 3, 2, 0, 1, 0, 1}, 0);
    bf16_conv_case("up2 3x3 ci33 co17 6x5", (k_conv_shape){33, 6, 5, 17, 3, 3, 1, 1, 1, 1, 1}, 1);
    bf16_conv_case("3x3 ci64 co2 270x1000 (3 bands)", (k_conv_shape){64, 270, 1000, 2, 3, 3, 1, 1, 1, 1, 1}, 0);
    /* SD head sizes (dh 40 pads to 64 dims, 80 to 96), partial key blocks and query groups,
     * cross attention's 77 keys, one key, strided q/k/v, and a head past the AMX limit */
    bf16_attn_case("sd-dh40", 203, 401, 2, 40, 0, 1);
    bf16_attn_case("sd-cross-dh80", 50, 77, 2, 80, 1, 0);
    bf16_attn_case("sd-dh160", 37, 250, 1, 160, 0, 1);
    bf16_attn_case("tiny", 5, 1, 3, 8, 0, 0);
    bf16_attn_case("dh20", 64, 64, 2, 20, 1, 0);
    bf16_attn_case("big-head", 20, 30, 1, 300, 0, 0);
}

int main(int argc, char **argv) {
    (void)argc;
    test_gemm();
    test_conv();
    test_conv_up2();
    test_winograd();
    test_norm();
    test_attention();
    test_elementwise();
    test_bf16();
    return t_summary(argv[0]);
}
