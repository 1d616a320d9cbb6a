/* The three settings of one editing pipeline (ocd-method.md 1): "fatezero" (the baseline),
 * "optimized" (Optimized-FateZero) and "ocd" (Object-Centric Diffusion), and the same three for
 * ControlVideo (ocd-method.md 7): "controlvideo", "optimized", "ocd". A preset is data: it sets
 * only the knobs that distinguish the presets and leaves every other field of p alone, so the
 * order "defaults, preset, then the user's flags" gives flags the last word. */
#ifndef OCD_EDIT_PRESETS_H
#define OCD_EDIT_PRESETS_H

#include "edit/controlvideo.h"
#include "edit/fatezero.h"

/* Sets the preset's knobs in p. Returns 0, or -1 with an error naming the known presets.
 *   fatezero:  DDIM, 50 inversion + 50 editing steps, CFG 7.5, tome_ratio 0, lambda 0, OCS off
 *   optimized: DPM-Solver++ 2M, 20 steps (inversion on the same 20 timesteps), CFG 7.5,
 *              tome_ratio 0.5, lambda 0, OCS off
 *   ocd:       optimized + oc_tome_lambda 1.0 + OCS on */
int fz_preset(fz_params *p, const char *name);
/* NULL-terminated list of the preset names, in the order above. */
const char *const *fz_preset_names(void);

/* The same for ControlVideo (no inversion: merging is unpaired, OCS needs a user mask):
 *   controlvideo: DDIM 50, CFG 12.5, tome_ratio 0, lambda 0, OCS off (= cv_default_params)
 *   optimized:    DPM-Solver++ 2M, 20 steps, CFG 12.5, 3D K/V merging ratio 0.5 (min 64 tokens
 *                 per frame), lambda 0, OCS off
 *   ocd:          optimized + oc_tome_lambda 1.0 + OCS on (it runs when a mask is given) */
int cv_preset(cv_params *p, const char *name);
const char *const *cv_preset_names(void);

#endif
