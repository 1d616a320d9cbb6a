/* ControlVideo (edit/controlvideo.h): fully cross-frame attention = one attention over the
 * concatenated K/V, the clips' attention (list positions 0 and -1), the hierarchical sampler's
 * key frames (algorithms.md C.4), condition clips of the wrong length / size, and the goldens
 * controlvideo_basic, controlvideo_basic_asis, controlvideo_long (they need the UNet's clip-wide
 * GroupNorm, unet_attn_hook.norm_frames; without it they are reported as skipped). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "edit/controlvideo.h"
#include "kernels/kernels.h"
#include "testlib.h"

/* ---- attention ------------------------------------------------------------------------------- */

static void test_attention(void) {
    enum { F = 3, N = 10, C = 16, HEADS = 2 };
    float q[F * N * C], k[F * N * C], v[F * N * C], out[N * C], ref[N * C], cat_k[2 * N * C], cat_v[2 * N * C];
    rng_normal(1, 1, q, F * N * C);
    rng_normal(1, 2, k, F * N * C);
    rng_normal(1, 3, v, F * N * C);
    float *scratch = malloc(sizeof(float) * k_attention_scratch_floats(N, F * N));
    float kvbuf[4 * N * C];
    cv_hook_state st = {.pair = 0, .kv_buf = kvbuf, .kv_buf_floats = 4 * N * C};
    unet_attn_call c = {.is_cross = 0, .H = 2, .W = 5, .batch = F, .Nq = N, .Nk = N, .C = C, .heads = HEADS, .dh = C / HEADS,
                        .scale = 1.0f / sqrtf(C / HEADS), .q = q, .k = k, .v = v, .out = out, .scratch = scratch};
    for (int b = 0; b < F; b++) {
        c.b = b;
        cv_attend(&st, &c);
        /* the reference: frame b's queries over the F frames' keys/values concatenated (F*N keys) */
        k_attention_ref(ref, C, q + b * N * C, C, k, C, v, C, N, F * N, HEADS, C / HEADS, c.scale, 0);
        char name[64];
        snprintf(name, sizeof name, "fully cross-frame attention, frame %d = one attention over F*N keys", b);
        t_close(name, out, ref, N * C, 1e-6, 1e-5);
    }
    /* the clip pass: keys/values of list positions 0 and F-1 */
    st.pair = 1;
    memcpy(cat_k, k, sizeof(float) * N * C);
    memcpy(cat_k + N * C, k + (F - 1) * N * C, sizeof(float) * N * C);
    memcpy(cat_v, v, sizeof(float) * N * C);
    memcpy(cat_v + N * C, v + (F - 1) * N * C, sizeof(float) * N * C);
    for (int b = 0; b < F; b++) {
        c.b = b;
        cv_attend(&st, &c);
        k_attention_ref(ref, C, q + b * N * C, C, cat_k, C, cat_v, C, N, 2 * N, HEADS, C / HEADS, c.scale, 0);
        char name[64];
        snprintf(name, sizeof name, "clip attention, item %d = attention over items 0 and last", b);
        t_close(name, out, ref, N * C, 1e-6, 1e-5);
    }
    /* one frame: plain self-attention */
    c.batch = 1, c.b = 0, st.pair = 0;
    cv_attend(&st, &c);
    k_attention_ref(ref, C, q, C, k, C, v, C, N, N, HEADS, C / HEADS, c.scale, 0);
    t_close("one frame: ordinary self-attention", out, ref, N * C, 1e-6, 1e-5);
    free(scratch);
}

/* ---- key frames ------------------------------------------------------------------------------ */

static void check_keys(int F, int w, const int *want, int n_want) {
    int got[64];
    int n = cv_key_frames(F, w, got);
    int ok = n == n_want;
    for (int i = 0; ok && i < n; i++) ok = got[i] == want[i];
    char name[64], detail[256] = "";
    snprintf(name, sizeof name, "key frames F=%d window %d", F, w);
    for (int i = 0, o = 0; i < n && o < 200; i++) o += snprintf(detail + o, sizeof detail - o, "%d ", got[i]);
    t_check(ok, name, "%s", detail);
}

static void test_key_frames(void) {
    check_keys(5, 3, (int[]){0, 2, 4}, 3);            /* the golden controlvideo_long */
    check_keys(15, 3, (int[]){0, 2, 4, 6, 8, 10, 12, 14}, 8); /* ControlVideo's default: 15 frames, int(sqrt(15)) = 3 */
    check_keys(16, 4, (int[]){0, 3, 6, 9, 12, 15}, 6);
    check_keys(8, 4, (int[]){0, 3, 6, 7}, 4);         /* F-1 appended */
    check_keys(10, 20, (int[]){0, 9}, 2);
    check_keys(1, 3, (int[]){0}, 1);
    int k[8];
    int rc = cv_key_frames(5, 1, k);
    t_check(rc < 0, "window 1 refused", "%s", ocd_last_error());
    t_check(cv_default_window(15) == 3 && cv_default_window(5) == 2 && cv_default_window(2) == 2 && cv_default_window(64) == 8,
            "default window int(sqrt(F)), at least 2", " ");
}

/* ---- condition clips ------------------------------------------------------------------------- */

static void test_conditions(void) {
    ocd_video v = {0};
    video_alloc(&v, 3, 16, 8);
    for (int f = 0; f < 3; f++)
        for (int i = 0; i < 16 * 8 * 3; i++) v.frames[f][i] = (uint8_t)(i * 7 + f);
    float *cond = malloc(sizeof(float) * 3 * 3 * 16 * 8);
    int rc = cv_condition_from_video(&v, 3, 16, 8, cond);
    t_check(rc == 0 && cond[0] == 0.0f && fabsf(cond[16 * 8 * 3 + 1] - (7 * 3 + 1) / 255.0f) < 1e-7f,
            "condition clip -> [F, 3, H, W] / 255", "%s", rc ? ocd_last_error() : "");
    rc = cv_condition_from_video(&v, 4, 16, 8, cond);
    t_check(rc < 0 && strstr(ocd_last_error(), "3 frames"), "condition clip with too few frames: clear error", "%s",
            ocd_last_error());
    rc = cv_condition_from_video(&v, 2, 16, 8, cond);
    t_check(rc < 0 && strstr(ocd_last_error(), "must match"), "condition clip with too many frames: clear error", "%s",
            ocd_last_error());
    rc = cv_condition_from_video(&v, 3, 16, 16, cond);
    t_check(rc < 0 && strstr(ocd_last_error(), "16x8") && strstr(ocd_last_error(), "16x16"),
            "condition clip of another size: clear error", "%s", ocd_last_error());
    rc = cv_condition_canny(&v, cond);
    t_check(rc == 0, "canny conditions of a clip", "%s", rc ? ocd_last_error() : "");
    free(cond);
    video_free(&v);
}

/* ---- goldens --------------------------------------------------------------------------------- */

static sd_model g_sd;
static controlnet_model g_cn;

static void run_golden(const char *name) {
    st_file *g = golden_open(name);
    const st_tensor *ct = st_find(g, "condition"), *nt = st_find(g, "init_noise");
    const int F = (int)ct->shape[0], H = (int)ct->shape[2], W = (int)ct->shape[3], h = (int)nt->shape[2], w = (int)nt->shape[3];
    const size_t n = (size_t)F * 4 * h * w;
    const int N = 6;
    cv_params prm;
    cv_default_params(&prm);
    prm.steps = N, prm.guidance = 12.5f, prm.n_smooth = 0;   /* the goldens' params (smoother off) */
    prm.window = !strcmp(name, "controlvideo_long") ? 3 : 0;
    prm.residuals_asis = !strcmp(name, "controlvideo_basic_asis");
    float *cond = malloc(sizeof(float) * ct->numel), *noise = golden_f32(g, "init_noise"), *emb = golden_f32(g, "text_embeddings");
    float *ltraj = malloc(sizeof(float) * (N + 1) * n), *etraj = malloc(sizeof(float) * N * n);
    float *frames = malloc(sizeof(float) * F * 3 * H * W);
    int32_t ts[6];
    for (int64_t i = 0; i < ct->numel; i++) cond[i] = ((const uint8_t *)ct->data)[i] / 255.0f;
    prm.latents_traj = ltraj, prm.eps_traj = etraj, prm.timesteps = ts;
    pipe_ctx p;
    cv_stats st;
    /* text embeddings come from the golden: the text tower has its own tests */
    if (pipe_init(&p, &g_sd, NULL) || cv_generate(&p, g_cn.net, &prm, emb, cond, F, noise, h, w, ltraj + N * n, &st) ||
        cv_decode(&p, ltraj + N * n, F, h, w, frames)) {
        t_check(0, name, "%s", ocd_last_error());
    } else {
        const st_tensor *tt = st_find(g, "timesteps");
        int32_t ref[6];
        st_read_i32(tt, ref);
        t_equal_i32("timesteps", ts, ref, 6);
        golden_check(g, "latents_trajectory", ltraj, (N + 1) * n);
        if (st_find(g, "noise_pred_trajectory")) golden_check(g, "noise_pred_trajectory", etraj, N * n);
        golden_check(g, "latents", ltraj + N * n, n);
        golden_check(g, "frames", frames, (size_t)F * 3 * H * W);
        /* basic: 2 calls a step; long (keys 0 2 4, clips [0 4 1]... ): 2 x (1 + 2) */
        const long want = prm.window ? 2 * N * 3 : 2 * N;
        t_check(st.unet_calls == want, "UNet calls", "%ld (want %ld), %ld frame evaluations", st.unet_calls, want, st.unet_frames);
    }
    pipe_free(&p);
    free(cond); free(noise); free(emb); free(ltraj); free(etraj); free(frames);
    st_close(g);
}

static void test_pipeline_errors(void) {
    pipe_ctx p;
    if (pipe_init(&p, &g_sd, NULL)) { t_check(0, "pipe_init", "%s", ocd_last_error()); return; }
    cv_params prm;
    cv_default_params(&prm);
    prm.steps = 1;
    float emb[2 * 77 * 32] = {0}, noise[4 * 8 * 8] = {0}, lat[2 * 4 * 8 * 8], *cond = calloc(2 * 3 * 64 * 64, sizeof(float));
    prm.ocd.tome_ratio = 1.5f;
    int rc = cv_generate(&p, g_cn.net, &prm, emb, cond, 2, noise, 8, 8, lat, NULL);
    t_check(rc < 0 && strstr(ocd_last_error(), "token-merging"), "merge ratio beyond 1 refused", "%s", ocd_last_error());
    prm.ocd.tome_ratio = 0.0f;
    prm.ocd.ocs = 1, prm.ocd.ocs_phi = 0;
    rc = cv_generate(&p, g_cn.net, &prm, emb, cond, 2, noise, 8, 8, lat, NULL);
    t_check(rc < 0 && strstr(ocd_last_error(), "OCS"), "OCS phi 0 refused", "%s", ocd_last_error());
    prm.ocd.ocs = 0, prm.ocd.ocs_phi = 4;
    prm.window = 1;
    rc = cv_generate(&p, g_cn.net, &prm, emb, cond, 2, noise, 8, 8, lat, NULL);
    t_check(rc < 0, "window 1 refused", "%s", ocd_last_error());
    prm.window = 0;
    rc = cv_generate(&p, g_cn.net, &prm, emb, cond, 0, noise, 8, 8, lat, NULL);
    t_check(rc < 0, "no frames refused", "%s", ocd_last_error());
    rc = cv_generate(&p, g_cn.net, &prm, emb, cond, 2, noise, 8, 8, lat, NULL);
    int same = rc == 0;
    for (int i = 0; same && i < 256; i++) same = isfinite(lat[i]);
    t_check(same, "two frames, one step", "%s", rc ? ocd_last_error() : "");
    free(cond);
    pipe_free(&p);
}

int main(void) {
    test_attention();
    test_key_frames();
    test_conditions();
    if (sd_model_load(&g_sd, TINY_SD, 0) || controlnet_load(&g_cn, TEST_DATA "/tiny-controlnet", 0)) {
        fprintf(stderr, "%s\n", ocd_last_error());
        return 2;
    }
    test_pipeline_errors();
    if (cv_clip_groupnorm()) {
        run_golden("controlvideo_basic");
        run_golden("controlvideo_long");
        run_golden("controlvideo_basic_asis");
    } else {
        printf("SKIP  controlvideo goldens: this build's UNet has no clip-wide GroupNorm (unet_attn_hook.norm_frames)\n");
    }
    controlnet_model_free(&g_cn);
    sd_model_free(&g_sd);
    return t_summary("test_controlvideo");
}
