/* Checkpoint key naming: LDM single-file keys -> diffusers names (algorithms.md E.4).
 * Each function writes the diffusers name (relative to the component, e.g.
 * "down_blocks.0.resnets.0.conv1.weight") for a key with its component prefix already
 * removed, and returns 1, or returns 0 when the key is not part of that network. */
#ifndef OCD_IO_LDM_NAMES_H
#define OCD_IO_LDM_NAMES_H

#include <stddef.h>

/* UNet (`model.diffusion_model.`) or ControlNet (`control_model.`, controlnet = 1). */
int ldm_unet_name(char *out, size_t cap, const char *key, int layers_per_block, int controlnet);
/* VAE (`first_stage_model.`); n_levels = number of resolution levels (4 for SD). */
int ldm_vae_name(char *out, size_t cap, const char *key, int n_levels);
/* Text encoder (`cond_stage_model.transformer.`). */
int ldm_text_name(char *out, size_t cap, const char *key);
/* Older diffusers VAE attention names (query/key/value/proj_attn) -> current ones. */
int diffusers_legacy_name(char *out, size_t cap, const char *name);

#define LDM_PREFIX_UNET "model.diffusion_model."
#define LDM_PREFIX_VAE "first_stage_model."
#define LDM_PREFIX_TEXT "cond_stage_model.transformer."
#define LDM_PREFIX_CONTROL "control_model."

#endif
