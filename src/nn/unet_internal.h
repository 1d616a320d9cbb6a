/* The UNet's trunk (time embedding, conv_in, down blocks, mid block), shared with ControlNet,
 * which is a copy of that trunk plus its own condition embedding and zero convolutions.
 * Internal to src/nn. */
#ifndef OCD_NN_UNET_INTERNAL_H
#define OCD_NN_UNET_INTERNAL_H

#include "nn/unet.h"

/* The trunk's outputs, in the UNet's arena until unet_release(). */
typedef struct {
    int n;                          /* skip connections */
    float *x[UNET_MAX_SKIPS];       /* [B, c[i], h[i], w[i]] each */
    int c[UNET_MAX_SKIPS], h[UNET_MAX_SKIPS], w[UNET_MAX_SKIPS];
    float *mid;                     /* [B, mid_c, mid_h, mid_w] mid block output */
    int mid_c, mid_h, mid_w;
    const float *temb_act;          /* SiLU(time embedding) [B, 4 C0] */
} unet_feats;

/* A trunk only (no up blocks, no conv_out): ControlNet's copy of the encoder. */
unet *unet_new_trunk(const unet_config *c, ws_source *ws);
/* add_in [B, C0, H, W] (may be NULL) is added after conv_in. */
int unet_trunk_forward(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                       const unet_attn_hook *hook, const float *add_in, unet_feats *out);
/* Same, with mid_add [B, Cm, h, w] (may be NULL) added to the mid block's input only. */
int unet_trunk_forward_ex(unet *u, const float *x, const float *t, const float *ctx, int n_ctx, int B, int H, int W,
                          const unet_attn_hook *hook, const float *add_in, const float *mid_add, unet_feats *out);
/* The transformer feed-forward runs in blocks of rows whose 12C-wide hidden state holds at most
 * this many floats (default UNET_FF_FLOATS, 0 restores it); for tests, which shrink it to check
 * that the blocking does not change the result. */
#define UNET_FF_FLOATS ((size_t)1 << 24)
void unet_set_ff_block(unet *u, size_t floats);
/* Frees the trunk's features (rewinds the arena). */
void unet_release(unet *u);

#endif
