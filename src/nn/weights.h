/* A source of named weight tensors for one network, by diffusers names relative to the
 * network ("conv_in.weight", "down_blocks.0.resnets.0.conv1.weight", ...).
 *
 * Networks pull each tensor with the shape they expect; the source checks the shape
 * (a clear error names the tensor and both shapes), converts F16/BF16/F32 to float32
 * and keeps ownership of the buffer until ws_free(). Sources:
 *   - a diffusers component folder (unet/, vae/, text_encoder/): its safetensors file;
 *   - a single-file LDM checkpoint: names mapped from the LDM keys (src/io/ldm_names.c);
 *   - random (`--random`): seeded weights generated on demand in the requested shape,
 *     N(0, 1/fan_in) for conv/linear weights, as the fixtures' tiny model.
 * Not thread-safe: build networks from one thread. */
#ifndef OCD_NN_WEIGHTS_H
#define OCD_NN_WEIGHTS_H

#include <stdint.h>

typedef struct ws_source ws_source;

/* Returns the tensor `name` as float32 with exactly this shape, or NULL (error set). */
float *ws_get(ws_source *ws, const char *name, int ndim, const int64_t *shape);
/* printf-style name; shape given as ndim then that many int64 values. */
float *ws_getf(ws_source *ws, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Whether a tensor of that name exists (random sources: always 1 except for names in
 * the "optional" set they were told are absent). */
int ws_has(ws_source *ws, const char *name);
/* Shape of a stored tensor (for inferring a config from shapes). Returns ndim, or -1
 * when absent. Random sources return -1. */
int ws_shape(ws_source *ws, const char *name, int64_t *shape);
/* Number of float parameters handed out so far (for `ocd info`). */
int64_t ws_params_loaded(const ws_source *ws);
/* Label for messages, e.g. "tiny-sd/unet" or "model.ckpt:unet". */
const char *ws_label(const ws_source *ws);

/* Constructors (implemented in src/io/model.c). */
ws_source *ws_open_file(const char *safetensors_path, const char *label);
ws_source *ws_random(uint64_t seed, const char *label);
void ws_free(ws_source *ws);

/* The 4-dim / 2-dim / 1-dim shorthands every network uses. */
#define WS_SHAPE1(a) 1, (const int64_t[]){(a)}
#define WS_SHAPE2(a, b) 2, (const int64_t[]){(a), (b)}
#define WS_SHAPE4(a, b, c, d) 4, (const int64_t[]){(a), (b), (c), (d)}

#endif
