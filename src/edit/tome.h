/* Token merging (algorithms.md B, ToMe for SD; ocd-method.md 3-4, our K/V variant).
 *
 * Both variants share one matching step, bipartite soft matching on a grid of tokens:
 *   - every complete sy x sx cell of a frame's h x w token grid contributes one destination
 *     (dst) token, at position d = dst_choice[cell] in the cell (row d / sx, col d % sx);
 *     every other token (also rows / cols beyond the last complete cell) is a source (src);
 *   - each source finds its most cosine-similar destination (first maximum on ties);
 *   - sources are ranked by that score, descending, ties in ascending token order (a stable
 *     sort); the first r are merged: dst := (dst + sum of its merged srcs) / (1 + count).
 *
 * 1. tomesd (golden-compatible; tests/data/golden/tome_merge*): one frame, the metric is the
 *    tokens themselves, r = int(N * ratio), dst_choice NULL = top-left of every cell (no_rand).
 *    Output layout: [unmerged src in rank order] ++ [dst in ascending token order]; unmerge
 *    scatters back (merged srcs get their dst's row).
 * 2. K/V merging in self-attention (ocd-method.md 3): the concatenated keys of the frames a
 *    query frame attends to (its own + cross-frame key frames, each h x w tokens); each frame has
 *    its own destination draw (tome_draw_dst: seeded, per (step, layer, frame)); a source may
 *    match a destination of any window frame. r = int(ratio * n_src), capped so that at least
 *    min_tokens * n_frames tokens stay. Object-Centric ToMe (section 4): the score of every
 *    source inside the foreground mask is lowered by lambda before ranking. Keys and values
 *    are merged with the same plan; queries stay whole, so nothing is unmerged.
 *    Output layout: the kept tokens in ascending token order (so ratio 0 gives K' = K exactly).
 *    Attention over merged K/V is plain softmax (as ToMe-SD: averaged tokens, no proportional
 *    attention); plan->count[] is there for a caller who wants a log(count) bias.
 *
 * A plan is a token layout: keep[m] (token that starts output row m) and into[t] (output row
 * of token t). merge averages, unmerge copies out[t] = y[into[t]]. Plans of inversion are kept
 * in a tome_plan_store (int16 indices when N <= 32768, else int32) and reused verbatim at the
 * same (step, layer, item) in generation, so stored source attention and the new attention
 * share one key layout.
 *
 * Cost: tome_kv_plan / tome_merge / tome_merge_kv / tome_store_get allocate nothing (caller
 * scratch sized by tome_kv_scratch_bytes); they call k_gemm (OpenMP / BLAS threads), so call
 * them outside OpenMP parallel regions, like every kernel. */
#ifndef OCD_EDIT_TOME_H
#define OCD_EDIT_TOME_H

#include <stddef.h>
#include <stdint.h>

enum { TOME_LAYOUT_TOMESD, TOME_LAYOUT_TOKEN };

typedef struct {
    int n_tok;        /* N: tokens in */
    int n_out;        /* M = N - r: tokens out */
    int n_dst, n_src; /* destinations / sources of the matching */
    int r;            /* merged sources */
    int32_t *keep;    /* [M] token whose value starts output row m (a dst or an unmerged src) */
    int32_t *into;    /* [N] output row of token t (a merged src: its dst's row) */
    int32_t *count;   /* [M] tokens averaged into row m (1 + sources merged into it) */
    int cap;          /* tokens the arrays can hold */
} tome_plan;

/* Allocates plan arrays for up to cap tokens (one-time; tome_plan_free releases). */
int tome_plan_init(tome_plan *p, int cap);
void tome_plan_free(tome_plan *p);
/* The identity plan (nothing merged) on n tokens. */
int tome_plan_identity(tome_plan *p, int n);

/* ---- grid partition ---- */
int tome_n_cells(int h, int w, int sx, int sy);  /* (h / sy) * (w / sx) */
/* Destination choice per cell of one frame, uniform in [0, sx*sy): rng_uniform_int with
 * stream rng_stream(rng_stream(rng_stream(TOME_RNG_DOMAIN, step), layer), frame), so every
 * (step, layer, frame) gets an independent, reproducible draw. out [tome_n_cells]. */
#define TOME_RNG_DOMAIN 0x746f6d65u /* "tome" */
int tome_draw_dst(uint64_t seed, int step, int layer, int frame, int h, int w, int sx, int sy, int32_t *out);
/* Token indices of destinations and sources of n_frames frames of h x w tokens concatenated
 * (frame f's token (y, x) is f*h*w + y*w + x), both ascending. dst_choice [n_frames, n_cells]
 * (values in [0, sx*sy)), NULL = 0 everywhere (top-left, tomesd's no_rand). dst_idx gets
 * n_frames * n_cells entries, src_idx the rest. -1 on a bad choice value. */
int tome_partition(int h, int w, int sx, int sy, int n_frames, const int32_t *dst_choice,
                   int32_t *dst_idx, int32_t *src_idx);

/* ---- similarity + argmax ----
 * For source i (token src_idx[i]) and destination j (token dst_idx[j]) of x [N, C]:
 * best[i] = max_j cos(x_src_i, x_dst_j), arg[i] = first j reaching it. A zero vector has
 * cosine 0 with everything (tomesd would give NaN). The fused version normalises the dst rows
 * once and multiplies blocks of sources against them (k_gemm), keeping only the running best:
 * it never holds the [n_src, n_dst] matrix. */
size_t tome_match_scratch_floats(int n_dst, int C);
void tome_best_match(const float *x /* [N, C] */, int C, const int32_t *src_idx, int n_src,
                     const int32_t *dst_idx, int n_dst, float *best /* [n_src] */,
                     int32_t *arg /* [n_src] */, float *scratch);
void tome_best_match_ref(const float *x, int C, const int32_t *src_idx, int n_src,
                         const int32_t *dst_idx, int n_dst, float *best, int32_t *arg);

/* ---- 1. tomesd (bipartite_soft_matching_random2d, merge mode "mean") ----
 * x [h*w, C] is the metric; r = min(int(h*w*ratio), n_src); r = 0 gives the identity plan.
 * dst_choice [n_cells] or NULL (no_rand). Allocates its own scratch (offline / golden path).
 * plan must have cap >= h*w. */
int tome_bipartite_plan(const float *x, int C, int h, int w, int sx, int sy, float ratio,
                        const int32_t *dst_choice, tome_plan *plan);
/* out [M, C] = merge(x [N, C]) (mean). out must not alias x. */
void tome_merge(const tome_plan *p, const float *x, int C, float *out);
/* out [N, C] = unmerge(y [M, C]). */
void tome_unmerge(const tome_plan *p, const float *y, int C, float *out);

/* ---- 2. K/V merging for (cross-frame) self-attention ---- */
typedef struct {
    int sx, sy;        /* destination cell: 2 x 2 */
    float ratio;       /* fraction of the sources merged: 0.5 */
    int min_tokens;    /* tokens kept >= min_tokens * n_frames: 64 (levels this small merge nothing) */
    float lambda;      /* Object-Centric ToMe: foreground sources' score -= lambda: 1.0 */
} tome_params;
void tome_params_default(tome_params *p);

/* Bytes of scratch tome_kv_plan needs; monotone in every argument, so the size for the largest
 * h, w, n_frames and C bounds all smaller calls. */
size_t tome_kv_scratch_bytes(const tome_params *p, int h, int w, int n_frames, int C);
/* Builds the plan for keys k [n_frames*h*w, C] (frames in concatenation order). dst_choice
 * [n_frames, n_cells] (tome_draw_dst of each window frame, in the same order). fg [n_frames*h*w]
 * (nonzero = foreground, e.g. from tome_pool_mask) or NULL. scratch: tome_kv_scratch_bytes
 * bytes, any alignment. Layout TOME_LAYOUT_TOKEN. Allocates nothing. */
int tome_kv_plan(const tome_params *p, const float *k, int C, int h, int w, int n_frames,
                 const int32_t *dst_choice, const uint8_t *fg, void *scratch, size_t scratch_bytes,
                 tome_plan *plan);
/* k_out, v_out [M, C] = merge(k), merge(v) with the same plan. */
void tome_merge_kv(const tome_plan *p, const float *k, const float *v, int C, float *k_out, float *v_out);

/* Foreground mask of one frame at a level's token grid: out[y*w + x] = 1 if any mask pixel of
 * the adaptive-max-pool window rows [floor(y Hm / h), ceil((y+1) Hm / h)) (likewise columns)
 * is > 0.5. mask [Hm, Wm] (latent resolution), out [h, w]. */
void tome_pool_mask(const float *mask, int Hm, int Wm, int h, int w, uint8_t *out);

/* ---- 3. plan store: (step, layer, item) -> plan, compact ----
 * step: anything that identifies the timestep in both passes (e.g. the timestep itself);
 * item: the query frame (or batch item) the plan belongs to. Not thread-safe for puts;
 * gets on a store nobody writes to may run concurrently. */
typedef struct tome_plan_store tome_plan_store;
tome_plan_store *tome_store_new(void);
void tome_store_free(tome_plan_store *s);
void tome_store_clear(tome_plan_store *s);
/* Makes room for n more plans whose indices take at most `payload` bytes in all (2 bytes per
 * index, 4 when n_tok > 32768), so that the puts of a sampling loop allocate nothing. Puts beyond
 * the reservation still work (the store grows). */
int tome_store_reserve(tome_plan_store *s, int n, size_t payload);
/* Copies the plan in (int16 indices when n_tok <= 32768). A key stored twice is an error. */
int tome_store_put(tome_plan_store *s, int step, int layer, int item, const tome_plan *p);
/* 1: found, written to p (needs p->cap >= its n_tok); 0: absent; -1: error. No allocation. */
int tome_store_get(const tome_plan_store *s, int step, int layer, int item, tome_plan *p);
int tome_store_count(const tome_plan_store *s);
size_t tome_store_bytes(const tome_plan_store *s);          /* payload + index + bookkeeping */
size_t tome_store_payload_bytes(const tome_plan_store *s);  /* plan indices only */

#endif
