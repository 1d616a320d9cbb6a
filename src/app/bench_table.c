/* Shared pieces of the preset / ablation benches (see bench_table.h). */
#include "app/bench_table.h"
#include "app/app.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/util.h"
#include "diffusion/schedule.h"
#include "edit/metrics.h"

int bench_select_runs(const char *list, const bench_run *runs, int n, int *selected) {
    if (!list) { for (int i = 0; i < n; i++) selected[i] = 1; return 0; }
    char buf[1024];
    if (strlen(list) >= sizeof buf) return ocd_fail("--runs: too long");
    strcpy(buf, list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int k = -1;
        for (int i = 0; i < n; i++) if (!strcmp(runs[i].name, tok)) k = i;
        if (k < 0) return ocd_fail("--runs: unknown run \"%s\" (see --list-runs)", tok);
        selected[k] = 1;
    }
    return 0;
}

void bench_list_runs(const bench_run *runs, int n) {
    for (int i = 0; i < n; i++) printf("%-14s %-10s %s\n", runs[i].name, runs[i].preset, runs[i].what);
}

int bench_run_child(int no_fork, bench_child_fn fn, void *user, size_t payload_bytes, bench_child *hdr, void *payload,
                    const char *name) {
    memset(hdr, 0, sizeof *hdr);
    if (no_fork) {
        fn(user, hdr, payload);
        return 0;
    }
    const size_t bytes = sizeof(bench_child) + payload_bytes;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return ocd_fail("mmap of %zu bytes for a run's results failed", bytes);
    bench_child *sh = mem;
    memset(sh, 0, sizeof *sh);
    fflush(stdout);
    fflush(stderr);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { munmap(mem, bytes); return ocd_fail("fork failed"); }
    if (pid == 0) {
        /* a run outlives nothing: if the bench is killed, so is its run */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) || getppid() != parent) _exit(1);
        fn(user, sh, sh + 1);
        _exit(sh->ok ? 0 : 1);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) { munmap(mem, bytes); return ocd_fail("wait for run %s failed", name); }
    *hdr = *sh;
    if (WIFSIGNALED(status) && !hdr->ok) {
        hdr->signal = WTERMSIG(status);
        snprintf(hdr->err, sizeof hdr->err, "killed by signal %d", hdr->signal);
    }
    /* VmHWM read by the child at its end; ru_maxrss (KiB) covers a child that died early */
    if ((size_t)ru.ru_maxrss * 1024 > hdr->peak_rss) hdr->peak_rss = (size_t)ru.ru_maxrss * 1024;
    memcpy(payload, sh + 1, payload_bytes);
    munmap(mem, bytes);
    return 0;
}

void bench_judge(const uint8_t *rgb, const uint8_t *ref, const uint8_t *src, const uint8_t *pm, int F, int W, int H,
                 bench_fidelity *q) {
    q->psnr_in = q->psnr_out = q->psnr_all = q->ssim_in = q->ssim_out = q->ssim_all = q->bg_psnr = q->cons = NAN;
    if (!rgb) return;
    if (ref) {
        q->psnr_all = mt_clip_psnr(rgb, ref, F, W, H, NULL, MT_ALL);
        q->ssim_all = mt_clip_ssim(rgb, ref, F, W, H, NULL, MT_ALL);
        if (pm) {
            q->psnr_in = mt_clip_psnr(rgb, ref, F, W, H, pm, MT_INSIDE);
            q->psnr_out = mt_clip_psnr(rgb, ref, F, W, H, pm, MT_OUTSIDE);
            q->ssim_in = mt_clip_ssim(rgb, ref, F, W, H, pm, MT_INSIDE);
            q->ssim_out = mt_clip_ssim(rgb, ref, F, W, H, pm, MT_OUTSIDE);
        }
    }
    if (pm && src) q->bg_psnr = mt_clip_psnr(rgb, src, F, W, H, pm, MT_OUTSIDE);
    q->cons = mt_clip_consistency(rgb, F, W, H);
}

int bench_sa_layers(const unet_config *c, int S, int *tokens, int *channels, int max) {
    const int L = S / 8, depth = c->transformer_depth > 0 ? c->transformer_depth : 1;
    int n = 0;
#define ADD(lv, count)                                                                      \
    for (int k_ = 0; k_ < (count) * depth && n < max; k_++) {                               \
        int side_ = L >> (lv);                                                               \
        tokens[n] = side_ * side_; channels[n] = c->block_out[lv]; n++;                      \
    }
    for (int i = 0; i < c->n_levels; i++) if (c->down_attn[i]) ADD(i, c->layers_per_block);
    ADD(c->n_levels - 1, 1); /* mid block */
    for (int j = 0; j < c->n_levels; j++) if (c->up_attn[j]) ADD(c->n_levels - 1 - j, c->layers_per_block + 1);
#undef ADD
    return n;
}

double bench_load_avg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf", &l) != 1) l = -1; fclose(f); }
    return l;
}

void bench_fmt_num(char *buf, size_t cap, double v, const char *fmt) {
    if (isnan(v)) snprintf(buf, cap, "n/a");
    else snprintf(buf, cap, fmt, v);
}

double bench_mib(size_t b) { return b / 1048576.0; }

json_t *bench_jnum(double v) { return isnan(v) || isinf(v) ? json_null() : json_real(v); }

const char *bench_solver_name(int s) { return s == OCD_SOLVER_DPMPP_2M ? "dpm++2m" : "ddim"; }

const bench_run bench_ablations[BENCH_N_ABLATIONS] = {
    {"opt-no-tome", "optimized", "optimized without merging (ratio 0): the solver alone", 0, -1, -1, -1, -1},
    {"ocd-no-tome", "ocd", "ocd without merging (ratio 0): OCS only", 0, -1, -1, -1, -1},
    {"ocd-no-octome", "ocd", "ocd without OC-ToMe (lambda 0)", -1, 0, -1, -1, -1},
    {"ocd-no-ocs", "ocd", "ocd without OCS", -1, -1, 0, -1, -1},
    {"ocd-r0.25", "ocd", "ocd, merge ratio 0.25", 0.25f, -1, -1, -1, -1},
    {"ocd-r0.75", "ocd", "ocd, merge ratio 0.75", 0.75f, -1, -1, -1, -1},
    {"ocd-phi2", "ocd", "ocd, background every 2nd step", -1, -1, -1, 2, -1},
    {"ocd-phi8", "ocd", "ocd, background every 8th step", -1, -1, -1, 8, -1},
    {"ocd-beta0.3", "ocd", "ocd, blend at 0.3 N", -1, -1, -1, -1, 0.3},
    {"ocd-beta0.7", "ocd", "ocd, blend at 0.7 N", -1, -1, -1, -1, 0.7},
};

void bench_make_runs(const bench_run presets[3], bench_run *runs) {
    for (int i = 0; i < 3; i++) runs[i] = presets[i];
    for (int i = 0; i < BENCH_N_ABLATIONS; i++) runs[3 + i] = bench_ablations[i];
}

json_t *bench_json_header(const args *a, const char *video, int frames, int size, const char *mask, int estimate,
                          double load0, double load1) {
    json_t *root = json_object();
    json_object_set_new(root, "model", json_string(args_str(a, "--model", NULL) ? args_str(a, "--model", "")
                                                                                 : args_str(a, "--random", "")));
    json_object_set_new(root, "random_weights", json_boolean(args_has(a, "--random")));
    json_object_set_new(root, "video", json_string(video));
    json_object_set_new(root, "frames", json_integer(frames));
    json_object_set_new(root, "size", json_integer(size));
    json_object_set_new(root, "mask", json_string(mask));
    json_object_set_new(root, "estimate", json_boolean(estimate));
    json_object_set_new(root, "precision", json_string(app_precision_name(a)));
    json_object_set_new(root, "load_average_start", bench_jnum(load0));
    json_object_set_new(root, "load_average_end", bench_jnum(load1));
    return root;
}

void bench_json_fidelity(json_t *o, const bench_fidelity *q) {
    json_object_set_new(o, "psnr_inside", bench_jnum(q->psnr_in));
    json_object_set_new(o, "psnr_outside", bench_jnum(q->psnr_out));
    json_object_set_new(o, "psnr_all", bench_jnum(q->psnr_all));
    json_object_set_new(o, "ssim_inside", bench_jnum(q->ssim_in));
    json_object_set_new(o, "ssim_outside", bench_jnum(q->ssim_out));
    json_object_set_new(o, "ssim_all", bench_jnum(q->ssim_all));
    json_object_set_new(o, "background_psnr_vs_source", bench_jnum(q->bg_psnr));
    json_object_set_new(o, "consistency_psnr", bench_jnum(q->cons));
}
