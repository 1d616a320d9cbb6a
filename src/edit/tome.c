/* Token merging: bipartite soft matching, merge / unmerge, K/V plans, plan store (tome.h). */
#include "edit/tome.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/kernels.h"

/* ---- plans ------------------------------------------------------------------------------- */

int tome_plan_init(tome_plan *p, int cap) {
    memset(p, 0, sizeof *p);
    if (cap < 1) return ocd_fail("tome_plan_init: capacity %d must be >= 1", cap);
    /* one block: keep [cap] | into [cap] | count [cap] */
    int32_t *mem = ocd_malloc(sizeof(int32_t) * 3 * (size_t)cap);
    if (!mem) return -1;
    p->keep = mem;
    p->into = mem + cap;
    p->count = mem + 2 * (size_t)cap;
    p->cap = cap;
    return 0;
}

void tome_plan_free(tome_plan *p) {
    if (p) free(p->keep);
    if (p) memset(p, 0, sizeof *p);
}

int tome_plan_identity(tome_plan *p, int n) {
    if (n < 0 || n > p->cap) return ocd_fail("tome plan: %d tokens, capacity %d", n, p->cap);
    p->n_tok = p->n_out = n;
    p->n_dst = p->n_src = p->r = 0;
    for (int t = 0; t < n; t++) { p->keep[t] = t; p->into[t] = t; p->count[t] = 1; }
    return 0;
}

/* Fills the layout from the matching: src position s (token src_idx[s]) matched dst position
 * arg[s]; rank[0..r) are the merged sources. */
static void plan_fill(tome_plan *p, int N, const int32_t *dst_idx, int n_dst, const int32_t *src_idx,
                      int n_src, const int32_t *arg, const int32_t *rank, int r, int layout) {
    p->n_tok = N;
    p->n_out = N - r;
    p->n_dst = n_dst;
    p->n_src = n_src;
    p->r = r;
    if (layout == TOME_LAYOUT_TOMESD) {
        int n_unm = n_src - r;
        for (int i = 0; i < n_unm; i++) { p->keep[i] = src_idx[rank[r + i]]; p->into[p->keep[i]] = i; }
        for (int j = 0; j < n_dst; j++) { p->keep[n_unm + j] = dst_idx[j]; p->into[dst_idx[j]] = n_unm + j; }
        for (int k = 0; k < r; k++) p->into[src_idx[rank[k]]] = n_unm + arg[rank[k]];
    } else {
        for (int t = 0; t < N; t++) p->into[t] = 0;
        for (int k = 0; k < r; k++) p->into[src_idx[rank[k]]] = -1;   /* merged: no row of its own */
        int m = 0;
        for (int t = 0; t < N; t++)
            if (p->into[t] == 0) { p->keep[m] = t; p->into[t] = m++; }
        for (int k = 0; k < r; k++) p->into[src_idx[rank[k]]] = p->into[dst_idx[arg[rank[k]]]];
    }
    for (int m = 0; m < p->n_out; m++) p->count[m] = 0;
    for (int t = 0; t < N; t++) p->count[p->into[t]]++;
}

/* ---- partition --------------------------------------------------------------------------- */

int tome_n_cells(int h, int w, int sx, int sy) {
    if (h < 1 || w < 1 || sx < 1 || sy < 1) return 0;
    return (h / sy) * (w / sx);
}

int tome_draw_dst(uint64_t seed, int step, int layer, int frame, int h, int w, int sx, int sy, int32_t *out) {
    int n = tome_n_cells(h, w, sx, sy);
    if (sx < 1 || sy < 1) return ocd_fail("tome: cell %dx%d", sy, sx);
    uint64_t stream = rng_stream(rng_stream(rng_stream(TOME_RNG_DOMAIN, (uint64_t)(int64_t)step),
                                            (uint64_t)(int64_t)layer), (uint64_t)(int64_t)frame);
    return n ? rng_uniform_int(seed, stream, (uint32_t)(sx * sy), out, (size_t)n) : 0;
}

int tome_partition(int h, int w, int sx, int sy, int n_frames, const int32_t *dst_choice,
                   int32_t *dst_idx, int32_t *src_idx) {
    if (h < 1 || w < 1 || sx < 1 || sy < 1 || n_frames < 1)
        return ocd_fail("tome partition: grid %dx%d, cell %dx%d, %d frames", h, w, sy, sx, n_frames);
    int hsy = h / sy, wsx = w / sx, cells = hsy * wsx, nd = 0, ns = 0;
    for (int f = 0; f < n_frames; f++) {
        const int32_t *ch = dst_choice ? dst_choice + (size_t)f * cells : NULL;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int t = (f * h + y) * w + x, is_dst = 0;
                if (y / sy < hsy && x / sx < wsx) {
                    int d = ch ? ch[(y / sy) * wsx + x / sx] : 0;
                    if (d < 0 || d >= sx * sy) return ocd_fail("tome: destination choice %d outside [0, %d)", d, sx * sy);
                    is_dst = (y % sy) * sx + (x % sx) == d;
                }
                if (is_dst) dst_idx[nd++] = t;
                else src_idx[ns++] = t;
            }
    }
    return 0;
}

/* ---- similarity + argmax ----------------------------------------------------------------- */

/* The similarity block [rows, n_dst] stays near 4 MiB: big enough that k_gemm's per-call cost
 * (one OpenMP region, packing the destinations) is small against the arithmetic. */
#define MATCH_BLOCK_FLOATS (1 << 20)
#define MATCH_MAX_ROWS 1024
#define MATCH_MIN_ROWS 64

static int match_rows(int n_dst) {
    int bs = n_dst > 0 ? MATCH_BLOCK_FLOATS / n_dst : MATCH_MAX_ROWS;
    return bs < MATCH_MIN_ROWS ? MATCH_MIN_ROWS : bs > MATCH_MAX_ROWS ? MATCH_MAX_ROWS : bs;
}

size_t tome_match_scratch_floats(int n_dst, int C) {
    size_t s = (size_t)n_dst * MATCH_MIN_ROWS;
    if (s < MATCH_BLOCK_FLOATS) s = MATCH_BLOCK_FLOATS;
    /* normalised dst [n_dst, C] + normalised source block [rows, C] + similarity block */
    return (size_t)n_dst * C + (size_t)MATCH_MAX_ROWS * C + s;
}

/* 1 / ||v||, 0 for a zero vector (sum in double: keys of large C). */
static float inv_norm(const float *v, int C) {
    double s = 0;
    for (int c = 0; c < C; c++) s += (double)v[c] * v[c];
    return s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
}

void tome_best_match_ref(const float *x, int C, const int32_t *src_idx, int n_src,
                         const int32_t *dst_idx, int n_dst, float *best, int32_t *arg) {
    for (int i = 0; i < n_src; i++) {
        const float *a = x + (size_t)src_idx[i] * C;
        float ia = inv_norm(a, C), bv = -INFINITY;
        int bj = 0;
        for (int j = 0; j < n_dst; j++) {
            const float *b = x + (size_t)dst_idx[j] * C;
            float ib = inv_norm(b, C), s = 0;
            for (int c = 0; c < C; c++) s += (a[c] * ia) * (b[c] * ib);
            if (s > bv) { bv = s; bj = j; }
        }
        best[i] = n_dst ? bv : 0.0f;
        arg[i] = bj;
    }
}

void tome_best_match(const float *x, int C, const int32_t *src_idx, int n_src,
                     const int32_t *dst_idx, int n_dst, float *best, int32_t *arg, float *scratch) {
    if (n_dst == 0) {
        for (int i = 0; i < n_src; i++) { best[i] = 0; arg[i] = 0; }
        return;
    }
    int rows = match_rows(n_dst);
    float *bn = scratch;                                /* [n_dst, C] normalised destinations */
    float *an = bn + (size_t)n_dst * C;                 /* [rows, C] normalised sources */
    float *sim = an + (size_t)MATCH_MAX_ROWS * C;       /* [rows, n_dst] cosine block */
    #pragma omp parallel for schedule(static) if ((size_t)n_dst * C > 65536)
    for (int j = 0; j < n_dst; j++) {
        const float *b = x + (size_t)dst_idx[j] * C;
        float ib = inv_norm(b, C);
        for (int c = 0; c < C; c++) bn[(size_t)j * C + c] = b[c] * ib;
    }
    for (int i0 = 0; i0 < n_src; i0 += rows) {
        int bs = n_src - i0 < rows ? n_src - i0 : rows;
        for (int i = 0; i < bs; i++) {
            const float *a = x + (size_t)src_idx[i0 + i] * C;
            float ia = inv_norm(a, C);
            for (int c = 0; c < C; c++) an[(size_t)i * C + c] = a[c] * ia;
        }
        k_gemm(0, 1, bs, n_dst, C, 1.0f, an, C, bn, C, 0.0f, sim, n_dst);
        #pragma omp parallel for schedule(static) if ((size_t)bs * n_dst > 65536)
        for (int i = 0; i < bs; i++) {
            const float *s = sim + (size_t)i * n_dst;
            float bv = -INFINITY;
            int bj = 0;
            for (int j = 0; j < n_dst; j++)
                if (s[j] > bv) { bv = s[j]; bj = j; }
            best[i0 + i] = bv;
            arg[i0 + i] = bj;
        }
    }
}

/* rank [n] = 0..n-1 ordered by score descending, ties in ascending position (stable bottom-up
 * merge sort; tmp [n]; no allocation, unlike qsort). */
static void rank_desc(const float *score, int n, int32_t *rank, int32_t *tmp) {
    for (int i = 0; i < n; i++) rank[i] = i;
    int32_t *a = rank, *b = tmp;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int i = lo, j = mid, o = lo;
            while (i < mid && j < hi) b[o++] = score[a[j]] > score[a[i]] ? a[j++] : a[i++];
            while (i < mid) b[o++] = a[i++];
            while (j < hi) b[o++] = a[j++];
        }
        int32_t *t = a; a = b; b = t;
    }
    if (a != rank) memcpy(rank, a, sizeof(int32_t) * (size_t)n);
}

/* ---- shared plan builder ----------------------------------------------------------------- */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t core_scratch_bytes(int n_tok, int n_dst, int C) {
    return 5 * align64(sizeof(int32_t) * (size_t)n_tok) + align64(sizeof(float) * (size_t)n_tok) +
           align64(sizeof(float) * tome_match_scratch_floats(n_dst, C)) + 64;
}

/* Matching of n_frames grids of h x w tokens of x [N, C] with r merges (r <= n_src, r = 0 ->
 * identity). scratch: core_scratch_bytes. */
static int plan_core(const float *x, int C, int h, int w, int sx, int sy, int n_frames,
                     const int32_t *dst_choice, const uint8_t *fg, float lambda, int r, int layout,
                     void *scratch, tome_plan *plan) {
    int N = n_frames * h * w, n_dst = n_frames * tome_n_cells(h, w, sx, sy), n_src = N - n_dst;
    if (N > plan->cap) return ocd_fail("tome plan: %d tokens, plan capacity %d", N, plan->cap);
    if (r < 0 || r > n_src || (n_dst == 0 && r > 0)) return ocd_fail("tome plan: r %d of %d sources", r, n_src);
    unsigned char *p = (unsigned char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    size_t ib = align64(sizeof(int32_t) * (size_t)N);
    int32_t *dst_idx = (int32_t *)p, *src_idx = (int32_t *)(p + ib), *arg = (int32_t *)(p + 2 * ib);
    int32_t *rank = (int32_t *)(p + 3 * ib), *tmp = (int32_t *)(p + 4 * ib);
    float *best = (float *)(p + 5 * ib);
    float *msc = (float *)(p + 5 * ib + align64(sizeof(float) * (size_t)N));
    if (tome_partition(h, w, sx, sy, n_frames, dst_choice, dst_idx, src_idx)) return -1;
    if (r == 0) {
        if (tome_plan_identity(plan, N)) return -1;
        plan->n_dst = n_dst;
        plan->n_src = n_src;
        return 0;
    }
    tome_best_match(x, C, src_idx, n_src, dst_idx, n_dst, best, arg, msc);
    if (fg)
        for (int i = 0; i < n_src; i++)
            if (fg[src_idx[i]]) best[i] -= lambda;
    rank_desc(best, n_src, rank, tmp);
    plan_fill(plan, N, dst_idx, n_dst, src_idx, n_src, arg, rank, r, layout);
    return 0;
}

/* ---- 1. tomesd --------------------------------------------------------------------------- */

int tome_bipartite_plan(const float *x, int C, int h, int w, int sx, int sy, float ratio,
                        const int32_t *dst_choice, tome_plan *plan) {
    if (h < 1 || w < 1 || sx < 1 || sy < 1 || C < 1 || !(ratio >= 0 && ratio <= 1))
        return ocd_fail("tome: grid %dx%d, cell %dx%d, C %d, ratio %g", h, w, sy, sx, C, ratio);
    int N = h * w, n_src = N - tome_n_cells(h, w, sx, sy);
    int r = (int)((double)N * (double)ratio);   /* python int(N * ratio) */
    if (r > n_src) r = n_src;
    if (tome_n_cells(h, w, sx, sy) == 0) r = 0;
    void *scratch = ocd_malloc(core_scratch_bytes(N, N - n_src, C));
    if (!scratch) return -1;
    int rc = plan_core(x, C, h, w, sx, sy, 1, dst_choice, NULL, 0.0f, r, TOME_LAYOUT_TOMESD, scratch, plan);
    free(scratch);
    return rc;
}

void tome_merge(const tome_plan *p, const float *x, int C, float *out) {
    size_t row = sizeof(float) * (size_t)C;
    for (int m = 0; m < p->n_out; m++) memcpy(out + (size_t)m * C, x + (size_t)p->keep[m] * C, row);
    if (p->r == 0) return;
    for (int t = 0; t < p->n_tok; t++) {
        int m = p->into[t];
        if (p->keep[m] == t) continue;
        float *o = out + (size_t)m * C;
        const float *s = x + (size_t)t * C;
        for (int c = 0; c < C; c++) o[c] += s[c];
    }
    for (int m = 0; m < p->n_out; m++) {
        if (p->count[m] <= 1) continue;
        float n = (float)p->count[m], *o = out + (size_t)m * C;
        for (int c = 0; c < C; c++) o[c] /= n;   /* scatter_reduce "mean": sum / count */
    }
}

void tome_unmerge(const tome_plan *p, const float *y, int C, float *out) {
    size_t row = sizeof(float) * (size_t)C;
    for (int t = 0; t < p->n_tok; t++) memcpy(out + (size_t)t * C, y + (size_t)p->into[t] * C, row);
}

/* ---- 2. K/V merging ---------------------------------------------------------------------- */

void tome_params_default(tome_params *p) {
    p->sx = p->sy = 2;
    p->ratio = 0.5f;
    p->min_tokens = 64;
    p->lambda = 1.0f;
}

size_t tome_kv_scratch_bytes(const tome_params *p, int h, int w, int n_frames, int C) {
    if (h < 1 || w < 1 || n_frames < 1 || C < 1) return 0;
    int N = n_frames * h * w;
    return core_scratch_bytes(N, n_frames * tome_n_cells(h, w, p->sx, p->sy), C);
}

int tome_kv_plan(const tome_params *p, const float *k, int C, int h, int w, int n_frames,
                 const int32_t *dst_choice, const uint8_t *fg, void *scratch, size_t scratch_bytes,
                 tome_plan *plan) {
    if (h < 1 || w < 1 || n_frames < 1 || C < 1 || p->sx < 1 || p->sy < 1 || !(p->ratio >= 0 && p->ratio <= 1) ||
        p->min_tokens < 0)
        return ocd_fail("tome_kv_plan: grid %dx%d x %d frames, C %d, cell %dx%d, ratio %g, min_tokens %d",
                        h, w, n_frames, C, p->sy, p->sx, p->ratio, p->min_tokens);
    size_t need = tome_kv_scratch_bytes(p, h, w, n_frames, C);
    if (scratch_bytes < need) return ocd_fail("tome_kv_plan: scratch %zu bytes, needs %zu", scratch_bytes, need);
    int N = n_frames * h * w, n_dst = n_frames * tome_n_cells(h, w, p->sx, p->sy), n_src = N - n_dst;
    int r = (int)((double)p->ratio * n_src);
    long keep_min = (long)p->min_tokens * n_frames;
    if ((long)N - r < keep_min) r = keep_min >= N ? 0 : (int)(N - keep_min);
    if (n_dst == 0) r = 0;
    return plan_core(k, C, h, w, p->sx, p->sy, n_frames, dst_choice, fg, p->lambda, r, TOME_LAYOUT_TOKEN,
                     scratch, plan);
}

void tome_merge_kv(const tome_plan *p, const float *k, const float *v, int C, float *k_out, float *v_out) {
    tome_merge(p, k, C, k_out);
    tome_merge(p, v, C, v_out);
}

void tome_pool_mask(const float *mask, int Hm, int Wm, int h, int w, uint8_t *out) {
    for (int y = 0; y < h; y++) {
        int y0 = (int)((long)y * Hm / h), y1 = (int)(((long)(y + 1) * Hm + h - 1) / h);
        for (int x = 0; x < w; x++) {
            int x0 = (int)((long)x * Wm / w), x1 = (int)(((long)(x + 1) * Wm + w - 1) / w), on = 0;
            for (int yy = y0; yy < y1 && !on; yy++)
                for (int xx = x0; xx < x1; xx++)
                    if (mask[(size_t)yy * Wm + xx] > 0.5f) { on = 1; break; }
            out[y * w + x] = (uint8_t)on;
        }
    }
}

/* ---- 3. plan store ----------------------------------------------------------------------- */

typedef struct store_chunk {
    struct store_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} store_chunk;

typedef struct {
    int step, layer, item;
    int n_tok, n_out, n_dst, n_src, r;
    int wide;               /* 0: int16 indices, 1: int32 */
    void *data;             /* keep [n_out] then into [n_tok] */
} store_entry;

struct tome_plan_store {
    store_entry *e;
    int n, cap;
    int32_t *table;         /* open addressing: entry index or -1; size tcap (power of 2) */
    int tcap;
    store_chunk *chunks;
    size_t payload, chunk_bytes;
};

#define STORE_CHUNK_BYTES (1u << 20)

static uint64_t key_hash(int step, int layer, int item) {
    uint64_t z = (uint64_t)(uint32_t)step * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)layer * 0xC2B2AE3D27D4EB4Full ^
                 (uint64_t)(uint32_t)item * 0x165667B19E3779F9ull;
    z ^= z >> 31; z *= 0xBF58476D1CE4E5B9ull; z ^= z >> 29;
    return z;
}

tome_plan_store *tome_store_new(void) { return ocd_calloc(1, sizeof(tome_plan_store)); }

void tome_store_clear(tome_plan_store *s) {
    if (!s) return;
    for (store_chunk *c = s->chunks, *nx; c; c = nx) { nx = c->next; free(c); }
    s->chunks = NULL;
    s->n = 0;
    s->payload = s->chunk_bytes = 0;
    for (int i = 0; i < s->tcap; i++) s->table[i] = -1;
}

void tome_store_free(tome_plan_store *s) {
    if (!s) return;
    tome_store_clear(s);
    free(s->e);
    free(s->table);
    free(s);
}

static int find_slot(const tome_plan_store *s, int step, int layer, int item) {
    if (!s->tcap) return -1;
    for (uint64_t i = key_hash(step, layer, item) & (uint64_t)(s->tcap - 1);; i = (i + 1) & (uint64_t)(s->tcap - 1)) {
        int k = s->table[i];
        if (k < 0) return (int)i;
        const store_entry *e = &s->e[k];
        if (e->step == step && e->layer == layer && e->item == item) return (int)i;
    }
}

static int store_grow_table(tome_plan_store *s) {
    int ncap = s->tcap ? s->tcap * 2 : 64;
    int32_t *t = ocd_malloc(sizeof(int32_t) * (size_t)ncap);
    if (!t) return -1;
    free(s->table);
    s->table = t;
    s->tcap = ncap;
    for (int i = 0; i < ncap; i++) t[i] = -1;
    for (int k = 0; k < s->n; k++) s->table[find_slot(s, s->e[k].step, s->e[k].layer, s->e[k].item)] = k;
    return 0;
}

static void *store_alloc(tome_plan_store *s, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    store_chunk *c = s->chunks;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = bytes > STORE_CHUNK_BYTES ? bytes : STORE_CHUNK_BYTES;
        if (!(c = ocd_malloc(sizeof(store_chunk) + cap))) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = s->chunks;
        s->chunks = c;
        s->chunk_bytes += sizeof(store_chunk) + cap;
    }
    void *p = c->data + c->used;
    c->used += bytes;
    return p;
}

int tome_store_reserve(tome_plan_store *s, int n, size_t payload) {
    if (n < 0) return ocd_fail("tome_store_reserve: negative count");
    while (2 * (s->n + n) > s->tcap)
        if (store_grow_table(s)) return -1;
    if (s->n + n > s->cap) {
        store_entry *ne = realloc(s->e, sizeof(store_entry) * (size_t)(s->n + n));
        if (!ne) return ocd_fail("tome plan store: out of memory");
        s->e = ne;
        s->cap = s->n + n;
    }
    const size_t bytes = payload + 16 * (size_t)n; /* store_alloc rounds each plan up to 16 bytes */
    if (!s->chunks || s->chunks->cap - s->chunks->used < bytes) {
        if (!store_alloc(s, bytes)) return -1;
        s->chunks->used = 0; /* a fresh, empty chunk at the head */
    }
    return 0;
}

int tome_store_put(tome_plan_store *s, int step, int layer, int item, const tome_plan *p) {
    if (p->n_tok < 0 || p->n_out < 0 || p->n_out > p->n_tok) return ocd_fail("tome_store_put: malformed plan");
    if (2 * (s->n + 1) > s->tcap && store_grow_table(s)) return -1;
    int slot = find_slot(s, step, layer, item);
    if (s->table[slot] >= 0) return ocd_fail("tome plan store: (step %d, layer %d, item %d) stored twice", step, layer, item);
    if (s->n == s->cap) {
        int ncap = s->cap ? 2 * s->cap : 256;
        store_entry *ne = realloc(s->e, sizeof(store_entry) * (size_t)ncap);
        if (!ne) return ocd_fail("tome plan store: out of memory");
        s->e = ne;
        s->cap = ncap;
    }
    int wide = p->n_tok > 32768;
    size_t n_idx = (size_t)p->n_out + p->n_tok, bytes = n_idx * (wide ? 4 : 2);
    void *d = store_alloc(s, bytes);
    if (!d) return -1;
    if (wide) {
        memcpy(d, p->keep, sizeof(int32_t) * (size_t)p->n_out);
        memcpy((int32_t *)d + p->n_out, p->into, sizeof(int32_t) * (size_t)p->n_tok);
    } else {
        int16_t *q = d;
        for (int m = 0; m < p->n_out; m++) *q++ = (int16_t)p->keep[m];
        for (int t = 0; t < p->n_tok; t++) *q++ = (int16_t)p->into[t];
    }
    s->e[s->n] = (store_entry){step, layer, item, p->n_tok, p->n_out, p->n_dst, p->n_src, p->r, wide, d};
    s->table[slot] = s->n++;
    s->payload += bytes;
    return 0;
}

int tome_store_get(const tome_plan_store *s, int step, int layer, int item, tome_plan *p) {
    int slot = find_slot(s, step, layer, item);
    if (slot < 0 || s->table[slot] < 0) return 0;
    const store_entry *e = &s->e[s->table[slot]];
    if (e->n_tok > p->cap) return ocd_fail("tome_store_get: plan of %d tokens, capacity %d", e->n_tok, p->cap);
    p->n_tok = e->n_tok;
    p->n_out = e->n_out;
    p->n_dst = e->n_dst;
    p->n_src = e->n_src;
    p->r = e->r;
    if (e->wide) {
        memcpy(p->keep, e->data, sizeof(int32_t) * (size_t)e->n_out);
        memcpy(p->into, (const int32_t *)e->data + e->n_out, sizeof(int32_t) * (size_t)e->n_tok);
    } else {
        const int16_t *q = e->data;
        for (int m = 0; m < e->n_out; m++) p->keep[m] = *q++;
        for (int t = 0; t < e->n_tok; t++) p->into[t] = *q++;
    }
    for (int m = 0; m < e->n_out; m++) p->count[m] = 0;
    for (int t = 0; t < e->n_tok; t++) p->count[p->into[t]]++;
    return 1;
}

int tome_store_count(const tome_plan_store *s) { return s->n; }

size_t tome_store_payload_bytes(const tome_plan_store *s) { return s->payload; }

size_t tome_store_bytes(const tome_plan_store *s) {
    return sizeof *s + s->chunk_bytes + sizeof(store_entry) * (size_t)s->cap + sizeof(int32_t) * (size_t)s->tcap;
}
