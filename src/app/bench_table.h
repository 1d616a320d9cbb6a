/* What `ocd bench edit` and `ocd bench control` share (ocd-method.md 6): the table of runs
 * (presets, then ablations of one knob each), running each run in a child process so that its
 * peak RSS is its own, the fidelity measures against the baseline run, and small formatting
 * helpers for the table, the JSON and the CSV. */
#ifndef OCD_APP_BENCH_TABLE_H
#define OCD_APP_BENCH_TABLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "app/args.h"
#include "nn/unet.h"

/* One row of a bench: a preset, then the ablated knobs (negative = the preset's value). */
typedef struct {
    const char *name, *preset, *what;
    float tome_ratio, lambda;
    int ocs, phi;
    double beta;
} bench_run;

/* The ablations of one knob each that both benches run after their three presets. */
#define BENCH_N_ABLATIONS 10
extern const bench_run bench_ablations[BENCH_N_ABLATIONS];
/* runs [3 + BENCH_N_ABLATIONS] = the three presets, then bench_ablations. */
void bench_make_runs(const bench_run presets[3], bench_run *runs);

/* selected[i] = 1 for the runs named in the comma-separated list (NULL = all). Unknown name: error. */
int bench_select_runs(const char *list, const bench_run *runs, int n, int *selected);
void bench_list_runs(const bench_run *runs, int n);

/* The fixed part of a run's result, written by the run (in a child process, or in this one). */
typedef struct {
    int ok, signal;
    char err[512];
    double t_load, t_run;
    size_t peak_rss;      /* the run process's own (VmHWM), or the process high-water mark with no_fork */
} bench_child;

/* A run: fills hdr (ok, err, t_load, t_run, peak_rss) and its payload. */
typedef void (*bench_child_fn)(void *user, bench_child *hdr, void *payload);

/* Runs fn in a child process (fork before this process has touched OpenMP or BLAS, which do not
 * survive a fork) with its header and payload_bytes of payload in shared memory, then copies them
 * into *hdr and payload; a child killed by a signal is reported in hdr. no_fork: fn runs here.
 * Returns -1 only when the bench itself cannot go on (mmap, fork, wait). */
int bench_run_child(int no_fork, bench_child_fn fn, void *user, size_t payload_bytes, bench_child *hdr, void *payload,
                    const char *name);

/* Fidelity of a run's RGB8 frames [F, H, W, 3] (edit/metrics.h): PSNR and SSIM against the
 * reference run's inside / outside a pixel mask [F, H, W] and over the whole frame, PSNR outside
 * the mask against the source clip, frame-to-frame consistency. NAN where not measurable (no
 * reference, no mask, no source). */
typedef struct {
    double psnr_in, psnr_out, psnr_all, ssim_in, ssim_out, ssim_all, bg_psnr, cons;
} bench_fidelity;
void bench_judge(const uint8_t *rgb, const uint8_t *ref, const uint8_t *src, const uint8_t *pix_mask, int F, int W, int H,
                 bench_fidelity *out);

/* Token count and channels of every self-attention layer of a UNet at S x S pixels (latent S/8),
 * in call order; returns their number (at most max). */
int bench_sa_layers(const unet_config *c, int S, int *tokens, int *channels, int max);

/* The JSON document's common header: the model (--model, else --random), whether the weights are
 * random, the clip, its frame count and size, the mask, estimate mode and the load averages. */
json_t *bench_json_header(const args *a, const char *video, int frames, int size, const char *mask, int estimate,
                          double load0, double load1);
/* The fidelity fields of a run's JSON object (null where not measured). */
void bench_json_fidelity(json_t *o, const bench_fidelity *q);

double bench_load_avg(void);                     /* 1-minute load average, -1 when unknown */
void bench_fmt_num(char *buf, size_t cap, double v, const char *fmt);   /* "n/a" for NAN */
double bench_mib(size_t bytes);
json_t *bench_jnum(double v);                    /* null for NAN / inf */
const char *bench_solver_name(int solver);       /* "ddim", "dpm++2m" */

#endif
