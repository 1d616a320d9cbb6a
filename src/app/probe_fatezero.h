/* `ocd probe fatezero`: the FateZero end-to-end golden (fatezero_attribute) through the library:
 * frames, prompts and parameters from the golden file, every output written under the golden's
 * names (check with tools/compare.py GOLDEN OUT, `--staged` for the staged tolerances). */
#ifndef OCD_APP_PROBE_FATEZERO_H
#define OCD_APP_PROBE_FATEZERO_H

#include "app/args.h"

/* staged: start each stage from the golden's own values (inversion from z0, both editing runs
 * from inverted_latent, decoding from edited_latents). The model comes from a's --model /
 * --random. Returns 0, or -1 with ocd_last_error(). */
int probe_fatezero(const args *a, const char *in_path, const char *out_path, int staged);

#endif
