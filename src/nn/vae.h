/* AutoencoderKL of SD 1.x (algorithms.md E.3), driven by its diffusers config.
 *
 * Encoder: image [in_ch, H, W] in [-1, 1] -> posterior mean, logvar [latent, H/f, W/f]
 * (f = 2^(n_levels-1) = 8), logvar clamped to [-30, 20]. Decoder: z [latent, h, w]
 * (already divided by scaling_factor) -> image [out_ch, f h, f w], roughly in [-1, 1].
 * Weights by diffusers names ("encoder.down_blocks.0.resnets.0.conv1.weight", ...);
 * the mid attention may be stored as to_q/to_k/to_v/to_out.0 or query/key/value/proj_attn.
 * A vae keeps a workspace that grows to the largest size seen: not thread-safe per vae. */
#ifndef OCD_NN_VAE_H
#define OCD_NN_VAE_H

#include <stddef.h>

#include "nn/weights.h"

#define VAE_MAX_LEVELS 8

typedef struct {
    int in_channels, out_channels, latent_channels;
    int n_levels;
    int block_out[VAE_MAX_LEVELS];   /* SD 1.x: 128, 256, 512, 512 */
    int layers_per_block;            /* resnets per encoder level; decoder levels have one more */
    int groups;                      /* GroupNorm groups (norm_num_groups), SD 1.x 32 */
    float eps;                       /* GroupNorm eps, 1e-6 everywhere */
    float scaling_factor;            /* 0.18215 for SD 1.x */
} vae_config;

/* Parses a diffusers vae/config.json; missing keys take diffusers' defaults.
 * Refuses configurations this implementation does not cover (other block types/activation,
 * no mid attention, no quant convs). */
int vae_config_from_json(vae_config *c, const char *json_text);
void vae_config_sd15(vae_config *c);
/* Spatial factor between image and latent: 2^(n_levels-1). */
int vae_downscale(const vae_config *c);

typedef struct vae vae;

/* Pulls every weight from ws (which must outlive the vae). NULL + error on failure. */
vae *vae_new(const vae_config *c, ws_source *ws);
void vae_free(vae *v);
const vae_config *vae_get_config(const vae *v);

/* image [in_ch, H, W] -> mean, logvar [latent, H/f, W/f]; H, W multiples of f. */
int vae_encode(vae *v, const float *image, int H, int W, float *mean, float *logvar);
/* z [latent, h, w] (raw decoder input) -> image [out_ch, f h, f w]. */
int vae_decode(vae *v, const float *z, int h, int w, float *image);

/* Precision of the convolutions and attention linears, as unet_set_precision: 0 = fp32,
 * 1 = bf16 on AMX-BF16 CPUs (converted once, in place; elsewhere a line on stderr and fp32
 * stays). The image/latent-side convs with < 16 channels stay fp32. 0 or -1 (error set). */
int vae_set_precision(vae *v, int bf16);
int vae_precision_bf16(const vae *v);

/* Tiling: frames larger than tile_px x tile_px pixels (either side) are encoded/decoded in
 * tiles overlapping by overlap_px, blended linearly across the overlaps: peak memory is one
 * tile's workspace plus the frame. Approximate (each tile has its own GroupNorm statistics
 * and attention). Defaults VAE_TILE_DEFAULT / VAE_OVERLAP_DEFAULT; tile_px 0 = never tile.
 * Both multiples of the downscale factor, overlap < tile / 2. 0 or -1 (error set). */
#define VAE_TILE_DEFAULT 512
#define VAE_OVERLAP_DEFAULT 64
int vae_set_tiling(vae *v, int tile_px, int overlap_px);

/* Workspace bytes needed to encode an H x W image and decode its h x w latent (one tile's
 * when tiled). */
size_t vae_scratch_bytes(vae *v, int H, int W);
/* Bytes of workspace currently held. */
size_t vae_workspace_bytes(const vae *v);
/* Frees the workspace (between phases: the next call allocates it anew). */
void vae_trim(vae *v);
/* 2 x multiply-adds of convolutions, attention and linear layers. */
double vae_encode_flops(const vae_config *c, int H, int W);
double vae_decode_flops(const vae_config *c, int h, int w);

#endif
