/* ControlNet (diffusers ControlNetModel; original lllyasviel cldm.ControlNet), algorithms.md C.2
 * and fixtures README "ControlNet".
 *
 * A copy of the UNet's trunk (conv_in, time embedding, down blocks, mid block; src/nn/unet_internal.h)
 * whose conv_in output gets the condition embedding added:
 *     h = conv_in(latent) + cond_embedding(cond)      cond [B, 3, 8h, 8w] RGB in [0, 1]
 *     down_res_i = scale * zero_conv_i(skip_i)         i = 0..n_skips-1 (12 for SD 1.x), 1x1 convs
 *     mid_res    = scale * mid_conv(mid_block_output)
 * The residuals feed unet_forward_res (added to the UNet's skips and mid-block output). Each batch
 * item is independent (own timestep, context and condition); self-attention is per item.
 *
 * cond_embedding ("input_hint_block"): conv3x3 cond_ch->e0, SiLU, then per width step i
 * [conv e_i->e_i, SiLU, conv e_i->e_{i+1} stride 2, SiLU], then conv_out e_last->C0 (no
 * activation). Widths e = conditioning_embedding_out_channels (SD 1.x: 16, 32, 96, 256). */
#ifndef OCD_NN_CONTROLNET_H
#define OCD_NN_CONTROLNET_H

#include <stdint.h>

#include "io/model.h"
#include "nn/unet.h"
#include "nn/weights.h"

#define CN_MAX_EMBED 8

typedef struct {
    unet_config trunk;            /* conv_in .. mid block: same settings as the UNet it controls */
    int cond_channels;            /* conditioning_channels (3) */
    int n_embed;                  /* number of embedding widths (4) */
    int embed[CN_MAX_EMBED];      /* conditioning_embedding_out_channels: SD 1.x 16, 32, 96, 256 */
    int bgr;                      /* controlnet_conditioning_channel_order "bgr": flip the condition */
    int global_pool;              /* global_pool_conditions: residuals averaged over space (shuffle) */
} controlnet_config;

/* diffusers config.json of a ControlNetModel. */
int controlnet_config_from_json(controlnet_config *c, const char *json_text);
/* From tensor shapes (single files without metadata): GroupNorm groups 32 and 8 heads, as the
 * original code hard-codes (not recoverable from shapes). */
int controlnet_config_infer(controlnet_config *c, ws_source *ws);
/* Published shapes: "sd15" (SD 1.5 ControlNet v1.0/v1.1) or "tiny" (the fixtures' tiny-controlnet). */
int controlnet_config_preset(controlnet_config *c, const char *preset);
/* Latent-to-condition size factor: 2^(n_embed - 1) (8). */
int controlnet_cond_factor(const controlnet_config *c);

typedef struct controlnet controlnet;

controlnet *controlnet_new(const controlnet_config *c, ws_source *ws);
void controlnet_free(controlnet *cn);
const controlnet_config *controlnet_get_config(const controlnet *cn);

/* The residuals of one call, owned by the caller (controlnet_out_alloc / _free). */
typedef struct {
    int B, n;                            /* batch, number of down residuals */
    float *down[UNET_MAX_SKIPS];         /* [B, c[i], h[i], w[i]] */
    int c[UNET_MAX_SKIPS], h[UNET_MAX_SKIPS], w[UNET_MAX_SKIPS];
    float *mid;                          /* [B, mid_c, mid_h, mid_w] */
    int mid_c, mid_h, mid_w;
} controlnet_out;

/* Shapes for a batch of B latents of h x w (sizes halve with ceil, as the stride-2 convs do). */
int controlnet_out_alloc(controlnet_out *o, const controlnet *cn, int B, int h, int w);
void controlnet_out_free(controlnet_out *o);
/* Item b of `src` -> item b2 of `dst` (same shapes apart from B): assembles UNet batches from
 * per-frame residuals. */
void controlnet_out_copy_item(controlnet_out *dst, int b2, const controlnet_out *src, int b);
/* Pointers for unet_forward_res (the UNet adds down[i] to skip i, mid to the mid output). */
void controlnet_out_residuals(const controlnet_out *o, unet_residuals *r);

/* out = ControlNet(x [B, in_ch, h, w], t [B], ctx [B, n_ctx, cross], cond [B, cond_ch, f h, f w])
 * times scale. out must have been allocated for (B, h, w). norm_frames > 1: each run of that many
 * items is one clip whose resnet GroupNorms share statistics (ControlVideo's 3D ControlNet;
 * unet_attn_hook.norm_frames); 0 or 1 = every item on its own. Not thread-safe per controlnet. */
int controlnet_forward(controlnet *cn, const float *x, const float *t, const float *ctx, int n_ctx, int B, int h, int w,
                       const float *cond, float scale, int norm_frames, controlnet_out *out);
/* 2 x multiply-adds of the last forward. */
double controlnet_last_flops(const controlnet *cn);
/* The trunk's convolutions, linears and attention in bf16 (unet_set_precision); the embedding
 * and the zero convolutions stay fp32. Returns 0, or -1 with the error set. */
int controlnet_set_precision(controlnet *cn, int bf16);

/* A loaded ControlNet: files + config + network. `path` is a diffusers ControlNet folder, a
 * single .safetensors file with control_model.* keys, or "random:sd15" / "random:tiny". */
typedef struct {
    model_files files;
    controlnet_config cfg;
    controlnet *net;
    const char *config_source;    /* "config.json", "file metadata", "inferred from shapes", "preset" */
} controlnet_model;

int controlnet_load(controlnet_model *m, const char *path, uint64_t seed);
void controlnet_model_free(controlnet_model *m);
int64_t controlnet_params(const controlnet_model *m);

#endif
