/* Model files: a diffusers folder or a single LDM checkpoint, opened as one weight source
 * per network plus the configuration text each network parses. Knows only files and
 * names, not the networks' arithmetic. */
#ifndef OCD_IO_MODEL_H
#define OCD_IO_MODEL_H

#include <stdint.h>

#include "io/safetensors.h"
#include "nn/weights.h"

typedef enum { MODEL_DIFFUSERS, MODEL_LDM_FILE, MODEL_RANDOM } model_kind;

typedef struct {
    model_kind kind;
    char *path;
    ws_source *unet, *vae, *text;    /* NULL for a component the model lacks */
    /* Configuration JSON text per component (diffusers config.json, or the single file's
     * __metadata__ "*.unet_config" ...); NULL = infer from tensor shapes. Owned. */
    char *unet_config, *vae_config, *text_config, *scheduler_config;
    char *vocab_path, *merges_path;  /* tokenizer files when the model has them, else NULL */
    /* Keys present in the file(s) that no network uses (EMA copies, schedule buffers, ...). */
    int n_ignored_keys;
    int n_keys;
    int64_t file_bytes;
    int dtype_count[ST_DTYPE_COUNT]; /* tensors per stored dtype */
} model_files;

/* Opens a folder (model_index.json / unet/ vae/ text_encoder/ ...) or a .safetensors
 * single file. A PyTorch .ckpt/.bin is refused with a message on how to convert it. */
int model_files_open(model_files *m, const char *path);
/* Random weights (`--random sd15|tiny`) with the named preset's configs. */
int model_files_random(model_files *m, const char *preset, uint64_t seed);
void model_files_close(model_files *m);

/* For ControlNet (diffusers folder or `control_model.*` single file). */
int controlnet_files_open(model_files *m, const char *path);

#endif
