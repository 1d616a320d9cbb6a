/* `ocd probe pipeline_*`: full single-image runs (text-to-image, DDIM inversion + regeneration)
 * driven by a golden-format file: inputs (cond_ids, uncond_ids, init_noise, image) from its
 * tensors, parameters (steps, guidance, scaling factor, scheduler configs) from
 * __metadata__.spec.params; every output is written under the golden's name, so
 * tools/compare.py GOLDEN OUT checks the run. */
#ifndef OCD_APP_PROBE_PIPELINE_H
#define OCD_APP_PROBE_PIPELINE_H

#include "app/args.h"

/* kind: pipeline_txt2img | pipeline_ddim_inversion. The model comes from a's --model /
 * --random options. Returns 0, or -1 with ocd_last_error(). */
int probe_pipeline(const char *kind, const args *a, const char *in_path, const char *out_path);
/* 1 if kind is one of the kinds above. */
int probe_pipeline_handles(const char *kind);

#endif
