/* Attention store of the FateZero inversion (see attn_store.h). */
#include "edit/attn_store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "edit/tome.h"
#include "kernels/kernels.h"

/* ------------------------------------------------------------ half floats */

uint16_t as_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0)); /* inf / nan */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                                   /* overflow */
    if (x < 0x38800000u) {                                                                      /* subnormal */
        if (x < 0x33000000u) return (uint16_t)sign;
        const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e; /* 14 + (113 - e) */
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((x >> 13) - (112u << 10));
    const uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float as_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu, x;
    if (e == 0) {
        if (!m) x = sign;
        else { /* subnormal: m * 2^-24 */
            float f = (float)m * 5.9604644775390625e-8f;
            memcpy(&x, &f, 4);
            x |= sign;
        }
    } else if (e == 31) x = sign | 0x7f800000u | (m << 13);
    else x = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static size_t dtype_size(as_dtype d) { return d == AS_F32 ? 4 : 2; }

static void put(as_dtype d, void *dst, const float *src, size_t n) {
    if (d == AS_F32) { memcpy(dst, src, n * 4); return; }
    uint16_t *o = dst;
    if (d == AS_F16)
        for (size_t i = 0; i < n; i++) o[i] = as_f32_to_f16(src[i]);
    else
        for (size_t i = 0; i < n; i++) o[i] = k_f32_to_bf16(src[i]);
}

static void get(as_dtype d, float *dst, const void *src, size_t n) {
    if (d == AS_F32) { memcpy(dst, src, n * 4); return; }
    const uint16_t *s = src;
    if (d == AS_F16)
        for (size_t i = 0; i < n; i++) dst[i] = as_f16_to_f32(s[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = k_bf16_to_f32(s[i]);
}

/* ------------------------------------------------------------ layer plan */

int as_layer_plan(const unet_config *c, int h, int w, as_layer *L, int max) {
    const int nl = c->n_levels, depth = c->transformer_depth > 0 ? c->transformer_depth : 1;
    int n = 0, lh[UNET_MAX_LEVELS], lw[UNET_MAX_LEVELS];
#define ADD(PART, LVL, HH, WW, CC, HEADS)                                                                   \
    do {                                                                                           \
        for (int d_ = 0; d_ < depth; d_++) {                                                       \
            if (n >= max) return ocd_fail("attention store: more than %d transformer blocks", max); \
            L[n] = (as_layer){.layer = n, .part = PART, .level = LVL, .H = HH, .W = WW, .C = CC, .heads = HEADS, \
                              .hooked = (HH) * (WW) <= AS_MAX_NQ, .slot = -1, .pos = -1};          \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    for (int i = 0; i < nl; i++) {
        lh[i] = h, lw[i] = w;
        if (c->down_attn[i])
            for (int j = 0; j < c->layers_per_block; j++) ADD(UNET_PART_DOWN, i, h, w, c->block_out[i], c->heads[i]);
        if (i < nl - 1) h = (h - 1) / 2 + 1, w = (w - 1) / 2 + 1;
    }
    ADD(UNET_PART_MID, nl - 1, h, w, c->block_out[nl - 1], c->heads[nl - 1]);
    for (int i = 0; i < nl; i++) {
        const int lvl = nl - 1 - i;
        if (c->up_attn[i])
            for (int j = 0; j < c->layers_per_block + 1; j++)
                ADD(UNET_PART_UP, lvl, lh[lvl], lw[lvl], c->block_out[lvl], c->heads[lvl]);
    }
#undef ADD
    int pos[3] = {0, 0, 0}, slot = 0;
    for (int i = 0; i < n; i++)
        if (L[i].hooked) L[i].slot = slot++, L[i].pos = pos[L[i].part]++;
    return n;
}

int as_blend_level(const unet_config *c, int h, int w) {
    int best = c->n_levels - 2 > 0 ? c->n_levels - 2 : 0, best_h = 0;
    for (int i = 0; i < c->n_levels; i++) {
        if (c->down_attn[i] && h * w <= AS_MAX_NQ && h <= 16 && w <= 16 && h > best_h) best = i, best_h = h;
        if (i < c->n_levels - 1) h = (h - 1) / 2 + 1, w = (w - 1) / 2 + 1;
    }
    return best;
}

/* ------------------------------------------------------------ store */

attn_store *attn_store_new(const as_config *c) {
    if (!c || !c->unet || c->F < 1 || c->steps < 1) { ocd_fail("attn_store_new: bad arguments"); return NULL; }
    if (c->F > XF_MAX_KV) { ocd_fail("attention store: at most %d frames", XF_MAX_KV); return NULL; }
    attn_store *s = ocd_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->F = c->F, s->steps = c->steps, s->n_ctx = c->n_ctx > 0 ? c->n_ctx : 77;
    s->dtype = c->dtype, s->mode = c->mode, s->least_sc_channel = c->least_sc_channel, s->budget = c->budget;
    s->n_layers = as_layer_plan(c->unet, c->h, c->w, s->layers, AS_MAX_LAYERS);
    if (s->n_layers < 0) goto fail;
    for (int i = 0; i < s->n_layers; i++)
        if (s->layers[i].hooked) s->hooked_layer[s->n_hooked++] = i;
    /* Blend-mask layers. FateZero slices down_cross[2:4] + up_cross[0:3]: with SD at 512 px (the
     * 64x64 level not hooked) these are all the attention blocks of the 16x16 level
     * (down_blocks.2, up_blocks.1). Selecting them by level gives the same five layers whenever
     * FateZero's slicing is well defined, and stays consistent (one grid) when more levels are
     * hooked, e.g. small frames where FateZero's positions would mix grids. */
    for (int i = 0; i < AS_BLEND_LAYERS; i++) s->blend_slot[i] = -1;
    const int bl = c->blend_level >= 0 ? c->blend_level : as_blend_level(c->unet, c->h, c->w);
    for (int i = 0; i < s->n_layers; i++) {
        const as_layer *l = &s->layers[i];
        if (!l->hooked || l->level != bl || l->part == UNET_PART_MID || s->n_blend == AS_BLEND_LAYERS) continue;
        s->blend_slot[s->n_blend++] = l->slot;
    }
    /* key frames a QK self entry keeps, per slot */
    for (int j = 0; j < s->n_hooked; j++) {
        const as_layer *l = &s->layers[s->hooked_layer[j]];
        memset(s->kf_index[j], -1, sizeof s->kf_index[j]);
        int n = 0;
        for (int f = 0; f < s->F; f++) {
            int kv[XF_MAX_KV], m = xf_kv_frames(s->mode, s->least_sc_channel, s->F, f, l->C, kv);
            for (int i = 0; i < m; i++)
                if (s->kf_index[j][kv[i]] < 0) s->kf_index[j][kv[i]] = (int8_t)n++;
        }
        s->n_kf[j] = n;
    }
    s->e = ocd_calloc((size_t)s->steps * s->n_hooked * 2, sizeof *s->e);
    if (!s->e) goto fail;
    const size_t es = dtype_size(s->dtype);
    size_t ram = 0, disk = 0;
    for (int k = 0; k < s->steps; k++)
        for (int j = 0; j < s->n_hooked; j++) {
            const as_layer *l = &s->layers[s->hooked_layer[j]];
            int is_blend = 0;
            for (int b = 0; b < s->n_blend; b++) is_blend |= s->blend_slot[b] == j;
            for (int x = 0; x < 2; x++) {
                as_entry *e = &s->e[((size_t)k * s->n_hooked + j) * 2 + x];
                int need = x ? (c->need_cross && c->need_cross[k]) || (c->need_blend && c->need_blend[k] && is_blend)
                             : c->need_self && c->need_self[k];
                if (!need) continue;
                const size_t Nq = (size_t)l->H * l->W;
                int kv[XF_MAX_KV];
                e->nk_tot = x ? s->n_ctx : xf_kv_frames(s->mode, s->least_sc_channel, s->F, 0, l->C, kv) * (int)Nq;
                /* every frame reads the same number of key frames in every mode */
                e->n_kf = x ? 1 : s->n_kf[j];
                const size_t qk = ((size_t)s->F * Nq + (size_t)e->n_kf * (x ? (size_t)s->n_ctx : Nq)) * l->C * es;
                const size_t mp = (size_t)s->F * l->heads * Nq * e->nk_tot * es;
                e->kind = c->force ? c->force : (!x && c->self_qk) || qk <= mp ? AS_QK : AS_MAP;
                e->bytes = e->kind == AS_QK ? qk : mp;
                const size_t b64 = (e->bytes + 63) & ~(size_t)63;
                if (!s->budget || ram + b64 <= s->budget) e->offset = ram, ram += b64;
                else e->on_disk = 1, e->offset = disk, disk += b64;
                s->n_entries++;
                if (e->kind == AS_QK) s->n_qk++; else s->n_map++;
            }
        }
    s->ram_bytes = ram, s->disk_bytes = disk;
    if (c->plan_only) return s;
    if (ram && !(s->ram = aligned_alloc(64, ram))) { ocd_fail("attention store: out of memory (%zu bytes)", ram); goto fail; }
    if (disk) {
        const char *dir = c->spill_dir ? c->spill_dir : getenv("TMPDIR");
        char path[4096];
        snprintf(path, sizeof path, "%s/ocd-attn-XXXXXX", dir && *dir ? dir : "/tmp");
        int fd = mkstemp(path);
        if (fd < 0) { ocd_fail("attention store: cannot create a spill file in %s", dir && *dir ? dir : "/tmp"); goto fail; }
        if (ftruncate(fd, (off_t)disk)) {
            close(fd), unlink(path);
            ocd_fail("attention store: cannot size the spill file %s to %zu bytes", path, disk);
            goto fail;
        }
        void *p = mmap(NULL, disk, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        unlink(path); /* the mapping keeps the data; the name goes now so nothing is left behind */
        close(fd);
        if (p == MAP_FAILED) { ocd_fail("attention store: cannot map %zu bytes of spill file", disk); goto fail; }
        s->disk = p;
    }
    return s;
fail:
    attn_store_free(s);
    return NULL;
}

void attn_store_free(attn_store *s) {
    if (!s) return;
    free(s->ram);
    if (s->disk) munmap(s->disk, s->disk_bytes);
    free(s->e);
    free(s);
}

int attn_store_slot(const attn_store *s, int layer) {
    if (layer < 0 || layer >= s->n_layers) return -1;
    return s->layers[layer].slot;
}

const as_entry *attn_store_entry(const attn_store *s, int step, int slot, int is_cross) {
    if (step < 0 || step >= s->steps || slot < 0 || slot >= s->n_hooked) return NULL;
    const as_entry *e = &s->e[((size_t)step * s->n_hooked + slot) * 2 + (is_cross ? 1 : 0)];
    return e->kind ? e : NULL;
}

static uint8_t *entry_data(const attn_store *s, const as_entry *e) {
    return (e->on_disk ? s->disk : s->ram) + e->offset;
}

/* A spilled entry's pages leave the process once it is written or read: the data stays in the
 * file (and the page cache, which the kernel may write back and reclaim), so the resident set
 * holds the RAM budget, not the spill. Whole pages only; entries sharing a page keep it. */
static void spill_release(const attn_store *s, const as_entry *e) {
    if (!e->on_disk) return;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)(s->disk + e->offset);
    const uintptr_t lo = (a + pg - 1) & ~(pg - 1), hi = (a + e->bytes) & ~(pg - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int attn_store_record(attn_store *s, int step, const unet_attn_call *call, const float *P) {
    const int slot = attn_store_slot(s, call->layer);
    if (slot < 0) return 0;
    const as_layer *l = &s->layers[s->hooked_layer[slot]];
    if (l->H != call->H || l->W != call->W || l->C != call->C || l->heads != call->heads)
        return ocd_fail("attention store: layer %d is %dx%d x %d (%d heads), planned %dx%d x %d (%d heads)", call->layer,
                        call->H, call->W, call->C, call->heads, l->H, l->W, l->C, l->heads);
    const as_entry *e = attn_store_entry(s, step, slot, call->is_cross);
    if (!e) return 0;
    if (call->batch != s->F) return ocd_fail("attention store: inversion batch %d != %d frames", call->batch, s->F);
    const int f = call->b;
    const size_t es = dtype_size(s->dtype), Nq = (size_t)call->Nq, C = (size_t)call->C;
    uint8_t *d = entry_data(s, e);
    if (e->kind == AS_MAP) {
        if (!P) return ocd_fail("attention store: map entry recorded without probabilities");
        const size_t n = (size_t)call->heads * Nq * e->nk_tot;
        put(s->dtype, d + (size_t)f * n * es, P, n);
        spill_release(s, e);
        return 0;
    }
    /* QK: queries of every frame, then the keys */
    put(s->dtype, d + (size_t)f * Nq * C * es, call->q + (size_t)f * Nq * C, Nq * C);
    uint8_t *kd = d + (size_t)s->F * Nq * C * es;
    if (call->is_cross) {
        if (call->Nk != s->n_ctx) return ocd_fail("attention store: %d text tokens, planned %d", call->Nk, s->n_ctx);
        if (f == 0) put(s->dtype, kd, call->k, (size_t)call->Nk * C); /* one context for every frame */
    } else {
        const int ki = s->kf_index[slot][f];
        if (ki >= 0) put(s->dtype, kd + (size_t)ki * Nq * C * es, call->k + (size_t)f * Nq * C, Nq * C);
    }
    spill_release(s, e);
    return 0;
}

size_t attn_store_scratch_floats(const attn_store *s) {
    size_t m = 0;
    for (int j = 0; j < s->n_hooked; j++) {
        const as_layer *l = &s->layers[s->hooked_layer[j]];
        const size_t Nq = (size_t)l->H * l->W;
        size_t nk = (size_t)xf_max_kv(s->mode, s->F) * Nq;
        if (nk < (size_t)s->n_ctx) nk = s->n_ctx;
        const size_t v = (Nq + 2 * nk) * l->C; /* q, k, and the selected / merged keys of a view */
        if (v > m) m = v;
    }
    return m;
}

void as_softmax_map(const float *q, int ldq, const float *k, int ldk, int Nq, int Nk, int heads, int dh, float scale,
                    float *P) {
    for (int h = 0; h < heads; h++)
        k_gemm(0, 1, Nq, Nk, dh, scale, q + h * dh, ldq, k + h * dh, ldk, 0.0f, P + (size_t)h * Nq * Nk, Nk);
    const size_t rows = (size_t)heads * Nq;
#pragma omp parallel for schedule(static) if (rows * Nk >= (1u << 22))
    for (size_t r = 0; r < rows; r++) {
        float *p = P + r * Nk, mx = p[0];
        for (int j = 1; j < Nk; j++) mx = p[j] > mx ? p[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < Nk; j++) sum += (p[j] = expf(p[j] - mx));
        const float inv = 1.0f / sum;
        for (int j = 0; j < Nk; j++) p[j] *= inv;
    }
}

int attn_store_map(const attn_store *s, int step, int slot, int is_cross, int f, float *P, float *scratch) {
    const as_entry *e = attn_store_entry(s, step, slot, is_cross);
    if (!e) return ocd_fail("attention store: no %s entry for step %d, block %d", is_cross ? "cross" : "self", step, slot);
    const as_layer *l = &s->layers[s->hooked_layer[slot]];
    const size_t es = dtype_size(s->dtype), Nq = (size_t)l->H * l->W, C = (size_t)l->C;
    const uint8_t *d = entry_data(s, e);
    if (e->kind == AS_MAP) {
        const size_t n = (size_t)l->heads * Nq * e->nk_tot;
        get(s->dtype, P, d + (size_t)f * n * es, n);
        spill_release(s, e);
        return 0;
    }
    float *q = scratch, *k = scratch + Nq * C;
    get(s->dtype, q, d + (size_t)f * Nq * C * es, Nq * C);
    const uint8_t *kd = d + (size_t)s->F * Nq * C * es;
    if (is_cross) get(s->dtype, k, kd, (size_t)s->n_ctx * C);
    else {
        int kv[XF_MAX_KV], n = xf_kv_frames(s->mode, s->least_sc_channel, s->F, f, l->C, kv);
        for (int i = 0; i < n; i++) get(s->dtype, k + (size_t)i * Nq * C, kd + (size_t)s->kf_index[slot][kv[i]] * Nq * C * es, Nq * C);
    }
    spill_release(s, e);
    const int dh = l->C / l->heads;
    as_softmax_map(q, (int)C, k, (int)C, (int)Nq, e->nk_tot, l->heads, dh, 1.0f / sqrtf((float)dh), P);
    return 0;
}

int attn_store_map_view(const attn_store *s, int step, int slot, int is_cross, int f, const as_view *v, float *P,
                        float *scratch) {
    if (!v || (!v->rows && !v->plan && (is_cross || !v->keys))) return attn_store_map(s, step, slot, is_cross, f, P, scratch);
    const as_entry *e = attn_store_entry(s, step, slot, is_cross);
    if (!e) return ocd_fail("attention store: no %s entry for step %d, block %d", is_cross ? "cross" : "self", step, slot);
    const as_layer *l = &s->layers[s->hooked_layer[slot]];
    const size_t es = dtype_size(s->dtype), Nq = (size_t)l->H * l->W, C = (size_t)l->C;
    const int nr = v->rows ? v->n_rows : (int)Nq;
    const int nk_sel = !is_cross && v->keys ? v->n_keys : e->nk_tot;
    if (v->plan && (is_cross || v->plan->n_tok != nk_sel))
        return ocd_fail("attention store: a merge plan of %d tokens for %d selected keys", v->plan->n_tok, nk_sel);
    const uint8_t *d = entry_data(s, e);
    if (e->kind == AS_MAP) {
        if (v->plan && v->plan->r > 0) return ocd_fail("attention store: merged keys need a Q/K entry (block %d)", slot);
        /* full map, then compact rows and keys in place (selections are ascending) and renormalise */
        const size_t n = (size_t)l->heads * Nq * e->nk_tot;
        get(s->dtype, P, d + (size_t)f * n * es, n);
        spill_release(s, e);
        const int sel = !is_cross && v->keys;
        float *o = P;
        for (int h = 0; h < l->heads; h++)
            for (int i = 0; i < nr; i++) {
                const float *row = P + ((size_t)h * Nq + (v->rows ? v->rows[i] : i)) * e->nk_tot;
                float *dst = o;
                if (sel) {
                    float sum = 0.0f;
                    for (int j = 0; j < nk_sel; j++) sum += (*o++ = row[v->keys[j]]);
                    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
                    for (int j = 0; j < nk_sel; j++) dst[j] *= inv;
                } else {
                    memmove(o, row, sizeof(float) * e->nk_tot);
                    o += e->nk_tot;
                }
            }
        return 0;
    }
    /* Q/K: the view's query rows, the keys (selected, merged), softmax */
    float *q = scratch, *k = scratch + Nq * C, *k2 = k + (size_t)e->nk_tot * C;
    const uint8_t *qd = d + (size_t)f * Nq * C * es;
    if (v->rows)
        for (int i = 0; i < nr; i++) get(s->dtype, q + (size_t)i * C, qd + (size_t)v->rows[i] * C * es, C);
    else get(s->dtype, q, qd, Nq * C);
    const uint8_t *kd = d + (size_t)s->F * Nq * C * es;
    if (is_cross) get(s->dtype, k, kd, (size_t)s->n_ctx * C);
    else {
        int kv[XF_MAX_KV], n = xf_kv_frames(s->mode, s->least_sc_channel, s->F, f, l->C, kv);
        for (int i = 0; i < n; i++) get(s->dtype, k + (size_t)i * Nq * C, kd + (size_t)s->kf_index[slot][kv[i]] * Nq * C * es, Nq * C);
    }
    spill_release(s, e);
    int nk = is_cross ? s->n_ctx : e->nk_tot;
    if (!is_cross && v->keys) {
        for (int j = 0; j < nk_sel; j++) memcpy(k2 + (size_t)j * C, k + (size_t)v->keys[j] * C, sizeof(float) * C);
        float *t = k; k = k2, k2 = t;   /* k: the selected keys; k2: free */
        nk = nk_sel;
    }
    if (!is_cross && v->plan) {
        tome_merge(v->plan, k, (int)C, k2);
        k = k2;
        nk = v->plan->n_out;
    }
    const int dh = l->C / l->heads;
    as_softmax_map(q, (int)C, k, (int)C, nr, nk, l->heads, dh, 1.0f / sqrtf((float)dh), P);
    return 0;
}
