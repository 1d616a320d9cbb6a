/* Prompt-to-prompt controller tables and map edits of FateZero (algorithms.md A.6-A.9).
 *
 * Everything the editing run needs from the two prompts is computed once into p2p_tables;
 * the per-call edits (p2p_cross_edit, p2p_self_blend) are plain array functions on one item's
 * probabilities [heads, Nq, Nk] so that they can be tested without a UNet. */
#ifndef OCD_EDIT_P2P_H
#define OCD_EDIT_P2P_H

#include <stdint.h>

#include "nn/tokenizer.h"

#define P2P_T TOKENIZER_CONTEXT   /* 77 token columns */
#define P2P_MAX_STEPS 1000
#define P2P_MAX_WORDS 8

/* What the controller is built from (fractions are doubles, like the Python floats, so that
 * int(v * n) truncates exactly as upstream does). */
typedef struct {
    int steps;                         /* N */
    double cross_lo, cross_hi;         /* default cross window: [int(lo (N+1)), int(hi (N+1))) */
    int n_cross_words;
    const char *cross_word[P2P_MAX_WORDS];
    double cross_word_lo[P2P_MAX_WORDS], cross_word_hi[P2P_MAX_WORDS];
    double self_lo, self_hi;           /* self window [int(N lo), int(N hi)) */
    int replace_mode;                  /* 0 auto (= refine), 1 refine, 2 replace (refine if word counts differ) */
    int n_reweight;
    const char *reweight_word[P2P_MAX_WORDS];
    float reweight_value[P2P_MAX_WORDS];
    const char *blend_words_src;       /* space-separated words (of the source prompt) or NULL */
    const char *blend_words_tgt;       /* words of the target prompt or NULL (= blend_words_src) */
    float blend_th;
} p2p_config;

typedef struct p2p_tables {
    int steps;                         /* N */
    float cross_alpha[P2P_MAX_STEPS + 1][P2P_T]; /* [N+1, 77]; row i used at editing step i */
    int cross_active[P2P_MAX_STEPS + 1];         /* row i has any non-zero alpha */
    int self_lo, self_hi;              /* editing steps [lo, hi) replace self-attention */
    int use_replace;                   /* 1: Replace matrix, 0: Refine mapper */
    int32_t mapper[P2P_T];             /* refine: target token j takes source token mapper[j] (-1: new) */
    float refine_alphas[P2P_T];        /* 0 where mapper = -1 else 1 */
    float replace_mat[P2P_T][P2P_T];   /* replace: [source token w, target token n] */
    float equalizer[P2P_T];            /* reweight factors on target tokens (1 = none) */
    int has_blend;                     /* blend words given: self-attention is masked */
    float blend_alpha[2][P2P_T];       /* [source, target] blend-word token indicators */
    float blend_th;
} p2p_tables;

/* Builds every table for an edit source -> target (target == source: reconstruction). */
int p2p_build(p2p_tables *t, const ocd_tokenizer *tok, const char *source, const char *target, const p2p_config *c);

/* Needleman-Wunsch alignment of token sequences x (source) and y (target), both with BOS/EOS,
 * unpadded (gap 0, match +1, mismatch -1; ties: left > up > diagonal): mapper[77] and alphas[77]
 * as prompt-to-prompt's get_mapper (padding positions j >= ny map to j). */
int p2p_refine_mapper(const int32_t *x, int nx, const int32_t *y, int ny, int32_t *mapper, float *alphas);

/* Editing-step windows. */
static inline int p2p_self_active(const p2p_tables *t, int step) { return step >= t->self_lo && step < t->self_hi; }

/* One cond item's cross-attention at editing step `step`: A [heads, Nq, 77] (edited in place)
 * from the source map S [heads, Nq, 77]:
 *   R[n] = Replace(S, A)[n] * eq[n];  A[n] := alpha[step, n] R[n] + (1 - alpha[step, n]) A[n]. */
void p2p_cross_edit(const p2p_tables *t, int step, const float *S, float *A, int heads, int Nq);

/* One cond item's self-attention: A [heads, Nq, Nk] := M[q] A + (1 - M[q]) S, M [Nq] of 0/1;
 * M NULL = full replacement (A := S). */
void p2p_self_blend(const float *M, const float *S, float *A, int heads, int Nq, int Nk);

/* Blend-word score of one frame (A.8): maps[l] [heads, Nq0, 77] (n_layers maps of one frame,
 * all h0 x w0), word indicator alpha [77]: score [h0*w0] = mean over (layer, head) of the sum
 * over the word tokens. Accumulates into score when `accumulate`. */
void p2p_blend_score(const float *const *maps, int n_layers, int heads, int Nq0, const float *alpha, float *score,
                     int accumulate);
/* score [F, h0, w0] -> mask [F, h, w]: 3x3 max pool (stride 1, pad 1), nearest resize
 * (src = floor(dst * in / out)), divide each frame by its max, mask = score > th.
 * scratch: F * (h0*w0 + h*w) floats. */
void p2p_blend_mask(const float *score, int F, int h0, int w0, int h, int w, float th, float *mask, float *scratch);

#endif
