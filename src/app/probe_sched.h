/* `ocd probe sched_*`: runs the scheduler cases of the goldens from their input file and writes
 * the outputs under the golden's names (check with tools/compare.py GOLDEN OUT). */
#ifndef OCD_APP_PROBE_SCHED_H
#define OCD_APP_PROBE_SCHED_H

/* kind: sched_tables | sched_ddim_step | sched_ddim_trajectory | sched_dpmpp_2m.
 * in_path: a golden-format file (inputs + __metadata__.spec with params; tables need no
 * inputs). Missing params take the SD 1.x defaults. Returns 0, or -1 with ocd_last_error(). */
int probe_sched(const char *kind, const char *in_path, const char *out_path);

/* 1 if kind is one of the kinds above. */
int probe_sched_handles(const char *kind);

#endif
