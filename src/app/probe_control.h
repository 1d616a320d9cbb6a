/* `ocd probe controlnet | canny | controlvideo`: the ControlNet goldens (controlnet_forward*,
 * canny, controlvideo_basic, controlvideo_basic_asis, controlvideo_long) through the library.
 * Inputs from the golden's tensors, parameters from __metadata__.spec.params, every output
 * written under the golden's names (check with tools/compare.py GOLDEN OUT). */
#ifndef OCD_APP_PROBE_CONTROL_H
#define OCD_APP_PROBE_CONTROL_H

#include "app/args.h"

/* 1 if kind is controlnet, canny or controlvideo. */
int probe_control_handles(const char *kind);
/* The SD model from --model / --random, the ControlNet from --controlnet (canny needs neither).
 * Returns 0, or -1 with ocd_last_error(). */
int probe_control(const char *kind, const args *a, const char *in_path, const char *out_path);

#endif
