/* What FateZero's attention fusion needs from the inversion, without FateZero's memory bill
 * (ocd-method.md 2; algorithms.md A.5).
 *
 * FateZero keeps every softmax map of the hooked layers (Nq <= 1024) for every step. Here an
 * entry (inversion step k, hooked transformer block j, self|cross) is kept only if an editing
 * step will read it, and as whichever is smaller:
 *   QK:  the source queries of every frame [F, Nq, C] and the keys the maps were made from
 *        (self: the key frames' keys [n_kf, Nq, C]; cross: the text keys [77, C], one context
 *        for all frames), from which the map is recomputed as softmax(q k^T / sqrt(dh));
 *   MAP: the probabilities themselves [F, heads, Nq, Nk_tot].
 * in F16 (default), BF16 or F32. Entries are laid out before the inversion runs (the layer
 * geometry follows from the UNet config), first in RAM up to `budget` bytes, the rest in a
 * memory-mapped temporary file that is unlinked right after mmap (it disappears with the
 * process); a spilled entry's pages are dropped from the process as soon as it is written or
 * read (MADV_DONTNEED: the data stays in the file), so the resident set holds the budget, not
 * the spill. Recording and reading allocate nothing. */
#ifndef OCD_EDIT_ATTN_STORE_H
#define OCD_EDIT_ATTN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "edit/tome.h"
#include "edit/xframe.h"
#include "nn/unet.h"

typedef enum { AS_F16, AS_BF16, AS_F32 } as_dtype;

#define AS_MAX_LAYERS 64
#define AS_MAX_NQ 1024       /* hooked layers: Nq <= 32 x 32 (A.5) */
#define AS_BLEND_LAYERS 8    /* FateZero: down_cross[2:4] + up_cross[0:3], see attn_store_new */

/* One transformer block of the UNet, in call order. */
typedef struct {
    int layer;               /* unet_attn_call.layer */
    int part;                /* UNET_PART_* */
    int level;               /* resolution level (0 = the latent's; the down level, or the up block's) */
    int H, W, C, heads;
    int hooked;              /* H*W <= 1024: stored and edited */
    int slot;                /* index among hooked blocks (-1 if not hooked) */
    int pos;                 /* position within its part's hooked list (FateZero's store index) */
} as_layer;

/* The UNet's transformer blocks for a latent of h x w (same rule as unet_forward's sizes). */
int as_layer_plan(const unet_config *c, int h, int w, as_layer *layers, int max);

enum { AS_NONE = 0, AS_QK = 1, AS_MAP = 2 };

typedef struct {
    int kind;                /* AS_NONE (not kept), AS_QK, AS_MAP */
    int on_disk;
    size_t offset;           /* bytes into the RAM block or the spill file */
    size_t bytes;
    int n_kf;                /* QK self: key frames kept; cross: 1 */
    int nk_tot;              /* keys per query row of the map (self: n_kv * Nq, cross: 77) */
} as_entry;

typedef struct attn_store {
    int F, steps, n_ctx;
    as_dtype dtype;
    xf_mode mode;
    int least_sc_channel;
    int n_layers, n_hooked;
    as_layer layers[AS_MAX_LAYERS];
    int hooked_layer[AS_MAX_LAYERS];      /* slot -> index into layers */
    int blend_slot[AS_BLEND_LAYERS];      /* slots of the blend-mask layers (-1 missing) */
    int n_blend;
    int n_kf[AS_MAX_LAYERS];              /* per slot: key frames a QK self entry keeps */
    int8_t kf_index[AS_MAX_LAYERS][XF_MAX_KV]; /* per slot: frame -> index among them (-1: none) */
    as_entry *e;                          /* [steps][n_hooked][2 (0 self, 1 cross)] */
    uint8_t *ram;                         /* RAM entries */
    uint8_t *disk;                        /* mmap of the unlinked spill file */
    size_t ram_bytes, disk_bytes, budget;
    size_t n_entries, n_qk, n_map;
    int recorded_steps;
} attn_store;

/* need_cross[k]: all cross entries of inversion step k; need_blend[k]: the blend layers' cross
 * entries; need_self[k]: self entries (k = inversion step, 0..steps-1). force: AS_NONE = pick
 * the smaller form, else always that form (tests). budget 0 = unlimited. */
typedef struct {
    const unet_config *unet;
    int F, h, w, steps, n_ctx;
    xf_mode mode;
    int least_sc_channel;
    as_dtype dtype;
    const uint8_t *need_cross, *need_blend, *need_self;  /* [steps] */
    size_t budget;
    const char *spill_dir;
    int force;
    int plan_only;           /* lay out and count bytes, allocate nothing (memory estimates) */
    int blend_level;         /* UNet level of the blend-mask layers; -1 = auto (as_blend_level) */
    int self_qk;             /* keep every self entry as Q/K (token merging / crops read them through a view) */
} as_config;

/* The blend-mask level FateZero uses at 512 px is the one with a 16x16 grid (down_blocks.2,
 * up_blocks.1). Generalised: the hooked level with the largest grid no larger than 16x16, so
 * that smaller frames (or small models, whose coarse levels are 2x2) still get a usable mask. */
int as_blend_level(const unet_config *c, int h, int w);

attn_store *attn_store_new(const as_config *c);
void attn_store_free(attn_store *s);

/* Index of the hooked slot of a UNet layer (-1: not hooked). */
int attn_store_slot(const attn_store *s, int layer);
const as_entry *attn_store_entry(const attn_store *s, int step, int slot, int is_cross);

/* Recording during inversion step `step`, from the hook's call for item b (the clip's frame b;
 * inversion batch = F frames). P: item b's probabilities [heads, Nq, nk_tot] (needed only for
 * AS_MAP entries; NULL otherwise). */
int attn_store_record(attn_store *s, int step, const unet_attn_call *call, const float *P);

/* Source map of frame f: P [heads, Nq, nk_tot]. scratch: attn_store_scratch_floats(). */
int attn_store_map(const attn_store *s, int step, int slot, int is_cross, int f, float *P, float *scratch);
size_t attn_store_scratch_floats(const attn_store *s);

/* A view of a source map for token merging and Object-Centric Sampling's crop (ocd-method.md 3.5,
 * 5.2): only the query rows `rows` (token indices of the frame's grid, ascending), only the keys
 * `keys` (self: indices into the concatenated key frames' tokens, ascending; ignored for cross),
 * and those keys merged by `plan` (self, TOME_LAYOUT_TOKEN over the selected keys) before the
 * softmax. NULL members = all rows / all keys / no merging. From a Q/K entry the map is recomputed
 * on exactly that layout (so it equals what the inversion's attention over merged keys computed,
 * up to the store's rounding of q and k); a map entry can be restricted (rows, and keys with the
 * softmax renormalised over them, which is exact) but not merged. P [heads, n_rows, n_cols]. */
typedef struct {
    const int32_t *rows; int n_rows;
    const int32_t *keys; int n_keys;
    const tome_plan *plan;
} as_view;
int attn_store_map_view(const attn_store *s, int step, int slot, int is_cross, int f, const as_view *v, float *P,
                        float *scratch);

/* P [heads, Nq, Nk] = softmax(q_h k_h^T * scale) per head; q [Nq, C] (row stride ldq),
 * k [Nk, C] (ldk). */
void as_softmax_map(const float *q, int ldq, const float *k, int ldk, int Nq, int Nk, int heads, int dh, float scale,
                    float *P);

/* Half-precision conversions (round to nearest even). */
uint16_t as_f32_to_f16(float f);
float as_f16_to_f32(uint16_t h);

#endif
