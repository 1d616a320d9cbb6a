/* The `ocd` command's subcommands. Each returns the process exit status; on failure it
 * leaves the reason in ocd_last_error() and main prints it as one line. */
#ifndef OCD_APP_APP_H
#define OCD_APP_APP_H

#include <stdint.h>

#include "app/args.h"
#include "edit/controlvideo.h"
#include "io/video.h"
#include "nn/controlnet.h"
#include "nn/sd_model.h"

int cmd_info(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_control(int argc, char **argv);        /* cmd_control.c */
int cmd_bench_control(int argc, char **argv);  /* `ocd bench control`, cmd_bench_control.c */
int cmd_bench_control_pass(int argc, char **argv); /* `ocd bench control --pass`, cmd_control.c */
double bench_sgemm_peak_gflops(void);          /* cmd_bench.c */
int cmd_edit(int argc, char **argv);

/* cmd_control.c's clip handling, shared with `ocd bench control`. */
/* Frames start + i * stride (i < F) of a fully read clip, moved into a new clip (the rest freed);
 * too short a clip is an error naming `name`. */
int control_pick_frames(ocd_video *v, const char *name, int start, int stride, int F);
/* Every frame of v resized (bilinear, antialiased) to W x H in place. */
int control_resize_clip(ocd_video *v, int W, int H);
/* --smoother-steps: "19,20" (N - i values) or "none" into p->smooth_steps. */
int control_parse_smoother(const char *s, cv_params *p);
/* --controlnet, or the --random preset's random ControlNet (--weight-seed). */
int control_load_cn(const args *a, controlnet_model *cm);
/* A mask clip (white = foreground) -> out [v->n, h, w] of 0/1 at latent size: a latent pixel is
 * foreground when any of its pixels is brighter than mid-grey (adaptive max pool, as ocd edit). */
int control_mask_latent(const ocd_video *v, int h, int w, float *out);

/* --model PATH or --random sd15|tiny (--seed S), shared by every subcommand. */
int app_load_model(const args *a, sd_model *m);
/* --threads N (0 or absent = all cores), each pinned to its core (ocd_threads_setup). */
int app_set_threads(const args *a);
/* --precision auto|fp32|bf16 for the loaded networks: the UNet's, the VAE's and the ControlNet's
 * (cm may be NULL) convolutions, linears and attention. auto (the default) = bf16 where the CPU
 * has AMX-BF16 (UNet output within 1e-2 relative of fp32; the toy edit judged the same), else fp32. */
#define APP_OPT_PRECISION {"--precision", 1, "auto|fp32|bf16: UNet/VAE/ControlNet arithmetic (default auto = bf16 where the CPU has AMX-BF16: 2x faster, half the weight memory)"}
int app_set_precision(const args *a, sd_model *m, controlnet_model *cm);
/* Prints "         K/V tokens merged per level: L0 35% ... (all 35%: ...)" from the per-level
 * counts of a report (levels with no tokens left out), without the line's end. */
void app_print_merged_levels(const long tokens_in[8], const long tokens_merged[8]);
/* "bf16" or "fp32": what --precision gives on this CPU (for reports). */
const char *app_precision_name(const args *a);

#endif
