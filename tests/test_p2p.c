/* Prompt-to-prompt controller tables and map edits (algorithms.md A.7, A.8): the worked example
 * of A.7, the FateZero golden's ctrl_* tables, and the blend mask of hand-made score maps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "edit/p2p.h"
#include "testlib.h"

static void test_worked_example(const ocd_tokenizer *tok) {
    const char *src = "a silver jeep driving down a curvy road in the countryside";
    const char *tgt = "watercolor painting of a silver jeep driving down a curvy road in the countryside";
    int32_t x[77], y[77], mapper[77];
    float alphas[77];
    int nx, ny;
    tokenizer_encode(tok, src, x, &nx);
    tokenizer_encode(tok, tgt, y, &ny);
    int rc = p2p_refine_mapper(x, nx, y, ny, mapper, alphas);
    static const int32_t want[17] = {0, -1, -1, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16};
    t_check(rc == 0, "A.7 refine mapper runs", "%s", rc ? ocd_last_error() : "");
    t_equal_i32("A.7 worked example mapper[:17]", mapper, want, 17);
    int ok = 1;
    for (int j = 0; j < 77; j++) ok &= alphas[j] == ((j >= 1 && j <= 3) ? 0.0f : 1.0f);
    t_check(ok, "A.7 worked example alphas", "alphas[1..3] = 0, others 1");
    ok = 1;
    for (int j = 17; j < 77; j++) ok &= mapper[j] == j;
    t_check(ok, "A.7 padding maps to itself", "mapper[j] = j for j >= len(target)");
    /* tie-breaks: identical prompts -> identity; a deletion maps around the gap */
    rc = p2p_refine_mapper(x, nx, x, nx, mapper, alphas);
    ok = rc == 0;
    for (int j = 0; j < 77; j++) ok &= mapper[j] == j && alphas[j] == 1.0f;
    t_check(ok, "refine mapper of identical prompts is the identity", "%s", "");
    /* replace matrix for equal word counts: "a red ball" -> "a blue ball" */
    p2p_tables *t = calloc(1, sizeof *t);
    p2p_config c = {.steps = 10, .cross_hi = 0.8, .self_hi = 0.5, .replace_mode = 2};
    rc = p2p_build(t, tok, "a red ball", "a blue ball", &c);
    ok = rc == 0 && t->use_replace;
    for (int w = 0; w < 77 && ok; w++)
        for (int n = 0; n < 77; n++) ok &= t->replace_mat[w][n] == (w == n ? 1.0f : 0.0f);
    t_check(ok, "replace matrix: one-token swap is the identity map", "%s", rc ? ocd_last_error() : "");
    /* split: "a red ball" -> "a watercolour ball"? use a word of two tokens */
    rc = p2p_build(t, tok, "a red ball", "a pokemon ball", &c);
    int pos[8], np = tokenizer_word_positions(tok, "a pokemon ball", "pokemon", pos, 8);
    ok = rc == 0 && t->use_replace && np >= 1;
    if (ok && np > 1) {
        for (int k = 0; k < np; k++) ok &= fabsf(t->replace_mat[2][pos[k]] - 1.0f / np) < 1e-7f;
        t_check(ok, "replace matrix: split word gets 1/len per target token", "%d tokens", np);
    } else t_check(ok, "replace matrix built for equal word counts", "%d tokens", np);
    /* windows: cross [0, int(0.8 * 11)) = [0, 8), self [0, 5) */
    rc = p2p_build(t, tok, "a red ball", "a blue ball", &c);
    ok = rc == 0 && t->self_lo == 0 && t->self_hi == 5;
    for (int r = 0; r <= 10; r++) ok &= t->cross_alpha[r][3] == (r < 8 ? 1.0f : 0.0f) && t->cross_active[r] == (r < 8);
    t_check(ok, "cross alpha window [0, int(0.8 (N+1))) and self window [0, int(0.5 N))", "%s", "");
    /* per-word bounds override the default on that word's tokens */
    c.n_cross_words = 1, c.cross_word[0] = "blue", c.cross_word_lo[0] = 0.2, c.cross_word_hi[0] = 1.0;
    rc = p2p_build(t, tok, "a red ball", "a blue ball", &c);
    ok = rc == 0;
    for (int r = 0; r <= 10; r++) ok &= t->cross_alpha[r][2] == (r >= 2 ? 1.0f : 0.0f) && t->cross_alpha[r][1] == (r < 8 ? 1.0f : 0.0f);
    t_check(ok, "per-word cross bounds (blue: 0.2..1.0)", "%s", "");
    free(t);
}

static void test_golden_tables(const ocd_tokenizer *tok) {
    st_file *g = golden_open("fatezero_attribute");
    p2p_tables *t = calloc(1, sizeof *t);
    p2p_config c = {.steps = 6, .cross_hi = 0.8, .self_hi = 0.6, .replace_mode = 1, .n_reweight = 1,
                    .reweight_word = {"blue"}, .reweight_value = {2.0f}, .blend_words_src = "ball",
                    .blend_words_tgt = "ball", .blend_th = 0.72f};
    int rc = p2p_build(t, tok, "a red ball rolling on the grass", "a blue ball rolling on the grass", &c);
    t_check(rc == 0, "golden controller tables built", "%s", rc ? ocd_last_error() : "");
    float alpha[7 * 77];
    for (int r = 0; r < 7; r++) memcpy(alpha + r * 77, t->cross_alpha[r], sizeof(float) * 77);
    golden_check(g, "ctrl_cross_replace_alpha", alpha, 7 * 77);
    golden_check(g, "ctrl_refine_alphas", t->refine_alphas, 77);
    golden_check(g, "ctrl_equalizer", t->equalizer, 77);
    golden_check(g, "ctrl_blend_word_alpha", &t->blend_alpha[0][0], 2 * 77);
    const st_tensor *mt = st_find(g, "ctrl_refine_mapper");
    int32_t ref[77];
    st_read_i32(mt, ref);
    t_equal_i32("golden:ctrl_refine_mapper", t->mapper, ref, 77);
    t_check(t->self_lo == 0 && t->self_hi == 3, "golden self window [0, 3)", "[%d, %d)", t->self_lo, t->self_hi);
    free(t);
    st_close(g);
}

/* Cross edit: refine + reweight with alpha on, off. */
static void test_cross_edit(void) {
    p2p_tables *t = calloc(1, sizeof *t);
    t->steps = 2;
    for (int n = 0; n < 77; n++) {
        t->cross_alpha[0][n] = 1.0f, t->cross_alpha[1][n] = 0.0f;
        t->mapper[n] = n, t->refine_alphas[n] = 1.0f, t->equalizer[n] = 1.0f;
    }
    t->mapper[2] = -1, t->refine_alphas[2] = 0.0f, t->mapper[3] = 5, t->equalizer[2] = 2.0f;
    float S[2 * 77], A[2 * 77], A0[2 * 77];
    for (int i = 0; i < 2 * 77; i++) S[i] = 0.01f * (i % 77), A0[i] = 0.002f * (i % 77) + 0.1f;
    memcpy(A, A0, sizeof A);
    p2p_cross_edit(t, 0, S, A, 1, 2);
    int ok = 1;
    for (int q = 0; q < 2; q++)
        for (int n = 0; n < 77; n++) {
            float want = n == 2 ? A0[q * 77 + 2] * 2.0f : n == 3 ? S[q * 77 + 5] : S[q * 77 + n];
            ok &= fabsf(A[q * 77 + n] - want) < 1e-7f;
        }
    t_check(ok, "cross edit: refine gathers source columns, new token keeps the edit x equalizer", "%s", "");
    memcpy(A, A0, sizeof A);
    p2p_cross_edit(t, 1, S, A, 1, 2);
    t_check(!memcmp(A, A0, sizeof A), "cross edit with alpha 0 leaves the map", "%s", "");
    /* self blend */
    float M[2] = {1.0f, 0.0f}, B[2 * 3] = {1, 2, 3, 4, 5, 6}, Ss[2 * 3] = {7, 8, 9, 10, 11, 12};
    p2p_self_blend(M, Ss, B, 1, 2, 3);
    t_check(B[0] == 1 && B[2] == 3 && B[3] == 10 && B[5] == 12, "self blend: M=1 keeps the edit, M=0 takes the source", "%s", "");
    free(t);
}

/* A.8 on hand-made scores: max pool, nearest resize, per-frame max, strict threshold. */
static void test_blend_mask(void) {
    float score[2 * 16] = {0};
    score[1 * 4 + 1] = 4.0f, score[3 * 4 + 3] = 1.0f;                    /* frame 0 */
    for (int i = 0; i < 16; i++) score[16 + i] = 0.1f * score[i];       /* frame 1: same up to scale */
    /* pooled (by hand):  4 4 4 0 / 4 4 4 0 / 4 4 4 1 / 0 0 1 1 */
    static const float pooled[16] = {4, 4, 4, 0, 4, 4, 4, 0, 4, 4, 4, 1, 0, 0, 1, 1};
    float mask[2 * 64], scratch[2 * (16 + 64)];
    const float ths[3] = {0.3f, 0.2f, 0.25f};
    for (int k = 0; k < 3; k++) {
        p2p_blend_mask(score, 2, 4, 4, 8, 8, ths[k], mask, scratch);
        int ok = 1;
        for (int f = 0; f < 2; f++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) ok &= mask[f * 64 + y * 8 + x] == (pooled[(y / 2) * 4 + x / 2] / 4.0f > ths[k] ? 1.0f : 0.0f);
        t_check(ok, "blend mask 4x4 -> 8x8 equals the hand-computed mask", "th %.2f (0.25: strict, the 1s stay 0)", ths[k]);
    }
    /* 4x4 -> 2x2 takes rows/cols 0 and 2: all 4 -> all ones; -> 3x3 (floor(d*4/3) = 0,1,2) */
    p2p_blend_mask(score, 1, 4, 4, 2, 2, 0.99f, mask, scratch);
    t_check(mask[0] == 1 && mask[1] == 1 && mask[2] == 1 && mask[3] == 1, "blend mask 4x4 -> 2x2 nearest", "%s", "");
    float score2[16];
    for (int i = 0; i < 16; i++) score2[i] = (float)i; /* pooled max at (min(y+1,3), min(x+1,3)) */
    p2p_blend_mask(score2, 1, 4, 4, 3, 3, 0.6f, mask, scratch);
    int ok = 1;
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++) {
            int yy = y + 1 > 3 ? 3 : y + 1, xx = x + 1 > 3 ? 3 : x + 1;
            ok &= mask[y * 3 + x] == ((float)(yy * 4 + xx) / 15.0f > 0.6f ? 1.0f : 0.0f);
        }
    t_check(ok, "blend mask 4x4 -> 3x3 nearest (src = floor(dst * 4 / 3))", "%s", "");
    /* score: mean over (layer, head) of the word-token sum */
    float m0[2 * 2 * 77] = {0}, m1[2 * 2 * 77] = {0}, alpha[77] = {0}, sc[2];
    alpha[3] = alpha[5] = 1.0f;
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < 2; q++) {
            m0[(h * 2 + q) * 77 + 3] = 1.0f + h + q, m0[(h * 2 + q) * 77 + 5] = 0.5f, m0[(h * 2 + q) * 77 + 4] = 9.0f;
            m1[(h * 2 + q) * 77 + 3] = 2.0f * q;
        }
    const float *mp[2] = {m0, m1};
    p2p_blend_score(mp, 2, 2, 2, alpha, sc, 0);
    /* q0: (1.5 + 2.5 + 0 + 0) / 4 = 1; q1: (2.5 + 3.5 + 2 + 2) / 4 = 2.5 */
    t_check(fabsf(sc[0] - 1.0f) < 1e-6f && fabsf(sc[1] - 2.5f) < 1e-6f, "blend score = mean over (layer, head) of word sums",
            "%g %g", sc[0], sc[1]);
}

int main(void) {
    ocd_tokenizer *tok = tokenizer_new_builtin();
    if (!tok) { printf("tokenizer: %s\n", ocd_last_error()); return 1; }
    test_worked_example(tok);
    test_golden_tables(tok);
    test_cross_edit();
    test_blend_mask();
    tokenizer_free(tok);
    return t_summary("test_p2p");
}
