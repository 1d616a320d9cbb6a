/* UNet2DConditionModel of SD 1.x, driven by its config (algorithms.md E.2).
 *
 * Tensors: latents [B, C, H, W], context [B, 77, cross_dim], timesteps one per batch item.
 * Every attention call goes through one hook (unet_attn_hook) that sees the whole batch's
 * queries/keys/values, so cross-frame attention, attention fusion and token merging plug in
 * there instead of being written into the UNet. */
#ifndef OCD_NN_UNET_H
#define OCD_NN_UNET_H

#include <stdint.h>

#include "base/arena.h"
#include "nn/weights.h"

#define UNET_MAX_LEVELS 6
enum { UNET_PART_DOWN, UNET_PART_MID, UNET_PART_UP };

typedef struct {
    int in_ch, out_ch;
    int n_levels;
    int block_out[UNET_MAX_LEVELS];   /* channels per level: SD 1.x 320, 640, 1280, 1280 */
    int layers_per_block;             /* resnets per down level (up levels have one more) */
    int heads[UNET_MAX_LEVELS];       /* attention heads per level (SD 1.x "attention_head_dim" 8) */
    int down_attn[UNET_MAX_LEVELS];   /* 1 = CrossAttnDownBlock2D */
    int up_attn[UNET_MAX_LEVELS];     /* 1 = CrossAttnUpBlock2D (up level i counts from the bottom) */
    int cross_dim;                    /* 768 */
    int groups;                       /* GroupNorm groups, 32 */
    float eps;                        /* resnet / out GroupNorm eps, 1e-5 */
    int flip_sin_to_cos, freq_shift;
    int transformer_depth;            /* transformer blocks per attention (1) */
    int sample_size;                  /* latent size the model was trained at (SD 1.x: 64) */
} unet_config;

int unet_config_from_json(unet_config *c, const char *json_text);
/* From tensor shapes; groups default to 32 (not recoverable from shapes). */
int unet_config_infer(unet_config *c, ws_source *ws);

/* One attention call, as the hook sees it. q is [batch, Nq, C], k/v [batch, Nk, C]
 * (self-attention: Nk = Nq, the item's own tokens; cross: the text context). The hook
 * writes item b's result into out [Nq, C]. */
typedef struct {
    int layer;          /* transformer block index in call order, 0..n_attn_layers-1 */
    int part;           /* UNET_PART_DOWN, _MID or _UP: where in the UNet the block sits */
    int is_cross;       /* 0: attn1 (self), 1: attn2 (cross) */
    int H, W;           /* token grid */
    int batch, b;       /* batch size and the item whose output is wanted */
    int Nq, Nk, C, heads, dh;
    float scale;
    const float *q, *k, *v;
    float *out;
    int timestep;       /* the UNet call's timestep of item b (rounded) */
    float *scratch;     /* k_attention_scratch_floats(Nq, Nk * batch) floats, free to use */
    int bf16;           /* 1: the UNet runs in bf16, and so does unet_attention */
} unet_attn_call;

typedef struct {
    /* Returns 0, or -1 with the error set. NULL attend = plain attention per item. */
    int (*attend)(void *user, const unet_attn_call *call);
    void *user;
    int kv_frames_max;  /* most batch items one call may read K/V from (sizes scratch); 0 = 1 */
    /* > 1: every run of norm_frames consecutive batch items is one clip whose resnet and
     * conv_norm_out GroupNorms take their statistics over all its frames, as torch's GroupNorm
     * on [b, c, f, h, w] does in ControlVideo's / Tune-A-Video's 3D UNet (the transformers'
     * GroupNorm stays per frame). 0 or 1 = per item. B must be a multiple of it. */
    int norm_frames;
} unet_attn_hook;

/* The default attention of one item (what a hook falls back to). */
int unet_attend_plain(const unet_attn_call *call);
/* call->out [Nq, C] = attention of q [Nq, C] over k, v [Nk, C] (row stride C) with the call's
 * heads and scale: k_attention, or k_attention_bf16 when call->bf16. For hooks that gather
 * or merge their own keys. */
void unet_attention(const unet_attn_call *call, const float *q, const float *k, const float *v, int Nk);

typedef struct unet unet;

unet *unet_new(const unet_config *c, ws_source *ws);
void unet_free(unet *u);
const unet_config *unet_get_config(const unet *u);
int unet_n_attn_layers(const unet *u);

/* eps [B, out_ch, H, W] = UNet(x [B, in_ch, H, W], t [B], ctx [B, n_ctx, cross_dim]).
 * hook may be NULL. Scratch comes from the UNet's arena (planned on the first call at a
 * size; later calls at that size allocate nothing). Not thread-safe per unet. */
int unet_forward(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                 const unet_attn_hook *hook, float *eps);
/* ControlNet residuals, added to every skip connection (in push order: conv_in, then each
 * down resnet/attention and downsampler) and to the mid block's output. Each [B, c, h, w]. */
#define UNET_MAX_SKIPS 64
typedef struct {
    const float *down[UNET_MAX_SKIPS];
    int n_down;
    const float *mid;
    /* ControlVideo as published (diffusers 0.14 in-place add): the mid block also runs on
     * last skip + its residual. 0 = standard ControlNet. */
    int mid_in_place;
} unet_residuals;
#define UNET_RES_MID_IN_PLACE 1   /* this header has unet_residuals.mid_in_place */
#define UNET_HAS_NORM_FRAMES 1    /* ... and unet_attn_hook.norm_frames */
int unet_forward_res(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                     const unet_attn_hook *hook, const unet_residuals *res, float *eps);

/* Precision of the convolutions and linear layers: 0 = fp32 (default), 1 = bf16 weights and
 * activations with fp32 accumulation (AMX-BF16; elsewhere a line on stderr and fp32 stays).
 * Switching to bf16 converts the weights once, in place (weight memory halves); switching
 * back restores fp32 buffers holding the bf16-rounded values. Attention runs on the AMX
 * tiles too (k_attention_bf16: bf16 operands, fp32 softmax); norms and the residual stream
 * stay fp32. Returns 0, or -1 with the error set. */
int unet_set_precision(unet *u, int bf16);
int unet_precision_bf16(const unet *u);      /* 1 when bf16 is in effect */
size_t unet_bf16_weight_bytes(const unet *u); /* bytes of bf16 weights held */

/* FLOPs of the last forward (2 x multiply-adds of convs, linears and attention). */
double unet_last_flops(const unet *u);
/* Hands the scratch memory of the last forward back to the OS (between phases: the next call
 * plans it anew). */
void unet_trim(unet *u);
size_t unet_arena_bytes(const unet *u);
int unet_arena_grows(const unet *u);

#endif
