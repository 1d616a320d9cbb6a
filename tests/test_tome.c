/* Token merging (src/edit/tome.h): the tomesd goldens, the fused similarity argmax against its
 * reference, K/V plans against an independent brute-force merge, per-frame destination draws,
 * Object-Centric ToMe's mask property, and the plan store. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "base/util.h"
#include "edit/tome.h"
#include "testlib.h"

static float *randn(uint64_t stream, size_t n) {
    float *x = malloc(sizeof(float) * n);
    rng_normal(1234, stream, x, n);
    return x;
}

/* ---- goldens ----------------------------------------------------------------------------- */

static void test_golden(const char *name) {
    st_file *g = golden_open(name);
    const st_tensor *xt = st_find(g, "x"), *yt = st_find(g, "y");
    int B = (int)xt->shape[0], N = (int)xt->shape[1], C = (int)xt->shape[2], M = (int)yt->shape[1];
    json_t *params = json_object_get(golden_spec(g), "params");
    int h = (int)json_integer_value(json_object_get(params, "h")), w = (int)json_integer_value(json_object_get(params, "w"));
    float *x = golden_f32(g, "x"), *y = golden_f32(g, "y");
    float *merged = malloc(sizeof(float) * B * M * C), *unm = malloc(sizeof(float) * B * N * C);
    float *rt = malloc(sizeof(float) * B * N * C);
    tome_plan p;
    tome_plan_init(&p, N);
    int ok = 1;
    for (int b = 0; b < B; b++) {
        ok &= !tome_bipartite_plan(x + (size_t)b * N * C, C, h, w, 2, 2, 0.5f, NULL, &p);
        ok &= p.n_out == M;
        tome_merge(&p, x + (size_t)b * N * C, C, merged + (size_t)b * M * C);
        tome_unmerge(&p, y + (size_t)b * M * C, C, unm + (size_t)b * N * C);
        tome_unmerge(&p, merged + (size_t)b * M * C, C, rt + (size_t)b * N * C);
    }
    t_check(ok, name, "plan built, %d -> %d tokens (r = %d, %d dst)", N, p.n_out, p.r, p.n_dst);
    golden_check(g, "merged", merged, (size_t)B * M * C);
    golden_check(g, "unmerged_y", unm, (size_t)B * N * C);
    golden_check(g, "roundtrip", rt, (size_t)B * N * C);
    tome_plan_free(&p);
    free(x); free(y); free(merged); free(unm); free(rt);
    st_close(g);
}

/* ---- fused argmax vs reference ----------------------------------------------------------- */

static void test_best_match(int n_src, int n_dst, int C, uint64_t stream) {
    int N = n_src + n_dst;
    float *x = randn(stream, (size_t)N * C);
    int32_t *si = malloc(sizeof(int32_t) * n_src), *di = malloc(sizeof(int32_t) * n_dst);
    /* interleave: every (N / n_dst)-th token is a destination */
    int a = 0, b = 0;
    for (int t = 0; t < N; t++) {
        if (b < n_dst && (a >= n_src || (long)t * n_dst / N != (long)(t + 1) * n_dst / N)) di[b++] = t;
        else si[a++] = t;
    }
    float *bf = malloc(sizeof(float) * n_src), *br = malloc(sizeof(float) * n_src);
    int32_t *af = malloc(sizeof(int32_t) * n_src), *ar = malloc(sizeof(int32_t) * n_src);
    float *scr = malloc(sizeof(float) * tome_match_scratch_floats(n_dst, C));
    double t0 = ocd_now();
    tome_best_match_ref(x, C, si, n_src, di, n_dst, br, ar);
    double t1 = ocd_now();
    tome_best_match(x, C, si, n_src, di, n_dst, bf, af, scr);
    double t2 = ocd_now();
    int diff = 0, bad = 0;
    for (int i = 0; i < n_src; i++) {
        if (af[i] == ar[i]) continue;
        diff++;
        /* a different index is only acceptable for a float near-tie of the two candidates */
        if (fabsf(bf[i] - br[i]) > 1e-5f) bad++;
    }
    char name[96];
    snprintf(name, sizeof name, "best_match %dx%d C=%d", n_src, n_dst, C);
    t_check(bad == 0 && diff == 0, name, "argmax equal for %d/%d sources (%d near-ties); ref %.1f ms, fused %.1f ms",
            n_src - diff, n_src, diff - bad, 1e3 * (t1 - t0), 1e3 * (t2 - t1));
    t_close(name, bf, br, n_src, 1e-6, 1e-5);
    free(x); free(si); free(di); free(bf); free(br); free(af); free(ar); free(scr);
}

/* ---- independent brute-force K/V merge (token layout) ------------------------------------ */

/* Out [M, C] for keys of n_frames h x w grids: partition by formula, best dst by plain loops,
 * stable insertion sort of the scores (descending), top r averaged into their dst. */
static int brute_merge(const float *k, int C, int h, int w, int n_frames, const int32_t *choice,
                       const uint8_t *fg, float lambda, int r_forced, float ratio, int min_tokens, float *out) {
    int N = n_frames * h * w, cells = (h / 2) * (w / 2);
    int *is_dst = calloc(N, sizeof(int)), *src = malloc(sizeof(int) * N), *dst = malloc(sizeof(int) * N);
    int ns = 0, nd = 0;
    for (int t = 0; t < N; t++) {
        int f = t / (h * w), y = t % (h * w) / w, x = t % w;
        if (y / 2 < h / 2 && x / 2 < w / 2 && (y % 2) * 2 + x % 2 == choice[f * cells + (y / 2) * (w / 2) + x / 2])
            is_dst[t] = 1;
    }
    for (int t = 0; t < N; t++) { if (is_dst[t]) dst[nd++] = t; else src[ns++] = t; }
    int r = r_forced >= 0 ? r_forced : (int)(ratio * ns);
    if (N - r < min_tokens * n_frames) r = N - min_tokens * n_frames;
    if (r < 0) r = 0;
    float *score = malloc(sizeof(float) * ns);
    int *best = malloc(sizeof(int) * ns), *order = malloc(sizeof(int) * ns);
    for (int i = 0; i < ns; i++) {
        const float *a = k + (size_t)src[i] * C;
        double na = 0;
        for (int c = 0; c < C; c++) na += (double)a[c] * a[c];
        double bv = -1e30;
        for (int j = 0; j < nd; j++) {
            const float *bb = k + (size_t)dst[j] * C;
            double nb = 0, d = 0;
            for (int c = 0; c < C; c++) { nb += (double)bb[c] * bb[c]; d += (double)a[c] * bb[c]; }
            double s = d / sqrt(na * nb);
            if (s > bv) { bv = s; best[i] = j; }
        }
        score[i] = (float)bv - (fg && fg[src[i]] ? lambda : 0.0f);
        int p = i;
        while (p > 0 && score[order[p - 1]] < score[i]) { order[p] = order[p - 1]; p--; }
        order[p] = i;
    }
    int *merged_into = malloc(sizeof(int) * N), *cnt = calloc(N, sizeof(int));
    for (int t = 0; t < N; t++) merged_into[t] = -1;
    for (int q = 0; q < r; q++) merged_into[src[order[q]]] = dst[best[order[q]]];
    double *acc = calloc((size_t)N * C, sizeof(double));
    for (int t = 0; t < N; t++) {
        int d = merged_into[t] >= 0 ? merged_into[t] : t;
        cnt[d]++;
        for (int c = 0; c < C; c++) acc[(size_t)d * C + c] += k[(size_t)t * C + c];
    }
    int m = 0;
    for (int t = 0; t < N; t++)
        if (merged_into[t] < 0) {
            for (int c = 0; c < C; c++) out[(size_t)m * C + c] = (float)(acc[(size_t)t * C + c] / cnt[t]);
            m++;
        }
    free(is_dst); free(src); free(dst); free(score); free(best); free(order); free(merged_into); free(cnt); free(acc);
    return m;
}

typedef struct {
    int h, w, F, C, N;
    float *k, *v;
    int32_t *choice;     /* [F, cells] */
    void *scratch;
    size_t scratch_bytes;
    tome_plan plan;
    float *ko, *vo;
} kv_case;

static void kv_setup(kv_case *c, int h, int w, int F, int C, uint64_t stream, int positive) {
    c->h = h; c->w = w; c->F = F; c->C = C; c->N = F * h * w;
    c->k = randn(stream, (size_t)c->N * C);
    c->v = randn(stream + 1, (size_t)c->N * C);
    if (positive)   /* all coordinates > 0: every cosine is positive */
        for (size_t i = 0; i < (size_t)c->N * C; i++) c->k[i] = fabsf(c->k[i]) + 0.05f;
    int cells = tome_n_cells(h, w, 2, 2);
    c->choice = malloc(sizeof(int32_t) * (F * cells + 1));
    for (int f = 0; f < F; f++) tome_draw_dst(42, 3, 7, f, h, w, 2, 2, c->choice + f * cells);
    tome_params p;
    tome_params_default(&p);
    c->scratch_bytes = tome_kv_scratch_bytes(&p, h, w, F, C);
    c->scratch = malloc(c->scratch_bytes);
    tome_plan_init(&c->plan, c->N);
    c->ko = malloc(sizeof(float) * c->N * C);
    c->vo = malloc(sizeof(float) * c->N * C);
}

static void kv_free(kv_case *c) {
    free(c->k); free(c->v); free(c->choice); free(c->scratch); free(c->ko); free(c->vo);
    tome_plan_free(&c->plan);
}

static int kv_plan(kv_case *c, float ratio, int min_tokens, const uint8_t *fg, float lambda) {
    tome_params p;
    tome_params_default(&p);
    p.ratio = ratio;
    p.min_tokens = min_tokens;
    p.lambda = lambda;
    return tome_kv_plan(&p, c->k, c->C, c->h, c->w, c->F, c->choice, fg, c->scratch, c->scratch_bytes, &c->plan);
}

static void test_kv_against_brute(void) {
    kv_case c;
    kv_setup(&c, 12, 10, 2, 24, 100, 0);
    int ok = !kv_plan(&c, 0.5f, 8, NULL, 1.0f);
    tome_merge_kv(&c.plan, c.k, c.v, c.C, c.ko, c.vo);
    float *ref = malloc(sizeof(float) * c.N * c.C);
    int m = brute_merge(c.k, c.C, c.h, c.w, c.F, c.choice, NULL, 0, -1, 0.5f, 8, ref);
    int n_src = c.N - 2 * tome_n_cells(12, 10, 2, 2);
    t_check(ok && m == c.plan.n_out && c.plan.r == n_src / 2, "kv_plan size",
            "%d tokens -> %d (r = %d of %d sources; brute force %d)", c.N, c.plan.n_out, c.plan.r, n_src, m);
    t_close("kv_plan merged K vs brute force", c.ko, ref, (size_t)m * c.C, 1e-6, 1e-5);
    long cnt = 0, cross = 0;
    for (int t = 0; t < c.N; t++) {
        int d = c.plan.keep[c.plan.into[t]];
        if (d != t && d / (c.h * c.w) != t / (c.h * c.w)) cross++;
    }
    for (int i = 0; i < c.plan.n_out; i++) cnt += c.plan.count[i];
    t_check(cnt == c.N && cross > 0, "kv_plan window", "counts sum to %ld of %d; %ld sources merged into the other frame",
            cnt, c.N, cross);
    /* values follow the same plan: V' row m = mean of the V rows of its tokens */
    float *vref = calloc((size_t)c.plan.n_out * c.C, sizeof(float));
    for (int t = 0; t < c.N; t++)
        for (int ch = 0; ch < c.C; ch++) vref[(size_t)c.plan.into[t] * c.C + ch] += c.v[(size_t)t * c.C + ch];
    for (int i = 0; i < c.plan.n_out; i++)
        for (int ch = 0; ch < c.C; ch++) vref[(size_t)i * c.C + ch] /= c.plan.count[i];
    t_close("kv_plan merged V (same indices)", c.vo, vref, (size_t)c.plan.n_out * c.C, 1e-6, 1e-5);
    /* min_tokens caps r; a level of min_tokens tokens merges nothing */
    ok = !kv_plan(&c, 0.5f, 100, NULL, 1.0f);
    int ok2 = ok && c.plan.n_out == 200;
    kv_case s;
    kv_setup(&s, 8, 8, 1, 8, 110, 0);
    ok = !kv_plan(&s, 0.5f, 64, NULL, 1.0f);
    t_check(ok2 && ok && s.plan.r == 0 && s.plan.n_out == 64, "kv_plan min_tokens",
            "2x12x10 with min 100/frame keeps %d; 8x8 with min 64 merges %d", c.plan.n_out, s.plan.r);
    kv_free(&s);
    free(ref); free(vref);
    kv_free(&c);
}

static void test_ratio0(void) {
    kv_case c;
    kv_setup(&c, 16, 16, 2, 16, 200, 0);
    int ok = !kv_plan(&c, 0.0f, 0, NULL, 1.0f);
    tome_merge_kv(&c.plan, c.k, c.v, c.C, c.ko, c.vo);
    ok = ok && c.plan.n_out == c.N && !memcmp(c.ko, c.k, sizeof(float) * c.N * c.C) &&
         !memcmp(c.vo, c.v, sizeof(float) * c.N * c.C);
    t_check(ok, "ratio 0", "K' = K and V' = V bit-exactly (%d tokens)", c.plan.n_out);
    kv_free(&c);
}

static void test_draws(void) {
    int cells = tome_n_cells(32, 32, 2, 2);
    int32_t *a = malloc(sizeof(int32_t) * cells * 4);
    int ok = !tome_draw_dst(7, 10, 3, 0, 32, 32, 2, 2, a) && !tome_draw_dst(7, 10, 3, 1, 32, 32, 2, 2, a + cells) &&
             !tome_draw_dst(7, 10, 3, 0, 32, 32, 2, 2, a + 2 * cells) && !tome_draw_dst(7, 11, 3, 0, 32, 32, 2, 2, a + 3 * cells);
    int same01 = 0, same02 = 0, same03 = 0, hist[4] = {0};
    for (int i = 0; i < cells; i++) {
        same01 += a[i] == a[cells + i];
        same02 += a[i] == a[2 * cells + i];
        same03 += a[i] == a[3 * cells + i];
        if (a[i] >= 0 && a[i] < 4) hist[a[i]]++;
    }
    /* independent uniform draws agree on ~1/4 of the cells */
    t_check(ok && same02 == cells && same01 < cells / 2 && same03 < cells / 2 && hist[0] > 0 && hist[3] > 0,
            "dst draws", "same seed: %d/%d equal; frame 0 vs 1: %d equal; step 10 vs 11: %d; counts %d %d %d %d",
            same02, cells, same01, same03, hist[0], hist[1], hist[2], hist[3]);
    /* the partition follows the draw: frames 0 and 1 get different destination tokens */
    int32_t *di = malloc(sizeof(int32_t) * 2 * cells), *si = malloc(sizeof(int32_t) * 2 * 3 * cells);
    ok = !tome_partition(32, 32, 2, 2, 2, a, di, si);
    int diff = 0;
    for (int i = 0; i < cells; i++) diff += di[i] != di[cells + i] - 32 * 32;
    t_check(ok && diff > cells / 2, "dst per frame", "%d of %d cells place the destination differently in frame 1", diff, cells);
    free(a); free(di); free(si);
}

/* With a foreground region R: no source of R is merged while an unmerged background source
 * remains (i.e. either no R source merged or every background source merged). */
static void check_mask(kv_case *c, const uint8_t *fg, const int32_t *di_all, float ratio, float lambda, const char *name) {
    int ok = !kv_plan(c, ratio, 0, fg, lambda);
    int *is_dst = calloc(c->N, sizeof(int)), n_dst = c->F * tome_n_cells(c->h, c->w, 2, 2);
    for (int j = 0; j < n_dst; j++) is_dst[di_all[j]] = 1;
    int fg_merged = 0, bg_unmerged = 0, bg_merged = 0, fg_src = 0;
    for (int t = 0; t < c->N; t++) {
        if (is_dst[t]) continue;
        int merged = c->plan.keep[c->plan.into[t]] != t;
        if (fg[t]) { fg_src++; fg_merged += merged; }
        else { bg_unmerged += !merged; bg_merged += merged; }
    }
    t_check(ok && !(fg_merged > 0 && bg_unmerged > 0) && c->plan.r > 0, name,
            "r %d: fg sources merged %d of %d, bg merged %d, bg unmerged %d", c->plan.r, fg_merged, fg_src, bg_merged,
            bg_unmerged);
    free(is_dst);
}

static void test_mask(void) {
    kv_case c;
    kv_setup(&c, 16, 16, 2, 16, 300, 1);
    /* latent mask 32x32 per frame, a box, pooled to the 16x16 grid */
    float *lat = calloc(32 * 32, sizeof(float));
    for (int y = 5; y < 20; y++) for (int x = 9; x < 27; x++) lat[y * 32 + x] = 1;
    uint8_t *fg = malloc(c.N);
    tome_pool_mask(lat, 32, 32, 16, 16, fg);
    tome_pool_mask(lat, 32, 32, 16, 16, fg + 256);
    int pooled_ok = fg[2 * 16 + 4] && !fg[2 * 16 + 3] && fg[9 * 16 + 13] && !fg[10 * 16 + 13] && !fg[1 * 16 + 6];
    uint8_t odd[5 * 7];
    tome_pool_mask(lat, 32, 32, 5, 7, odd);   /* windows of 6.4 x 4.57 pixels, overlapping */
    int n_odd = 0;
    for (int i = 0; i < 35; i++) n_odd += odd[i];
    t_check(pooled_ok && odd[0] == 0 && odd[1 * 7 + 3] == 1 && n_odd > 0, "tome_pool_mask",
            "box rows 5..19 cols 9..26 -> 16x16 rows 2..9 cols 4..13; 5x7: %d cells", n_odd);
    int32_t *di = malloc(sizeof(int32_t) * c.N), *si = malloc(sizeof(int32_t) * c.N);
    tome_partition(16, 16, 2, 2, 2, c.choice, di, si);
    check_mask(&c, fg, di, 0.5f, 1.0f, "object-centric ratio 0.5");
    check_mask(&c, fg, di, 0.9f, 1.0f, "object-centric ratio 0.9");
    /* arbitrary-sign keys: lambda 2 separates any scores in [-1, 1] */
    kv_case d;
    kv_setup(&d, 16, 16, 2, 16, 310, 0);
    tome_partition(16, 16, 2, 2, 2, d.choice, di, si);
    check_mask(&d, fg, di, 0.6f, 2.0f, "object-centric lambda 2, signed keys");
    /* without the mask, foreground sources are merged at ratio 0.5 */
    kv_plan(&c, 0.5f, 0, NULL, 1.0f);
    int fg_merged = 0;
    for (int t = 0; t < c.N; t++) fg_merged += fg[t] && c.plan.keep[c.plan.into[t]] != t;
    t_check(fg_merged > 0, "plain ToMe merges foreground", "%d foreground tokens merged without the mask", fg_merged);
    free(lat); free(fg); free(di); free(si);
    kv_free(&c);
    kv_free(&d);
}

static void test_store(void) {
    tome_plan_store *s = tome_store_new();
    kv_case c;
    kv_setup(&c, 16, 16, 2, 16, 400, 0);
    /* reserved up front (12 plans of at most 2 x 512 int16 indices): the puts below allocate nothing */
    const int rrc = tome_store_reserve(s, 12, 12 * 2 * 512 * 2);
    const size_t reserved = tome_store_bytes(s);
    t_check(!rrc, "plan store reserve", "%zu bytes", reserved);
    tome_plan got;
    tome_plan_init(&got, c.N);
    float *k2 = malloc(sizeof(float) * c.N * c.C), *v2 = malloc(sizeof(float) * c.N * c.C);
    int ok = 1, same = 1;
    size_t payload = 0;
    /* "inversion": plans for 3 steps x 2 layers x 2 frames, each with its own draws */
    float **kref = calloc(12, sizeof(float *));
    for (int step = 0; step < 3; step++)
        for (int layer = 0; layer < 2; layer++)
            for (int item = 0; item < 2; item++) {
                int cells = tome_n_cells(16, 16, 2, 2), e = (step * 2 + layer) * 2 + item;
                for (int f = 0; f < 2; f++) tome_draw_dst(9, step, layer, (item + f) % 2, 16, 16, 2, 2, c.choice + f * cells);
                ok &= !kv_plan(&c, 0.5f, 16, NULL, 1.0f) && !tome_store_put(s, step * 50, layer, item, &c.plan);
                kref[e] = malloc(sizeof(float) * 2 * c.N * c.C);
                tome_merge_kv(&c.plan, c.k, c.v, c.C, kref[e], kref[e] + (size_t)c.N * c.C);
                payload += (size_t)(c.plan.n_out + c.plan.n_tok) * 2;
            }
    /* "generation": the same keys through the stored plans give bit-identical K', V' */
    for (int step = 2; step >= 0; step--)
        for (int layer = 0; layer < 2; layer++)
            for (int item = 0; item < 2; item++) {
                int e = (step * 2 + layer) * 2 + item;
                ok &= tome_store_get(s, step * 50, layer, item, &got) == 1;
                tome_merge_kv(&got, c.k, c.v, c.C, k2, v2);
                same &= !memcmp(k2, kref[e], sizeof(float) * got.n_out * c.C) &&
                        !memcmp(v2, kref[e] + (size_t)c.N * c.C, sizeof(float) * got.n_out * c.C);
            }
    ok &= tome_store_get(s, 51, 0, 0, &got) == 0;
    ok &= tome_store_put(s, 0, 0, 0, &c.plan) == -1;   /* duplicate key */
    t_check(ok && same && tome_store_count(s) == 12, "plan store reuse",
            "12 plans, merged K/V bit-identical after reuse; payload %zu bytes (expected %zu, int16), total %zu bytes",
            tome_store_payload_bytes(s), payload, tome_store_bytes(s));
    t_check(tome_store_payload_bytes(s) == payload && tome_store_bytes(s) > payload, "plan store bytes", "%zu / %zu",
            tome_store_payload_bytes(s), tome_store_bytes(s));
    t_check(tome_store_bytes(s) == reserved, "plan store: no allocation after reserve", "%zu bytes before and after 12 puts",
            reserved);
    /* wide plans (N > 32768 -> int32): a synthetic plan merging every odd token into its left */
    int N = 40000;
    tome_plan w, w2;
    tome_plan_init(&w, N);
    tome_plan_init(&w2, N);
    tome_plan_identity(&w, N);
    w.r = N / 2; w.n_out = N / 2;
    for (int m = 0; m < N / 2; m++) { w.keep[m] = 2 * m; w.count[m] = 2; }
    for (int t = 0; t < N; t++) w.into[t] = t / 2;
    size_t before = tome_store_payload_bytes(s);
    ok = !tome_store_put(s, 7, 7, 7, &w) && tome_store_get(s, 7, 7, 7, &w2) == 1 && w2.n_out == N / 2 &&
         !memcmp(w.keep, w2.keep, sizeof(int32_t) * N / 2) && !memcmp(w.into, w2.into, sizeof(int32_t) * N) &&
         !memcmp(w.count, w2.count, sizeof(int32_t) * N / 2);
    t_check(ok && tome_store_payload_bytes(s) - before == (size_t)(N + N / 2) * 4, "plan store int32",
            "40000-token plan round trip, %zu bytes", tome_store_payload_bytes(s) - before);
    ok = tome_store_get(s, 7, 7, 7, &got) == -1;   /* capacity too small */
    t_check(ok, "plan store capacity error", "%s", ocd_last_error());
    for (int i = 0; i < 12; i++) free(kref[i]);
    free(kref); free(k2); free(v2);
    tome_plan_free(&w); tome_plan_free(&w2); tome_plan_free(&got);
    tome_store_free(s);
    kv_free(&c);
}

static void test_errors(void) {
    kv_case c;
    kv_setup(&c, 8, 8, 1, 8, 500, 0);
    tome_params p;
    tome_params_default(&p);
    int e1 = tome_kv_plan(&p, c.k, c.C, 8, 8, 1, c.choice, NULL, c.scratch, c.scratch_bytes - 1, &c.plan);
    p.ratio = 1.5f;
    int e2 = tome_kv_plan(&p, c.k, c.C, 8, 8, 1, c.choice, NULL, c.scratch, c.scratch_bytes, &c.plan);
    tome_params_default(&p);
    c.choice[3] = 4;
    int e3 = tome_kv_plan(&p, c.k, c.C, 8, 8, 1, c.choice, NULL, c.scratch, c.scratch_bytes, &c.plan);
    t_check(e1 == -1 && e2 == -1 && e3 == -1, "bad inputs rejected", "last: %s", ocd_last_error());
    kv_free(&c);
}

int main(void) {
    test_golden("tome_merge");
    test_golden("tome_merge_odd");
    test_best_match(48, 16, 16, 1);
    test_best_match(1000, 16, 32, 2);
    test_best_match(100, 5000, 8, 3);
    test_best_match(1536, 512, 64, 4);         /* 2 frames of 16x32 */
    test_best_match(300, 8192, 4, 5);          /* 128-row blocks: 3 blocks, the last partial */
    test_draws();
    test_kv_against_brute();
    test_ratio0();
    test_mask();
    test_store();
    test_errors();
    return t_summary("test_tome");
}
