/* `ocd probe tome`: the ToMe goldens (tome_merge, tome_merge_odd) through src/edit/tome.h:
 * x [B, N, C] and y [B, M, C] from the file, h, w, sx, sy, ratio from its spec params; writes
 * merged [B, M, C], unmerged_y and roundtrip [B, N, C] (check with tools/compare.py). */
#ifndef OCD_APP_PROBE_TOME_H
#define OCD_APP_PROBE_TOME_H

/* No model needed. Returns 0, or -1 with ocd_last_error(). */
int probe_tome(const char *in_path, const char *out_path);

#endif
