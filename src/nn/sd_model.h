/* A loaded Stable Diffusion 1.x model: tokenizer, text encoder, UNet and VAE, built from
 * model files (a diffusers folder, a single LDM checkpoint or random weights). */
#ifndef OCD_NN_SD_MODEL_H
#define OCD_NN_SD_MODEL_H

#include "io/model.h"
#include "nn/clip.h"
#include "nn/tokenizer.h"
#include "nn/unet.h"
#include "nn/vae.h"

typedef struct {
    model_files files;
    ocd_tokenizer *tok;
    clip_config clip_cfg;
    unet_config unet_cfg;
    vae_config vae_cfg;
    clip_text *text;     /* NULL when the model has no text encoder */
    unet *unet;          /* NULL when the model has no UNet */
    vae *vae;            /* NULL when the model has no VAE */
    const char *config_source[3]; /* "config.json", "file metadata", "inferred from shapes", "preset" */
} sd_model;

/* path: folder or single file; or "random:sd15" / "random:tiny" with the seed. */
int sd_model_load(sd_model *m, const char *path, uint64_t seed);
void sd_model_free(sd_model *m);
/* Prompt -> ids [77] -> embedding [77, hidden]. */
int sd_model_encode_prompt(sd_model *m, const char *prompt, float *emb);
int64_t sd_model_params(const sd_model *m);
/* The UNet's and the VAE's arithmetic: "fp32", "bf16" (unet_set_precision, vae_set_precision) or
 * "auto" (and NULL): bf16 where the CPU has AMX-BF16, else fp32. Returns 1 when bf16 is in effect,
 * 0 for fp32, -1 (error set) for another name or a failed switch. */
int sd_model_set_precision(sd_model *m, const char *precision);
/* Whether a precision name asks for bf16 (1: "bf16", or "auto"/NULL on a CPU with AMX-BF16) or
 * fp32 (0); -1 (error set) for another name. */
int sd_precision_wants_bf16(const char *precision);

#endif
