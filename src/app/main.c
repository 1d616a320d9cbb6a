/* ocd — Object-Centric Diffusion video editing with Stable Diffusion 1.x, on the CPU. */
#include <stdio.h>
#include <string.h>

#include "app/app.h"
#include "base/blas_core.h"
#include "base/error.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *help;
} k_cmds[] = {
    {"info", cmd_info, "describe a model (kind, config, parameters, dtypes, memory)"},
    {"probe", cmd_probe, "run one network or sampler case on a golden-format input file"},
    {"bench", cmd_bench, "time a network: GFLOP/s, % of sgemm peak, peak RSS"},
    {"generate", cmd_generate, "text to image"},
    {"control", cmd_control, "ControlVideo: a video's canny / depth / pose frames + a prompt -> a new video"},
    {"reconstruct", cmd_reconstruct, "encode, DDIM-invert and regenerate an image (prints PSNR)"},
    {"edit", cmd_edit, "edit a video with a prompt (FateZero: inversion + attention fusion)"},
};

static void usage(void) {
    printf("usage: ocd COMMAND [options]   (ocd COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++) printf("  %-12s %s\n", k_cmds[i].name, k_cmds[i].help);
}

int main(int argc, char **argv) {
    blas_select_core(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    if (argc > 2 && !strcmp(argv[1], "bench") && !strcmp(argv[2], "control")) { /* ocd bench control */
        ocd_clear_error();
        int rc = cmd_bench_control(argc - 3, argv + 3);
        if (rc) fprintf(stderr, "ocd bench control: error: %s\n", ocd_last_error());
        return rc ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++) {
        if (strcmp(argv[1], k_cmds[i].name) != 0) continue;
        ocd_clear_error();
        int rc = k_cmds[i].run(argc - 2, argv + 2);
        if (rc) {
            fflush(stdout);
            fprintf(stderr, "ocd %s: error: %s\n", argv[1], ocd_last_error());
        }
        return rc ? 1 : 0;
    }
    fprintf(stderr, "ocd: error: unknown command \"%s\" (see ocd --help)\n", argv[1]);
    return 2;
}
