/* ocd — Object-Centric Diffusion video editing with Stable Diffusion 1.x, in C11 on the CPU.
 *
 * The public API. Everything else under src/ is internal and may change.
 *
 * Conventions
 *   - Tensors are float32, row-major. Images and latents are NCHW: [batch or frames, channels,
 *     height, width]; pixels in [-1, 1] inside the engine, RGB8 [h, w, 3] at the edges.
 *     Text embeddings are [77, hidden]; token sequences [77] (BOS 49406, EOS/pad 49407).
 *   - Functions return 0 (or a non-NULL pointer) on success; on failure -1 (or NULL) and
 *     ocd_last_error() holds one line saying why. Nothing aborts on bad input.
 *   - Outputs are written to a temporary file and renamed: a failure never leaves a
 *     half-written result.
 *
 * Thread safety
 *   - An ocd_model is not thread-safe: one call at a time per model (calls parallelise
 *     internally with OpenMP over the cores given by n_threads). Separate models may be
 *     used from separate threads. ocd_last_error() is per thread.
 *   - Results are bit-identical for any thread count.
 */
#ifndef OCD_H
#define OCD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OCD_VERSION "0.1.0"

const char *ocd_last_error(void);

/* Progress of long work: phase ("encode", "invert", "edit", "decode", "sample"), step k of n. */
typedef void (*ocd_progress_fn)(void *user, const char *phase, int step, int total);

/* ---------------------------------------------------------------- models */

typedef struct ocd_model ocd_model;

typedef struct {
    const char *path;          /* diffusers folder or single-file .safetensors checkpoint */
    const char *random;        /* instead of path: "sd15" or "tiny" random weights (benchmarks) */
    uint64_t weight_seed;      /* seed of random weights */
    int n_threads;             /* 0 = all cores */
    const char *precision;     /* "auto" (default, NULL too): bf16 where the CPU has AMX-BF16; "fp32"; "bf16" */
} ocd_model_params;

ocd_model_params ocd_model_default_params(void);
ocd_model *ocd_model_load(const ocd_model_params *p);
void ocd_model_free(ocd_model *m);
/* Parameters held in memory (all networks). */
int64_t ocd_model_n_params(const ocd_model *m);

/* ---------------------------------------------------------------- text to image */

typedef struct {
    const char *prompt;        /* "" is allowed (unconditional) */
    const char *negative;      /* "" by default */
    const char *sampler;       /* "ddim" (default) or "dpmpp-2m" */
    int steps;                 /* 50 */
    float cfg;                 /* 7.5 */
    uint64_t seed;             /* initial noise */
    int width, height;         /* pixels, multiples of 8; 0 = the model's sample size */
    ocd_progress_fn progress;
    void *progress_user;
} ocd_generate_params;

ocd_generate_params ocd_generate_default_params(void);
/* rgb_out: [height, width, 3]. */
int ocd_generate(ocd_model *m, const ocd_generate_params *p, uint8_t *rgb_out);

#ifdef __cplusplus
}
#endif

#endif
