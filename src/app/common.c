#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "base/error.h"
#include "base/threads.h"
#include "kernels/kernels.h"

int app_set_threads(const args *a) {
    long n;
    if (args_int(a, "--threads", 0, 0, 1024, &n)) return -1;
    ocd_threads_setup((int)n);
    return 0;
}

int app_set_precision(const args *a, sd_model *m, controlnet_model *cm) {
    const int bf = sd_model_set_precision(m, args_str(a, "--precision", "auto"));
    if (bf < 0) return ocd_fail_context("--precision");
    if (cm && cm->net && controlnet_set_precision(cm->net, bf)) return -1;
    return 0;
}

void app_print_merged_levels(const long tokens_in[8], const long tokens_merged[8]) {
    long tin = 0, tm = 0;
    printf("         K/V tokens merged per level:");
    for (int l = 0; l < 8; l++) {
        if (!tokens_in[l]) continue;
        tin += tokens_in[l], tm += tokens_merged[l];
        printf(" L%d %.0f%%", l, 100.0 * tokens_merged[l] / tokens_in[l]);
    }
    printf(" (all %.0f%%: self-attention QK^T and AV shrink by that much)", tin ? 100.0 * tm / tin : 0.0);
}

const char *app_precision_name(const args *a) {
    return sd_precision_wants_bf16(args_str(a, "--precision", "auto")) > 0 && k_bf16_available() ? "bf16" : "fp32";
}

int app_load_model(const args *a, sd_model *m) {
    const char *model = args_str(a, "--model", NULL), *rnd = args_str(a, "--random", NULL);
    long seed;
    if (args_int(a, "--weight-seed", 1234, 0, 0x7fffffff, &seed)) return -1;
    if (model && rnd) return ocd_fail("give either --model or --random, not both");
    if (!model && !rnd) return ocd_fail("no model: give --model PATH (diffusers folder or .safetensors) or --random sd15|tiny");
    if (rnd) {
        char spec[64];
        snprintf(spec, sizeof spec, "random:%s", rnd);
        return sd_model_load(m, spec, (uint64_t)seed);
    }
    return sd_model_load(m, model, 0);
}
